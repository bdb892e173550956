//! [`LeafNode::start`] in stages, each a function that takes what the previous ones
//! produced:
//!
//! 1. [`Plan::new`]: check the options (server name, files, backbone, hosts, ports) before
//!    anything is bound, written or run;
//! 2. [`bind_discovery`]: bind the discovery socket and keep it (no check-then-use race);
//! 3. [`provision`]: the runtime directory, the nats-server binary and the TLS material;
//! 4. [`write_server_config`]: render and write nats-server's config;
//! 5. [`ServerGuard::spawn`]: start nats-server, owned by a guard from here on;
//! 6. [`serve`] (run by [`ServerGuard::run`]): wait until nats-server is ready, fix its
//!    ports for restarts, build the URLs and status, serve discovery, set up the monitor;
//! 7. [`hand_over`]: give nats-server and the discovery server to the supervisor task.
//!
//! A failure in a stage before 5 leaves nothing running; from stage 5 on, the
//! [`ServerGuard`] stops nats-server before the error is returned (and kills it if the
//! start is cancelled). The runtime directory removes itself when it is dropped.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use super::error::{LeafError, ListenerKind};
use super::listeners::{Hosts, bind_error, check_distinct_ports, precheck_port, resolve_hosts, start_error};
use super::options::{LeafOptions, LeafTimings};
use super::providers::{health_provider, listener_urls, manifest_inputs, manual_manifest_provider};
use super::restart::RestartBudget;
use super::runtime_dir::{CONFIG_FILE, LAN_AUTHORIZATION_FILE, LOG_FILE, OUTPUT_FILE, RuntimeDir, TEMP_PREFIX};
use super::status::{LeafState, LeafStatus, LeafUrls, ListenerStatus, TlsStatus, TrustStatus, bridge_state};
use super::supervisor::Supervisor;
use super::{LOG_MAX_FILES, LOG_SIZE_LIMIT_BYTES, LeafNode, new_node_id, renewal};
use crate::binary::ResolvedBinary;
use crate::config::{self, BackboneAuth, LeafRemote, Listen, LogSettings, ServerConfig, WebsocketTls};
use crate::discovery_server::{DiscoveryServer, DiscoveryServerHandle, ManifestProvider, WELL_KNOWN_PATH};
use crate::net;
use crate::process::{self, BoundPorts, Monitor, ReadyCheck, ServerProcess, SpawnSpec};
use crate::status_page::{ElectionProvider, MonitorSampler, StatusProvider};
use crate::tls::{self, PreparedTls, SwappableServerCert, TlsOptions, TrustState};
use kinopio::wire::manifest::ListenerUrls;

/// Runs the stages (see the module docs).
pub(super) async fn start(options: LeafOptions) -> Result<LeafNode, LeafError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plan = Plan::new(&options)?;
    start_planned(options, plan).await
}

/// Stages 2 to 7.
async fn start_planned(options: LeafOptions, plan: Plan) -> Result<LeafNode, LeafError> {
    let timings = options.timings;
    let (discovery_listener, discovery_addr) = bind_discovery(&plan, &options)?;
    let provisioned = provision(&options, &plan).await?;
    let launch = write_server_config(&options, &plan, &provisioned, discovery_addr)?;
    let server = ServerGuard::spawn(&launch.spec, timings.stop_grace).await?;
    let (process, serving) = server
        .run(async |process: &mut ServerProcess| {
            serve(process, &options, &plan, &provisioned, &launch, discovery_listener, discovery_addr).await
        })
        .await?;
    Ok(hand_over(process, options, plan, provisioned, launch, serving))
}

/// Stage 1: what the options ask for, checked before anything is bound, written or run.
#[derive(Debug)]
struct Plan {
    /// This start's node id (manifest, status, default server name).
    node_id: String,
    /// nats-server's `server_name`.
    server_name: String,
    /// The leafnode remote, if a backbone was given.
    backbone: Option<LeafRemote>,
    /// The backbone URLs as published (credentials removed).
    backbone_servers: Vec<String>,
    /// Where the LAN listeners bind and what they advertise.
    hosts: Hosts,
    /// Each listener's bind address and the port asked for, to name it in errors.
    given_ports: [(ListenerKind, IpAddr, Option<u16>); 4],
}

