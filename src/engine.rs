//! The connection engine of a hub: its connections, the registry of live subscriptions,
//! switching and publishing, behind a narrow interface that the handles ([`Hub`](crate::Hub),
//! [`Variable`](crate::Variable), [`Subscription`](crate::Subscription),
//! [`Service`](crate::Service)) call — in the manner of async-nats' `Client` over its
//! connection task.
//!
//! # Layout
//! - [`Engine`] (this module): the state every handle shares and the operations they call
//!   (publish, subscribe, request, checkpoint/confirm, close). It never reaches back into a
//!   handle.
//! - `driver`: the background task that owns the planning and switching — first connection,
//!   async-nats events, re-probes, restarts, hot switches, and local-leader discovery (whose
//!   policy and executors live in [`crate::discovery`]).
//! - `connection`: one async-nats connection on a planned server order, with a publish gate.
//! - `inbox`: the raw message stream of one subscription, which survives connection changes
//!   (the driver re-creates it on the new connection and the inbox merges old and new).
//! - `overlap`: the pure exactly-once filter used by that merge.
//! - `probe`: latency probes, the executor of [`Ranking`](crate::selection::ranking::Ranking).

mod connection;
mod driver;
mod inbox;
mod overlap;
mod probe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::codec::Encoding;
use crate::error::{
    ConnectError, ConnectErrorKind, PublishError, PublishErrorKind, RequestError, RequestErrorKind, SubscribeError,
    SubscribeErrorKind, SwitchError, SwitchErrorKind,
};
use crate::options::{Confirmation, HubOptions};
use crate::selection::ProbeResult;
use crate::server::ServerUrl;
use crate::state::{ConnectionState, HubEvent, SwitchReason};

use connection::{Connection, round_trip};
use driver::Command;
use inbox::{Binding, Mailbox};

pub(crate) use inbox::Inbox;
pub(crate) use probe::probe_one;

use async_nats::{HeaderMap, Subject};

/// A point in a hub's connection history; see [`Hub::checkpoint`](crate::Hub::checkpoint)
/// and [`Hub::confirm`](crate::Hub::confirm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    connection: u64,
    connects: u64,
    server_errors: u64,
}

impl Checkpoint {
    /// Which server connection this checkpoint is on: equal keys mean the same connection,
    /// neither replaced nor reconnected in between (protocol 4's live leases belong to one).
    pub(crate) fn connection_key(&self) -> (u64, u64) {
        (self.connection, self.connects)
    }
}

/// The subscription a server error refuses: `Permissions Violation for Subscription to
/// "<subject>"`, with ` using queue "<group>"` for a queue subscription (nats-server's
/// `subPermissionViolation`). `None` for any other error.
fn refused_subscription(error: &str) -> Option<(String, Option<String>)> {
    const PREFIX: &str = "permissions violation for subscription to \"";
    const QUEUE: &str = " using queue \"";
    let start = error.to_ascii_lowercase().find(PREFIX)? + PREFIX.len();
    let rest = error.get(start..)?;
    let end = rest.find('"')?;
    let subject = rest[..end].to_owned();
    let queue = rest[end + 1..].strip_prefix(QUEUE).and_then(|q| q.find('"').map(|e| q[..e].to_owned()));
    Some((subject, queue))
}

/// The engine (see the module docs). One per hub; the handles hold it in an `Arc`.
pub(crate) struct Engine {
    /// The options the hub was created with.
    options: HubOptions,
    /// How payloads are encoded and decoded (the 0.1.1 codec, or the user's).
    encoding: Encoding,
    /// The connection state, as a watch so handles can wait for a change.
    state: watch::Sender<ConnectionState>,
    /// `state == Connected`, readable with one atomic load (the publish fast path).
    connected: AtomicBool,
    /// Connection events for [`Hub::events`](crate::Hub::events).
    events: broadcast::Sender<HubEvent>,
    /// The connection in use (replaced by a switch or a restart).
    connection: watch::Sender<Option<Arc<Connection>>>,
    /// Every live subscription, so a switch can re-create it on the new connection.
    bindings: Mutex<HashMap<u64, Arc<Binding>>>,
    /// Serialises binding creation with connection changes, so no subscription is missed.
    switch_lock: tokio::sync::Mutex<()>,
    /// Requests to the driver (reconnect, switch to a server).
    commands: mpsc::UnboundedSender<Command>,
    /// Set once by [`Engine::close`].
    closed: AtomicBool,
    /// Stops the driver (on close, or when the last hub handle goes).
    cancel: CancellationToken,
    /// Ids of bindings.
    next_id: AtomicU64,
    /// The last connection error, for "not connected" messages.
    last_error: Mutex<Option<String>>,
    /// The latest latency probe results.
    probes: Mutex<Vec<ProbeResult>>,
    /// Malformed messages dropped by connections the hub has switched away from.
    retired_malformed: AtomicU64,
    /// Counts activations: a connection became usable (first connect, reconnect, restart or
    /// switch). Protocol-4 namespaces watch it to republish and sync (`crate::p4`).
    activations: watch::Sender<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("state", &*self.state.borrow()).finish()
    }
}

