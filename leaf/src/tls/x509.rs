//! Reading PEM certificates and keys and pulling out the few X.509 facts kinopio decides on
//! (validity, public key, CA flag).

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use super::TlsError;

/// What kinopio needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertSummary {
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// DER of the SubjectPublicKeyInfo.
    pub(crate) spki: Vec<u8>,
    pub(crate) is_ca: bool,
    /// Whether it carries a NameConstraints extension.
    pub(crate) name_constrained: bool,
}

/// All `CERTIFICATE` blocks of a PEM file; at least one.
pub(crate) fn pem_certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>().map_err(|err| {
        TlsError::BadCertificate { path: path.to_path_buf(), reason: format!("malformed PEM: {err}") }
    })?;
    if certs.is_empty() {
        return Err(TlsError::NotPem { path: path.to_path_buf(), expected: "CERTIFICATE" });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub(crate) fn pem_private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::NotPem { path: path.to_path_buf(), expected: "PRIVATE KEY" }
        }
        other => TlsError::BadKey { path: path.to_path_buf(), reason: format!("malformed PEM: {other}") },
    })
}

/// Parses one DER certificate.
pub(crate) fn summarize(path: &Path, der: &[u8]) -> Result<CertSummary, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate { path: path.to_path_buf(), reason };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|err| bad(format!("not a valid X.509 certificate: {err}")))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|err| bad(format!("invalid BasicConstraints: {err}")))?
        .is_some_and(|ext| ext.value.ca);
    let name_constrained = cert.name_constraints().ok().flatten().is_some();
    Ok(CertSummary {
        name_constrained,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        spki: cert.public_key().raw.to_vec(),
        is_ca,
    })
}