impl Plan {
    fn new(options: &LeafOptions) -> Result<Plan, LeafError> {
        let node_id = new_node_id();
        let server_name = options.name.clone().unwrap_or_else(|| format!("kinopio-leaf-{}", &node_id[..8]));
        config::validate_server_name(&server_name)?;
        require_file("backbone CA file", &options.backbone_ca_file)?;
        require_file("backbone credentials file", &options.backbone_credentials)?;
        require_file("LAN authorization file", &options.lan_authorization)?;
        let auth = backbone_auth(options)?;
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
        let backbone_servers = backbone.as_ref().map(|remote| remote.urls().to_vec()).unwrap_or_default();
        let hosts = resolve_hosts(options)?;
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
        Ok(Plan { node_id, server_name, backbone, backbone_servers, hosts, given_ports })
    }
}

/// Stage 2: the discovery socket is ours: bind it now and keep it.
fn bind_discovery(plan: &Plan, options: &LeafOptions) -> Result<(std::net::TcpListener, SocketAddr), LeafError> {
    let addr = SocketAddr::new(plan.hosts.lan_bind, options.discovery_port.unwrap_or(0));
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| bind_error(ListenerKind::Discovery, addr, source))?;
    let bound =
        listener.local_addr().map_err(|source| LeafError::Bind { listener: ListenerKind::Discovery, addr, source })?;
    Ok((listener, bound))
}

/// Stage 3's result: where the leaf's files go, what runs, and the certificate it serves.
struct Provisioned {
    /// Config, logs, ports file and certificate; removed when dropped.
    runtime_dir: RuntimeDir,
    /// The nats-server binary.
    binary: ResolvedBinary,
    /// The TLS material (renewed later when generated).
    prepared: PreparedTls,
    /// The certificate the WSS and discovery listeners serve, swappable on renewal.
    cert: Arc<SwappableServerCert>,
}

/// Stage 3: the runtime directory, the nats-server binary and the TLS material.
async fn provision(options: &LeafOptions, plan: &Plan) -> Result<Provisioned, LeafError> {
    let runtime_dir = RuntimeDir::create(options.runtime_dir.as_deref())?;
    let binary = crate::binary::resolve(&options.effective_binary_options()).await?;
    tracing::info!(path = %binary.path.display(), version = %binary.version, source = ?binary.source, "using nats-server");
    let tls_options = TlsOptions {
        cert_file: options.cert_file.clone(),
        key_file: options.key_file.clone(),
        ca_file: options.ca_file.clone(),
        ca_dir: options.ca_dir(),
        runtime_dir: runtime_dir.path().to_path_buf(),
        advertised_hosts: plan.hosts.san_hosts.clone(),
        leaf_lifetime: options.leaf_cert_lifetime,
        namespace_ca: options.namespace_ca.clone(),
    };
    let prepared = tokio::task::spawn_blocking(move || tls::prepare(&tls_options, OffsetDateTime::now_utc()))
        .await
        .map_err(|err| LeafError::task("TLS preparation", err))??;
    let cert = SwappableServerCert::new(prepared.certified_key()?);
    Ok(Provisioned { runtime_dir, binary, prepared, cert })
}

/// Stage 4's result: how to run nats-server and how to tell it is ready.
struct Launch {
    /// The config as written; its ports are fixed once nats-server has bound them.
    server_config: ServerConfig,
    /// What to run.
    spec: SpawnSpec,
    /// What "ready" means for this config.
    ready_check: ReadyCheck,
}

