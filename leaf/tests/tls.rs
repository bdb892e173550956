//! TLS material: the local CA, the leaf certificate (checked with x509-parser and the real
//! `openssl verify -x509_strict`), caller-supplied files and trust-store installation into
//! temporary anchor directories (never the real system store).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kinopio_leaf::tls::{CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE, CA_LIFETIME, CA_RENEWAL_MARGIN, CaProblem};
use kinopio_leaf::tls::{
    CaOrigin, CaValidity, LeafCertRequest, LocalCa, PreparedTls, SanEntry, SuppliedTls, TlsError, TlsOptions,
    TlsSource, TrustState, ca_validity, next_renewal_at, prepare, renewal_due,
};
use kinopio_leaf::tls::{DEFAULT_LEAF_LIFETIME, LEAF_CERT_FILE, LEAF_KEY_FILE, common_name, subject_alt_names};
use kinopio_leaf::tls::{SKIP_ENV, SystemAnchorStore, TrustStoreConfig, anchor_file_name, install_ca};
use time::OffsetDateTime;
use time::macros::datetime;
use x509_parser::extensions::{GeneralName, ParsedExtension};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn hosts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Panics with what to do when the `openssl` binary cannot run: these tests check the
/// generated certificates with an independent implementation and must not pass silently
/// without it (`scripts/install-deps.sh` installs it).
fn require_openssl() {
    let ok = Command::new("openssl").arg("version").output().is_ok_and(|out| out.status.success());
    assert!(ok, "openssl is not installed: run scripts/install-deps.sh (or install the openssl package)");
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

struct Extensions {
    basic_constraints: Option<(bool, bool, Option<u32>)>,
    key_usage: Option<(bool, [bool; 4])>,
    server_auth: Option<bool>,
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
    sans: Vec<SanEntry>,
}

fn extensions(der: &[u8]) -> Extensions {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let mut out = Extensions {
        basic_constraints: None,
        key_usage: None,
        server_auth: None,
        ski: None,
        aki: None,
        sans: Vec::new(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                out.basic_constraints = Some((ext.critical, bc.ca, bc.path_len_constraint))
            }
            ParsedExtension::KeyUsage(ku) => {
                out.key_usage = Some((
                    ext.critical,
                    [ku.digital_signature(), ku.key_cert_sign(), ku.crl_sign(), ku.key_encipherment()],
                ))
            }
            ParsedExtension::ExtendedKeyUsage(eku) => out.server_auth = Some(eku.server_auth),
            ParsedExtension::SubjectKeyIdentifier(id) => out.ski = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                out.aki = aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    out.sans.push(match name {
                        GeneralName::DNSName(dns) => SanEntry::Dns(dns.to_string()),
                        GeneralName::IPAddress(bytes) => SanEntry::Ip(match bytes.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                            _ => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
                        }),
                        other => panic!("unexpected SAN {other:?}"),
                    })
                }
            }
            _ => {}
        }
    }
    out
}

fn common_name_of(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned()
}

#[test]
fn ca_is_created_with_the_required_properties() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("nested/tls");
    let at = now();
    let ca = LocalCa::load_or_create(&dir, at).unwrap();

    assert!(matches!(ca.origin(), CaOrigin::Created { reason: CaProblem::Missing { .. } }));
    assert_eq!(ca.cert_path(), dir.join(CA_CERT_FILE));
    assert_eq!(ca.key_path(), dir.join(CA_KEY_FILE));
    let key_pem = std::fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 expected");
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".kinopio-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    let der = ca.cert_der().to_vec();
    assert_eq!(std::fs::read_to_string(ca.cert_path()).unwrap(), ca.cert_pem());
    assert!(common_name_of(&der).starts_with(&format!("{CA_COMMON_NAME} ")), "a distinct name per CA");
    assert!(cert_has_name_constraints(&der), "the device CA is name-constrained");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.public_key().algorithm.algorithm, x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY);
    let ext = extensions(&der);
    assert_eq!(ext.basic_constraints, Some((true, true, Some(0))));
    let (ku_critical, [digital, cert_sign, crl_sign, _]) = ext.key_usage.unwrap();
    assert!(ku_critical && digital && cert_sign && crl_sign);
    assert!(ext.ski.is_some());
    let lifetime = ca.not_after() - ca.not_before();
    assert_eq!(lifetime, CA_LIFETIME, "a one-year CA, renewed before it expires");
    assert!(ca.not_before() <= at && ca.not_before() >= at - time::Duration::minutes(6));
    assert_eq!(ca.sha256_hex().len(), 64);
}

