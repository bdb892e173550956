//! Runs a local leaf: composes the nats-server binary ([`crate::binary`]), TLS material
//! ([`crate::tls`]), the rendered config ([`crate::config`]), the supervised process
//! ([`crate::process`]) and the HTTPS discovery server ([`crate::discovery_server`]).
//!
//! [`LeafNode::start`] returns once nats-server is ready; [`LeafNode::status`] returns at
//! once from a cache that a background task refreshes about every second
//! ([`LeafNode::watch`] yields each change); [`LeafNode::stop`] stops the discovery
//! server, then nats-server (SIGTERM, then SIGKILL after a grace period), and cleans the
//! runtime directory. Dropping a [`LeafNode`] without `stop` kills nats-server.
//!
//! Listeners: the plain NATS client port and the HTTP monitor on loopback; the WSS
//! listener and the HTTPS discovery server on the LAN address. None of them asks for
//! authentication (as in the reference): anyone who can reach the LAN address can use the
//! WSS listener, and what they publish is bridged to the backbone.
//!
//! ```no_run
//! # async fn run() -> Result<(), kinopio_leaf::runtime::LeafError> {
//! use kinopio_leaf::runtime::{LeafNode, LeafOptions};
//! let leaf = LeafNode::start(LeafOptions::new().backbone_server("nats://hub.example.com:7422")).await?;
//! let status = leaf.status();
//! println!("{} bridge={}", leaf.urls().wss_url, status.bridge_state);
//! leaf.stop().await;
//! # Ok(()) }
//! ```

mod error;
mod listeners;
mod options;
mod providers;
pub mod renewal;
pub mod restart;
pub mod runtime_dir;
mod status;
mod supervisor;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use error::{LeafError, ListenerKind};
pub use options::{LeafOptions, LeafTimings, RestartPolicy};
pub use status::{
    LeafState, LeafStatus, LeafUrls, ListenerStatus, StatusChange, TlsStatus, TrustStatus, bridge_state,
    leafz_connected, leafz_remote_name, status_changes,
};

use crate::config::{self, BackboneAuth, LeafRemote, Listen, LogSettings, ServerConfig, WebsocketTls};
use crate::discovery_server::{DiscoveryServer, ManifestProvider, WELL_KNOWN_PATH};
use crate::net;
use crate::process::{self, Monitor, ReadyCheck, ServerProcess, SpawnSpec, StopOutcome};
use crate::status_page::{ElectionProvider, MonitorSampler, ReportInputs, StatusProvider, StatusReport};
use crate::tls::{self, PreparedTls, SwappableServerCert, TlsOptions, TrustState};
use kinopio::wire::manifest::LeaderManifest;
use listeners::{bind_error, check_distinct_ports, precheck_port, resolve_hosts, start_error};
use providers::{health_provider, manifest_inputs, manual_manifest_provider};
use restart::RestartBudget;
use runtime_dir::{CONFIG_FILE, LAN_AUTHORIZATION_FILE, LOG_FILE, OUTPUT_FILE, RuntimeDir, TEMP_PREFIX};
use supervisor::{Command, Supervisor};

/// nats-server rotates its log at this size.
pub const LOG_SIZE_LIMIT_BYTES: u64 = 10 * 1024 * 1024;
/// nats-server keeps this many log files.
pub const LOG_MAX_FILES: u32 = 3;

/// How [`LeafNode::stop`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReport {
    /// This call stopped the leaf; how nats-server ended.
    Stopped(StopOutcome),
    /// An earlier call already stopped it.
    AlreadyStopped,
}

/// A running local leaf. See the module docs.
pub struct LeafNode {
    node_id: String,
    urls: LeafUrls,
    ca_cert_file: PathBuf,
    status_tx: Arc<watch::Sender<LeafStatus>>,
    status_rx: watch::Receiver<LeafStatus>,
    commands: mpsc::Sender<Command>,
    supervisor: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    tls_task: JoinHandle<()>,
    runtime_dir: std::sync::Mutex<RuntimeDir>,
    manifest: ManifestProvider,
    manifest_override: Arc<RwLock<Option<ManifestProvider>>>,
    /// The election view `leaf auto` shows on the status page.
    election: Arc<RwLock<Option<ElectionProvider>>>,
    /// What the status page and `/status.json` show.
    status_report: StatusProvider,
    /// Samples nats-server's monitor for the status page.
    sampler_task: JoinHandle<()>,
    timings: LeafTimings,
}