/// Stage 4: render nats-server's config and write it (with a private copy of the LAN
/// authorization file beside it: nats-server resolves includes relative to the config).
fn write_server_config(
    options: &LeafOptions,
    plan: &Plan,
    provisioned: &Provisioned,
    discovery_addr: SocketAddr,
) -> Result<Launch, LeafError> {
    let runtime_dir = &provisioned.runtime_dir;
    let material = provisioned.prepared.material();
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
    let server_config = ServerConfig {
        server_name: plan.server_name.clone(),
        client: Listen::new(options.client_host, options.client_port),
        monitor: Listen::new(options.monitor_host, options.monitor_port),
        websocket: Listen::new(plan.hosts.lan_bind, options.websocket_port),
        websocket_tls: WebsocketTls { cert_file: material.cert_file.clone(), key_file: material.key_file.clone() },
        websocket_allowed_origins: launch_origins(options, plan, discovery_addr)?,
        // A secured namespace's leaf serves only clients that hold its secret.
        client_token: options.namespace_ca.as_ref().map(|ca| ca.lan_token().to_owned()),
        authorization_file: lan_authorization,
        backbone: plan.backbone.clone(),
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
        binary: provisioned.binary.path.clone(),
        config_file,
        output_file: runtime_dir.file(OUTPUT_FILE),
        working_dir: runtime_dir.path().to_path_buf(),
    };
    let ready_check = ReadyCheck {
        ports_file_dir: runtime_dir.path().to_path_buf(),
        client_host: options.client_host,
        websocket_host: plan.hosts.lan_bind,
        monitor_host: options.monitor_host,
        log_files: vec![runtime_dir.file(OUTPUT_FILE), runtime_dir.file(LOG_FILE)],
        // nats-server is ready ~15 ms after spawning; a coarse poll would add most of
        // its interval to every start and failover (measured by `kinopio bench`).
        poll_interval: Duration::from_millis(5),
        probe_timeout: options.timings.probe_timeout,
    };
    Ok(Launch { server_config, spec, ready_check })
}

/// Owns nats-server from the moment it is spawned until the supervisor takes it (in the
/// manner of mini-redis' `DbDropGuard`): when a later stage fails, [`run`](Self::run)
/// stops it before returning the error; when the start is cancelled, dropping the guard
/// stops it in the background (or kills it at once outside a tokio runtime).
#[derive(Debug)]
struct ServerGuard {
    /// `Some` until `run` returns (stopped or handed over) or the guard is dropped.
    process: Option<ServerProcess>,
    /// Time nats-server gets to exit after SIGTERM.
    stop_grace: Duration,
}

impl ServerGuard {
    /// Stage 5: starts nats-server; a failure to start leaves nothing to stop.
    async fn spawn(spec: &SpawnSpec, stop_grace: Duration) -> Result<ServerGuard, LeafError> {
        let process = ServerProcess::spawn(spec).await.map_err(LeafError::Start)?;
        Ok(ServerGuard { process: Some(process), stop_grace })
    }

    /// Runs the later stages on the process; if they fail, stops nats-server (SIGTERM,
    /// SIGKILL after the grace period) and only then returns their error. On success the
    /// process is handed back: the guard no longer stops it.
    async fn run<T>(
        mut self,
        stages: impl AsyncFnOnce(&mut ServerProcess) -> Result<T, LeafError>,
    ) -> Result<(ServerProcess, T), LeafError> {
        let Some(process) = self.process.as_mut() else {
            unreachable!("a guard holds nats-server until `run` returns or the guard is dropped")
        };
        let result = stages(process).await;
        let process = self.process.take();
        match (result, process) {
            (Ok(value), Some(process)) => Ok((process, value)),
            (Err(err), Some(process)) => {
                process.stop(self.stop_grace).await;
                Err(err)
            }
            (_, None) => unreachable!("only `run` and `drop` take the process"),
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let Some(process) = self.process.take() else { return };
        tracing::warn!(pid = process.pid(), "the leaf's start was cancelled; stopping nats-server");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(process.stop(self.stop_grace));
            }
            // Dropping the handle kills the process (`kill_on_drop`).
            Err(_) => drop(process),
        }
    }
}

