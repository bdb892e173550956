//! [`HubOptions`]: everything a [`Hub`](crate::Hub) can be configured with, as a chained
//! builder mirroring the reference's constructor options ([protocol notes](crate::wire::protocol#hub-options)), with durations kept exact
//! (the reference truncates them to whole seconds, turning a 0.5 s reconnect wait into a
//! busy loop).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Codec;
use crate::selection::SelectionMode;
use crate::server::{ServerUrl, ServerUrlError};

/// Where the hub finds a local leader (see [`HubOptions::discovery`]).
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Look for a local leader in the background (default true once discovery is set).
    pub enabled: bool,
    /// HTTPS URL of a leader manifest (`.../.well-known/kinopio-leader.json`).
    pub manifest_url: Option<String>,
    /// Browse mDNS (`_kinopio-hub._tcp.local.`) for a leader of this namespace.
    pub namespace: Option<String>,
    /// The secured namespace's secret: the manifest and the leader's `wss://` listener must
    /// then chain to the namespace CA derived from it (see [`crate::trust`]), and nothing
    /// else is trusted for discovery, so a host without the secret cannot make the hub
    /// switch. Follows the leader from device to device with no per-device CA.
    pub namespace_secret: Option<crate::trust::Secret>,
    /// A CA file (PEM): the manifest and the leader's `wss://` listener must chain to it,
    /// and (without a namespace secret) nothing else is trusted for discovery. Without either,
    /// the system roots are used: an open namespace, which a stranger on the LAN can hijack.
    pub ca_file: Option<PathBuf>,
    /// Also switch to a leader whose manifest offers only plaintext (`ws://`, or `nats://`
    /// on another host). Off by default: a manifest never moves the hub to plaintext unless
    /// this is set.
    pub allow_plaintext: bool,
    /// How often to look for a leader while none is in use.
    pub probe_interval: Duration,
    /// How long a discovered leader gets to accept a connection before it is skipped.
    pub local_switch_timeout: Duration,
    /// How long a fetched manifest is reused before it is fetched again.
    pub cache_ttl: Duration,
    /// Network interfaces (by name) to browse mDNS on; empty: all of them.
    pub interfaces: Vec<String>,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            enabled: true,
            manifest_url: None,
            namespace: None,
            namespace_secret: None,
            ca_file: None,
            allow_plaintext: false,
            probe_interval: Duration::from_secs(5),
            local_switch_timeout: Duration::from_millis(1500),
            cache_ttl: Duration::from_secs(5),
            interfaces: Vec::new(),
        }
    }
}

/// What a returned [`Variable::subscribe`](crate::Variable::subscribe) (and
/// [`Hub::subscribe_pattern`](crate::Hub::subscribe_pattern)) guarantees; see
/// [`HubOptions::subscribe_confirmation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Confirmation {
    /// `subscribe()` returns once the server has answered a round trip sent after the SUB:
    /// the interest is in place on the server (other clients' publishes reach it from then
    /// on) and a permissions violation is returned as
    /// [`SubscribeErrorKind::PermissionDenied`](crate::SubscribeErrorKind::PermissionDenied).
    /// One round trip per call (concurrent calls share it).
    #[default]
    Server,
    /// `subscribe()` returns once the SUB is queued, in order, on the hub's connection: a
    /// publish made afterwards through the same hub reaches the subscription (the server
    /// handles a connection's commands in order), but nothing waits for the server. What moves:
    /// - interest visible to *other* clients: call [`Hub::checkpoint`](crate::Hub::checkpoint)
    ///   before subscribing and [`Hub::confirm`](crate::Hub::confirm) after (one round trip
    ///   for any number of subscriptions);
    /// - a permissions violation: `confirm` returns
    ///   [`PublishErrorKind::Rejected`](crate::PublishErrorKind::Rejected) with the server's
    ///   error, the hub emits [`HubEvent::ServerError`](crate::HubEvent::ServerError), and the
    ///   refused subscription's stream ends.
    ///
    /// For applications that subscribe thousands of variables at start (or after a switch)
    /// and cannot afford one round trip each.
    Ordered,
}

