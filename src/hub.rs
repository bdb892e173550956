//! [`Hub`]: the entry point. It owns the connection (through a background supervisor), hands
//! out [`Scope`]s and [`Variable`]s, and reports its state and events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::codec::Encoding;
use crate::connection::{Connection, round_trip};
use crate::error::{
    ConnectError, ConnectErrorKind, PublishError, PublishErrorKind, SubscribeError, SubscribeErrorKind, SwitchError,
    SwitchErrorKind,
};
use crate::name::{self, InvalidName};
use crate::options::HubOptions;
use crate::scope::{Scope, ScopeState};
use crate::selection::ProbeResult;
use crate::server::ServerUrl;
use crate::state::{ConnectionState, HubEvent, SwitchReason};
use crate::subscription::{Binding, HeaderMap, Mailbox, Subscription};
use crate::supervisor::{self, Command};
use crate::variable::{Variable, VariableState};

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
    shared: Arc<Shared>,
    _stop_supervisor: DropGuard,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("state", &self.state()).field("server", &self.server()).finish()
    }
}

/// A point in a hub's connection history; see [`Hub::checkpoint`] and [`Hub::confirm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    connection: u64,
    connects: u64,
    server_errors: u64,
}

/// State shared by the hub handles, its variables and the supervisor task.
pub(crate) struct Shared {
    pub options: HubOptions,
    pub encoding: Encoding,
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<HubEvent>,
    connection: watch::Sender<Option<Arc<Connection>>>,
    bindings: Mutex<HashMap<u64, Binding>>,
    /// Serialises binding creation with connection changes, so no subscription is missed.
    pub switch_lock: tokio::sync::Mutex<()>,
    scopes: Mutex<HashMap<String, Arc<ScopeState>>>,
    variables: Mutex<HashMap<String, Arc<VariableState>>>,
    commands: mpsc::UnboundedSender<Command>,
    closed: AtomicBool,
    pub cancel: CancellationToken,
    next_id: AtomicU64,
    last_error: Mutex<Option<String>>,
    probes: Mutex<Vec<ProbeResult>>,
    /// Malformed messages dropped by connections the hub has switched away from.
    retired_malformed: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("state", &*self.state.borrow()).finish()
    }
}

