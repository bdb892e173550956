//! The local root CA: an ECDSA P-256 self-signed certificate ("Kinopio Local Leaf CA
//! `<random id>`", CA:TRUE pathlen 0, one year, **name-constrained** to LAN names and private
//! addresses — [`kinopio::trust::lan_name_constraints`] — so it cannot vouch for
//! `www.google.com` even if its key leaks) stored as `ca-cert.pem` / `ca-key.pem` (PKCS#8,
//! 0600) in a cache directory, created once and reused until it nears expiry. A stored CA
//! without name constraints (made by an older kinopio) is replaced.
//!
//! Whether a stored CA is reused is decided by the pure [`ca_validity`]; files are written
//! atomically (key first, then certificate) under a lock file, so concurrent processes never
//! see or leave a half-written CA, and an interrupted rotation is detected (key and
//! certificate no longer match) and repaired on the next start.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use rustls::pki_types::CertificateDer;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::files::{self, PRIVATE_MODE, PUBLIC_MODE};
use super::leaf_cert::{LeafCertRequest, LeafCertificate};
use super::x509::{pem_certificates, summarize};
use super::{TlsError, sha256_hex};

/// Subject CN of the CA.
pub const CA_COMMON_NAME: &str = "Kinopio Local Leaf CA";
/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Lock file serialising CA creation between processes.
const CA_LOCK_FILE: &str = "ca.lock";
/// Lifetime of a new CA (one year; replaced 30 days before it expires).
pub const CA_LIFETIME: time::Duration = time::Duration::days(366);
/// A CA that expires within this margin is replaced.
pub const CA_RENEWAL_MARGIN: time::Duration = time::Duration::days(30);
/// How far notBefore is set in the past, to tolerate small clock differences.
pub(crate) const CERT_BACKDATE: time::Duration = time::Duration::minutes(5);

/// Whether a CA with the given validity window is usable at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum CaValidity {
    /// Valid and not near expiry.
    Valid,
    /// notBefore is in the future (the clock went backwards or the file is foreign).
    NotYetValid,
    /// Expires within [`CA_RENEWAL_MARGIN`].
    RenewalDue,
    /// Already expired.
    Expired,
}

/// Decides whether a CA valid from `not_before` to `not_after` can still be used at `now`.
pub fn ca_validity(not_before: OffsetDateTime, not_after: OffsetDateTime, now: OffsetDateTime) -> CaValidity {
    if now < not_before {
        CaValidity::NotYetValid
    } else if now >= not_after {
        CaValidity::Expired
    } else if not_after - now <= CA_RENEWAL_MARGIN {
        CaValidity::RenewalDue
    } else {
        CaValidity::Valid
    }
}

/// Why a stored CA was not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaProblem {
    /// `ca-cert.pem` or `ca-key.pem` does not exist.
    Missing {
        /// The missing file.
        file: PathBuf,
    },
    /// A file exists but cannot be parsed.
    Unreadable {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not belong to the certificate (e.g. an interrupted rotation).
    KeyMismatch,
    /// The certificate is not a CA certificate.
    NotACa,
    /// The CA can vouch for any name (no name constraints): replaced by a constrained one.
    Unconstrained,
    /// The certificate is expired, not yet valid or about to expire.
    Validity {
        /// The verdict.
        validity: CaValidity,
        /// The certificate's notBefore.
        not_before: OffsetDateTime,
        /// The certificate's notAfter.
        not_after: OffsetDateTime,
    },
}

impl fmt::Display for CaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaProblem::Missing { file } => write!(f, "{} does not exist", file.display()),
            CaProblem::Unreadable { file, reason } => {
                write!(f, "{} is unreadable: {reason}", file.display())
            }
            CaProblem::KeyMismatch => f.write_str("the CA key does not match the CA certificate"),
            CaProblem::NotACa => f.write_str("the stored certificate is not a CA certificate"),
            CaProblem::Unconstrained => {
                f.write_str("the stored CA has no name constraints (it could vouch for any name)")
            }
            CaProblem::Validity { validity, not_before, not_after } => match validity {
                CaValidity::Valid => f.write_str("the CA is valid"),
                CaValidity::NotYetValid => {
                    write!(f, "the CA is not valid before {not_before} (clock skew?)")
                }
                CaValidity::RenewalDue => write!(f, "the CA expires soon, at {not_after}"),
                CaValidity::Expired => write!(f, "the CA expired at {not_after}"),
            },
        }
    }
}