/// Options of a [`Hub`](crate::Hub). Start from [`HubOptions::new`] and chain setters.
///
/// ```
/// use std::time::Duration;
/// let options = kinopio::HubOptions::new()
///     .servers(["nats://127.0.0.1:4222", "nats://10.0.0.2:4222"]).unwrap()
///     .name("sensor-7")
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_millis(500));
/// assert_eq!(options.server_list().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub(crate) servers: Vec<ServerUrl>,
    pub(crate) name: Option<String>,
    pub(crate) no_echo: bool,
    pub(crate) selection: SelectionMode,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_wait: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) max_pings_out: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) retry_delay: Duration,
    pub(crate) retry_backoff: f64,
    pub(crate) max_retry_delay: Duration,
    pub(crate) max_reconnect_attempts: Option<usize>,
    pub(crate) auto_retry: bool,
    pub(crate) codec: Option<Arc<dyn Codec>>,
    pub(crate) tls_ca_file: Option<PathBuf>,
    pub(crate) auth: Option<Auth>,
    pub(crate) tls_client_cert: Option<(PathBuf, PathBuf)>,
    pub(crate) tls_handshake_first: bool,
    pub(crate) tls_required: bool,
    pub(crate) subscription_capacity: usize,
    pub(crate) subscribe_confirmation: Confirmation,
    pub(crate) max_concurrent_handlers: usize,
    pub(crate) probe_timeout: Duration,
    pub(crate) reprobe_interval: Option<Duration>,
    pub(crate) switch_threshold: Duration,
    pub(crate) switch_overlap: Duration,
    pub(crate) discovery: Option<DiscoveryOptions>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            servers: vec![ServerUrl::default_local()],
            name: None,
            no_echo: false,
            selection: SelectionMode::Latency,
            connect_timeout: Duration::from_secs(5),
            reconnect_wait: Duration::from_millis(500),
            ping_interval: Duration::from_secs(3),
            max_pings_out: 3,
            request_timeout: Duration::from_secs(3),
            retry_delay: Duration::from_secs(1),
            retry_backoff: 1.5,
            max_retry_delay: Duration::from_secs(30),
            max_reconnect_attempts: None,
            auto_retry: true,
            codec: None,
            tls_ca_file: None,
            auth: None,
            tls_client_cert: None,
            tls_handshake_first: false,
            tls_required: false,
            subscription_capacity: 65_536,
            subscribe_confirmation: Confirmation::Server,
            max_concurrent_handlers: 64,
            probe_timeout: Duration::from_secs(2),
            reprobe_interval: Some(Duration::from_secs(600)),
            switch_threshold: Duration::from_millis(30),
            switch_overlap: Duration::from_millis(200),
            discovery: None,
        }
    }
}