#[test]
fn ca_is_reused_while_valid() {
    let temp = tempfile::tempdir().unwrap();
    let first = LocalCa::load_or_create(temp.path(), now()).unwrap();
    let second = LocalCa::load_or_create(temp.path(), now()).unwrap();
    assert_eq!(second.origin(), &CaOrigin::Reused);
    assert_eq!(first.sha256_hex(), second.sha256_hex());
    // Until 30 days before it expires it is still reused.
    let later = LocalCa::load_or_create(temp.path(), now() + time::Duration::days(300)).unwrap();
    assert_eq!(later.sha256_hex(), first.sha256_hex());
}

#[test]
fn ca_is_replaced_when_renewal_is_due() {
    let temp = tempfile::tempdir().unwrap();
    let first = LocalCa::load_or_create(temp.path(), now()).unwrap();
    let near_end = first.not_after() - time::Duration::days(10);
    let second = LocalCa::load_or_create(temp.path(), near_end).unwrap();
    assert!(matches!(
        second.origin(),
        CaOrigin::Created { reason: CaProblem::Validity { validity: CaValidity::RenewalDue, .. } }
    ));
    assert_ne!(first.sha256_hex(), second.sha256_hex());
    assert!(second.not_after() > first.not_after());
    let third = LocalCa::load_or_create(temp.path(), near_end).unwrap();
    assert_eq!(third.sha256_hex(), second.sha256_hex());
}

#[test]
fn ca_is_replaced_when_key_does_not_match() {
    let temp = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let first = LocalCa::load_or_create(temp.path(), now()).unwrap();
    LocalCa::load_or_create(other.path(), now()).unwrap();
    std::fs::copy(other.path().join(CA_KEY_FILE), temp.path().join(CA_KEY_FILE)).unwrap();

    let second = LocalCa::load_or_create(temp.path(), now()).unwrap();
    assert!(matches!(second.origin(), CaOrigin::Created { reason: CaProblem::KeyMismatch }));
    assert_ne!(second.sha256_hex(), first.sha256_hex());
    assert_eq!(LocalCa::load_or_create(temp.path(), now()).unwrap().origin(), &CaOrigin::Reused);
}

#[test]
fn ca_is_replaced_when_files_are_garbage_or_missing() {
    let temp = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(temp.path(), now()).unwrap();
    std::fs::write(temp.path().join(CA_CERT_FILE), "not a certificate").unwrap();
    let ca = LocalCa::load_or_create(temp.path(), now()).unwrap();
    assert!(matches!(ca.origin(), CaOrigin::Created { reason: CaProblem::Unreadable { .. } }));

    std::fs::remove_file(temp.path().join(CA_KEY_FILE)).unwrap();
    let ca = LocalCa::load_or_create(temp.path(), now()).unwrap();
    match ca.origin() {
        CaOrigin::Created { reason: CaProblem::Missing { file } } => assert_eq!(file, &temp.path().join(CA_KEY_FILE)),
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn world_readable_ca_key_is_restricted_on_reuse() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    LocalCa::load_or_create(temp.path(), now()).unwrap();
    let key = temp.path().join(CA_KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ca = LocalCa::load_or_create(temp.path(), now()).unwrap();
    assert_eq!(ca.origin(), &CaOrigin::Reused);
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn concurrent_creation_agrees_on_one_ca() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || LocalCa::load_or_create(&dir, now()).unwrap().sha256_hex().to_owned())
        })
        .collect();
    let prints: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(prints.windows(2).all(|w| w[0] == w[1]), "{prints:?}");
    let reloaded = LocalCa::load_or_create(&dir, now()).unwrap();
    assert_eq!(reloaded.origin(), &CaOrigin::Reused);
    assert_eq!(reloaded.sha256_hex(), prints[0]);
}

#[test]
fn ca_validity_is_a_pure_function_of_the_window() {
    let nb = datetime!(2026-01-01 00:00 UTC);
    let na = nb + CA_LIFETIME;
    assert_eq!(ca_validity(nb, na, nb), CaValidity::Valid);
    assert_eq!(ca_validity(nb, na, nb - time::Duration::seconds(1)), CaValidity::NotYetValid);
    assert_eq!(ca_validity(nb, na, na - CA_RENEWAL_MARGIN - time::Duration::seconds(1)), CaValidity::Valid);
    assert_eq!(ca_validity(nb, na, na - CA_RENEWAL_MARGIN), CaValidity::RenewalDue);
    assert_eq!(ca_validity(nb, na, na), CaValidity::Expired);
}