impl std::fmt::Debug for LeafNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafNode").field("node_id", &self.node_id).field("urls", &self.urls).finish_non_exhaustive()
    }
}

/// A fresh 32-hex-character node id (like the reference's `uuid4().hex`).
pub fn new_node_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(crate) fn write_config(path: &Path, text: &str) -> Result<(), LeafError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io_error =
        |source| LeafError::RuntimeDir { action: "write the nats-server config", path: path.to_owned(), source };
    let mut temp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir).map_err(io_error)?;
    std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(io_error)?;
    temp.persist(path).map_err(|err| io_error(err.error))?;
    Ok(())
}

/// The user/password or token for the backbone from the options' files (first line of each).
fn backbone_auth(options: &LeafOptions) -> Result<Option<BackboneAuth>, LeafError> {
    let read = |what: &'static str, path: &Path| -> Result<String, LeafError> {
        let text = std::fs::read_to_string(path).map_err(|_| LeafError::MissingFile { what, path: path.to_owned() })?;
        let secret = text.lines().next().unwrap_or_default().trim().to_owned();
        if secret.is_empty() {
            return Err(LeafError::InvalidOption { option: what, reason: format!("{} is empty", path.display()) });
        }
        Ok(secret)
    };
    let invalid = |reason: &str| LeafError::InvalidOption { option: "backbone credentials", reason: reason.to_owned() };
    match (&options.backbone_user, &options.backbone_password_file, &options.backbone_token_file) {
        (None, None, None) => Ok(None),
        (Some(user), Some(file), None) => {
            Ok(Some(BackboneAuth::UserPassword { user: user.clone(), password: read("backbone password file", file)? }))
        }
        (None, None, Some(file)) => Ok(Some(BackboneAuth::Token(read("backbone token file", file)?))),
        (Some(_), None, _) => Err(invalid("a backbone user needs a password file")),
        (None, Some(_), _) => Err(invalid("a backbone password file needs a user")),
        (_, _, Some(_)) => Err(invalid("give either a user and password file or a token file, not both")),
    }
}

/// The web origins allowed to open a WebSocket: the leaf's own HTTPS origin plus the given
/// ones; none (no check) when `*` is given.
fn allowed_origins(options: &LeafOptions, advertised: &str, discovery_port: u16) -> Result<Vec<String>, LeafError> {
    if options.allowed_origins.iter().any(|o| o == "*") {
        return Ok(Vec::new());
    }
    let mut origins = vec![format!("https://{}", net::host_port(advertised, discovery_port))];
    for origin in &options.allowed_origins {
        let parsed = url::Url::parse(origin).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/" && u.query().is_none()
        });
        if parsed.is_none() || origin.ends_with('/') {
            return Err(LeafError::InvalidOption {
                option: "allowed origin",
                reason: format!(
                    "{origin:?} is not an origin; give it as https://host or https://host:port (or * for any)"
                ),
            });
        }
        origins.push(origin.clone());
    }
    Ok(origins)
}

fn require_file(what: &'static str, path: &Option<PathBuf>) -> Result<(), LeafError> {
    match path {
        Some(path) if !path.is_file() => Err(LeafError::MissingFile { what, path: path.clone() }),
        _ => Ok(()),
    }
}

fn listener(url: String, host: IpAddr, port: u16) -> ListenerStatus {
    ListenerStatus { url, host: host.to_string(), port, ready: true }
}

