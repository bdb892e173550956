//! The HTTPS discovery server: serves the leader manifest and a health report over TLS with
//! the leaf certificate, with CORS headers so browser pages can fetch it.
//!
//! Routes (query strings are ignored):
//! - `GET`/`HEAD` `/.well-known/kinopio-leader.json`, `/manifest.json`, `/`: the manifest
//!   from the [`ManifestProvider`]; `503` with a JSON error while it returns `None`.
//!   `/` asked for by a browser navigating to it (`Accept: text/html`) is the status page
//!   instead, when a [`StatusProvider`] is set (the reference's clients fetch `/` as JSON).
//! - `GET`/`HEAD` `/status.json`, `/.well-known/kinopio-status.json`: the
//!   [`StatusReport`](crate::status_page::StatusReport), when a [`StatusProvider`] is set.
//! - `GET`/`HEAD` `/ca.pem`: the CA certificate clients should trust, when one is set.
//! - `GET`/`HEAD` `/healthz`: the [`HealthReport`] from the [`HealthProvider`]; `200` when
//!   `ok`, else `503`.
//! - `OPTIONS` on those paths: `204` CORS preflight.
//! - other methods: `405` with `Allow`; other paths: `404`. Every error body is JSON.
//!
//! CORS: with [`DiscoveryServerConfig::allowed_origins`] set, only pages from those origins
//! may read the responses (the `Origin` is echoed back); a page from any other origin gets no
//! `Access-Control-Allow-Origin` and its browser refuses it the body. Unset, any page may
//! (`*`).
//!
//! Providers are called on every request and must be cheap (read state that background
//! tasks keep up to date; no network I/O). The certificate comes from a
//! [`SwappableServerCert`], so a renewed certificate is picked up by new connections
//! without a restart. Each connection runs in its own task: a failed TLS handshake, garbage
//! or a stalled peer affects only that connection.
//!
//! ```no_run
//! # async fn example(cert: std::sync::Arc<kinopio_leaf::tls::SwappableServerCert>) -> Result<(), Box<dyn std::error::Error>> {
//! use kinopio_leaf::discovery_server::{DiscoveryServer, HealthReport};
//! let handle = DiscoveryServer::new(cert, || None, || HealthReport::new(true))
//!     .bind("127.0.0.1:0".parse()?)
//!     .await?;
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::status_page::{CA_PATH, STATUS_PAGE_HTML, STATUS_PATH, StatusProvider, WELL_KNOWN_STATUS_PATH};
use crate::tls::SwappableServerCert;
use kinopio::wire::manifest::LeaderManifest;

/// The path kinopio clients fetch.
pub const WELL_KNOWN_PATH: &str = "/.well-known/kinopio-leader.json";
/// The path kinopio-hub 0.1.1 clients fetch.
pub const LEGACY_MANIFEST_PATH: &str = "/manifest.json";
/// The health path.
pub const HEALTH_PATH: &str = "/healthz";

const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";

/// Returns the current manifest, or `None` while the leaf is starting.
pub type ManifestProvider = Arc<dyn Fn() -> Option<LeaderManifest> + Send + Sync>;

/// Returns the current health (of nats-server, as tracked by the caller).
pub type HealthProvider = Arc<dyn Fn() -> HealthReport + Send + Sync>;

/// A manifest provider reading the latest value of a watch channel.
pub fn manifest_from_watch(receiver: watch::Receiver<Option<LeaderManifest>>) -> ManifestProvider {
    Arc::new(move || receiver.borrow().clone())
}

/// The body of `/healthz`: `{"ok": bool, ...details}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// True when the leaf (nats-server) is healthy.
    pub ok: bool,
    /// Extra fields, e.g. `"bridgeState"` or `"error"`.
    #[serde(flatten)]
    details: Map<String, Value>,
}

impl HealthReport {
    /// A report with no details.
    pub fn new(ok: bool) -> Self {
        HealthReport { ok, details: Map::new() }
    }

    /// Adds a detail field (an `ok` key is ignored: `ok` is the field above).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let key = key.into();
        if key != "ok" {
            self.details.insert(key, value.into());
        }
        self
    }

    /// The detail fields.
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }
}