#[test]
fn leaf_certificate_has_the_required_extensions() {
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    let at = now();
    let request =
        LeafCertRequest::new(hosts(&["192.168.1.5", " myhost.local ", "127.0.0.1", "fe80::1", "MyHost.Local"]));
    let leaf = ca.issue_leaf(&request, at).unwrap();
    let der = leaf.cert_der().to_vec();

    assert_eq!(common_name_of(&der), "192.168.1.5");
    assert_eq!(leaf.common_name(), "192.168.1.5");
    let ext = extensions(&der);
    let expected_sans = vec![
        SanEntry::Dns("localhost".into()),
        SanEntry::Ip("127.0.0.1".parse().unwrap()),
        SanEntry::Ip("::1".parse().unwrap()),
        SanEntry::Ip("192.168.1.5".parse().unwrap()),
        SanEntry::Dns("myhost.local".into()),
        SanEntry::Ip("fe80::1".parse().unwrap()),
    ];
    assert_eq!(ext.sans, expected_sans);
    assert_eq!(leaf.subject_alt_names(), expected_sans.as_slice());
    assert_eq!(ext.server_auth, Some(true));
    let (_, [digital, cert_sign, crl_sign, _]) = ext.key_usage.unwrap();
    assert!(digital && !cert_sign && !crl_sign);
    assert_eq!(ext.basic_constraints, Some((true, false, None)));
    assert!(ext.ski.is_some());
    let ca_ski = extensions(ca.cert_der()).ski.unwrap();
    assert_eq!(ext.aki, Some(ca_ski), "AKI must be the CA's key id");

    let backdate = at - leaf.not_before();
    assert!(backdate >= time::Duration::minutes(4) && backdate <= time::Duration::minutes(6), "{backdate}");
    let lifetime = leaf.not_after() - at;
    let expected = time::Duration::try_from(DEFAULT_LEAF_LIFETIME).unwrap();
    assert!((lifetime - expected).abs() <= time::Duration::seconds(2), "{lifetime}");

    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    let (_, ca_parsed) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
    assert_eq!(parsed.issuer(), ca_parsed.subject());
    parsed.verify_signature(Some(ca_parsed.public_key())).unwrap();
}

#[test]
fn leaf_lifetime_is_configurable_and_capped_by_the_ca() {
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(temp.path(), now()).unwrap();
    let at = now();
    let short =
        ca.issue_leaf(&LeafCertRequest::new(hosts(&["a.local"])).with_lifetime(Duration::from_secs(3600)), at).unwrap();
    assert!((short.not_after() - at - time::Duration::hours(1)).abs() <= time::Duration::seconds(1));
    let huge = ca
        .issue_leaf(
            &LeafCertRequest::new(hosts(&["a.local"])).with_lifetime(Duration::from_secs(100 * 365 * 86400)),
            at,
        )
        .unwrap();
    assert_eq!(huge.not_after(), ca.not_after());
}

