//! One NATS connection of a hub: an `async_nats::Client` opened on a planned server order,
//! the server it is on right now, and the publish gate used during a hot switch.
//!
//! async-nats handles the socket and reconnects to the same plan after an outage, re-sending
//! every subscription; a `reconnect_to_server_callback` lets the hub pick the server for each
//! attempt (in plan order, with jittered backoff), so the hub always knows which server it is
//! on — even when two URLs lead to the same server.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::options::HubOptions;
use crate::server::ServerUrl;

/// An event from one of the hub's connections, tagged with the connection's id.
#[derive(Debug)]
pub(crate) struct ConnectionEvent {
    pub connection: u64,
    pub event: async_nats::Event,
}

/// How a connection makes its first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstConnect {
    /// Return at once and keep trying in the background (the hub's initial connection).
    Background,
    /// One attempt on the plan's first server; fail if it does not connect (hot switch).
    SingleAttempt,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Picks the server for every (re)connect attempt and remembers which one it is.
#[derive(Debug)]
struct Rotation {
    plan: Vec<ServerUrl>,
    addrs: Vec<async_nats::ServerAddr>,
    attempt: AtomicUsize,
    next: AtomicUsize,
    target: Mutex<Option<ServerUrl>>,
    backoff: Backoff,
    retired: AtomicBool,
}

impl Rotation {
    fn pick(&self) -> async_nats::ReconnectToServer {
        let n = self.addrs.len().max(1);
        let attempt = self.attempt.fetch_add(1, Ordering::Relaxed) + 1;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % n;
        // The first server of each round through the plan waits the backoff; the others in
        // the same round are tried at once.
        let round = (attempt - 1) / n + 1;
        let delay = if self.retired.load(Ordering::Relaxed) {
            // A connection the hub has switched away from: park its reconnect loop.
            Duration::from_secs(60)
        } else if (attempt - 1).is_multiple_of(n) {
            self.backoff.delay_random(round)
        } else {
            Duration::ZERO
        };
        if let Ok(mut target) = self.target.lock() {
            *target = self.plan.get(index).cloned();
        }
        async_nats::ReconnectToServer { addr: self.addrs[index % self.addrs.len()].clone(), delay: Some(delay) }
    }

    fn connected(&self) {
        self.attempt.store(0, Ordering::Relaxed);
        // After an outage, start again from the plan's first (best) server.
        self.next.store(0, Ordering::Relaxed);
    }
}

/// One connection of the hub (see the module docs).
#[derive(Debug)]
pub(crate) struct Connection {
    pub id: u64,
    pub client: async_nats::Client,
    rotation: Arc<Rotation>,
    /// Open once publishes may go out on this connection (closed briefly during a switch so
    /// they cannot overtake publishes still queued on the old connection).
    gate: watch::Sender<bool>,
    /// The gate's state, readable with one atomic load (the publish fast path).
    gate_open: AtomicBool,
}

impl Connection {
    /// Opens a connection that tries `plan` in order.
    pub(crate) async fn open(
        options: &HubOptions,
        plan: Vec<ServerUrl>,
        first: FirstConnect,
        events: mpsc::UnboundedSender<ConnectionEvent>,
        gate_open: bool,
    ) -> Result<Connection, async_nats::ConnectError> {
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let addrs = plan
            .iter()
            .map(ServerUrl::to_server_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e))?;
        let rotation = Arc::new(Rotation {
            plan,
            addrs: addrs.clone(),
            attempt: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            target: Mutex::new(None),
            backoff: options.backoff(),
            retired: AtomicBool::new(false),
        });