/// Locks a std mutex, recovering from poisoning (the data are plain maps).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// Creates a hub and starts connecting in the background. Must be called inside a Tokio
    /// runtime. Use [`Hub::wait_connected`] (or [`Hub::connect`]) to wait for the connection.
    pub fn new(options: HubOptions) -> Hub {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let encoding = options.codec.clone().map(Encoding::with_codec).unwrap_or_default();
        let shared = Arc::new(Shared {
            encoding,
            state: watch::channel(ConnectionState::Disconnected).0,
            events: broadcast::channel(1024).0,
            connection: watch::channel(None).0,
            bindings: Mutex::new(HashMap::new()),
            switch_lock: tokio::sync::Mutex::new(()),
            scopes: Mutex::new(HashMap::new()),
            variables: Mutex::new(HashMap::new()),
            commands: commands_tx,
            closed: AtomicBool::new(false),
            cancel: cancel.clone(),
            next_id: AtomicU64::new(1),
            last_error: Mutex::new(None),
            probes: Mutex::new(Vec::new()),
            retired_malformed: AtomicU64::new(0),
            options,
        });
        tokio::spawn(supervisor::run(Arc::clone(&shared), commands_rx));
        Hub { inner: Arc::new(HubInner { shared, _stop_supervisor: cancel.drop_guard() }) }
    }

    /// Creates a hub and waits until it is connected, for at most the connect timeout (plus
    /// the probe timeout in latency mode). On failure the hub is closed and the error says
    /// what was tried.
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

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The scope `name` (a plain name, or dotted for nested scopes). The same name always
    /// returns the same scope.
    pub fn scope(&self, name: &str) -> Result<Scope, InvalidName> {
        name::validate("scope", name)?;
        Ok(Scope::new(self.clone(), self.inner.shared.scope_state(name)))
    }

    /// The variable at a full dotted path, e.g. `hub.variable("chat.messages")` — the same
    /// object as `hub.scope("chat")?.variable("messages")?`.
    pub fn variable(&self, path: &str) -> Result<Variable, InvalidName> {
        name::validate("variable", path)?;
        Ok(Variable::new(self.clone(), self.inner.shared.variable_state(path)))
    }

    /// Subscribes to every subject matching `pattern` (in queue group `queue`, if given),
    /// which may use the NATS wildcards `*` (one token) and `>` (the rest): `sensors.*.temp`,
    /// `chat.>`, `>`. Each message carries
    /// its own subject. Returns once the server has the interest, like
    /// [`Variable::subscribe`]. A pattern without wildcards is the same as
    /// `hub.variable(pattern)?.subscribe()`.
    ///
    /// # Errors
    /// [`SubscribeErrorKind::InvalidSubject`] for a malformed pattern (a wildcard inside a
    /// token, `>` before the end, an empty token, whitespace), or the errors of
    /// [`Variable::subscribe`].
    pub async fn subscribe_pattern(&self, pattern: &str, queue: Option<&str>) -> Result<Subscription, SubscribeError> {
        name::validate_pattern("subject", pattern)
            .map_err(|e| SubscribeError::new(SubscribeErrorKind::InvalidSubject).with_detail(e.to_string()))?;
        let state = self.inner.shared.variable_state(pattern);
        self.inner.shared.subscribe(self, state, queue.map(str::to_owned)).await
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        *self.inner.shared.state.borrow()
    }

    /// A `watch` of the connection state.
    pub fn state_watch(&self) -> watch::Receiver<ConnectionState> {
        self.inner.shared.state.subscribe()
    }

    /// True when connected.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// The server the hub is on (or trying).
    pub fn server(&self) -> Option<ServerUrl> {
        self.inner.shared.current().and_then(|c| c.server())
    }

    /// The latest latency probe results (latency mode), in input order.
    pub fn probe_results(&self) -> Vec<ProbeResult> {
        lock(&self.inner.shared.probes).clone()
    }

    /// How many malformed messages (a header block that is not `NATS/1.0 …`, which any
    /// publisher can send through nats-server) the hub has dropped. Such a message is logged
    /// and dropped; the connection and every other message are unaffected.
    pub fn malformed_messages(&self) -> u64 {
        let shared = &self.inner.shared;
        let current = shared.current().map_or(0, |c| c.client.statistics().malformed_messages.load(Ordering::Relaxed));
        shared.retired_malformed.load(Ordering::Relaxed) + current
    }

    /// Where the hub's connection stands now (which connection, how often it has connected,
    /// how many errors the server has reported): take one before sending, then
    /// [`Hub::confirm`]. `None` while there is no connection.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let conn = self.inner.shared.current()?;
        let stats = conn.client.statistics();
        Some(Checkpoint {
            connection: conn.id,
            connects: stats.connects.load(Ordering::Acquire),
            server_errors: stats.server_errors.load(Ordering::Acquire),
        })
    }

    /// Confirms that the server received everything this hub sent since `since`: one round
    /// trip (PING/PONG) on the same connection, which has not reconnected meanwhile, and no
    /// error reported by the server in between (such as a refused subject or a permissions
    /// violation; the server reports those before it answers the PING).
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`] when the connection was lost, replaced or did not
    /// answer in time (what was sent may not have arrived); [`PublishErrorKind::Rejected`]
    /// with the server's errors; [`PublishErrorKind::Closed`] after [`Hub::close`].
    pub async fn confirm(&self, since: &Checkpoint) -> Result<(), PublishError> {
        let shared = &self.inner.shared;
        if shared.is_closed() {
            return Err(PublishError::new(PublishErrorKind::Closed));
        }
        let lost = |detail: &str| PublishError::new(PublishErrorKind::NotConnected).with_detail(detail);
        let conn =
            shared.current().filter(|c| c.id == since.connection).ok_or_else(|| lost("the connection was replaced"))?;
        let answered = round_trip(&conn.client, shared.options.request_timeout).await;
        let stats = conn.client.statistics();
        let errors = stats.server_errors_after(since.server_errors);
        if !errors.is_empty() {
            return Err(PublishError::new(PublishErrorKind::Rejected).with_detail(errors.join("; ")));
        }
        if let Err(e) = answered {
            return Err(lost("the server did not answer").with_source(e));
        }
        if stats.connects.load(Ordering::Acquire) != since.connects {
            return Err(lost("the connection was lost and re-established"));
        }
        Ok(())
    }

    /// A stream of connection events from now on.
    pub fn events(&self) -> impl Stream<Item = HubEvent> + Send + Unpin + 'static {
        let rx = self.inner.shared.events.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "hub event stream lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// Waits until the hub is connected, returning at `timeout` at the latest (the hub keeps
    /// trying in the background).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ConnectError> {
        self.inner.shared.wait_connected(timeout).await
    }

    /// Re-plans (re-probes in latency mode, reshuffles in random mode) and moves to the best
    /// reachable server without losing subscriptions, services or value tracking. On failure
    /// the hub stays where it is.
    pub async fn reconnect(&self) -> Result<ServerUrl, SwitchError> {
        let (tx, rx) = oneshot::channel();
        if self.inner.shared.commands.send(Command::Reconnect(tx)).is_err() {
            return Err(SwitchError::new(SwitchErrorKind::Closed));
        }
        rx.await.unwrap_or_else(|_| Err(SwitchError::new(SwitchErrorKind::Closed)))
    }

    /// Moves to `server` now (make-before-break, like an automatic switch), whatever the
    /// probes say. The server does not have to be in the configured list.
    pub async fn switch_to(&self, server: &ServerUrl) -> Result<ServerUrl, SwitchError> {
        let (tx, rx) = oneshot::channel();
        let command = Command::SwitchTo(server.clone(), SwitchReason::Manual, tx);
        if self.inner.shared.commands.send(command).is_err() {
            return Err(SwitchError::new(SwitchErrorKind::Closed));
        }
        rx.await.unwrap_or_else(|_| Err(SwitchError::new(SwitchErrorKind::Closed)))
    }

    /// Drains every subscription and service, flushes pending publishes and closes the
    /// connection. Idempotent.
    pub async fn close(&self) {
        self.inner.shared.close().await;
    }
}

impl Shared {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    pub fn current(&self) -> Option<Arc<Connection>> {
        self.connection.borrow().clone()
    }

    pub fn set_state(&self, state: ConnectionState) {
        self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    pub fn emit(&self, event: HubEvent) {
        let _ = self.events.send(event);
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub fn set_last_error(&self, error: impl Into<String>) {
        *lock(&self.last_error) = Some(error.into());
    }

    pub fn set_probes(&self, probes: Vec<ProbeResult>) {
        *lock(&self.probes) = probes;
    }

    /// Installs `conn` as the connection in use and returns the previous one.
    pub fn replace_connection(&self, conn: Arc<Connection>) -> Option<Arc<Connection>> {
        let old = self.connection.send_replace(Some(conn));
        if let Some(old) = &old {
            let dropped = old.client.statistics().malformed_messages.load(Ordering::Relaxed);
            self.retired_malformed.fetch_add(dropped, Ordering::Relaxed);
        }
        old
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn bindings(&self) -> Vec<(u64, Binding)> {
        lock(&self.bindings).iter().map(|(id, b)| (*id, b.clone())).collect()
    }

    pub fn unbind(&self, id: u64) {
        lock(&self.bindings).remove(&id);
    }

    fn scope_state(&self, path: &str) -> Arc<ScopeState> {
        lock(&self.scopes)
            .entry(path.to_owned())
            .or_insert_with(|| Arc::new(ScopeState { path: path.to_owned() }))
            .clone()
    }

    pub fn variable_state(&self, subject: &str) -> Arc<VariableState> {
        lock(&self.variables).entry(subject.to_owned()).or_insert_with(|| Arc::new(VariableState::new(subject))).clone()
    }

    fn not_connected_detail(&self) -> String {
        let servers: Vec<String> = self.options.servers.iter().map(ToString::to_string).collect();
        match lock(&self.last_error).clone() {
            Some(err) => format!("tried {}; last error: {err}", servers.join(", ")),
            None => format!("tried {}", servers.join(", ")),
        }
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ConnectError> {
        let mut rx = self.state.subscribe();
        let wait = rx.wait_for(|s| matches!(s, ConnectionState::Connected | ConnectionState::Error));
        match tokio::time::timeout(timeout, wait).await {
            _ if self.is_closed() => Err(ConnectError::new(ConnectErrorKind::Closed)),
            Ok(Ok(state)) if *state == ConnectionState::Connected => Ok(()),
            Ok(Ok(_)) => Err(ConnectError::new(ConnectErrorKind::Failed).with_detail(self.not_connected_detail())),
            Ok(Err(_)) => Err(ConnectError::new(ConnectErrorKind::Closed)),
            Err(_) => Err(ConnectError::new(ConnectErrorKind::TimedOut).with_detail(format!(
                "waited {} ms; {}",
                timeout.as_millis(),
                self.not_connected_detail()
            ))),
        }
    }

    /// The connection to use for an operation: at once when connected, else after waiting
    /// up to `timeout` for one.
    pub async fn connected(&self, timeout: Duration) -> Result<Arc<Connection>, ConnectError> {
        if self.is_closed() {
            return Err(ConnectError::new(ConnectErrorKind::Closed));
        }
        if *self.state.borrow() != ConnectionState::Connected {
            self.wait_connected(timeout).await?;
        }
        self.current().ok_or_else(|| ConnectError::new(ConnectErrorKind::Closed))
    }

    /// Waits until a connection object exists (it may still be connecting).
    async fn connection_object(&self) -> Result<Arc<Connection>, SubscribeError> {
        let mut rx = self.connection.subscribe();
        let limit = self.options.probe_timeout + self.options.connect_timeout;
        match tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await {
            Ok(Ok(conn)) => conn.clone().ok_or_else(|| SubscribeError::new(SubscribeErrorKind::Closed)),
            _ if self.is_closed() => Err(SubscribeError::new(SubscribeErrorKind::Closed)),
            _ => Err(SubscribeError::new(SubscribeErrorKind::Other).with_detail("the hub has no connection yet")),
        }
    }

    /// The connection when it can be used at once: connected, publish gate open.
    fn ready_connection(&self) -> Option<Arc<Connection>> {
        if self.is_closed() || *self.state.borrow() != ConnectionState::Connected {
            return None;
        }
        self.current().filter(|c| c.gate_is_open())
    }

    /// The connection to publish on, waiting (up to the request timeout) when there is none.
    async fn publishing_connection(&self) -> Result<Arc<Connection>, PublishError> {
        let conn = self.connected(self.options.request_timeout).await.map_err(|e| match e.kind() {
            ConnectErrorKind::Closed => PublishError::new(PublishErrorKind::Closed),
            _ => PublishError::new(PublishErrorKind::NotConnected).with_source(e),
        })?;
        conn.wait_gate().await;
        Ok(conn)
    }

    /// Publishes raw bytes on the current connection.
    pub async fn publish(
        &self,
        subject: async_nats::Subject,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), PublishError> {
        let conn = match self.ready_connection() {
            Some(conn) => conn,
            None => Box::pin(self.publishing_connection()).await?,
        };
        let result = match headers {
            Some(h) => conn.client.publish_with_headers(subject, h, payload).await,
            None => conn.client.publish(subject, payload).await,
        };
        result.map_err(|e| {
            let kind = match e.kind() {
                async_nats::client::PublishErrorKind::MaxPayloadExceeded => PublishErrorKind::MaxPayloadExceeded,
                _ if self.is_closed() => PublishErrorKind::Closed,
                _ => PublishErrorKind::Other,
            };
            PublishError::new(kind).with_source(e)
        })
    }

    /// Subscribes on the current connection and registers the binding so it follows every
    /// connection change. Returns once the server has the interest (when connected).
    pub async fn subscribe(
        &self,
        hub: &Hub,
        variable: Arc<VariableState>,
        queue: Option<String>,
    ) -> Result<Subscription, SubscribeError> {
        if self.is_closed() {
            return Err(SubscribeError::new(SubscribeErrorKind::Closed));
        }
        if let Some(q) = &queue
            && (q.is_empty() || q.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(SubscribeError::new(SubscribeErrorKind::InvalidQueueGroup).with_detail(format!("{q:?}")));
        }
        self.connection_object().await?;
        let mailbox = Arc::new(Mailbox::default());
        let errors_before;
        let (id, subscriber, conn) = {
            let _switching = self.switch_lock.lock().await;
            let conn = self.current().ok_or_else(|| SubscribeError::new(SubscribeErrorKind::Closed))?;
            errors_before = conn.client.statistics().server_errors.load(Ordering::Acquire);
            let subscriber = crate::subscription::nats_subscribe(&conn.client, &variable.subject, queue.as_deref())
                .await
                .map_err(|e| SubscribeError::new(SubscribeErrorKind::Other).with_source(e))?;
            let id = self.next_id();
            lock(&self.bindings).insert(
                id,
                Binding { subject: variable.subject.to_string(), queue: queue.clone(), mailbox: Arc::clone(&mailbox) },
            );
            (id, subscriber, conn)
        };
        if conn.is_connected() {
            match round_trip(&conn.client, self.options.request_timeout).await {
                Ok(_) => {
                    // The server answers a refused SUB with `-ERR` before its PONG.
                    let refused = format!("permissions violation for subscription to \"{}\"", variable.subject);
                    let errors = conn.client.statistics().server_errors_after(errors_before);
                    if let Some(error) = errors.iter().find(|e| e.to_lowercase().contains(&refused)) {
                        lock(&self.bindings).remove(&id);
                        drop(subscriber);
                        return Err(
                            SubscribeError::new(SubscribeErrorKind::PermissionDenied).with_detail(error.clone())
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(subject = %variable.subject, error = %e, "subscription not confirmed by the server");
                }
            }
        }
        Ok(Subscription::new(hub.clone(), id, subscriber, mailbox, variable, queue))
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cancel.cancel();
        if let Some(conn) = self.current() {
            // A round trip first: it proves the server has every publish sent so far (the
            // drain alone may close the socket before a just-queued publish is written).
            if conn.is_connected() {
                let _ = round_trip(&conn.client, self.options.connect_timeout).await;
            }
            let drained = tokio::time::timeout(self.options.connect_timeout, conn.client.drain()).await;
            if !matches!(drained, Ok(Ok(()))) {
                tracing::debug!("drain on close did not complete");
            }
        }
        lock(&self.bindings).clear();
        self.set_state(ConnectionState::Disconnected);
        self.emit(HubEvent::Closed);
    }
}