#[test]
fn leaf_files_are_written_with_private_key_permissions() {
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    let leaf = ca.issue_leaf(&LeafCertRequest::new(hosts(&["127.0.0.1"])), now()).unwrap();
    let runtime = temp.path().join("run/here");
    let files = leaf.write_to(&runtime).unwrap();
    assert_eq!(files.cert_file, runtime.join(LEAF_CERT_FILE));
    assert_eq!(files.key_file, runtime.join(LEAF_KEY_FILE));
    assert_eq!(std::fs::read_to_string(&files.cert_file).unwrap(), leaf.cert_pem());
    assert!(std::fs::read_to_string(&files.key_file).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    assert_eq!(mode(&files.key_file), 0o600);
    // The written pair loads as supplied material (key matches certificate).
    let supplied = SuppliedTls::load(&files.cert_file, &files.key_file, ca.cert_path(), now()).unwrap();
    assert_eq!(supplied.material().ca_cert_sha256, ca.sha256_hex());
}

#[test]
fn openssl_strict_verification_accepts_the_generated_chain() {
    require_openssl();
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    let leaf = ca.issue_leaf(&LeafCertRequest::new(hosts(&["192.168.1.5", "myhost.local"])), now()).unwrap();
    let files = leaf.write_to(&temp.path().join("run")).unwrap();
    let ca_file = ca.cert_path().to_str().unwrap();
    let leaf_file = files.cert_file.to_str().unwrap();

    let (ok, out) = openssl(&["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_file, leaf_file]);
    assert!(ok, "openssl verify failed: {out}");
    assert!(out.contains(": OK"), "{out}");

    for (flag, name) in [
        ("-verify_ip", "192.168.1.5"),
        ("-verify_ip", "127.0.0.1"),
        ("-verify_ip", "::1"),
        ("-verify_hostname", "myhost.local"),
        ("-verify_hostname", "localhost"),
    ] {
        let (ok, out) =
            openssl(&["verify", "-x509_strict", "-purpose", "sslserver", flag, name, "-CAfile", ca_file, leaf_file]);
        assert!(ok, "{flag} {name}: {out}");
    }
    // And a name that is not in the certificate is refused, so the checks above mean
    // something.
    let (ok, _) =
        openssl(&["verify", "-x509_strict", "-verify_hostname", "elsewhere.example", "-CAfile", ca_file, leaf_file]);
    assert!(!ok);
    // The CA itself passes strict checks as a trust anchor.
    let (ok, out) = openssl(&["verify", "-x509_strict", "-CAfile", ca_file, ca_file]);
    assert!(ok, "{out}");
}

#[test]
fn openssl_rejects_a_leaf_from_another_ca() {
    require_openssl();
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("a"), now()).unwrap();
    let other = LocalCa::load_or_create(&temp.path().join("b"), now()).unwrap();
    let files = other
        .issue_leaf(&LeafCertRequest::new(hosts(&["127.0.0.1"])), now())
        .unwrap()
        .write_to(&temp.path().join("run"))
        .unwrap();
    let (ok, _) = openssl(&["verify", "-CAfile", ca.cert_path().to_str().unwrap(), files.cert_file.to_str().unwrap()]);
    assert!(!ok);
}

#[test]
fn renewal_schedule_is_two_thirds_of_the_lifetime() {
    let nb = datetime!(2026-01-01 00:00 UTC);
    let na = nb + time::Duration::days(6);
    assert_eq!(next_renewal_at(nb, na), datetime!(2026-01-05 00:00 UTC));
    assert!(!renewal_due(nb, na, datetime!(2026-01-04 23:59:59 UTC)));
    assert!(renewal_due(nb, na, datetime!(2026-01-05 00:00 UTC)));
    assert!(renewal_due(nb, nb, nb), "a zero-length window is due at once");

    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(temp.path(), now()).unwrap();
    let at = now();
    let leaf = ca.issue_leaf(&LeafCertRequest::new(hosts(&["x.local"])), at).unwrap();
    assert!(!leaf.renewal_due(at));
    assert!(leaf.renewal_due(leaf.next_renewal_at()));
    assert!(leaf.next_renewal_at() > at + time::Duration::days(4));
}

#[test]
fn san_list_and_common_name_rules() {
    assert_eq!(common_name(&hosts(&["", "  ", "[::1]", "b"])), "::1");
    assert_eq!(common_name(&[]), "localhost");
    let sans = subject_alt_names(&hosts(&["0.0.0.0", "::", "", "[fe80::2]", "Host.Example."])).unwrap();
    assert_eq!(
        sans,
        vec![
            SanEntry::Dns("localhost".into()),
            SanEntry::Ip("127.0.0.1".parse().unwrap()),
            SanEntry::Ip("::1".parse().unwrap()),
            SanEntry::Ip("fe80::2".parse().unwrap()),
            SanEntry::Dns("host.example".into()),
        ]
    );
    for bad in ["bad host", "ünïcode.local", "a..b", "x/y"] {
        assert!(matches!(subject_alt_names(&hosts(&[bad])), Err(TlsError::InvalidHost { .. })), "{bad}");
    }
}

#[test]
fn supplied_material_requires_cert_and_key_together() {
    let p = PathBuf::from("/nonexistent/cert.pem");
    assert!(matches!(
        SuppliedTls::from_options(Some(&p), None, None, now()),
        Err(TlsError::IncompleteSupplied { missing: "key_file" })
    ));
    assert!(matches!(
        SuppliedTls::from_options(None, Some(&p), None, now()),
        Err(TlsError::IncompleteSupplied { missing: "cert_file" })
    ));
    assert!(SuppliedTls::from_options(None, None, None, now()).unwrap().is_none());
}

#[test]
fn supplied_material_reports_clear_errors() {
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    let a =
        ca.issue_leaf(&LeafCertRequest::new(hosts(&["a"])), now()).unwrap().write_to(&temp.path().join("a")).unwrap();
    let b =
        ca.issue_leaf(&LeafCertRequest::new(hosts(&["b"])), now()).unwrap().write_to(&temp.path().join("b")).unwrap();
    let missing = temp.path().join("missing.pem");
    let garbage = temp.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();

    let err = SuppliedTls::load(&missing, &a.key_file, &a.cert_file, now()).unwrap_err();
    assert!(matches!(&err, TlsError::MissingFile { path, .. } if path == &missing), "{err}");
    let err = SuppliedTls::load(&garbage, &a.key_file, &a.cert_file, now()).unwrap_err();
    assert!(matches!(err, TlsError::NotPem { expected: "CERTIFICATE", .. }), "{err}");
    let err = SuppliedTls::load(&a.cert_file, &garbage, &a.cert_file, now()).unwrap_err();
    assert!(matches!(err, TlsError::NotPem { expected: "PRIVATE KEY", .. }), "{err}");
    // A certificate file passed as the key.
    let err = SuppliedTls::load(&a.cert_file, &a.cert_file, &a.cert_file, now()).unwrap_err();
    assert!(matches!(err, TlsError::NotPem { expected: "PRIVATE KEY", .. }), "{err}");
    let err = SuppliedTls::load(&a.cert_file, &b.key_file, &a.cert_file, now()).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = SuppliedTls::load(&a.cert_file, &a.key_file, &garbage, now()).unwrap_err();
    assert!(matches!(err, TlsError::NotPem { .. }), "{err}");
}

#[test]
fn supplied_ca_defaults_to_the_certificate_file() {
    let temp = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    let leaf = ca.issue_leaf(&LeafCertRequest::new(hosts(&["a"])), now()).unwrap();
    let files = leaf.write_to(temp.path()).unwrap();
    let supplied =
        SuppliedTls::from_options(Some(&files.cert_file), Some(&files.key_file), None, now()).unwrap().unwrap();
    assert_eq!(supplied.ca_file(), files.cert_file.as_path());
    let material = supplied.material();
    assert_eq!(material.source, TlsSource::Supplied);
    assert_eq!(material.not_after, leaf.not_after());
    let json = serde_json::to_value(&material).unwrap();
    assert_eq!(json["source"], "supplied");
    assert_eq!(json["certFile"], files.cert_file.to_str().unwrap());
    assert_eq!(json["caFile"], files.cert_file.to_str().unwrap());
    assert!(json["notAfter"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn supplied_rsa_material_from_openssl_is_accepted() {
    require_openssl();
    let temp = tempfile::tempdir().unwrap();
    let key = temp.path().join("rsa-key.pem");
    let cert = temp.path().join("rsa-cert.pem");
    let (ok, out) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=supplied.example",
        "-days",
        "2",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let pkcs1 = temp.path().join("rsa-key-pkcs1.pem");
    let (ok, out) = openssl(&["rsa", "-traditional", "-in", key.to_str().unwrap(), "-out", pkcs1.to_str().unwrap()]);
    assert!(ok, "{out}");
    for key_file in [&key, &pkcs1] {
        let supplied = SuppliedTls::load(&cert, key_file, &cert, now()).unwrap();
        supplied.certified_key().unwrap();
    }
}

#[test]
fn prepare_generates_or_uses_supplied_material() {
    let temp = tempfile::tempdir().unwrap();
    let options = TlsOptions::generated(temp.path().join("ca"), temp.path().join("run"), hosts(&["10.0.0.7"]));
    let prepared = prepare(&options, now()).unwrap();
    let material = prepared.material();
    assert_eq!(material.source, TlsSource::Generated);
    assert_eq!(material.ca_file, temp.path().join("ca").join(CA_CERT_FILE));
    assert_eq!(material.cert_file, temp.path().join("run").join(LEAF_CERT_FILE));
    assert!(material.key_file.exists());
    prepared.certified_key().unwrap();
    let json = serde_json::to_value(&material).unwrap();
    assert_eq!(json["source"], "generated");
    assert_eq!(json["caCertSha256"].as_str().unwrap().len(), 64);

    let PreparedTls::Generated(mut generated) = prepared else {
        panic!("expected generated material");
    };
    assert!(!generated.renewal_due(now()));
    let before = generated.leaf().cert_der().clone();
    let due_at = generated.next_renewal_at();
    assert!(generated.renewal_due(due_at));
    generated.renew(due_at).unwrap();
    assert_ne!(generated.leaf().cert_der(), &before);
    assert_eq!(std::fs::read_to_string(&generated.files().cert_file).unwrap(), generated.leaf().cert_pem());
    assert!(generated.leaf().not_after() > due_at + time::Duration::days(6));

    let supplied_options = TlsOptions {
        cert_file: Some(material.cert_file.clone()),
        key_file: Some(material.key_file.clone()),
        ca_file: Some(material.ca_file.clone()),
        ..TlsOptions::generated(temp.path().join("unused-ca"), temp.path().join("unused-run"), vec![])
    };
    let supplied = prepare(&supplied_options, now()).unwrap();
    assert!(matches!(supplied, PreparedTls::Supplied(_)));
    assert_eq!(supplied.material().ca_cert_sha256, material.ca_cert_sha256);
    assert!(!temp.path().join("unused-ca").exists(), "no CA for supplied material");
}

fn anchor_config(anchor_dir: &Path, update: Option<Vec<&str>>) -> TrustStoreConfig {
    let mut config = TrustStoreConfig::none();
    config.system_anchors = Some(SystemAnchorStore {
        anchor_dir: anchor_dir.to_path_buf(),
        update_command: update.map(|cmd| cmd.into_iter().map(Into::into).collect()),
    });
    config.command_timeout = Duration::from_secs(20);
    config
}

#[test]
fn trust_install_into_anchor_dir_is_idempotent_and_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let anchors = temp.path().join("anchors");
    std::fs::create_dir(&anchors).unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    require_openssl();
    let update = Some(vec!["openssl", "rehash", anchors.to_str().unwrap()]);
    let config = anchor_config(&anchors, update);

    let state = install_ca(&ca, &config);
    let store = format!("system:{}", anchors.display());
    assert_eq!(state, TrustState::Installed { stores: vec![store.clone()] });
    let anchor = anchors.join(anchor_file_name(&ca));
    assert!(anchor.file_name().unwrap().to_str().unwrap().starts_with("kinopio-"));
    assert!(anchor.to_str().unwrap().ends_with(".crt"));
    assert_eq!(std::fs::read_to_string(&anchor).unwrap(), ca.cert_pem());

    assert_eq!(install_ca(&ca, &config), TrustState::AlreadyInstalled { stores: vec![store] });
    let json = serde_json::to_value(install_ca(&ca, &config)).unwrap();
    assert_eq!(json["state"], "alreadyInstalled");

    let leaf = ca
        .issue_leaf(&LeafCertRequest::new(hosts(&["127.0.0.1"])), now())
        .unwrap()
        .write_to(&temp.path().join("run"))
        .unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CApath",
        anchors.to_str().unwrap(),
        leaf.cert_file.to_str().unwrap(),
    ]);
    assert!(ok, "verification through the hashed anchor dir failed: {out}");
}

#[test]
fn trust_install_failure_is_reported_and_retried() {
    let temp = tempfile::tempdir().unwrap();
    let anchors = temp.path().join("anchors");
    std::fs::create_dir(&anchors).unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();
    let config = anchor_config(&anchors, Some(vec!["false"]));
    match install_ca(&ca, &config) {
        TrustState::Failed { error } => assert!(error.contains("false"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(!anchors.join(anchor_file_name(&ca)).exists(), "a failed update must not leave the anchor behind");

    let missing_dir = anchor_config(&temp.path().join("does-not-exist"), None);
    assert!(matches!(install_ca(&ca, &missing_dir), TrustState::Skipped { .. }));
}

#[test]
fn trust_install_honours_the_skip_variable() {
    let temp = tempfile::tempdir().unwrap();
    let anchors = temp.path().join("anchors");
    std::fs::create_dir(&anchors).unwrap();
    let ca = LocalCa::load_or_create(&temp.path().join("ca"), now()).unwrap();

    let config = anchor_config(&anchors, None).with_env_skip(|name| (name == SKIP_ENV).then(|| "1".to_owned()));
    let state = install_ca(&ca, &config);
    assert!(matches!(&state, TrustState::Skipped { reason } if reason.contains(SKIP_ENV)));
    assert_eq!(std::fs::read_dir(&anchors).unwrap().count(), 0);

    let not_skipped = anchor_config(&anchors, None).with_env_skip(|_| Some("0".to_owned()));
    assert!(matches!(install_ca(&ca, &not_skipped), TrustState::Installed { .. }));
}

/// Not a test on its own: runs in a child process with the real environment variable set
/// (see the test below). Without its environment variable it does nothing.
#[test]
#[ignore = "child process of trust_skip_works_through_the_real_environment"]
fn trust_skip_child_process() {
    let Some(anchors) = std::env::var_os("KINOPIO_TEST_TRUST_CHILD_ANCHORS") else {
        return;
    };
    let anchors = PathBuf::from(anchors);
    let ca_dir = anchors.parent().unwrap().join("child-ca");
    let ca = LocalCa::load_or_create(&ca_dir, now()).unwrap();
    // Start from the platform defaults (which read the real environment) but point every
    // store at the temporary directory.
    let mut config = TrustStoreConfig::platform_default();
    config.system_anchors = Some(SystemAnchorStore { anchor_dir: anchors.clone(), update_command: None });
    config.nss.clear();
    config.macos_keychain = None;
    config.windows_user_root = None;
    let state = install_ca(&ca, &config);
    assert!(matches!(state, TrustState::Skipped { .. }), "{state:?}");
    assert_eq!(std::fs::read_dir(&anchors).unwrap().count(), 0);
}

#[test]
fn trust_skip_works_through_the_real_environment() {
    let temp = tempfile::tempdir().unwrap();
    let anchors = temp.path().join("anchors");
    std::fs::create_dir(&anchors).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "trust_skip_child_process", "--ignored", "--nocapture"])
        .env(SKIP_ENV, "1")
        .env("KINOPIO_TEST_TRUST_CHILD_ANCHORS", &anchors)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 passed"), "{text}");
    assert_eq!(std::fs::read_dir(&anchors).unwrap().count(), 0);
}

/// Verifies `cert` for `name` with only the namespace CA as a root (what a kinopio client of
/// a secured namespace does, and a browser that installed the namespace CA).
fn verify_with_namespace_ca(
    ca: &kinopio::trust::NamespaceCa,
    cert: &kinopio_leaf::tls::LeafCertificate,
    name: &str,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca.cert_der().to_vec())).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots)).build().unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let now = rustls::pki_types::UnixTime::now();
    verifier.verify_server_cert(cert.cert_der(), &[], &server_name, &[], now).map(|_| ()).map_err(|e| e.to_string())
}