impl LeafNode {
    /// Starts a leaf and returns once nats-server is ready and the discovery server serves.
    /// On error nothing is left running and the runtime directory is cleaned up.
    pub async fn start(options: LeafOptions) -> Result<LeafNode, LeafError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timings = options.timings;
        let node_id = new_node_id();
        let server_name = options.name.clone().unwrap_or_else(|| format!("kinopio-leaf-{}", &node_id[..8]));
        config::validate_server_name(&server_name)?;
        require_file("backbone CA file", &options.backbone_ca_file)?;
        require_file("backbone credentials file", &options.backbone_credentials)?;
        require_file("LAN authorization file", &options.lan_authorization)?;
        let auth = backbone_auth(&options)?;
        let backbone = LeafRemote::from_urls(&options.backbone_servers.0)?.map(|remote| {
            remote
                .with_ca_file(options.backbone_ca_file.clone())
                .with_credentials(options.backbone_credentials.clone())
                .with_auth(auth.clone())
        });
        if backbone.is_none()
            && (options.backbone_ca_file.is_some() || options.backbone_credentials.is_some() || auth.is_some())
        {
            return Err(LeafError::InvalidOption {
                option: "backbone CA file / credentials",
                reason: "they were given without a backbone server".to_owned(),
            });
        }
        let backbone_servers: Vec<String> = backbone.as_ref().map(|remote| remote.urls().to_vec()).unwrap_or_default();

        let hosts = resolve_hosts(&options)?;
        let given_ports = [
            (ListenerKind::Client, options.client_host, options.client_port),
            (ListenerKind::Websocket, hosts.lan_bind, options.websocket_port),
            (ListenerKind::Discovery, hosts.lan_bind, options.discovery_port),
            (ListenerKind::Monitor, options.monitor_host, options.monitor_port),
        ];
        check_distinct_ports(&given_ports.map(|(kind, _, port)| (kind, port)))?;
        for (kind, host, port) in given_ports {
            if kind != ListenerKind::Discovery {
                precheck_port(kind, host, port)?;
            }
        }
        // The discovery socket is ours: bind it now and keep it (no check-then-use race).
        let discovery_addr = SocketAddr::new(hosts.lan_bind, options.discovery_port.unwrap_or(0));
        let discovery_listener = std::net::TcpListener::bind(discovery_addr)
            .map_err(|source| bind_error(ListenerKind::Discovery, discovery_addr, source))?;
        let discovery_addr = discovery_listener.local_addr().map_err(|source| LeafError::Bind {
            listener: ListenerKind::Discovery,
            addr: discovery_addr,
            source,
        })?;

        let runtime_dir = RuntimeDir::create(options.runtime_dir.as_deref())?;
        let binary = crate::binary::resolve(&options.effective_binary_options()).await?;
        tracing::info!(path = %binary.path.display(), version = %binary.version, source = ?binary.source, "using nats-server");

        let tls_options = TlsOptions {
            cert_file: options.cert_file.clone(),
            key_file: options.key_file.clone(),
            ca_file: options.ca_file.clone(),
            ca_dir: options.ca_dir(),
            runtime_dir: runtime_dir.path().to_path_buf(),
            advertised_hosts: hosts.san_hosts.clone(),
            leaf_lifetime: options.leaf_cert_lifetime,
            namespace_ca: options.namespace_ca.clone(),
        };
        let prepared = tokio::task::spawn_blocking(move || tls::prepare(&tls_options, OffsetDateTime::now_utc()))
            .await
            .map_err(|err| LeafError::task("TLS preparation", err))??;
        let material = prepared.material();
        let cert = SwappableServerCert::new(prepared.certified_key()?);

        // nats-server resolves includes relative to the config file: a private copy beside it.
        let lan_authorization = match &options.lan_authorization {
            Some(path) => {
                let copy = runtime_dir.file(LAN_AUTHORIZATION_FILE);
                let text = std::fs::read(path)
                    .map_err(|_| LeafError::MissingFile { what: "LAN authorization file", path: path.clone() })?;
                write_config(&copy, &String::from_utf8_lossy(&text))?;
                Some(PathBuf::from(LAN_AUTHORIZATION_FILE))
            }
            None => None,
        };
        let web_origins = allowed_origins(&options, &hosts.advertised, discovery_addr.port())?;
        let mut server_config = ServerConfig {
            server_name: server_name.clone(),
            client: Listen::new(options.client_host, options.client_port),
            monitor: Listen::new(options.monitor_host, options.monitor_port),
            websocket: Listen::new(hosts.lan_bind, options.websocket_port),
            websocket_tls: WebsocketTls { cert_file: material.cert_file.clone(), key_file: material.key_file.clone() },
            websocket_allowed_origins: web_origins.clone(),
            // A secured namespace's leaf serves only clients that hold its secret.
            client_token: options.namespace_ca.as_ref().map(|ca| ca.lan_token().to_owned()),
            authorization_file: lan_authorization,
            backbone,
            ports_file_dir: runtime_dir.path().to_path_buf(),
            log: Some(LogSettings {
                file: runtime_dir.file(LOG_FILE),
                size_limit_bytes: LOG_SIZE_LIMIT_BYTES,
                max_files: LOG_MAX_FILES,
            }),
        };
        let config_file = runtime_dir.file(CONFIG_FILE);
        write_config(&config_file, &config::render(&server_config)?)?;

