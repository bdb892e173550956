//! Settings of a leaf: what to bridge to, where to listen, which binary, cache and runtime
//! directory, TLS material, and the time limits of starting, supervising and stopping.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::binary::BinaryOptions;
use crate::tls::TrustStoreConfig;
use crate::tls::leaf_cert::DEFAULT_LEAF_LIFETIME;

/// How a crashed nats-server is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first restart; doubled for each consecutive one.
    pub initial_backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
    /// Consecutive restarts allowed before giving up (state `failed`).
    pub max_attempts: u32,
    /// A server that stayed ready this long resets the consecutive count.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 5,
            stable_after: Duration::from_secs(60),
        }
    }
}

/// Time limits and intervals of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafTimings {
    /// Longest wait for nats-server to become ready (start and each restart).
    pub ready_timeout: Duration,
    /// Time nats-server gets to exit after SIGTERM before it is killed.
    pub stop_grace: Duration,
    /// How often the background task refreshes the status (`/healthz`, `/leafz`, ports).
    pub poll_interval: Duration,
    /// Bound of each health probe (TCP connect, HTTP request).
    pub probe_timeout: Duration,
    /// Shortest time between two certificate renewals (guards against a renewal loop
    /// when the CA itself is about to lapse).
    pub renewal_min_interval: Duration,
}

impl Default for LeafTimings {
    fn default() -> Self {
        LeafTimings {
            ready_timeout: Duration::from_secs(15),
            stop_grace: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            renewal_min_interval: Duration::from_secs(60),
        }
    }
}

/// Backbone URLs as given; their `Debug` output hides any credentials in them.
#[derive(Clone, Default)]
pub(crate) struct BackboneUrls(pub(crate) Vec<String>);

impl std::fmt::Debug for BackboneUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|url| crate::config::redact_url(url))).finish()
    }
}

/// Everything [`LeafNode::start`](super::LeafNode::start) needs. Unset ports are chosen
/// by nats-server (or the OS, for discovery) without a check-then-use race.
///
/// ```no_run
/// # async fn run() -> Result<(), kinopio_leaf::runtime::LeafError> {
/// use kinopio_leaf::runtime::{LeafNode, LeafOptions};
/// let leaf = LeafNode::start(
///     LeafOptions::new().backbone_server("tls://hub.example.com:7422").name("kitchen-leaf"),
/// )
/// .await?;
/// println!("clients on the LAN connect to {}", leaf.urls().wss_url);
/// leaf.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeafOptions {
    pub(crate) backbone_servers: BackboneUrls,
    pub(crate) backbone_ca_file: Option<PathBuf>,
    pub(crate) backbone_credentials: Option<PathBuf>,
    pub(crate) backbone_user: Option<String>,
    pub(crate) backbone_password_file: Option<PathBuf>,
    pub(crate) backbone_token_file: Option<PathBuf>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) private_network_access: bool,
    pub(crate) namespace_ca: Option<std::sync::Arc<kinopio::trust::NamespaceCa>>,
    pub(crate) lan_authorization: Option<PathBuf>,
    pub(crate) binary: BinaryOptions,
    pub(crate) binary_path: Option<PathBuf>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) runtime_dir: Option<PathBuf>,
    pub(crate) lan_bind_address: Option<IpAddr>,
    pub(crate) advertised_host: Option<String>,
    pub(crate) client_host: IpAddr,
    pub(crate) monitor_host: IpAddr,
    pub(crate) client_port: Option<u16>,
    pub(crate) websocket_port: Option<u16>,
    pub(crate) discovery_port: Option<u16>,
    pub(crate) monitor_port: Option<u16>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) name: Option<String>,
    pub(crate) trust_store: TrustStoreConfig,
    pub(crate) leaf_cert_lifetime: Duration,
    pub(crate) timings: LeafTimings,
    pub(crate) restart: RestartPolicy,
}

impl Default for LeafOptions {
    fn default() -> Self {
        LeafOptions::new()
    }
}