/// Attack: a namespace member (or anyone with its secret) mints a certificate for a foreign
/// name, e.g. `--advertised-host www.google.com`. The namespace CA is name-constrained: the
/// leaf refuses to start with such a host, and a certificate issued anyway does not verify.
#[test]
fn the_namespace_ca_cannot_vouch_for_foreign_names() {
    let temp = tempfile::tempdir().unwrap();
    let ns_ca = std::sync::Arc::new(kinopio::trust::NamespaceCa::derive("studio", b"correct horse").unwrap());
    let ca = kinopio_leaf::tls::LocalCa::from_namespace(&ns_ca, temp.path()).unwrap();
    assert!(ca.cert_path().is_file());
    assert!(!ca.key_path().exists(), "the namespace CA key is never written");

    let lan = ca.issue_leaf(&LeafCertRequest::new(vec!["192.168.1.5".into(), "box.local".into()]), now()).unwrap();
    verify_with_namespace_ca(&ns_ca, &lan, "192.168.1.5").unwrap();
    verify_with_namespace_ca(&ns_ca, &lan, "box.local").unwrap();
    let foreign = ca.issue_leaf(&LeafCertRequest::new(vec!["www.google.com".into()]), now()).unwrap();
    let err = verify_with_namespace_ca(&ns_ca, &foreign, "www.google.com").unwrap_err();
    assert!(err.contains("NameConstraintViolation"), "{err}");
    let public_ip = ca.issue_leaf(&LeafCertRequest::new(vec!["8.8.8.8".into()]), now()).unwrap();
    assert!(verify_with_namespace_ca(&ns_ca, &public_ip, "8.8.8.8").is_err());

    let mut options =
        TlsOptions::generated(temp.path().join("ca"), temp.path().join("run"), vec!["www.google.com".into()]);
    options.namespace_ca = Some(ns_ca.clone());
    let err = prepare(&options, now()).unwrap_err();
    assert!(err.to_string().contains("outside what kinopio's CAs may vouch for"), "{err}");
    // A public address among all interfaces is left out; the advertised LAN address stays.
    let mut options = TlsOptions::generated(
        temp.path().join("ca"),
        temp.path().join("run2"),
        vec!["10.0.0.7".into(), "203.0.113.9".into()],
    );
    options.namespace_ca = Some(ns_ca);
    assert!(prepare(&options, now()).is_ok());
}

