//! Caller-supplied TLS material (`cert_file` + `key_file`, optional `ca_file` defaulting to
//! `cert_file`): checked so mistakes get a clear error (missing file, not PEM, key does not
//! match), otherwise used exactly as given.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, SigningKey};
use time::OffsetDateTime;

use super::x509::{pem_certificates, pem_private_key, summarize};
use super::{TlsError, TlsMaterial, TlsSource, sha256_hex};
use crate::paths::expand_tilde;

/// Checked, caller-supplied certificate, key and CA files.
#[derive(Clone)]
pub struct SuppliedTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    ca_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    not_after: OffsetDateTime,
    ca_sha256: String,
}

impl fmt::Debug for SuppliedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuppliedTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl SuppliedTls {
    /// `Ok(None)` when neither `cert_file` nor `key_file` is given (use generated
    /// material); [`TlsError::IncompleteSupplied`] when only one is; otherwise
    /// [`SuppliedTls::load`] with `ca_file` defaulting to `cert_file`. `~` is expanded.
    pub fn from_options(
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
        ca_file: Option<&Path>,
        now: OffsetDateTime,
    ) -> Result<Option<SuppliedTls>, TlsError> {
        match (cert_file, key_file) {
            (None, None) => {
                if let Some(ca) = ca_file {
                    tracing::warn!(ca_file = %ca.display(), "ca_file is ignored without cert_file and key_file");
                }
                Ok(None)
            }
            (Some(_), None) => Err(TlsError::IncompleteSupplied { missing: "key_file" }),
            (None, Some(_)) => Err(TlsError::IncompleteSupplied { missing: "cert_file" }),
            (Some(cert), Some(key)) => {
                let cert = expand_tilde(cert.to_path_buf());
                let key = expand_tilde(key.to_path_buf());
                let ca = ca_file.map(|ca| expand_tilde(ca.to_path_buf())).unwrap_or_else(|| cert.clone());
                Self::load(&cert, &key, &ca, now).map(Some)
            }
        }
    }

    /// Reads and checks the three files: each exists and holds PEM of the right kind, the
    /// key is usable by rustls and matches the first certificate. An expired certificate is
    /// only warned about.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        ca_file: &Path,
        now: OffsetDateTime,
    ) -> Result<SuppliedTls, TlsError> {
        let chain = pem_certificates(cert_file, &read_supplied(cert_file, "certificate file")?)?;
        let key_der = pem_private_key(key_file, &read_supplied(key_file, "key file")?)?;
        let ca_certs = pem_certificates(ca_file, &read_supplied(ca_file, "CA file")?)?;

        let leaf = summarize(cert_file, &chain[0])?;
        if leaf.not_after < now {
            tracing::warn!(cert_file = %cert_file.display(), not_after = %leaf.not_after, "the supplied certificate has expired; clients will reject it");
        }
        let provider = rustls::crypto::ring::default_provider();
        let key = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|err| TlsError::BadKey { path: key_file.to_path_buf(), reason: err.to_string() })?;
        match CertifiedKey::new(chain.clone(), key.clone()).keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                tracing::debug!(key_file = %key_file.display(), "cannot check whether the supplied key matches its certificate");
            }
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch { cert: cert_file.to_path_buf(), key: key_file.to_path_buf() });
            }
            Err(other) => {
                return Err(TlsError::BadCertificate { path: cert_file.to_path_buf(), reason: other.to_string() });
            }
        }
        Ok(SuppliedTls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            ca_file: ca_file.to_path_buf(),
            chain,
            key,
            not_after: leaf.not_after,
            ca_sha256: sha256_hex(&ca_certs[0]),
        })
    }

    /// The certificate chain and key for a rustls server.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), self.key.clone())))
    }

    /// The files, for configuration and status output.
    pub fn material(&self) -> TlsMaterial {
        TlsMaterial {
            source: TlsSource::Supplied,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            ca_file: self.ca_file.clone(),
            ca_cert_sha256: self.ca_sha256.clone(),
            not_after: self.not_after,
        }
    }

    /// The certificate file.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The key file.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The CA file (defaults to the certificate file).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

fn read_supplied(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => TlsError::MissingFile { what, path: path.to_path_buf() },
        _ => TlsError::io("read", path, err),
    })
}