        let spec = SpawnSpec {
            binary: binary.path.clone(),
            config_file: config_file.clone(),
            output_file: runtime_dir.file(OUTPUT_FILE),
            working_dir: runtime_dir.path().to_path_buf(),
        };
        let ready_check = ReadyCheck {
            ports_file_dir: runtime_dir.path().to_path_buf(),
            client_host: options.client_host,
            websocket_host: hosts.lan_bind,
            monitor_host: options.monitor_host,
            log_files: vec![runtime_dir.file(OUTPUT_FILE), runtime_dir.file(LOG_FILE)],
            // nats-server is ready ~15 ms after spawning; a coarse poll would add most of
            // its interval to every start and failover (measured by `kinopio bench`).
            poll_interval: Duration::from_millis(5),
            probe_timeout: timings.probe_timeout,
        };
        let mut process = ServerProcess::spawn(&spec).await.map_err(LeafError::Start)?;
        let ports = match process::wait_ready(&mut process, &ready_check, timings.ready_timeout).await {
            Ok(ports) => ports,
            Err(err) => {
                process.stop(timings.stop_grace).await;
                let err = start_error(err, &given_ports);
                tracing::warn!(error = %err, "failed to start the leaf");
                return Err(err);
            }
        };
        // Restarts must come back on the same, advertised ports. The running process keeps
        // its own config file until then: nats-server refuses to reload a config whose
        // ports differ from the ones it started with (`-1`).
        server_config.client.port = Some(ports.client);
        server_config.monitor.port = Some(ports.monitor);
        server_config.websocket.port = Some(ports.websocket);
        let restart_config = match config::render(&server_config) {
            Ok(text) => text,
            Err(err) => {
                process.stop(timings.stop_grace).await;
                return Err(err.into());
            }
        };

        let client_connect = net::connect_address(options.client_host);
        let monitor_connect = net::connect_address(options.monitor_host);
        let urls = LeafUrls {
            client_url: format!("nats://{}", net::host_port(&client_connect.to_string(), ports.client)),
            wss_url: format!("wss://{}", net::host_port(&hosts.advertised, ports.websocket)),
            discovery_url: format!(
                "https://{}{WELL_KNOWN_PATH}",
                net::host_port(&hosts.advertised, discovery_addr.port())
            ),
            monitor_url: format!("http://{}", net::host_port(&monitor_connect.to_string(), ports.monitor)),
            advertised_host: hosts.advertised.clone(),
        };
        let has_backbone = !backbone_servers.is_empty();
        let trust = match &prepared {
            PreparedTls::Generated(_) => TrustStatus::Pending,
            PreparedTls::Supplied(_) => TrustStatus::Done(TrustState::External),
        };
        let initial = LeafStatus {
            state: LeafState::Running,
            node_id: node_id.clone(),
            server_name,
            client: listener(urls.client_url.clone(), options.client_host, ports.client),
            websocket: listener(urls.wss_url.clone(), hosts.lan_bind, ports.websocket),
            discovery: listener(urls.discovery_url.clone(), hosts.lan_bind, discovery_addr.port()),
            monitor: listener(urls.monitor_url.clone(), options.monitor_host, ports.monitor),
            bridge_state: bridge_state(LeafState::Running, has_backbone, true, true, None),
            bridge_server: None,
            backbone_servers: backbone_servers.clone(),
            server_ready: true,
            process_id: Some(process.pid()),
            restarts: 0,
            last_error: None,
            tls: TlsStatus { material: material.clone(), trust, renewals: 0 },
            binary,
            runtime_dir: runtime_dir.path().to_path_buf(),
            log_file: runtime_dir.file(LOG_FILE),
        };
        let (status_tx, status_rx) = watch::channel(initial);
        let status_tx = Arc::new(status_tx);