/// Timeouts and limits of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryServerConfig {
    /// A TLS handshake that takes longer is dropped (short: a stranger must not be able to
    /// hold connections open cheaply).
    pub handshake_timeout: Duration,
    /// A request whose headers take longer to arrive is dropped.
    pub header_read_timeout: Duration,
    /// After [`DiscoveryServerHandle::shutdown`], connections still open after this long
    /// are closed forcibly.
    pub shutdown_grace: Duration,
    /// Connections beyond this many are closed at once.
    pub max_connections: usize,
    /// Connections from one source address beyond this many are closed at once, so one
    /// host cannot take every slot.
    pub max_connections_per_source: usize,
    /// Answer Private Network Access preflights (`Access-Control-Allow-Private-Network:
    /// true`), letting public web pages reach this private-address server. Off by default.
    pub private_network_access: bool,
    /// Web origins (`https://host:port`) whose pages may read the responses; `None`: any
    /// page may (`Access-Control-Allow-Origin: *`).
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for DiscoveryServerConfig {
    fn default() -> Self {
        DiscoveryServerConfig {
            handshake_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 256,
            max_connections_per_source: 16,
            private_network_access: false,
            allowed_origins: None,
        }
    }
}

crate::error::error_with_kind! {
    /// Why the server could not start.
    #[derive(Debug, thiserror::Error)]
    pub enum DiscoveryServerError => DiscoveryServerErrorKind {
        /// The address could not be bound.
        #[error(
            "could not bind the discovery server to {addr}: {source}; choose another port or stop the process using it"
        )]
        Bind {
            /// The address.
            addr: SocketAddr,
            /// The underlying error.
            #[source]
            source: std::io::Error,
        },
        /// A supplied listener is unusable.
        #[error("the listener given to the discovery server is unusable: {0}")]
        Listener(#[source] std::io::Error),
        /// The TLS configuration was rejected.
        #[error("could not configure TLS for the discovery server: {0}")]
        Tls(#[source] rustls::Error),
    }
}

/// Builder of the discovery server.
pub struct DiscoveryServer {
    cert: Arc<SwappableServerCert>,
    manifest: ManifestProvider,
    health: HealthProvider,
    status: Option<StatusProvider>,
    ca_pem: Option<Bytes>,
    config: DiscoveryServerConfig,
}

impl fmt::Debug for DiscoveryServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryServer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl DiscoveryServer {
    /// A server presenting `cert`, serving `manifest()` and `health()`.
    pub fn new(
        cert: Arc<SwappableServerCert>,
        manifest: impl Fn() -> Option<LeaderManifest> + Send + Sync + 'static,
        health: impl Fn() -> HealthReport + Send + Sync + 'static,
    ) -> Self {
        Self::with_providers(cert, Arc::new(manifest), Arc::new(health))
    }

    /// Like [`DiscoveryServer::new`] with already shared providers.
    pub fn with_providers(cert: Arc<SwappableServerCert>, manifest: ManifestProvider, health: HealthProvider) -> Self {
        DiscoveryServer { cert, manifest, health, status: None, ca_pem: None, config: DiscoveryServerConfig::default() }
    }

    /// Serves the status report at `/status.json` and the status page at `/` (for browsers).
    pub fn status(mut self, provider: StatusProvider) -> Self {
        self.status = Some(provider);
        self
    }

    /// Serves `pem` (the CA certificate clients should trust; public) at `/ca.pem`.
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(Bytes::from(pem.into()));
        self
    }

    /// Replaces the timeouts and limits.
    pub fn config(mut self, config: DiscoveryServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving.
    ///
    /// # Errors
    ///
    /// [`DiscoveryServerError::Bind`] when the address cannot be bound,
    /// [`DiscoveryServerError::Tls`] when the TLS configuration is rejected.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing serves until it returns.
    pub async fn bind(self, addr: SocketAddr) -> Result<DiscoveryServerHandle, DiscoveryServerError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| DiscoveryServerError::Bind { addr, source })?;
        self.serve(listener)
    }

    /// Serves on an already bound std listener (made non-blocking here). Must be called
    /// inside a tokio runtime.
    pub fn serve_std(self, listener: std::net::TcpListener) -> Result<DiscoveryServerHandle, DiscoveryServerError> {
        listener.set_nonblocking(true).map_err(DiscoveryServerError::Listener)?;
        let listener = TcpListener::from_std(listener).map_err(DiscoveryServerError::Listener)?;
        self.serve(listener)
    }

    /// Serves on an already bound tokio listener. Must be called inside a tokio runtime.
    pub fn serve(self, listener: TcpListener) -> Result<DiscoveryServerHandle, DiscoveryServerError> {
        let local_addr = listener.local_addr().map_err(DiscoveryServerError::Listener)?;
        let tls = tls_config(self.cert.clone())?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(ServerState {
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            manifest: self.manifest,
            health: self.health,
            status: self.status,
            ca_pem: self.ca_pem,
            config: self.config,
        });
        let task = tokio::spawn(accept_loop(listener, state, shutdown_rx));
        tracing::info!(%local_addr, "discovery server listening");
        Ok(DiscoveryServerHandle { local_addr, cert: self.cert, shutdown_tx, task: Some(task) })
    }
}

