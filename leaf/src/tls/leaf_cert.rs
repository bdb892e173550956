//! The leaf (server) certificate for the WSS and HTTPS discovery listeners: a fresh ECDSA
//! P-256 key, issued by the [`LocalCa`](super::LocalCa), short-lived (7 days by default),
//! with SANs for loopback and every advertised host, and its renewal schedule (renew after
//! two thirds of the lifetime).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use time::OffsetDateTime;

use super::TlsError;
use super::ca::{CERT_BACKDATE, LocalCa, whole_seconds};
use super::files::{self, PRIVATE_MODE, PUBLIC_MODE};

/// Default lifetime of a leaf certificate.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// File name of the leaf certificate inside the runtime directory.
pub const LEAF_CERT_FILE: &str = "leaf-cert.pem";
/// File name of the leaf key inside the runtime directory.
pub const LEAF_KEY_FILE: &str = "leaf-key.pem";
/// Names every leaf certificate carries, before the advertised hosts.
pub(crate) const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// One subjectAltName entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum SanEntry {
    /// A dNSName (lowercase).
    Dns(String),
    /// An iPAddress.
    Ip(IpAddr),
}

impl fmt::Display for SanEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanEntry::Dns(name) => write!(f, "DNS:{name}"),
            SanEntry::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// Trims whitespace and IPv6 brackets.
fn clean_host(host: &str) -> &str {
    let host = host.trim();
    host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host)
}

/// The SANs of a leaf certificate: `localhost`, `127.0.0.1`, `::1`, then every host in
/// `hosts` (IP literals as iPAddress, anything else as dNSName), de-duplicated in order.
/// Empty hosts and the unspecified addresses (`0.0.0.0`, `::`) are skipped. Pure.
pub fn subject_alt_names(hosts: &[String]) -> Result<Vec<SanEntry>, TlsError> {
    let mut entries: Vec<SanEntry> = Vec::new();
    let all = LOOPBACK_NAMES.iter().copied().chain(hosts.iter().map(String::as_str));
    for raw in all {
        let host = clean_host(raw);
        if host.is_empty() {
            continue;
        }
        let entry = match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => continue,
            Ok(ip) => SanEntry::Ip(ip),
            Err(_) => SanEntry::Dns(validate_dns_name(raw, host)?),
        };
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Lowercases a DNS name and checks that it can be a dNSName.
fn validate_dns_name(raw: &str, host: &str) -> Result<String, TlsError> {
    let invalid = |reason: &str| TlsError::InvalidHost { host: raw.to_owned(), reason: reason.to_owned() };
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if !name.is_ascii() {
        return Err(invalid("it is not ASCII; pass its punycode (xn--) form"));
    }
    if name.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(invalid(
            "a DNS name may only hold letters, digits, '-' and '_' in dot-separated labels of 1 to 63 characters",
        ));
    }
    Ok(name)
}

/// The subject CN: the first non-empty host of `hosts`, else `localhost`. Pure.
pub fn common_name(hosts: &[String]) -> String {
    hosts.iter().map(|host| clean_host(host)).find(|host| !host.is_empty()).unwrap_or("localhost").to_owned()
}

/// When a certificate valid from `not_before` to `not_after` should be renewed: after two
/// thirds of its lifetime. Pure.
pub fn next_renewal_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    if not_after <= not_before {
        return not_before;
    }
    not_before + (not_after - not_before) / 3 * 2
}

/// True when a certificate valid from `not_before` to `not_after` should be renewed at
/// `now` (two thirds of its lifetime have passed). Pure.
pub fn renewal_due(not_before: OffsetDateTime, not_after: OffsetDateTime, now: OffsetDateTime) -> bool {
    now >= next_renewal_at(not_before, not_after)
}

/// What to put into a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafCertRequest {
    hosts: Vec<String>,
    lifetime: Duration,
}

impl LeafCertRequest {
    /// A request for `hosts` (the first non-empty one is the CN) with the default lifetime.
    pub fn new(hosts: Vec<String>) -> Self {
        LeafCertRequest { hosts, lifetime: DEFAULT_LEAF_LIFETIME }
    }

    /// Sets the lifetime (capped at the CA's expiry when issued).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The advertised hosts.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The requested lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// Paths of a written leaf certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafCertFiles {
    /// `<runtime dir>/leaf-cert.pem`.
    pub cert_file: PathBuf,
    /// `<runtime dir>/leaf-key.pem` (0600).
    pub key_file: PathBuf,
}

/// An issued leaf certificate and its private key.
pub struct LeafCertificate {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    key_der: PrivatePkcs8KeyDer<'static>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    common_name: String,
    sans: Vec<SanEntry>,
}

impl fmt::Debug for LeafCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafCertificate")
            .field("common_name", &self.common_name)
            .field("sans", &self.sans)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl LeafCertificate {
    /// Issues a certificate for `request` signed by `ca`: fresh P-256 key, CN = first host,
    /// SANs per [`subject_alt_names`], EKU serverAuth, KeyUsage digitalSignature,
    /// BasicConstraints CA:FALSE, SKI and AKI, notBefore five minutes before `now`.
    pub fn issue(ca: &LocalCa, request: &LeafCertRequest, now: OffsetDateTime) -> Result<LeafCertificate, TlsError> {
        let generate_err = |source| TlsError::Generate { what: "leaf certificate", source };
        let sans = subject_alt_names(&request.hosts)?;
        let common_name = common_name(&request.hosts);

        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name.as_str());
        params.distinguished_name = name;
        params.subject_alt_names = sans
            .iter()
            .map(|entry| match entry {
                SanEntry::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                SanEntry::Dns(dns) => dns.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(generate_err)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = whole_seconds(now - CERT_BACKDATE);
        let wanted_end = time::Duration::try_from(request.lifetime)
            .ok()
            .and_then(|lifetime| now.checked_add(lifetime))
            .unwrap_or(ca.not_after());
        params.not_after = whole_seconds(wanted_end.min(ca.not_after()));

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_err)?;
        let cert = params.signed_by(&key, &ca.issuer()?).map_err(generate_err)?;
        Ok(LeafCertificate {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            not_before: params.not_before,
            not_after: params.not_after,
            common_name,
            sans,
        })
    }

    /// Writes `leaf-cert.pem` (0644) and `leaf-key.pem` (0600) into `runtime_dir`
    /// atomically, creating the directory if needed.
    pub fn write_to(&self, runtime_dir: &Path) -> Result<LeafCertFiles, TlsError> {
        let files =
            LeafCertFiles { cert_file: runtime_dir.join(LEAF_CERT_FILE), key_file: runtime_dir.join(LEAF_KEY_FILE) };
        files::write_atomically(&files.key_file, self.key_pem.as_bytes(), PRIVATE_MODE)?;
        files::write_atomically(&files.cert_file, self.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(files)
    }

    /// The certificate and key for a rustls server (ring provider).
    pub fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(
            vec![self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(self.key_der.clone_key()),
            &provider,
        )
        .map(Arc::new)
        .map_err(|source| TlsError::Rustls { what: "generated leaf certificate", source })
    }

    /// True when this certificate should be renewed at `now`.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        renewal_due(self.not_before, self.not_after, now)
    }

    /// When this certificate should be renewed.
    pub fn next_renewal_at(&self) -> OffsetDateTime {
        next_renewal_at(self.not_before, self.not_after)
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The subject CN.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The subjectAltName entries.
    pub fn subject_alt_names(&self) -> &[SanEntry] {
        &self.sans
    }
}