        let inputs = match manifest_inputs(&node_id, &urls, &backbone_servers, &material.ca_cert_sha256) {
            Ok(inputs) => inputs,
            Err(err) => {
                process.stop(timings.stop_grace).await;
                return Err(err);
            }
        };
        let manifest_override: Arc<RwLock<Option<ManifestProvider>>> = Arc::new(RwLock::new(None));
        let manifest = manual_manifest_provider(inputs, status_rx.clone(), manifest_override.clone());
        let health = health_provider(status_rx.clone());
        let discovery_config = crate::discovery_server::DiscoveryServerConfig {
            private_network_access: options.private_network_access,
            // The pages that may open the WebSocket may also read the manifest; no others.
            allowed_origins: (!web_origins.is_empty()).then(|| web_origins.clone()),
            ..Default::default()
        };
        let election: Arc<RwLock<Option<ElectionProvider>>> = Arc::new(RwLock::new(None));
        let sampler = MonitorSampler::new(&urls.monitor_url, timings.probe_timeout);
        let sample_slot = sampler.as_ref().map(MonitorSampler::slot).unwrap_or_default();
        let status_report =
            status_provider(status_rx.clone(), urls.clone(), manifest.clone(), election.clone(), sample_slot);
        let mut discovery_server = DiscoveryServer::with_providers(cert.clone(), manifest.clone(), health)
            .config(discovery_config)
            .status(status_report.clone());
        if let Ok(pem) = std::fs::read_to_string(&material.ca_file) {
            discovery_server = discovery_server.ca_pem(pem);
        }
        let discovery = match discovery_server.serve_std(discovery_listener) {
            Ok(handle) => handle,
            Err(err) => {
                process.stop(timings.stop_grace).await;
                return Err(err.into());
            }
        };