/// Locks a std mutex, recovering from poisoning (the data are plain maps).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Creates the engine and starts its driver, which connects in the background. The
    /// returned guard stops the driver when dropped. Must be called inside a Tokio runtime.
    pub(crate) fn start(options: HubOptions) -> (Arc<Engine>, DropGuard) {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let encoding = options.codec.clone().map(Encoding::with_codec).unwrap_or_default();
        let engine = Arc::new(Engine {
            encoding,
            state: watch::channel(ConnectionState::Disconnected).0,
            connected: AtomicBool::new(false),
            events: broadcast::channel(1024).0,
            connection: watch::channel(None).0,
            bindings: Mutex::new(HashMap::new()),
            switch_lock: tokio::sync::Mutex::new(()),
            commands: commands_tx,
            closed: AtomicBool::new(false),
            cancel: cancel.clone(),
            next_id: AtomicU64::new(1),
            last_error: Mutex::new(None),
            probes: Mutex::new(Vec::new()),
            retired_malformed: AtomicU64::new(0),
            activations: watch::channel(0).0,
            options,
        });
        tokio::spawn(driver::run(Arc::clone(&engine), commands_rx));
        (engine, cancel.drop_guard())
    }

    /// The options the hub was created with.
    pub(crate) fn options(&self) -> &HubOptions {
        &self.options
    }

    /// The payload encoding.
    pub(crate) fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    pub(crate) fn state_watch(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    /// The server the engine is on (or trying).
    pub(crate) fn server(&self) -> Option<ServerUrl> {
        self.current().and_then(|c| c.server())
    }

    pub(crate) fn probe_results(&self) -> Vec<ProbeResult> {
        lock(&self.probes).clone()
    }

    /// Malformed messages dropped so far, on every connection the engine has had.
    pub(crate) fn malformed_messages(&self) -> u64 {
        let current = self.current().map_or(0, |c| c.client.statistics().malformed_messages.load(Ordering::Relaxed));
        self.retired_malformed.load(Ordering::Relaxed) + current
    }

    /// A stream of connection events from now on.
    pub(crate) fn events(&self) -> impl Stream<Item = HubEvent> + Send + Unpin + 'static {
        let rx = self.events.subscribe();
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

    /// Where the connection stands now; `None` while there is none.
    pub(crate) fn checkpoint(&self) -> Option<Checkpoint> {
        let conn = self.current()?;
        let stats = conn.client.statistics();
        Some(Checkpoint {
            connection: conn.id,
            connects: stats.connects.load(Ordering::Acquire),
            server_errors: stats.server_errors.load(Ordering::Acquire),
        })
    }

    /// One round trip on the checkpoint's connection, then its errors since then (see
    /// [`Hub::confirm`](crate::Hub::confirm)).
    pub(crate) async fn confirm(&self, since: &Checkpoint) -> Result<(), PublishError> {
        if self.is_closed() {
            return Err(PublishError::new(PublishErrorKind::Closed));
        }
        let lost = |detail: &str| PublishError::new(PublishErrorKind::NotConnected).with_detail(detail);
        let conn =
            self.current().filter(|c| c.id == since.connection).ok_or_else(|| lost("the connection was replaced"))?;
        let answered = round_trip(&conn.client, self.options.request_timeout).await;
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

    /// Asks the driver to re-plan and move to the best reachable server.
    pub(crate) async fn reconnect(&self) -> Result<ServerUrl, SwitchError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Reconnect(tx)).is_err() {
            return Err(SwitchError::new(SwitchErrorKind::Closed));
        }
        rx.await.unwrap_or_else(|_| Err(SwitchError::new(SwitchErrorKind::Closed)))
    }

    /// Asks the driver to move to `server` now.
    pub(crate) async fn switch_to(&self, server: &ServerUrl) -> Result<ServerUrl, SwitchError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::SwitchTo(server.clone(), SwitchReason::Manual, tx)).is_err() {
            return Err(SwitchError::new(SwitchErrorKind::Closed));
        }
        rx.await.unwrap_or_else(|_| Err(SwitchError::new(SwitchErrorKind::Closed)))
    }

    fn current(&self) -> Option<Arc<Connection>> {
        self.connection.borrow().clone()
    }

    /// Sets the state; true if it changed.
    fn set_state(&self, state: ConnectionState) -> bool {
        let changed = self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            self.connected.store(state == ConnectionState::Connected, Ordering::Release);
            changed
        });
        if changed && state == ConnectionState::Connected {
            self.activated();
        }
        changed
    }

    /// Records an activation (see [`Engine::activations`]).
    fn activated(&self) {
        self.activations.send_modify(|n| *n += 1);
    }

    /// A watch that changes every time a connection becomes usable: the first connect, a
    /// reconnect, a restart or a switch to another server. What a subscription receives
    /// follows the switch on its own; what a peer must be told again (protocol 4's
    /// republish and sync) is the watcher's job.
    pub(crate) fn activations(&self) -> watch::Receiver<u64> {
        self.activations.subscribe()
    }

    fn emit(&self, event: HubEvent) {
        let _ = self.events.send(event);
    }

    fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    fn set_last_error(&self, error: impl Into<String>) {
        *lock(&self.last_error) = Some(error.into());
    }

    fn set_probes(&self, probes: Vec<ProbeResult>) {
        *lock(&self.probes) = probes;
    }

    /// Installs `conn` as the connection in use and returns the previous one.
    fn replace_connection(&self, conn: Arc<Connection>) -> Option<Arc<Connection>> {
        let old = self.connection.send_replace(Some(conn));
        if let Some(old) = &old {
            let dropped = old.client.statistics().malformed_messages.load(Ordering::Relaxed);
            self.retired_malformed.fetch_add(dropped, Ordering::Relaxed);
        }
        old
    }

    fn bindings(&self) -> Vec<Arc<Binding>> {
        lock(&self.bindings).values().cloned().collect()
    }

    /// Forgets a binding (its inbox went away).
    fn unbind(&self, id: u64) {
        lock(&self.bindings).remove(&id);
    }

    fn not_connected_detail(&self) -> String {
        let servers: Vec<String> = self.options.servers.iter().map(ToString::to_string).collect();
        match self.last_error() {
            Some(err) => format!("tried {}; last error: {err}", servers.join(", ")),
            None => format!("tried {}", servers.join(", ")),
        }
    }

    /// Waits until connected, for at most `timeout`.
    pub(crate) async fn wait_connected(&self, timeout: Duration) -> Result<(), ConnectError> {
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
    async fn connected(&self, timeout: Duration) -> Result<Arc<Connection>, ConnectError> {
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
        if self.is_closed() || !self.connected.load(Ordering::Acquire) {
            return None;
        }
        let current = self.connection.borrow();
        current.as_ref().filter(|c| c.gate_is_open()).cloned()
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
    pub(crate) async fn publish(
        &self,
        subject: Subject,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), PublishError> {
        // The fast path: connected, gate open, room in the command channel — queued at once,
        // in order, with no future to build.
        let (conn, subject, payload) = match self.ready_connection() {
            Some(conn) if headers.is_none() => match conn.client.try_publish(subject, payload) {
                Ok(None) => return Ok(()),
                Ok(Some((subject, payload))) => (conn, subject, payload),
                Err(e) => return Err(self.publish_error(e)),
            },
            Some(conn) => (conn, subject, payload),
            None => (Box::pin(self.publishing_connection()).await?, subject, payload),
        };
        Box::pin(self.publish_on(&conn, subject, payload, headers)).await
    }

    /// Publishes on `conn`, waiting for room in its command channel.
    async fn publish_on(
        &self,
        conn: &Connection,
        subject: Subject,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), PublishError> {
        let result = match headers {
            Some(h) => conn.client.publish_with_headers(subject, h, payload).await,
            None => conn.client.publish(subject, payload).await,
        };
        result.map_err(|e| self.publish_error(e))
    }

    /// Publishes only when connected now (no wait): protocol 4's `pub` has no offline
    /// buffering, and its background traffic (reports, sync answers) must not queue up.
    pub(crate) async fn publish_now(
        &self,
        subject: Subject,
        reply: Option<Subject>,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), PublishError> {
        let Some(conn) = self.ready_connection() else {
            return Err(if self.is_closed() {
                PublishError::new(PublishErrorKind::Closed)
            } else {
                PublishError::new(PublishErrorKind::NotConnected).with_detail(self.not_connected_detail())
            });
        };
        // The fast path of `publish`: queued at once when the command channel has room.
        let (subject, payload) = match (&reply, &headers) {
            (None, None) => match conn.client.try_publish(subject, payload) {
                Ok(None) => return Ok(()),
                Ok(Some(back)) => back,
                Err(e) => return Err(self.publish_error(e)),
            },
            _ => (subject, payload),
        };
        let result = match (reply, headers) {
            (Some(r), Some(h)) => conn.client.publish_with_reply_and_headers(subject, r, h, payload).await,
            (Some(r), None) => conn.client.publish_with_reply(subject, r, payload).await,
            (None, Some(h)) => conn.client.publish_with_headers(subject, h, payload).await,
            (None, None) => conn.client.publish(subject, payload).await,
        };
        result.map_err(|e| self.publish_error(e))
    }

    fn publish_error(&self, e: async_nats::PublishError) -> PublishError {
        {
            let kind = match e.kind() {
                async_nats::client::PublishErrorKind::MaxPayloadExceeded => PublishErrorKind::MaxPayloadExceeded,
                _ if self.is_closed() => PublishErrorKind::Closed,
                _ => PublishErrorKind::Other,
            };
            PublishError::new(kind).with_source(e)
        }
    }

    /// Sends a request and waits for its reply, for at most `timeout` in all (including the
    /// wait for a connection).
    pub(crate) async fn request(
        &self,
        subject: Subject,
        payload: Bytes,
        headers: Option<HeaderMap>,
        timeout: Duration,
    ) -> Result<async_nats::Message, RequestError> {
        let started = tokio::time::Instant::now();
        let conn = self.connected(timeout).await.map_err(|e| match e.kind() {
            ConnectErrorKind::Closed => RequestError::new(RequestErrorKind::Closed),
            _ => RequestError::new(RequestErrorKind::NotConnected).with_source(e),
        })?;
        conn.wait_gate().await;
        let remaining = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        let mut request = async_nats::Request::new().payload(payload).timeout(Some(remaining));
        if let Some(h) = headers {
            request = request.headers(h);
        }
        conn.client.send_request(subject.clone(), request).await.map_err(|e| {
            let kind = match e.kind() {
                async_nats::RequestErrorKind::TimedOut => RequestErrorKind::TimedOut,
                async_nats::RequestErrorKind::NoResponders => RequestErrorKind::NoResponders,
                async_nats::RequestErrorKind::MaxPayloadExceeded => RequestErrorKind::MaxPayloadExceeded,
                _ if self.is_closed() => RequestErrorKind::Closed,
                _ => RequestErrorKind::Other,
            };
            // The kind says all there is for these; async-nats' own text would only repeat it.
            let plain = matches!(kind, RequestErrorKind::TimedOut | RequestErrorKind::NoResponders);
            let error = RequestError::new(kind).with_detail(format!("subject {subject}"));
            if plain { error } else { error.with_source(e) }
        })
    }

    /// Subscribes `subject` (in queue group `queue`) on the current connection and registers
    /// it so it follows every connection change. With [`Confirmation::Server`] it returns once
    /// the server has the interest (when connected) and a subscription the server refuses is
    /// an error; with [`Confirmation::Ordered`] it returns once the SUB is queued and a refusal
    /// ends the subscription later ([`Engine::end_refused`]).
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        subject: &async_nats::Subject,
        queue: Option<&str>,
    ) -> Result<Inbox, SubscribeError> {
        if self.is_closed() {
            return Err(SubscribeError::new(SubscribeErrorKind::Closed));
        }
        if let Some(q) = queue
            && (q.is_empty() || q.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(SubscribeError::new(SubscribeErrorKind::InvalidQueueGroup).with_detail(format!("{q:?}")));
        }
        self.connection_object().await?;
        let binding = Arc::new(Binding {
            subject: subject.clone(),
            queue: queue.map(str::to_owned),
            mailbox: Mailbox::default(),
        });
        let errors_before;
        let (id, subscriber, conn) = {
            let _switching = self.switch_lock.lock().await;
            let conn = self.current().ok_or_else(|| SubscribeError::new(SubscribeErrorKind::Closed))?;
            errors_before = conn.client.statistics().server_errors.load(Ordering::Acquire);
            let subscriber = binding
                .subscribe_on(&conn.client)
                .await
                .map_err(|e| SubscribeError::new(SubscribeErrorKind::Other).with_source(e))?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            lock(&self.bindings).insert(id, binding.clone());
            (id, subscriber, conn)
        };
        if self.options.subscribe_confirmation == Confirmation::Server && conn.is_connected() {
            match round_trip(&conn.client, self.options.request_timeout).await {
                Ok(_) => {
                    // The server answers a refused SUB with `-ERR` before its PONG.
                    let errors = conn.client.statistics().server_errors_after(errors_before);
                    // An error naming no queue group refuses this subject whatever the group.
                    let refuses_this = |e: &&String| {
                        refused_subscription(e)
                            .is_some_and(|(s, q)| s == subject.as_str() && (q.is_none() || q.as_deref() == queue))
                    };
                    if let Some(error) = errors.iter().find(refuses_this) {
                        self.unbind(id);
                        drop(subscriber);
                        return Err(
                            SubscribeError::new(SubscribeErrorKind::PermissionDenied).with_detail(error.clone())
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(%subject, error = %e, "subscription not confirmed by the server");
                }
            }
        }
        Ok(Inbox::new(Arc::clone(self), id, subscriber, binding))
    }

    /// Ends every subscription the server refused in `error` (a permissions violation for a
    /// subscription): the server will never deliver to it. Under [`Confirmation::Server`] the
    /// refused `subscribe()` has already failed and unbound itself; this catches the refusals
    /// reported after `subscribe()` returned ([`Confirmation::Ordered`], or a server with other
    /// permissions after a switch).
    fn end_refused(&self, error: &str) {
        let Some((subject, queue)) = refused_subscription(error) else { return };
        let refused: Vec<(u64, Arc<Binding>)> = {
            let mut bindings = lock(&self.bindings);
            let ids: Vec<u64> = bindings
                .iter()
                .filter(|(_, b)| b.subject.as_str() == subject && b.queue == queue)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| bindings.remove(&id).map(|b| (id, b))).collect()
        };
        for (id, binding) in refused {
            tracing::warn!(%subject, id, "the server refused the subscription; ending it");
            binding.mailbox.send(inbox::Switch::End);
        }
    }

    /// One round trip on the current connection, if connected: afterwards the server has
    /// processed everything sent before (an UNSUB, say).
    async fn barrier(&self) {
        if let Some(conn) = self.current()
            && conn.is_connected()
        {
            let _ = round_trip(&conn.client, self.options.request_timeout).await;
        }
    }

    /// Drains every subscription, flushes pending publishes and closes the connection.
    /// Idempotent.
    pub(crate) async fn close(&self) {
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

#[cfg(test)]
mod tests {
    use super::refused_subscription;

    #[test]
    fn refused_subscriptions_are_read_from_server_errors() {
        let plain = "permissions violation for subscription to \"secret.x\"";
        assert_eq!(refused_subscription(plain), Some(("secret.x".to_owned(), None)));
        let queued = "Permissions Violation for Subscription to \"secret.>\" using queue \"workers\"";
        assert_eq!(refused_subscription(queued), Some(("secret.>".to_owned(), Some("workers".to_owned()))));
        assert_eq!(refused_subscription("permissions violation for publish to \"secret.x\""), None);
        assert_eq!(refused_subscription("authorization violation"), None);
        assert_eq!(refused_subscription("permissions violation for subscription to \"unterminated"), None);
    }
}