impl LeafOptions {
    /// Defaults: no backbone, binary per [`BinaryOptions::from_env`] (`KINOPIO_NATS_SERVER`,
    /// cache, `PATH`, download), cache root per the platform cache directory (or `KINOPIO_HUB_CACHE_DIR`), a temporary
    /// runtime directory, the detected LAN address, client and monitor on `127.0.0.1`,
    /// free ports, a generated certificate, the platform trust stores (skipped when
    /// `KINOPIO_SKIP_CA_TRUST_INSTALL=1`).
    pub fn new() -> Self {
        LeafOptions {
            backbone_servers: BackboneUrls::default(),
            backbone_ca_file: None,
            backbone_credentials: None,
            backbone_user: None,
            backbone_password_file: None,
            backbone_token_file: None,
            allowed_origins: Vec::new(),
            private_network_access: false,
            namespace_ca: None,
            lan_authorization: None,
            binary: BinaryOptions::from_env(),
            binary_path: None,
            cache_dir: None,
            runtime_dir: None,
            lan_bind_address: None,
            advertised_host: None,
            client_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            monitor_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client_port: None,
            websocket_port: None,
            discovery_port: None,
            monitor_port: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            name: None,
            trust_store: TrustStoreConfig::not_requested(),
            leaf_cert_lifetime: DEFAULT_LEAF_LIFETIME,
            timings: LeafTimings::default(),
            restart: RestartPolicy::default(),
        }
    }

    /// Adds a backbone server URL (`nats://`, `tls://`, `ws://`, `wss://`; repeatable, in
    /// order). All go into one leafnode remote.
    pub fn backbone_server(mut self, url: impl Into<String>) -> Self {
        self.backbone_servers.0.push(url.into());
        self
    }