        let monitor = match Monitor::new(SocketAddr::new(monitor_connect, ports.monitor), timings.probe_timeout) {
            Ok(monitor) => monitor,
            Err(err) => {
                process.stop(timings.stop_grace).await;
                return Err(LeafError::Start(err));
            }
        };
        let (commands_tx, commands_rx) = mpsc::channel(16);
        let supervisor = Supervisor {
            process: Some(process),
            spec,
            restart_config: Some(restart_config),
            monitor,
            client_addr: SocketAddr::new(client_connect, ports.client),
            websocket_addr: SocketAddr::new(net::connect_address(hosts.lan_bind), ports.websocket),
            ready: ready_check,
            discovery: Some(discovery),
            status: status_tx.clone(),
            commands: commands_rx,
            budget: {
                let mut budget = RestartBudget::new(options.restart);
                budget.on_ready(std::time::Instant::now());
                budget
            },
            timings,
            has_backbone,
        };
        let supervisor = tokio::spawn(supervisor.run());
        let sampler_task = tokio::spawn(async move {
            if let Some(sampler) = sampler {
                sampler.run(Duration::from_secs(1)).await;
            }
        });
        let tls_task = tokio::spawn(renewal::tls_upkeep(
            prepared,
            options.trust_store.clone(),
            status_tx.clone(),
            cert,
            commands_tx.clone(),
            timings.renewal_min_interval,
        ));
        tracing::info!(
            node_id = %node_id,
            client_url = %urls.client_url,
            wss_url = %urls.wss_url,
            discovery_url = %urls.discovery_url,
            backbone = ?backbone_servers,
            "leaf started"
        );
        Ok(LeafNode {
            node_id,
            urls,
            ca_cert_file: material.ca_file,
            status_tx,
            status_rx,
            commands: commands_tx,
            supervisor: tokio::sync::Mutex::new(Some(supervisor)),
            tls_task,
            runtime_dir: std::sync::Mutex::new(runtime_dir),
            manifest,
            manifest_override,
            election,
            status_report,
            sampler_task,
            timings,
        })
    }

    /// This start's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The listener URLs.
    pub fn urls(&self) -> &LeafUrls {
        &self.urls
    }

    /// The CA certificate clients should trust for the WSS and discovery listeners.
    pub fn ca_cert_file(&self) -> &Path {
        &self.ca_cert_file
    }

    /// The runtime directory.
    pub fn runtime_dir(&self) -> PathBuf {
        self.status_rx.borrow().runtime_dir.clone()
    }

    /// The latest status (never blocks).
    pub fn status(&self) -> LeafStatus {
        self.status_rx.borrow().clone()
    }

    /// A receiver that sees every status change (`changed().await`, `wait_for(..)`).
    pub fn watch(&self) -> watch::Receiver<LeafStatus> {
        self.status_rx.clone()
    }

    /// The manifest the discovery server serves right now (`None` while nats-server is
    /// not ready).
    pub fn manifest(&self) -> Option<LeaderManifest> {
        (self.manifest)()
    }

    /// Serves manifests from `provider` instead of the manual-mode manifest (used by the
    /// auto-leaf election); `None` restores the manual-mode manifest.
    pub fn set_manifest_provider(&self, provider: Option<ManifestProvider>) {
        let mut slot = self.manifest_override.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = provider;
    }

    /// Shows `provider`'s election view (namespace, members) on the status page (used by
    /// the auto-leaf election); `None` shows the leaf as a manual one.
    pub fn set_election_provider(&self, provider: Option<ElectionProvider>) {
        *self.election.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = provider;
    }

    /// What the status page and `/status.json` show right now (no I/O).
    pub fn status_report(&self) -> StatusReport {
        (self.status_report)()
    }

    /// Stops the leaf: the discovery server, then nats-server (SIGTERM, SIGKILL after the
    /// grace period), then removes the runtime directory (or the leaf's files in a given
    /// one). Idempotent; later calls return [`StopReport::AlreadyStopped`].
    pub async fn stop(&self) -> StopReport {
        let mut slot = self.supervisor.lock().await;
        let Some(mut task) = slot.take() else {
            return StopReport::AlreadyStopped;
        };
        self.tls_task.abort();
        self.sampler_task.abort();
        let (reply, outcome) = oneshot::channel();
        let budget = self.timings.stop_grace + Duration::from_secs(10);
        let outcome = if self.commands.send(Command::Stop { reply }).await.is_ok() {
            tokio::time::timeout(budget, outcome).await.ok().and_then(Result::ok)
        } else {
            None
        };
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            tracing::warn!("the leaf supervisor did not finish; aborting it");
            task.abort();
        }
        self.status_tx.send_if_modified(|status| {
            let stopped = status.state == LeafState::Stopped;
            if !stopped {
                status.state = LeafState::Stopped;
                status.bridge_state = kinopio::wire::manifest::BridgeState::Stopped;
                status.server_ready = false;
                status.process_id = None;
            }
            !stopped
        });
        self.runtime_dir.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).cleanup();
        tracing::info!(node_id = %self.node_id, "leaf stopped");
        StopReport::Stopped(outcome.unwrap_or(StopOutcome::Killed))
    }
}

impl Drop for LeafNode {
    fn drop(&mut self) {
        self.tls_task.abort();
        self.sampler_task.abort();
        if let Ok(mut slot) = self.supervisor.try_lock()
            && let Some(task) = slot.take()
        {
            tracing::warn!(node_id = %self.node_id, "leaf dropped without stop(); killing nats-server");
            // Dropping the task drops the process handle, which kills nats-server.
            task.abort();
        }
    }
}

/// The status report built from the cached status, manifest, election view and monitor
/// sample (no I/O).
fn status_provider(
    status: watch::Receiver<LeafStatus>,
    urls: LeafUrls,
    manifest: ManifestProvider,
    election: Arc<RwLock<Option<ElectionProvider>>>,
    sample: Arc<RwLock<Option<crate::status_page::MonitorSample>>>,
) -> StatusProvider {
    Arc::new(move || {
        let current = status.borrow().clone();
        let manifest = manifest();
        let election = election.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let election = election.and_then(|provider| provider());
        let sample = *sample.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        StatusReport::build(
            ReportInputs {
                status: &current,
                urls: &urls,
                manifest: manifest.as_ref(),
                election: election.as_ref(),
                sample: sample.as_ref(),
            },
            OffsetDateTime::now_utc(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_32_hex_and_fresh() {
        let a = new_node_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_node_id());
    }
}
