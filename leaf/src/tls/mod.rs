//! TLS material for the leaf's LAN-facing listeners (the NATS WebSocket listener and the
//! HTTPS discovery server): where the certificate, key and CA come from, and how they are
//! made, checked, renewed, served and trusted.
//!
//! - `ca`: the local root CA, generated once per cache directory and reused.
//! - `leaf_cert`: the short-lived server certificate issued by that CA, and its renewal
//!   schedule.
//! - `supplied`: certificate, key and CA files given by the caller, checked but used as
//!   given.
//! - `resolver`: a rustls certificate resolver whose certificate can be swapped at run
//!   time.
//! - `trust`: best-effort installation of the CA into the device's trust stores.
//!
//! [`prepare`] picks between generated and supplied material and returns a
//! [`PreparedTls`]; its [`TlsMaterial`] is what status output shows.
//!
//! All functions here block (file I/O, key generation, external commands); call them from
//! `tokio::task::spawn_blocking` in async code.

pub(crate) mod ca;
mod files;
pub(crate) mod leaf_cert;
mod resolver;
mod supplied;
pub(crate) mod trust;
mod x509;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

pub use ca::{
    CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE, CA_LIFETIME, CA_RENEWAL_MARGIN, CaOrigin, CaProblem, CaValidity,
    LocalCa, ca_validity, inspect_ca_file,
};
pub use leaf_cert::{
    DEFAULT_LEAF_LIFETIME, LEAF_CERT_FILE, LEAF_KEY_FILE, LeafCertFiles, LeafCertRequest, LeafCertificate, SanEntry,
    common_name, next_renewal_at, renewal_due, subject_alt_names,
};
pub use resolver::SwappableServerCert;
pub use supplied::SuppliedTls;
pub use trust::{
    InstallRecord, NssStore, SKIP_ENV, SystemAnchorStore, TrustState, TrustStoreConfig, UntrustReport,
    anchor_file_name, install_ca, installed_stores, untrust,
};

crate::error::error_with_kind! {
    /// Errors from preparing, loading or issuing TLS material.
    #[derive(Debug, thiserror::Error)]
    pub enum TlsError => TlsErrorKind {
        /// A file or directory operation failed.
        #[error("could not {action} {}: {source}; check that the directory exists and is writable by this user", path.display())]
        Io {
            /// What was being done ("write", "read", "create directory", ...).
            action: &'static str,
            /// The path involved.
            path: PathBuf,
            /// The underlying error.
            #[source]
            source: std::io::Error,
        },
        /// Only one of `cert_file` and `key_file` was given.
        #[error(
            "cert_file and key_file must be provided together ({missing} is missing); pass both, or neither to use a generated certificate"
        )]
        IncompleteSupplied {
            /// Which of the two is missing (`"cert_file"` or `"key_file"`).
            missing: &'static str,
        },
        /// A supplied file does not exist.
        #[error("the {what} {} does not exist", path.display())]
        MissingFile {
            /// What the file should hold ("certificate file", ...).
            what: &'static str,
            /// The path given.
            path: PathBuf,
        },
        /// A file holds no PEM block of the expected kind.
        #[error("{} holds no PEM {expected}; expected a file with a \"-----BEGIN {expected}-----\" block", path.display())]
        NotPem {
            /// The file.
            path: PathBuf,
            /// The PEM label expected ("CERTIFICATE", "PRIVATE KEY").
            expected: &'static str,
        },
        /// A certificate could not be parsed or lacks what we need.
        #[error("the certificate in {} is unusable: {reason}", path.display())]
        BadCertificate {
            /// The file.
            path: PathBuf,
            /// What is wrong.
            reason: String,
        },
        /// A private key could not be loaded.
        #[error("the private key in {} is unusable: {reason}; use an unencrypted PKCS#8, PKCS#1 (RSA) or SEC1 (EC) PEM key", path.display())]
        BadKey {
            /// The file.
            path: PathBuf,
            /// What is wrong.
            reason: String,
        },
        /// The private key does not belong to the certificate.
        #[error("the private key in {} does not match the certificate in {}; pass the key that was issued with that certificate", key.display(), cert.display())]
        KeyMismatch {
            /// The certificate file.
            cert: PathBuf,
            /// The key file.
            key: PathBuf,
        },
        /// A secured namespace's CA may not vouch for this advertised host.
        #[error(
            "the advertised host {host:?} is outside what kinopio's CAs may vouch for (private, loopback or link-local addresses; names under .local, .lan, .home.arpa, .internal or localhost); advertise a LAN address or a .local name, or supply your own certificate and key (cert_file and key_file)"
        )]
        NotPermitted {
            /// The host.
            host: String,
        },
        /// An advertised host cannot be put into a certificate.
        #[error("the advertised host {host:?} cannot be put into a certificate: {reason}")]
        InvalidHost {
            /// The host as given.
            host: String,
            /// Why.
            reason: String,
        },
        /// Certificate or key generation failed.
        #[error("could not generate the {what}: {source}")]
        Generate {
            /// What was being generated.
            what: &'static str,
            /// The underlying error.
            #[source]
            source: rcgen::Error,
        },
        /// rustls rejected the certificate or key.
        #[error("rustls rejected the {what}: {source}")]
        Rustls {
            /// What was being loaded.
            what: &'static str,
            /// The underlying error.
            #[source]
            source: rustls::Error,
        },
    }
}