        let mut nats = base_options(options);
        let pick = Arc::clone(&rotation);
        nats = nats.reconnect_to_server_callback(move |_servers, _info| {
            let choice = pick.pick();
            async move { Some(choice) }
        });
        let backoff = options.backoff();
        nats = nats.reconnect_delay_callback(move |attempt| backoff.delay_random(attempt));
        let on_event = Arc::clone(&rotation);
        nats = nats.event_callback(move |event| {
            if matches!(event, async_nats::Event::Connected) {
                on_event.connected();
            }
            let _ = events.send(ConnectionEvent { connection: id, event });
            async {}
        });
        if first == FirstConnect::Background {
            nats = nats.retry_on_initial_connect();
        }
        let client = nats.connect(addrs).await?;
        let (gate, _) = watch::channel(gate_open);
        Ok(Connection { id, client, rotation, gate, gate_open: AtomicBool::new(gate_open) })
    }

    /// The server this connection is on (or trying right now).
    pub(crate) fn server(&self) -> Option<ServerUrl> {
        self.rotation.target.lock().ok().and_then(|t| t.clone())
    }

    /// True when async-nats reports the socket as connected.
    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Waits until publishes may go out on this connection.
    pub(crate) async fn wait_gate(&self) {
        if *self.gate.borrow() {
            return;
        }
        let mut rx = self.gate.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// True when publishes may go out now.
    pub(crate) fn gate_is_open(&self) -> bool {
        self.gate_open.load(Ordering::Acquire)
    }

    /// Lets publishes through.
    pub(crate) fn open_gate(&self) {
        self.gate_open.store(true, Ordering::Release);
        self.gate.send_replace(true);
    }

    /// Marks the connection as switched away from: its reconnect loop (if the server is gone)
    /// is parked instead of hammering a server the hub no longer uses.
    pub(crate) fn retire(&self) {
        self.rotation.retired.store(true, Ordering::Relaxed);
    }
}

fn base_options(options: &HubOptions) -> async_nats::ConnectOptions {
    // async-nats declares a connection stale when a third PING goes unanswered; space its
    // PINGs so that happens after about (max_pings_out + 1) × ping_interval, like nats-py.
    let pings = f64::from(options.max_pings_out + 1) / 3.0;
    let ping_every = options.ping_interval.mul_f64(pings).max(Duration::from_millis(100));
    let mut nats = async_nats::ConnectOptions::new()
        .connection_timeout(options.connect_timeout)
        .ping_interval(ping_every)
        .subscription_capacity(options.subscription_capacity)
        .client_capacity(8192)
        .request_timeout(Some(options.request_timeout))
        .retain_servers_order()
        .ignore_discovered_servers()
        .max_reconnects(options.max_reconnect_attempts.or((!options.auto_retry).then_some(options.servers.len())));
    if let Some(name) = &options.name {
        nats = nats.name(name);
    }
    if options.no_echo {
        nats = nats.no_echo();
    }
    security(options, nats)
}

/// TLS and credentials as the options ask: the same for the hub's connections and its
/// latency probes.
pub(crate) fn security(options: &HubOptions, mut nats: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
    if let Some(ca) = &options.tls_ca_file {
        nats = nats.add_root_certificates(ca.clone());
    }
    if let Some(auth) = &options.auth {
        nats = auth.apply(nats);
    }
    if let Some((cert, key)) = &options.tls_client_cert {
        nats = nats.add_client_certificate(cert.clone(), key.clone());
    }
    if options.tls_handshake_first {
        nats = nats.tls_first();
    }
    if options.tls_required {
        nats = nats.require_tls(true);
    }
    nats
}

/// One full round trip on `client`: a PING answered by the server's PONG. Because the server
/// handles a connection's commands in order, it also proves every earlier SUB/PUB/UNSUB of
/// this connection has been processed. Nothing another client does can answer or delay it
/// (the barrier used to be a request to an unserved subject, which a `>` subscriber stalled).
pub(crate) async fn round_trip(client: &async_nats::Client, timeout: Duration) -> Result<Duration, RoundTripError> {
    match tokio::time::timeout(timeout, client.round_trip()).await {
        Ok(Ok(rtt)) => Ok(rtt),
        Ok(Err(e)) => Err(RoundTripError::Failed(e.to_string())),
        Err(_) => Err(RoundTripError::TimedOut),
    }
}

/// A round trip did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RoundTripError {
    #[error("no answer from the server in time")]
    TimedOut,
    #[error("{0}")]
    Failed(String),
}