/// Stage 6's result: what the running leaf is made of, besides the process.
struct Serving {
    ports: BoundPorts,
    restart_config: String,
    urls: LeafUrls,
    /// The same URLs as the wire carries them.
    listeners: ListenerUrls,
    client_connect: IpAddr,
    status_tx: Arc<watch::Sender<LeafStatus>>,
    status_rx: watch::Receiver<LeafStatus>,
    manifest: ManifestProvider,
    manifest_override: Arc<RwLock<Option<ManifestProvider>>>,
    discovery: DiscoveryServerHandle,
    monitor: Monitor,
    /// The election view `leaf auto` shows on the status page.
    election: Arc<RwLock<Option<ElectionProvider>>>,
    /// What the status page and `/status.json` show.
    status_report: StatusProvider,
    /// Samples nats-server's monitor for the status page (run in stage 7).
    sampler: Option<MonitorSampler>,
}

/// Stage 6: waits until nats-server is ready, fixes its ports for restarts, builds the
/// URLs and the first status, serves discovery and sets up the monitor client.
async fn serve(
    process: &mut ServerProcess,
    options: &LeafOptions,
    plan: &Plan,
    provisioned: &Provisioned,
    launch: &Launch,
    discovery_listener: std::net::TcpListener,
    discovery_addr: SocketAddr,
) -> Result<Serving, LeafError> {
    let timings = options.timings;
    let ports = process::wait_ready(process, &launch.ready_check, timings.ready_timeout).await.map_err(|err| {
        let err = start_error(err, &plan.given_ports);
        tracing::warn!(error = %err, "failed to start the leaf");
        err
    })?;
    // Restarts must come back on the same, advertised ports. The running process keeps
    // its own config file until then: nats-server refuses to reload a config whose
    // ports differ from the ones it started with (`-1`).
    let mut restart_config = launch.server_config.clone();
    restart_config.client.port = Some(ports.client);
    restart_config.monitor.port = Some(ports.monitor);
    restart_config.websocket.port = Some(ports.websocket);
    let restart_config = config::render(&restart_config)?;

    let hosts = &plan.hosts;
    let client_connect = net::connect_address(options.client_host);
    let monitor_connect = net::connect_address(options.monitor_host);
    let urls = LeafUrls {
        client_url: format!("nats://{}", net::host_port(&client_connect.to_string(), ports.client)),
        wss_url: format!("wss://{}", net::host_port(&hosts.advertised, ports.websocket)),
        discovery_url: format!("https://{}{WELL_KNOWN_PATH}", net::host_port(&hosts.advertised, discovery_addr.port())),
        monitor_url: format!("http://{}", net::host_port(&monitor_connect.to_string(), ports.monitor)),
        advertised_host: hosts.advertised.clone(),
    };
    let material = provisioned.prepared.material();
    let has_backbone = !plan.backbone_servers.is_empty();
    let trust = match &provisioned.prepared {
        PreparedTls::Generated(_) => TrustStatus::Pending,
        PreparedTls::Supplied(_) => TrustStatus::Done(TrustState::External),
    };
    let initial = LeafStatus {
        state: LeafState::Running,
        node_id: plan.node_id.clone(),
        server_name: plan.server_name.clone(),
        client: listener(urls.client_url.clone(), options.client_host, ports.client),
        websocket: listener(urls.wss_url.clone(), hosts.lan_bind, ports.websocket),
        discovery: listener(urls.discovery_url.clone(), hosts.lan_bind, discovery_addr.port()),
        monitor: listener(urls.monitor_url.clone(), options.monitor_host, ports.monitor),
        bridge_state: bridge_state(LeafState::Running, has_backbone, true, true, None),
        bridge_server: None,
        backbone_servers: plan.backbone_servers.clone(),
        server_ready: true,
        process_id: Some(process.pid()),
        restarts: 0,
        last_error: None,
        tls: TlsStatus { material: material.clone(), trust, renewals: 0 },
        binary: provisioned.binary.clone(),
        runtime_dir: provisioned.runtime_dir.path().to_path_buf(),
        log_file: provisioned.runtime_dir.file(LOG_FILE),
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let status_tx = Arc::new(status_tx);

    let listeners = listener_urls(&urls)?;
    let inputs = manifest_inputs(&plan.node_id, listeners.clone(), &plan.backbone_servers, &material.ca_cert_sha256);
    let manifest_override: Arc<RwLock<Option<ManifestProvider>>> = Arc::new(RwLock::new(None));
    let manifest = manual_manifest_provider(inputs, status_rx.clone(), manifest_override.clone());
    let health = health_provider(status_rx.clone());
    let web_origins = launch_origins(options, plan, discovery_addr)?;
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
        super::status_provider(status_rx.clone(), urls.clone(), manifest.clone(), election.clone(), sample_slot);
    let mut discovery_server = DiscoveryServer::with_providers(provisioned.cert.clone(), manifest.clone(), health)
        .config(discovery_config)
        .status(status_report.clone());
    if let Ok(pem) = std::fs::read_to_string(&material.ca_file) {
        discovery_server = discovery_server.ca_pem(pem);
    }
    let discovery = discovery_server.serve_std(discovery_listener)?;
    let monitor = Monitor::new(SocketAddr::new(monitor_connect, ports.monitor), timings.probe_timeout)
        .map_err(LeafError::Start)?;
    Ok(Serving {
        ports,
        restart_config,
        urls,
        listeners,
        client_connect,
        status_tx,
        status_rx,
        manifest,
        manifest_override,
        discovery,
        monitor,
        election,
        status_report,
        sampler,
    })
}

/// Stage 7: gives nats-server and the discovery server to the supervisor task, starts
/// certificate upkeep, and assembles the [`LeafNode`]. Cannot fail.
fn hand_over(
    process: ServerProcess,
    options: LeafOptions,
    plan: Plan,
    provisioned: Provisioned,
    launch: Launch,
    serving: Serving,
) -> LeafNode {
    let timings: LeafTimings = options.timings;
    let Provisioned { runtime_dir, prepared, cert, .. } = provisioned;
    let Serving {
        ports,
        restart_config,
        urls,
        listeners,
        client_connect,
        status_tx,
        status_rx,
        manifest,
        manifest_override,
        discovery,
        monitor,
        election,
        status_report,
        sampler,
    } = serving;
    let ca_cert_file = prepared.material().ca_file;
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let supervisor = Supervisor {
        process: Some(process),
        spec: launch.spec,
        restart_config: Some(restart_config),
        monitor,
        client_addr: SocketAddr::new(client_connect, ports.client),
        websocket_addr: SocketAddr::new(net::connect_address(plan.hosts.lan_bind), ports.websocket),
        ready: launch.ready_check,
        discovery: Some(discovery),
        status: status_tx.clone(),
        commands: commands_rx,
        budget: {
            let mut budget = RestartBudget::new(options.restart);
            budget.on_ready(std::time::Instant::now());
            budget
        },
        timings,
        has_backbone: !plan.backbone_servers.is_empty(),
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
        node_id = %plan.node_id,
        client_url = %urls.client_url,
        wss_url = %urls.wss_url,
        discovery_url = %urls.discovery_url,
        backbone = ?plan.backbone_servers,
        "leaf started"
    );
    LeafNode {
        node_id: plan.node_id,
        urls,
        listeners,
        ca_cert_file,
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
    }
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
/// The web origins of this start (its own HTTPS origin plus the allowed ones).
fn launch_origins(options: &LeafOptions, plan: &Plan, discovery_addr: SocketAddr) -> Result<Vec<String>, LeafError> {
    allowed_origins(options, &plan.hosts.advertised, discovery_addr.port())
}

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

#[cfg(all(test, target_os = "linux"))]
mod tests;