impl TlsError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        TlsError::Io { action, path: path.to_path_buf(), source }
    }
}

/// Where TLS material came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TlsSource {
    /// Generated by kinopio: a local CA in the cache and a short-lived leaf certificate.
    Generated,
    /// Files supplied by the caller (`--cert-file`, `--key-file`, `--ca-file`).
    Supplied,
}

/// The files a listener uses, for configuration and status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsMaterial {
    /// Generated or supplied.
    pub source: TlsSource,
    /// Server certificate (chain) PEM.
    pub cert_file: PathBuf,
    /// Server private key PEM.
    pub key_file: PathBuf,
    /// The CA certificate clients should trust.
    pub ca_file: PathBuf,
    /// Lowercase hex SHA-256 of the first certificate in `ca_file`.
    pub ca_cert_sha256: String,
    /// When the server certificate expires.
    #[serde(serialize_with = "serialize_time")]
    pub not_after: OffsetDateTime,
}

fn serialize_time<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = at.format(&time::format_description::well_known::Rfc3339).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

/// Inputs to [`prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Caller-supplied certificate; must come with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Caller-supplied key; must come with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Caller-supplied CA; defaults to `cert_file`.
    pub ca_file: Option<PathBuf>,
    /// Directory of the generated CA (e.g. `<cache>/tls`).
    pub ca_dir: PathBuf,
    /// Directory for the generated leaf certificate and key.
    pub runtime_dir: PathBuf,
    /// Hosts and addresses the listeners are reached at; the first non-empty one is the CN.
    pub advertised_hosts: Vec<String>,
    /// Lifetime of the generated leaf certificate.
    pub leaf_lifetime: Duration,
    /// A secured namespace's CA ([`kinopio::trust::NamespaceCa`]): issue the leaf
    /// certificate from it instead of this device's own CA, so every leader of the namespace
    /// chains to one root.
    pub namespace_ca: Option<std::sync::Arc<kinopio::trust::NamespaceCa>>,
}

impl TlsOptions {
    /// Options for generated material with the default leaf lifetime.
    pub fn generated(
        ca_dir: impl Into<PathBuf>,
        runtime_dir: impl Into<PathBuf>,
        advertised_hosts: Vec<String>,
    ) -> Self {
        TlsOptions {
            cert_file: None,
            key_file: None,
            ca_file: None,
            ca_dir: ca_dir.into(),
            runtime_dir: runtime_dir.into(),
            advertised_hosts,
            leaf_lifetime: leaf_cert::DEFAULT_LEAF_LIFETIME,
            namespace_ca: None,
        }
    }
}

/// Generated material: the CA, the current leaf certificate and where it is written.
#[derive(Debug)]
pub struct GeneratedTls {
    ca: LocalCa,
    request: LeafCertRequest,
    runtime_dir: PathBuf,
    leaf: LeafCertificate,
    files: LeafCertFiles,
}

