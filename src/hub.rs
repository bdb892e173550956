//! [`Hub`]: the entry point, a handle over the hub's connection engine. It hands out
//! [`Scope`](crate::Scope)s and [`Variable`](crate::Variable)s (see `Hub::scope` in
//! `scope.rs` and `Hub::variable` in `variable.rs`) and reports the connection's state and
//! events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::DropGuard;

use crate::engine::{Checkpoint, Engine, lock};
use crate::error::{ConnectError, PublishError, SwitchError};
use crate::options::HubOptions;
use crate::selection::ProbeResult;
use crate::server::ServerUrl;
use crate::state::{ConnectionState, HubEvent};
use crate::variable_state::VariableState;

/// A connection to NATS that hands out scopes and variables.
///
/// Cheap to clone; all clones share one connection. The hub starts connecting in the
/// background as soon as it is created and keeps its subscriptions and services across
/// server restarts, reconnects and hot switches. Call [`Hub::close`] to drain and stop.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// let hub = kinopio::Hub::connect(kinopio::HubOptions::new().servers(["nats://127.0.0.1:4222"])?).await?;
/// let messages = hub.scope("chat")?.variable("messages")?; // subject "chat.messages"
/// let mut sub = messages.subscribe().await?;
/// messages.publish(&serde_json::json!({"text": "hi"})).await?;
/// let msg = sub.next().await.unwrap();
/// assert_eq!(msg.value()["text"], kinopio::Value::from("hi"));
/// hub.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    engine: Arc<Engine>,
    /// Per-subject state, so the same subject is always the same variable.
    variables: Mutex<HashMap<String, Arc<VariableState>>>,
    /// Scope identities (a scope is only its path; the map makes `same_as` hold).
    scopes: Mutex<HashMap<String, Arc<str>>>,
    /// Protocol-4 namespaces by name (`Hub::namespace` in `p4/namespace.rs`).
    namespaces: crate::p4::Registry,
    /// Stops the engine's driver when the last handle goes.
    _stop_engine: DropGuard,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("state", &self.state()).field("server", &self.server()).finish()
    }
}

impl Hub {
    /// Creates a hub and starts connecting in the background. Must be called inside a Tokio
    /// runtime. Use [`Hub::wait_connected`] (or [`Hub::connect`]) to wait for the connection.
    pub fn new(options: HubOptions) -> Hub {
        let (engine, stop) = Engine::start(options);
        Hub {
            inner: Arc::new(HubInner {
                engine,
                variables: Mutex::new(HashMap::new()),
                scopes: Mutex::new(HashMap::new()),
                namespaces: crate::p4::Registry::default(),
                _stop_engine: stop,
            }),
        }
    }

    /// Creates a hub and waits until it is connected, for at most the connect timeout (plus
    /// the probe timeout in latency mode). On failure the hub is closed and the error says
    /// what was tried.
    ///
    /// # Errors
    /// [`ConnectErrorKind::TimedOut`](crate::ConnectErrorKind::TimedOut) or
    /// [`ConnectErrorKind::Failed`](crate::ConnectErrorKind::Failed), with the servers tried
    /// and the last error.
    ///
    /// # Cancel safety
    /// Cancelling it drops the hub, which stops connecting.
    pub async fn connect(options: HubOptions) -> Result<Hub, ConnectError> {
        let mut budget = options.connect_timeout;
        if options.servers.len() > 1 {
            budget += options.probe_timeout;
        }
        let hub = Hub::new(options);
        match hub.wait_connected(budget).await {
            Ok(()) => Ok(hub),
            Err(e) => {
                hub.close().await;
                Err(e)
            }
        }
    }