/// Builds the rustls server configuration (ring provider, HTTP/1.1 ALPN).
fn tls_config(cert: Arc<SwappableServerCert>) -> Result<rustls::ServerConfig, DiscoveryServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(DiscoveryServerError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What [`DiscoveryServerHandle::shutdown`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections still open after the grace period, closed forcibly.
    pub forced_connections: usize,
}

/// A running discovery server. Dropping it stops accepting and closes connections without
/// waiting; [`DiscoveryServerHandle::shutdown`] waits for in-flight requests.
#[derive(Debug)]
pub struct DiscoveryServerHandle {
    local_addr: SocketAddr,
    cert: Arc<SwappableServerCert>,
    shutdown_tx: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<ShutdownReport>>,
}

impl DiscoveryServerHandle {
    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://<host>:<port>/.well-known/kinopio-leader.json` for an advertised `host`.
    pub fn well_known_url(&self, host: &str) -> String {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("https://[{host}]:{}{WELL_KNOWN_PATH}", self.local_addr.port())
        } else {
            format!("https://{host}:{}{WELL_KNOWN_PATH}", self.local_addr.port())
        }
    }

    /// The certificate slot; [`SwappableServerCert::swap`] renews it for new connections.
    pub fn certificate(&self) -> &Arc<SwappableServerCert> {
        &self.cert
    }

    /// True while the server task runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Stops accepting, lets in-flight requests finish (up to the configured grace period,
    /// then closes what is left) and waits for the server task.
    ///
    /// # Cancel safety
    ///
    /// Shutdown is signalled first: if the future is dropped, the server still stops, but
    /// the wait for in-flight requests is abandoned.
    pub async fn shutdown(mut self) -> ShutdownReport {
        let _ = self.shutdown_tx.send(true);
        let Some(task) = self.task.take() else {
            return ShutdownReport { forced_connections: 0 };
        };
        match task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::warn!(error = %err, "discovery server task failed");
                ShutdownReport { forced_connections: 0 }
            }
        }
    }
}

impl Drop for DiscoveryServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

struct ServerState {
    acceptor: TlsAcceptor,
    manifest: ManifestProvider,
    health: HealthProvider,
    status: Option<StatusProvider>,
    ca_pem: Option<Bytes>,
    config: DiscoveryServerConfig,
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
) -> ShutdownReport {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    let per_source = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<std::net::IpAddr, usize>::new()));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small responses right after a TLS record would otherwise wait for the
                    // peer's delayed ACK (~40 ms).
                    let _ = stream.set_nodelay(true);
                    let Some(source) = SourceSlot::take(&per_source, peer.ip(), state.config.max_connections_per_source)
                    else {
                        tracing::debug!(%peer, "too many discovery connections from this address; closing a new one");
                        continue;
                    };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many discovery connections; closing a new one");
                        continue;
                    };
                    let state = state.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        serve_connection(stream, peer, state, shutdown).await;
                        drop(permit);
                        drop(source);
                    });
                }
                Err(err) => {
                    // e.g. too many open files: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "discovery server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let open = connections.len();
    tracing::debug!(open, "discovery server stopping");
    let drained =
        tokio::time::timeout(state.config.shutdown_grace, async { while connections.join_next().await.is_some() {} })
            .await;
    let forced_connections = match drained {
        Ok(()) => 0,
        Err(_) => {
            let left = connections.len();
            connections.shutdown().await;
            tracing::warn!(left, "closed discovery connections that outlived the shutdown grace period");
            left
        }
    };
    tracing::info!("discovery server stopped");
    ShutdownReport { forced_connections }
}

/// One connection's place in the per-source count; released on drop.
struct SourceSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl SourceSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
        limit: usize,
    ) -> Option<SourceSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SourceSlot { counts: counts.clone(), ip })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    if *shutdown.borrow() {
        return;
    }
    let handshake = tokio::time::timeout(state.config.handshake_timeout, state.acceptor.accept(stream));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "discovery TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "discovery TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.changed() => return,
    };

    let service_state = state.clone();
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let mut response = respond(&request, &service_state);
        if service_state.config.private_network_access {
            response.headers_mut().insert("access-control-allow-private-network", HeaderValue::from_static("true"));
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(state.config.header_read_timeout).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "discovery connection ended with an error");
    }
}