impl GeneratedTls {
    /// The local CA.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// The current leaf certificate.
    pub fn leaf(&self) -> &LeafCertificate {
        &self.leaf
    }

    /// Where the current leaf certificate and key are written.
    pub fn files(&self) -> &LeafCertFiles {
        &self.files
    }

    /// True when the leaf certificate should be renewed at `now`.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        self.leaf.renewal_due(now)
    }

    /// When the leaf certificate should be renewed.
    pub fn next_renewal_at(&self) -> OffsetDateTime {
        self.leaf.next_renewal_at()
    }

    /// Issues a fresh leaf certificate, rewrites the files atomically and returns it. The
    /// caller swaps it into running servers ([`SwappableServerCert::swap`]) and reloads
    /// nats-server.
    pub fn renew(&mut self, now: OffsetDateTime) -> Result<&LeafCertificate, TlsError> {
        let leaf = self.ca.issue_leaf(&self.request, now)?;
        self.files = leaf.write_to(&self.runtime_dir)?;
        tracing::info!(
            not_after = %leaf.not_after(),
            "renewed the leaf certificate"
        );
        self.leaf = leaf;
        Ok(&self.leaf)
    }

    /// The files, for status output.
    pub fn material(&self) -> TlsMaterial {
        TlsMaterial {
            source: TlsSource::Generated,
            cert_file: self.files.cert_file.clone(),
            key_file: self.files.key_file.clone(),
            ca_file: self.ca.cert_path().to_path_buf(),
            ca_cert_sha256: self.ca.sha256_hex().to_owned(),
            not_after: self.leaf.not_after(),
        }
    }
}

/// Ready-to-use TLS material.
#[derive(Debug)]
pub enum PreparedTls {
    /// Generated CA and leaf certificate (renewable).
    Generated(Box<GeneratedTls>),
    /// Caller-supplied files.
    Supplied(SuppliedTls),
}

impl PreparedTls {
    /// The files, for configuration and status output.
    pub fn material(&self) -> TlsMaterial {
        match self {
            PreparedTls::Generated(generated) => generated.material(),
            PreparedTls::Supplied(supplied) => supplied.material(),
        }
    }

    /// The certificate and key for an in-process rustls server.
    pub fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        match self {
            PreparedTls::Generated(generated) => generated.leaf.certified_key(),
            PreparedTls::Supplied(supplied) => supplied.certified_key(),
        }
    }
}

/// Uses the supplied files when `cert_file`/`key_file` are given (checking them), otherwise
/// loads or creates the local CA in `ca_dir` and issues a leaf certificate into
/// `runtime_dir`.
pub fn prepare(options: &TlsOptions, now: OffsetDateTime) -> Result<PreparedTls, TlsError> {
    if let Some(supplied) = SuppliedTls::from_options(
        options.cert_file.as_deref(),
        options.key_file.as_deref(),
        options.ca_file.as_deref(),
        now,
    )? {
        return Ok(PreparedTls::Supplied(supplied));
    }
    // Every kinopio CA is name-constrained: only names and addresses it may vouch for go
    // into the certificate (a client would refuse any other). The advertised host must be
    // one; other addresses (a public one among all interfaces) are left out.
    let mut hosts = options.advertised_hosts.clone();
    if let Some(host) = hosts.first().filter(|h| !kinopio::trust::permits(h)) {
        return Err(TlsError::NotPermitted { host: host.clone() });
    }
    hosts.retain(|h| kinopio::trust::permits(h));
    let ca = match &options.namespace_ca {
        Some(namespace_ca) => LocalCa::from_namespace(namespace_ca, &options.ca_dir)?,
        None => LocalCa::load_or_create(&options.ca_dir, now)?,
    };
    let request = LeafCertRequest::new(hosts).with_lifetime(options.leaf_lifetime);
    let leaf = ca.issue_leaf(&request, now)?;
    let files = leaf.write_to(&options.runtime_dir)?;
    Ok(PreparedTls::Generated(Box::new(GeneratedTls {
        ca,
        request,
        runtime_dir: options.runtime_dir.clone(),
        leaf,
        files,
    })))
}

/// Lowercase hex SHA-256 of `der`.
pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}
