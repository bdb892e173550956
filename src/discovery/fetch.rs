//! Fetches leader manifests over HTTPS, verified by what discovery trusts ([`Trust`]): the
//! namespace CA derived from the namespace secret, else the user's CA file, else the system
//! roots. A thin executor for the [policy](super::policy).

use std::path::PathBuf;
use std::sync::Arc;

use crate::options::DiscoveryOptions;
use crate::trust::{NamespaceCa, Secret};
use crate::wire::manifest::LeaderManifest;

use super::policy::FetchProblem;

/// The largest manifest accepted.
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// What discovery trusts for manifests and leader listeners, and how it authenticates.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// A secured namespace: only its CA (written to a file for async-nats, removed when the
    /// last clone goes), and the LAN token its leaders require.
    Namespace { ca_file: Arc<tempfile::TempPath>, lan_token: Secret },
    /// Only the user's CA file.
    CaFile(PathBuf),
    /// The system roots: an open namespace.
    System,
}

impl Trust {
    /// The only CA file to trust, if any.
    pub(crate) fn ca_file(&self) -> Option<&std::path::Path> {
        match self {
            Trust::Namespace { ca_file, .. } => Some(ca_file),
            Trust::CaFile(path) => Some(path),
            Trust::System => None,
        }
    }
}

/// Why discovery cannot be set up: it is then off for the hub, with this reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// A namespace secret without the namespace it belongs to.
    #[error("a namespace secret needs the namespace it belongs to")]
    SecretWithoutNamespace,
    /// The namespace CA could not be derived.
    #[error("cannot derive the namespace CA: {0}")]
    Derive(String),
    /// The namespace CA could not be written to a temporary file for the connection.
    #[error("cannot write the namespace CA to a temporary file: {0}")]
    WriteCa(#[source] std::io::Error),
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate, or the HTTPS client cannot be built.
    #[error("cannot set up HTTPS for discovery: {0}")]
    Https(String),
}

/// Fetches manifests for one hub (the trust and the HTTP client are made once).
pub(crate) struct Fetcher {
    options: DiscoveryOptions,
    /// Decided on first use (deriving a namespace CA costs a memory-hard hash).
    trust: Option<Trust>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("trust", &self.trust).finish()
    }
}

impl Fetcher {
    pub(crate) fn new(options: DiscoveryOptions) -> Fetcher {
        Fetcher { options, trust: None, http: None }
    }

    /// What to trust, decided once (deriving the namespace CA costs a memory-hard hash).
    pub(crate) async fn trust(&mut self) -> Result<Trust, SetupError> {
        if let Some(trust) = &self.trust {
            return Ok(trust.clone());
        }
        let trust = match (&self.options.namespace_secret, &self.options.namespace, &self.options.ca_file) {
            (Some(secret), Some(namespace), _) => {
                let (namespace, secret) = (namespace.clone(), secret.clone());
                let ca =
                    tokio::task::spawn_blocking(move || NamespaceCa::derive(&namespace, secret.expose().as_bytes()))
                        .await
                        .map_err(|e| SetupError::Derive(e.to_string()))?
                        .map_err(|e| SetupError::Derive(e.to_string()))?;
                let mut file = tempfile::Builder::new()
                    .prefix("kinopio-namespace-ca-")
                    .suffix(".pem")
                    .tempfile()
                    .map_err(SetupError::WriteCa)?;
                std::io::Write::write_all(&mut file, ca.cert_pem().as_bytes()).map_err(SetupError::WriteCa)?;
                if self.options.ca_file.is_some() {
                    tracing::warn!(
                        "a namespace secret is given: discovery trusts only its namespace CA, not the CA file"
                    );
                }
                Trust::Namespace { ca_file: Arc::new(file.into_temp_path()), lan_token: Secret::new(ca.lan_token()) }
            }
            (Some(_), None, _) => return Err(SetupError::SecretWithoutNamespace),
            (None, _, Some(ca)) => Trust::CaFile(ca.clone()),
            (None, _, None) => Trust::System,
        };
        self.trust = Some(trust.clone());
        Ok(trust)
    }

    /// Fetches and strictly parses a manifest over HTTPS verified by the [`Trust`].
    pub(crate) async fn fetch(&mut self, url: &str) -> Result<LeaderManifest, FetchProblem> {
        if !url.starts_with("https://") {
            return Err(FetchProblem::Untrusted("only https:// manifests are trusted".into()));
        }
        let client = self.http_client().await.map_err(|e| FetchProblem::Unavailable(e.to_string()))?;
        let response = client.get(url).timeout(self.options.local_switch_timeout).send().await.map_err(|e| {
            let text = format!("{e:#}");
            if is_tls_failure(&e) {
                FetchProblem::Untrusted(format!("TLS verification failed: {text}"))
            } else {
                FetchProblem::Unavailable(text)
            }
        })?;
        if !response.status().is_success() {
            return Err(FetchProblem::Unavailable(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| FetchProblem::Unavailable(e.to_string()))?;
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(FetchProblem::Unavailable("manifest larger than 64 KiB".into()));
        }
        LeaderManifest::parse(&body, time::OffsetDateTime::now_utc())
            .map_err(|e| FetchProblem::Unavailable(e.to_string()))
    }

    async fn http_client(&mut self) -> Result<reqwest::Client, SetupError> {
        if let Some(c) = &self.http {
            return Ok(c.clone());
        }
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(self.options.local_switch_timeout).no_proxy();
        if let Some(ca) = self.trust().await?.ca_file() {
            let pem = std::fs::read(ca).map_err(|source| SetupError::ReadCa { path: ca.to_owned(), source })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::Https(format!("{e:#}")))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| SetupError::Https(format!("{e:#}")))?;
        self.http = Some(client.clone());
        Ok(client)
    }
}

/// True when a request failed in the TLS handshake (certificate not trusted, wrong name).
fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("invalid peer") {
            return true;
        }
        source = err.source();
    }
    false
}