    /// Replaces the backbone server URLs.
    pub fn backbone_servers<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.backbone_servers = BackboneUrls(urls.into_iter().map(Into::into).collect());
        self
    }

    /// CA file (PEM) that verifies the backbone's certificate; turns TLS on for the remote.
    pub fn backbone_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backbone_ca_file = Some(path.into());
        self
    }

    /// NATS credentials file presented to the backbone.
    pub fn backbone_credentials(mut self, path: impl Into<PathBuf>) -> Self {
        self.backbone_credentials = Some(path.into());
        self
    }

    /// The user the leaf presents to the backbone; the password comes from
    /// [`LeafOptions::backbone_password_file`].
    pub fn backbone_user(mut self, user: impl Into<String>) -> Self {
        self.backbone_user = Some(user.into());
        self
    }

    /// A file holding the backbone password (first line; read when the leaf starts). Keep
    /// it readable by the leaf's user only.
    pub fn backbone_password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backbone_password_file = Some(path.into());
        self
    }

    /// Lets web pages from `origin` (`https://host:port`) open a WebSocket to the leaf
    /// (repeatable). By default only the leaf's own HTTPS origin (its discovery server) may;
    /// a page from any other origin is refused by nats-server. Clients that are not browsers
    /// send no `Origin` and are not affected. `"*"` turns the check off: any web page the
    /// user opens could then use the leaf.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Answers browsers' Private Network Access preflights on the discovery server
    /// (`Access-Control-Allow-Private-Network: true`), so public web pages may fetch the
    /// manifest of a leaf on a private address. Off by default.
    pub fn private_network_access(mut self, allow: bool) -> Self {
        self.private_network_access = allow;
        self
    }

    /// Issues the WSS and discovery certificate from a secured namespace's CA (the same on
    /// every member device) instead of this device's own CA. `kinopio leaf auto` sets it
    /// when given a namespace secret.
    pub fn namespace_ca(mut self, ca: std::sync::Arc<kinopio::trust::NamespaceCa>) -> Self {
        self.namespace_ca = Some(ca);
        self
    }

    /// nats-server authorization for the leaf's listeners (the WSS listener on the LAN and
    /// the loopback client port): a file with the body of an `authorization { … }` block —
    /// `token`, or `users` with passwords or nkeys and per-subject `permissions`. It takes
    /// the place of a secured namespace's derived LAN token.
    ///
    /// ```text
    /// users = [
    ///   { user: kitchen, password: "…", permissions: { publish: "kitchen.>", subscribe: "kitchen.>" } }
    /// ]
    /// ```
    pub fn lan_authorization(mut self, path: impl Into<PathBuf>) -> Self {
        self.lan_authorization = Some(path.into());
        self
    }

    /// A file holding a backbone token (first line; read when the leaf starts).
    pub fn backbone_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backbone_token_file = Some(path.into());
        self
    }

    /// Replaces how the nats-server binary is found (the `binary_path` and `cache_dir`
    /// options below still apply on top).
    pub fn binary_options(mut self, options: BinaryOptions) -> Self {
        self.binary = options;
        self
    }

    /// Uses this nats-server binary (`--binary-path`).
    pub fn binary_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary_path = Some(path.into());
        self
    }

    /// Cache root (`--cache-dir`): the binary lives in `<dir>/nats-server/`, the local CA
    /// in `<dir>/tls/`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Runtime directory (`--runtime-dir`): must be empty or not exist; it is never
    /// deleted, only the files the leaf wrote are removed on stop. By default a temporary
    /// directory is created and removed on stop.
    pub fn runtime_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runtime_dir = Some(dir.into());
        self
    }

    /// Address of the LAN-facing listeners, WebSocket and discovery
    /// (`--lan-bind-address`); `0.0.0.0`/`::` listen on every interface. Default: the
    /// detected LAN address ([`crate::net::lan_address`]).
    pub fn lan_bind_address(mut self, address: IpAddr) -> Self {
        self.lan_bind_address = Some(address);
        self
    }

    /// Host name or address put into the URLs and the certificate. Default: the LAN bind
    /// address, or the detected LAN address when binding a wildcard.
    pub fn advertised_host(mut self, host: impl Into<String>) -> Self {
        self.advertised_host = Some(host.into());
        self
    }

    /// Bind address of the plain NATS client listener (default `127.0.0.1`).
    pub fn client_host(mut self, host: IpAddr) -> Self {
        self.client_host = host;
        self
    }

    /// Bind address of the HTTP monitor (default `127.0.0.1`).
    pub fn monitor_host(mut self, host: IpAddr) -> Self {
        self.monitor_host = host;
        self
    }

    /// Port of the plain NATS client listener (`--client-port`).
    pub fn client_port(mut self, port: u16) -> Self {
        self.client_port = Some(port);
        self
    }

    /// Port of the WSS listener (`--websocket-port`).
    pub fn websocket_port(mut self, port: u16) -> Self {
        self.websocket_port = Some(port);
        self
    }

    /// Port of the HTTPS discovery server (`--discovery-port`).
    pub fn discovery_port(mut self, port: u16) -> Self {
        self.discovery_port = Some(port);
        self
    }

    /// Port of the HTTP monitor (`--monitor-port`).
    pub fn monitor_port(mut self, port: u16) -> Self {
        self.monitor_port = Some(port);
        self
    }

    /// Server certificate (chain) PEM for the WSS and discovery listeners (`--cert-file`);
    /// needs `key_file`. Used as given: no renewal, no trust-store install.
    pub fn cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(path.into());
        self
    }

    /// Private key PEM of `cert_file` (`--key-file`).
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// CA certificate clients should trust for the supplied certificate (`--ca-file`);
    /// defaults to `cert_file`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// nats-server `server_name` (`--name`); default `kinopio-leaf-<first 8 hex of the
    /// node id>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Which trust stores receive the generated CA (tests pass temporary stores or
    /// [`TrustStoreConfig::none`]).
    pub fn trust_store(mut self, config: TrustStoreConfig) -> Self {
        self.trust_store = config;
        self
    }

    /// Lifetime of the generated leaf certificate (default 7 days); it is renewed after
    /// two thirds of it.
    pub fn leaf_cert_lifetime(mut self, lifetime: Duration) -> Self {
        self.leaf_cert_lifetime = lifetime;
        self
    }

    /// Replaces the time limits.
    pub fn timings(mut self, timings: LeafTimings) -> Self {
        self.timings = timings;
        self
    }

    /// Replaces the restart policy.
    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// The backbone server URLs as given (they may carry credentials: never print them;
    /// [`crate::config::LeafRemote::urls`] gives them without).
    pub fn backbone_server_list(&self) -> &[String] {
        &self.backbone_servers.0
    }

    /// The binary options with `binary_path` and `cache_dir` applied.
    pub(crate) fn effective_binary_options(&self) -> BinaryOptions {
        let mut options = self.binary.clone();
        if let Some(path) = &self.binary_path {
            options = options.binary_path(path.clone());
        }
        if let Some(dir) = &self.cache_dir {
            options = options.cache_dir(dir.clone());
        }
        options
    }

    /// Where the local CA lives: `<cache root>/tls`.
    pub fn ca_dir(&self) -> PathBuf {
        let root = match &self.cache_dir {
            Some(dir) => crate::paths::expand_tilde(dir.clone()),
            None => crate::paths::cache_root(),
        };
        root.join("tls")
    }
}