/// Which resource a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Manifest,
    Health,
    Status,
    StatusPage,
    Ca,
}

/// The resource at `path`; `/` is the status page for a browser navigating to it.
fn resource<B>(request: &Request<B>, state: &ServerState) -> Option<Resource> {
    match request.uri().path() {
        "/" if state.status.is_some() && wants_html(request) => Some(Resource::StatusPage),
        WELL_KNOWN_PATH | LEGACY_MANIFEST_PATH | "/" => Some(Resource::Manifest),
        HEALTH_PATH => Some(Resource::Health),
        STATUS_PATH | WELL_KNOWN_STATUS_PATH if state.status.is_some() => Some(Resource::Status),
        CA_PATH if state.ca_pem.is_some() => Some(Resource::Ca),
        _ => None,
    }
}

/// True when the request's `Accept` names `text/html` (a browser's navigation does; a
/// script's `fetch` and the 0.1.1 clients do not).
fn wants_html<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("text/html")))
}

/// Answers one request.
fn respond<B>(request: &Request<B>, state: &ServerState) -> Response<Full<Bytes>> {
    let mut response = respond_inner(request, state);
    cors(&mut response, request, &state.config);
    response
}

fn respond_inner<B>(request: &Request<B>, state: &ServerState) -> Response<Full<Bytes>> {
    let method = request.method();
    let path = request.uri().path();
    tracing::trace!(%method, path, "discovery request");
    let Some(resource) = resource(request, state) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &error_body("not_found", &format!("no resource at {path}; the manifest is at {WELL_KNOWN_PATH}")),
        );
    };
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        Method::OPTIONS => return preflight(),
        _ => {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body("method_not_allowed", &format!("{method} is not supported; use {ALLOWED_METHODS}")),
            );
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            return response;
        }
    };
    let response = match resource {
        Resource::Manifest => match (state.manifest)() {
            Some(manifest) => bytes_response(StatusCode::OK, manifest.to_json_bytes()),
            None => {
                let mut response = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &error_body("starting", "the leaf is starting; retry in a moment"),
                );
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        },
        Resource::Health => {
            let report = (state.health)();
            let status = if report.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json_response(status, &report)
        }
        Resource::Status => match &state.status {
            Some(provider) => json_response(StatusCode::OK, &provider()),
            None => json_response(StatusCode::NOT_FOUND, &error_body("not_found", "no status here")),
        },
        Resource::StatusPage => {
            let mut response = bytes_response(StatusCode::OK, STATUS_PAGE_HTML.as_bytes().to_vec());
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            headers.insert(header::VARY, HeaderValue::from_static("Accept"));
            if let Ok(policy) = HeaderValue::from_str(&page_policy()) {
                headers.insert(header::CONTENT_SECURITY_POLICY, policy);
            }
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            response
        }
        Resource::Ca => {
            let pem = state.ca_pem.clone().unwrap_or_default();
            let mut response = bytes_response(StatusCode::OK, pem.to_vec());
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
            response
        }
    };
    if head { strip_body(response) } else { response }
}

/// The status page's Content-Security-Policy: nothing from elsewhere; only its own inline
/// script (by hash) and style, and fetches to this origin.
fn page_policy() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| {
            let script = STATUS_PAGE_HTML
                .split_once("<script>")
                .and_then(|(_, rest)| rest.split_once("</script>"))
                .map_or("", |(script, _)| script);
            let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script.as_bytes()));
            format!(
                "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; connect-src 'self'; \
                 img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
        })
        .clone()
}

/// Sets `Access-Control-Allow-Origin`: `*` without an origin list; the request's `Origin`
/// when it is in the list; nothing otherwise (the browser then refuses the page the body).
fn cors<B>(response: &mut Response<Full<Bytes>>, request: &Request<B>, config: &DiscoveryServerConfig) {
    let headers = response.headers_mut();
    let Some(allowed) = &config.allowed_origins else {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        return;
    };
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let origin = request.headers().get(header::ORIGIN);
    if let Some(origin) = origin.filter(|origin| origin.to_str().is_ok_and(|o| allowed.iter().any(|a| a == o))) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    } else {
        headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    }
}

fn error_body(error: &str, message: &str) -> Value {
    serde_json::json!({ "error": error, "message": message })
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    // Serialising a `Value` or a derived struct of plain fields cannot fail.
    bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

fn bytes_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    add_common_headers(&mut response);
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// The same response without a body (for `HEAD`), keeping `Content-Length`.
fn strip_body(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}

fn preflight() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    add_common_headers(&mut response);
    response.headers_mut().insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

fn add_common_headers(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}