impl HubOptions {
    /// The defaults: `nats://127.0.0.1:4222`, latency selection, 5 s connect timeout, 3 s
    /// request timeout, 3 s pings with 3 outstanding allowed, backoff 1 s × 1.5 up to 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Candidate servers (`nats://`, `tls://`, `ws://`, `wss://`; a bare `host:port` means
    /// `nats://`). An empty list keeps the default.
    pub fn servers<I, S>(mut self, servers: I) -> Result<Self, ServerUrlError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = servers.into_iter().map(|s| s.as_ref().parse::<ServerUrl>()).collect::<Result<Vec<_>, _>>()?;
        if !parsed.is_empty() {
            self.servers = parsed;
        }
        Ok(self)
    }

    /// The candidate servers, in the order given.
    pub fn server_list(&self) -> &[ServerUrl] {
        &self.servers
    }

    /// Connection name sent in CONNECT (shown by `nats-server` monitoring).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Do not deliver this hub's own publishes back to its subscriptions.
    pub fn no_echo(mut self, no_echo: bool) -> Self {
        self.no_echo = no_echo;
        self
    }

    /// How servers are ordered: ordered, random or latency (default).
    pub fn selection(mut self, mode: SelectionMode) -> Self {
        self.selection = mode;
        self
    }

    /// Time allowed for one connection attempt (TCP + TLS + NATS handshake).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Minimum wait between two connection attempts, whatever the backoff says.
    pub fn reconnect_wait(mut self, wait: Duration) -> Self {
        self.reconnect_wait = wait;
        self
    }

    /// Interval of the hub's liveness PINGs (also the RTT sample of the current server).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Unanswered PINGs after which the connection is considered dead and re-established.
    pub fn max_pings_out(mut self, max: u32) -> Self {
        self.max_pings_out = max.max(1);
        self
    }

    /// Default timeout of requests (and of waiting for a connection before publishing).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Backoff between connection attempts: first delay, growth factor, cap. Each wait is
    /// drawn at random between half the delay and the delay (jitter).
    pub fn retry(mut self, delay: Duration, backoff: f64, max_delay: Duration) -> Self {
        self.retry_delay = delay;
        self.retry_backoff = if backoff.is_finite() && backoff >= 1.0 { backoff } else { 1.0 };
        self.max_retry_delay = max_delay.max(delay);
        self
    }

    /// Give up after this many failed connection attempts in a row (`None`: never).
    pub fn max_reconnect_attempts(mut self, attempts: Option<usize>) -> Self {
        self.max_reconnect_attempts = attempts;
        self
    }

    /// With `false`, a failed connection ends in [`ConnectionState::Error`](crate::ConnectionState)
    /// after `max_reconnect_attempts` (or the first round through the servers) instead of
    /// retrying forever.
    pub fn auto_retry(mut self, auto_retry: bool) -> Self {
        self.auto_retry = auto_retry;
        self
    }

    /// A custom payload codec tried before the built-in encoding.
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Authenticate to the servers (and to latency probes) with a token, user and password,
    /// nkey seed or credentials file, as nats-server's authorization expects.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Trust this CA file (PEM) for `tls://` and `wss://` servers, besides the system roots.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Present this client certificate and key (PEM) to servers that ask for one.
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Start TLS before the server's INFO (servers with `handshake_first`).
    pub fn tls_handshake_first(mut self, on: bool) -> Self {
        self.tls_handshake_first = on;
        self
    }

    /// Require TLS even for `nats://` URLs.
    pub fn tls_required(mut self, on: bool) -> Self {
        self.tls_required = on;
        self
    }

    /// Messages buffered per subscription before the server's slow-consumer handling drops
    /// them (a `SlowConsumer` event reports it). Default 65 536.
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// What a returned `subscribe()` guarantees (see [`Confirmation`]). Default
    /// [`Confirmation::Server`]: the server has the interest and a permissions violation is
    /// the call's error.
    ///
    /// ```
    /// use kinopio::{Confirmation, HubOptions};
    /// // Subscribe many variables without one round trip each; confirm them together.
    /// let options = HubOptions::new().subscribe_confirmation(Confirmation::Ordered);
    /// # let _ = options;
    /// ```
    pub fn subscribe_confirmation(mut self, confirmation: Confirmation) -> Self {
        self.subscribe_confirmation = confirmation;
        self
    }

    /// Requests a service handles at the same time (per service). Default 64.
    pub fn max_concurrent_handlers(mut self, max: usize) -> Self {
        self.max_concurrent_handlers = max.max(1);
        self
    }

    /// Time allowed for one latency probe (connect + one PING/PONG).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Background re-probe interval in latency mode (`None` disables). Default 10 min.
    pub fn reprobe_interval(mut self, interval: Option<Duration>) -> Self {
        self.reprobe_interval = interval;
        self
    }

    /// How much faster another server must be before the hub switches to it. Default 30 ms.
    pub fn switch_threshold(mut self, threshold: Duration) -> Self {
        self.switch_threshold = threshold;
        self
    }

    /// How long old and new connections both receive during a hot switch (duplicates are
    /// filtered). Longer helps clusters whose interest propagates slowly. Default 200 ms.
    pub fn switch_overlap(mut self, overlap: Duration) -> Self {
        self.switch_overlap = overlap;
        self
    }

    /// Look for a local leader and hot-switch to it when it really connects.
    pub fn discovery(mut self, discovery: DiscoveryOptions) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// Backoff delay before connection attempt `attempt` (1-based; 0 for the first).
    pub(crate) fn backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff {
            min_wait: self.reconnect_wait,
            base: self.retry_delay,
            factor: self.retry_backoff,
            max: self.max_retry_delay,
        }
    }
}

/// How a hub authenticates to nats-server. Its `Debug` output never shows a secret.
///
/// ```
/// let auth = kinopio::Auth::UserPassword { user: "app".into(), password: "s3cret".into() };
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// let options = kinopio::HubOptions::new().auth(auth);
/// # let _ = options;
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// A token (`authorization { token }`).
    Token(String),
    /// A user and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// An nkey seed (`SU…`); the server knows the public key.
    NkeySeed(String),
    /// The contents of a `.creds` file (JWT and nkey seed, decentralized auth).
    Credentials(String),
}

impl Auth {
    /// Reads a `.creds` file into [`Auth::Credentials`].
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn credentials_file(path: impl AsRef<std::path::Path>) -> std::io::Result<Auth> {
        std::fs::read_to_string(path).map(Auth::Credentials)
    }

    /// Applies this authentication to async-nats connect options.
    pub(crate) fn apply(&self, nats: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self {
            Auth::Token(token) => nats.token(token.clone()),
            Auth::UserPassword { user, password } => nats.user_and_password(user.clone(), password.clone()),
            Auth::NkeySeed(seed) => nats.nkey(seed.clone()),
            Auth::Credentials(creds) => match nats.clone().credentials(creds) {
                Ok(nats) => nats,
                Err(err) => {
                    // Checked when the options are built by the CLI; a library caller gets the
                    // server's authorization error.
                    tracing::warn!(error = %err, "the credentials are not a valid .creds file");
                    nats
                }
            },
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::UserPassword { user, .. } => {
                f.debug_struct("UserPassword").field("user", user).field("password", &"<redacted>").finish()
            }
            Auth::NkeySeed(_) => f.write_str("NkeySeed(<redacted>)"),
            Auth::Credentials(_) => f.write_str("Credentials(<redacted>)"),
        }
    }
}