impl Serialize for CaProblem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Whether [`LocalCa::load_or_create`] reused the stored CA or made a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "origin", rename_all = "camelCase")]
#[non_exhaustive]
pub enum CaOrigin {
    /// The stored CA was valid and reused.
    Reused,
    /// Derived from a secured namespace's secret (the same on every member device).
    Namespace,
    /// A new CA was generated.
    Created {
        /// Why the stored one (if any) was not reused.
        reason: CaProblem,
    },
}

/// The local root CA, loaded or generated, with its signing key.
pub struct LocalCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    cert_path: PathBuf,
    key_path: PathBuf,
    sha256: String,
    origin: CaOrigin,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .field("sha256", &self.sha256)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA stored in `dir`, or generates and stores a new one (creating `dir` if
    /// needed) when the stored one is missing, unreadable, mismatched, not a CA, or not
    /// [`CaValidity::Valid`] at `now`. The reason is logged and kept in [`LocalCa::origin`].
    ///
    /// Holds an exclusive lock on `dir/ca.lock` meanwhile, so concurrent processes agree on
    /// one CA.
    pub fn load_or_create(dir: &Path, now: OffsetDateTime) -> Result<LocalCa, TlsError> {
        files::ensure_dir(dir)?;
        let lock_path = dir.join(CA_LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| TlsError::io("open", &lock_path, err))?;
        let mut lock = fd_lock::RwLock::new(lock_file);
        let _guard = lock.write().map_err(|err| TlsError::io("lock", &lock_path, err))?;

        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let problem = match Self::load(&cert_path, &key_path, now)? {
            Ok(ca) => {
                tracing::debug!(path = %cert_path.display(), not_after = %ca.not_after, "reusing the local CA");
                return Ok(ca);
            }
            Err(problem) => problem,
        };
        match &problem {
            CaProblem::Missing { .. } => {
                tracing::info!(dir = %dir.display(), "creating the local CA")
            }
            other => {
                tracing::warn!(dir = %dir.display(), reason = %other, "replacing the local CA")
            }
        }
        let ca = Self::generate(cert_path, key_path, now, CaOrigin::Created { reason: problem })?;
        files::write_atomically(&ca.key_path, ca.key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
        files::write_atomically(&ca.cert_path, ca.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(ca)
    }

    /// Reads the stored CA. I/O errors other than "not found" are errors; everything that
    /// calls for a new CA is a [`CaProblem`].
    fn load(cert_path: &Path, key_path: &Path, now: OffsetDateTime) -> Result<Result<LocalCa, CaProblem>, TlsError> {
        let Some(cert_bytes) = files::read_if_exists(cert_path)? else {
            return Ok(Err(CaProblem::Missing { file: cert_path.to_path_buf() }));
        };
        let Some(key_bytes) = files::read_if_exists(key_path)? else {
            return Ok(Err(CaProblem::Missing { file: key_path.to_path_buf() }));
        };
        let unreadable = |file: &Path, reason: String| CaProblem::Unreadable { file: file.to_path_buf(), reason };
        let cert_der = match pem_certificates(cert_path, &cert_bytes) {
            Ok(mut certs) => certs.swap_remove(0),
            Err(err) => return Ok(Err(unreadable(cert_path, err.to_string()))),
        };
        let summary = match summarize(cert_path, &cert_der) {
            Ok(summary) => summary,
            Err(err) => return Ok(Err(unreadable(cert_path, err.to_string()))),
        };
        let key = match std::str::from_utf8(&key_bytes)
            .map_err(|err| err.to_string())
            .and_then(|text| KeyPair::from_pem(text).map_err(|err| err.to_string()))
        {
            Ok(key) => key,
            Err(reason) => return Ok(Err(unreadable(key_path, reason))),
        };
        if key.subject_public_key_info() != summary.spki {
            return Ok(Err(CaProblem::KeyMismatch));
        }
        if !summary.is_ca {
            return Ok(Err(CaProblem::NotACa));
        }
        if !summary.name_constrained {
            return Ok(Err(CaProblem::Unconstrained));
        }
        let validity = ca_validity(summary.not_before, summary.not_after, now);
        if validity != CaValidity::Valid {
            return Ok(Err(CaProblem::Validity {
                validity,
                not_before: summary.not_before,
                not_after: summary.not_after,
            }));
        }
        if files::restrict_private_file(key_path)? {
            tracing::warn!(path = %key_path.display(), "the CA key was readable by other users; restricted it to 0600");
        }
        let cert_pem = String::from_utf8_lossy(&cert_bytes).into_owned();
        Ok(Ok(LocalCa {
            sha256: sha256_hex(&cert_der),
            cert_pem,
            cert_der,
            key,
            not_before: summary.not_before,
            not_after: summary.not_after,
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            origin: CaOrigin::Reused,
        }))
    }

    /// The CA of a secured namespace (derived from its secret; see
    /// [`kinopio::trust::NamespaceCa`]): its key stays in memory, its certificate is written
    /// to `<dir>/namespace-<id>/ca-cert.pem` for users to trust once per namespace.
    pub fn from_namespace(namespace_ca: &kinopio::trust::NamespaceCa, dir: &Path) -> Result<LocalCa, TlsError> {
        let generate_err = |source| TlsError::Generate { what: "namespace CA", source };
        let key = KeyPair::from_pem(&namespace_ca.key_pem()).map_err(generate_err)?;
        let cert_der = CertificateDer::from(namespace_ca.cert_der().to_vec());
        let summary = summarize(Path::new("namespace CA"), &cert_der)?;
        let sha256 = sha256_hex(&cert_der);
        let ns_dir = dir.join(format!("namespace-{}", &sha256_hex(namespace_ca.namespace().as_bytes())[..16]));
        files::ensure_dir(&ns_dir)?;
        let cert_path = ns_dir.join(CA_CERT_FILE);
        files::write_atomically(&cert_path, namespace_ca.cert_pem().as_bytes(), PUBLIC_MODE)?;
        Ok(LocalCa {
            cert_pem: namespace_ca.cert_pem().to_owned(),
            sha256,
            cert_der,
            key,
            not_before: summary.not_before,
            not_after: summary.not_after,
            key_path: ns_dir.join("(derived from the namespace secret; never stored)"),
            cert_path,
            origin: CaOrigin::Namespace,
        })
    }

    /// Generates a new CA in memory.
    fn generate(
        cert_path: PathBuf,
        key_path: PathBuf,
        now: OffsetDateTime,
        origin: CaOrigin,
    ) -> Result<LocalCa, TlsError> {
        let generate_err = |source| TlsError::Generate { what: "local CA", source };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_err)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        // A distinct name per CA: trust stores and users can tell two devices' CAs apart.
        name.push(DnType::CommonName, format!("{CA_COMMON_NAME} {:08x}", rand::random::<u32>()));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.name_constraints = Some(kinopio::trust::lan_name_constraints());
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = whole_seconds(now - CERT_BACKDATE);
        params.not_after = params.not_before + CA_LIFETIME;
        let cert = params.self_signed(&key).map_err(generate_err)?;
        let cert_der = cert.der().clone();
        Ok(LocalCa {
            sha256: sha256_hex(&cert_der),
            cert_pem: cert.pem(),
            cert_der,
            key,
            not_before: params.not_before,
            not_after: params.not_after,
            cert_path,
            key_path,
            origin,
        })
    }

    /// Issues a leaf (server) certificate; see [`LeafCertificate::issue`].
    pub fn issue_leaf(&self, request: &LeafCertRequest, now: OffsetDateTime) -> Result<LeafCertificate, TlsError> {
        LeafCertificate::issue(self, request, now)
    }

    /// An rcgen issuer for this CA (its subject, key id and key).
    pub(crate) fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, TlsError> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key)
            .map_err(|source| TlsError::Generate { what: "issuer from the local CA", source })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// `<dir>/ca-cert.pem`: the file clients should trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// `<dir>/ca-key.pem`.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Lowercase hex SHA-256 of the certificate DER.
    pub fn sha256_hex(&self) -> &str {
        &self.sha256
    }

    /// The first 16 hex digits of [`LocalCa::sha256_hex`], used in file and store names.
    pub fn short_fingerprint(&self) -> &str {
        self.sha256.get(..16).unwrap_or(&self.sha256)
    }

    /// Whether this CA was reused or created, and why.
    pub fn origin(&self) -> &CaOrigin {
        &self.origin
    }
}

/// What a stored CA certificate says: whether it is name-constrained, and its notAfter.
///
/// # Errors
/// The file cannot be read or holds no valid certificate.
pub fn inspect_ca_file(path: &Path) -> Result<(bool, OffsetDateTime), TlsError> {
    let bytes = std::fs::read(path).map_err(|err| TlsError::io("read", path, err))?;
    let der = pem_certificates(path, &bytes)?.swap_remove(0);
    let summary = summarize(path, &der)?;
    Ok((summary.name_constrained, summary.not_after))
}

/// Drops sub-second precision (X.509 times are whole seconds).
pub(crate) fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}