    /// Probes `server` the way a hub in latency mode does (connect with `options`' TLS, name
    /// and credentials, one round trip, close), without creating a hub: for diagnostics.
    ///
    /// # Cancel safety
    /// Cancel safe: the probe connection is dropped.
    pub async fn probe(options: &HubOptions, server: &ServerUrl) -> ProbeResult {
        crate::engine::probe_one(options, server).await
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// The protocol-4 namespaces of this hub.
    pub(crate) fn namespaces(&self) -> &crate::p4::Registry {
        &self.inner.namespaces
    }

    /// The state of `subject`, created on first use.
    pub(crate) fn variable_state(&self, subject: &str) -> Arc<VariableState> {
        lock(&self.inner.variables)
            .entry(subject.to_owned())
            .or_insert_with(|| Arc::new(VariableState::new(subject)))
            .clone()
    }

    /// The identity of the scope at `path`, created on first use.
    pub(crate) fn scope_path(&self, path: &str) -> Arc<str> {
        lock(&self.inner.scopes).entry(path.to_owned()).or_insert_with(|| Arc::from(path)).clone()
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        self.inner.engine.state()
    }

    /// A `watch` of the connection state.
    pub fn state_watch(&self) -> watch::Receiver<ConnectionState> {
        self.inner.engine.state_watch()
    }

    /// True when connected.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// The server the hub is on (or trying).
    pub fn server(&self) -> Option<ServerUrl> {
        self.inner.engine.server()
    }

    /// The latest latency probe results (latency mode), in input order.
    pub fn probe_results(&self) -> Vec<ProbeResult> {
        self.inner.engine.probe_results()
    }

    /// How many malformed messages (a header block that is not `NATS/1.0 …`, which any
    /// publisher can send through nats-server) the hub has dropped. Such a message is logged
    /// and dropped; the connection and every other message are unaffected.
    pub fn malformed_messages(&self) -> u64 {
        self.inner.engine.malformed_messages()
    }

    /// Where the hub's connection stands now (which connection, how often it has connected,
    /// how many errors the server has reported): take one before sending, then
    /// [`Hub::confirm`]. `None` while there is no connection.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.inner.engine.checkpoint()
    }

    /// Confirms that the server received everything this hub sent since `since`: one round
    /// trip (PING/PONG) on the same connection, which has not reconnected meanwhile, and no
    /// error reported by the server in between (such as a refused subject or a permissions
    /// violation; the server reports those before it answers the PING).
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`](crate::PublishErrorKind::NotConnected) when the
    /// connection was lost, replaced or did not answer in time (what was sent may not have
    /// arrived); [`PublishErrorKind::Rejected`](crate::PublishErrorKind::Rejected) with the
    /// server's errors; [`PublishErrorKind::Closed`](crate::PublishErrorKind::Closed) after
    /// [`Hub::close`].
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits for the server's answer.
    pub async fn confirm(&self, since: &Checkpoint) -> Result<(), PublishError> {
        self.inner.engine.confirm(since).await
    }

    /// A stream of connection events from now on.
    pub fn events(&self) -> impl Stream<Item = HubEvent> + Send + Unpin + 'static {
        self.inner.engine.events()
    }

    /// Waits until the hub is connected, returning at `timeout` at the latest (the hub keeps
    /// trying in the background).
    ///
    /// # Errors
    /// [`ConnectErrorKind::TimedOut`](crate::ConnectErrorKind::TimedOut),
    /// [`ConnectErrorKind::Failed`](crate::ConnectErrorKind::Failed) when the hub gave up, or
    /// [`ConnectErrorKind::Closed`](crate::ConnectErrorKind::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ConnectError> {
        self.inner.engine.wait_connected(timeout).await
    }

    /// Re-plans (re-probes in latency mode, reshuffles in random mode) and moves to the best
    /// reachable server without losing subscriptions, services or value tracking. On failure
    /// the hub stays where it is.
    ///
    /// # Errors
    /// [`SwitchErrorKind::Unreachable`](crate::SwitchErrorKind::Unreachable) when no server
    /// accepted a connection, [`SwitchErrorKind::Rebind`](crate::SwitchErrorKind::Rebind)
    /// when the subscriptions could not be re-created there, or
    /// [`SwitchErrorKind::Closed`](crate::SwitchErrorKind::Closed).
    ///
    /// # Cancel safety
    /// Cancelling only stops waiting: the switch, once asked for, runs to its end.
    pub async fn reconnect(&self) -> Result<ServerUrl, SwitchError> {
        self.inner.engine.reconnect().await
    }

    /// Moves to `server` now (make-before-break, like an automatic switch), whatever the
    /// probes say. The server does not have to be in the configured list.
    ///
    /// # Errors
    /// As [`Hub::reconnect`].
    ///
    /// # Cancel safety
    /// Cancelling only stops waiting: the switch, once asked for, runs to its end.
    pub async fn switch_to(&self, server: &ServerUrl) -> Result<ServerUrl, SwitchError> {
        self.inner.engine.switch_to(server).await
    }

    /// Drains every subscription and service, flushes pending publishes and closes the
    /// connection. Idempotent.
    ///
    /// # Cancel safety
    /// The hub is closed from the first poll on; cancelling only skips the drain's wait.
    pub async fn close(&self) {
        self.inner.engine.close().await;
    }
}