/// `kinopio leaf untrust`: every store kinopio added the CA to is restored — the anchors
/// directory (and its bundle rebuilt) and an NSS database (what Chromium and Firefox use on
/// Linux) — from the records kept beside the CA; a second run has nothing to do.
#[test]
fn untrust_removes_the_ca_from_every_store_it_was_added_to() {
    use kinopio_leaf::tls::{NssStore, untrust};
    let certutil = Command::new("certutil").arg("-H").output();
    assert!(certutil.is_ok(), "certutil (libnss3-tools) is missing: run scripts/install-deps.sh");
    let temp = tempfile::tempdir().unwrap();
    let anchors = temp.path().join("anchors");
    std::fs::create_dir(&anchors).unwrap();
    let nssdb = temp.path().join("nssdb");
    std::fs::create_dir(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    assert!(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]).status().unwrap().success());
    let bundle_log = temp.path().join("rebuilds");
    let rebuild = format!("echo rebuilt \"$@\" >> {}", bundle_log.display());
    let mut config = anchor_config(&anchors, Some(vec!["sh", "-c", &rebuild, "rebuild"]));
    config.nss.push(NssStore { db_dir: nssdb.clone(), certutil: "certutil".into() });

    let ca_dir = temp.path().join("ca");
    let ca = LocalCa::load_or_create(&ca_dir, now()).unwrap();
    let state = install_ca(&ca, &config);
    assert!(matches!(&state, TrustState::Installed { stores } if stores.len() == 2), "{state:?}");
    let listed = |db: &str| {
        let out = Command::new("certutil").args(["-L", "-d", db]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(listed(&db).contains("Kinopio Local Leaf CA"));
    assert!(anchors.join(anchor_file_name(&ca)).is_file());

    assert_eq!(kinopio_leaf::tls::installed_stores(&ca_dir).len(), 2, "both installs are recorded");
    let report = untrust(&ca_dir, Duration::from_secs(20));
    assert_eq!(report.removed.len(), 2, "{report:?}");
    assert!(kinopio_leaf::tls::installed_stores(&ca_dir).is_empty());
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(!anchors.join(anchor_file_name(&ca)).exists());
    assert!(!listed(&db).contains("Kinopio Local Leaf CA"));
    assert_eq!(std::fs::read_to_string(&bundle_log).unwrap().lines().count(), 2, "the bundle was rebuilt again");
    assert_eq!(untrust(&ca_dir, Duration::from_secs(20)), Default::default(), "nothing left to remove");
}

fn cert_has_name_constraints(der: &[u8]) -> bool {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.name_constraints().unwrap().is_some()
}

/// Attack: `--advertised-host www.google.com` on an open leaf (or a leaked device CA key).
/// The device CA is name-constrained too: the leaf refuses that host, and a certificate made
/// for it anyway does not verify. An old unconstrained CA in the cache is replaced.
#[test]
fn the_device_ca_is_a_small_power() {
    use rustls::client::danger::ServerCertVerifier;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let temp = tempfile::tempdir().unwrap();
    let ca_dir = temp.path().join("ca");
    let ca = LocalCa::load_or_create(&ca_dir, now()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots)).build().unwrap();
    let verify = |cert: &kinopio_leaf::tls::LeafCertificate, name: &str| {
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(cert.cert_der(), &[], &name, &[], rustls::pki_types::UnixTime::now())
    };
    let lan = ca.issue_leaf(&LeafCertRequest::new(vec!["192.168.7.7".into()]), now()).unwrap();
    verify(&lan, "192.168.7.7").unwrap();
    let google = ca.issue_leaf(&LeafCertRequest::new(vec!["www.google.com".into()]), now()).unwrap();
    let err = verify(&google, "www.google.com").unwrap_err();
    assert!(format!("{err:?}").contains("NameConstraintViolation"), "{err:?}");
    let options = TlsOptions::generated(&ca_dir, temp.path().join("run"), vec!["www.google.com".into()]);
    assert!(matches!(prepare(&options, now()), Err(TlsError::NotPermitted { .. })));

    // An unconstrained CA (as older versions made) is replaced on the next start.
    let old_dir = temp.path().join("old");
    std::fs::create_dir(&old_dir).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.not_before = now() - time::Duration::days(1);
    params.not_after = now() + time::Duration::days(1000);
    let old = params.self_signed(&key).unwrap();
    std::fs::write(old_dir.join(CA_CERT_FILE), old.pem()).unwrap();
    std::fs::write(old_dir.join(CA_KEY_FILE), key.serialize_pem()).unwrap();
    let replaced = LocalCa::load_or_create(&old_dir, now()).unwrap();
    assert_eq!(replaced.origin(), &CaOrigin::Created { reason: CaProblem::Unconstrained });
}
