//! The [`Namespace`] handle and the core every protocol-4 component of one namespace shares:
//! ids, options, counters, and the task that runs the activation sequence of §4.5 on every
//! connection the hub activates (first connect, reconnect, restart, hot switch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Error, live, messaging, presence, store, sync};
use crate::engine::{Engine, lock};
use crate::hub::Hub;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::names::{Id, Name, Subjects};
use crate::wire::p4::record::Capacity;

/// Options of a [`Namespace`]. The defaults are the reference's (§1.1, §10.3) except where
/// the module docs of [`crate::p4`] say otherwise.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Record store limits (10,000 names, 16 MiB of encoded records).
    pub capacity: Capacity,
    /// How long a late-joiner sync waits for the first answer before deciding that nobody
    /// holds records (the reference's `peer_timeout`, 2.4 s, is also its whole window).
    pub sync_first_reply: Duration,
    /// A sync is complete once answers have been quiet this long (kinopio; the reference has
    /// no completion signal).
    pub sync_quiet: Duration,
    /// The longest a sync may run in all.
    pub sync_limit: Duration,
    /// Answer the same requesting instance at most once per this period (`peer_timeout`).
    pub sync_answer_interval: Duration,
    /// Anti-entropy: about once per this period, one instance of the namespace (chosen at
    /// random, each with probability 1 / instances online) runs a sync round, so stores that
    /// drifted apart while connected (a partitioned backbone that healed) converge. `None`
    /// turns it off. See `crate::p4` for why this is not Python's every-15-s-from-everyone.
    pub repair_interval: Option<Duration>,
    /// Health report period (5 s).
    pub health_interval: Duration,
    /// Timeout of requests, flushes and sends when none is given (3 s).
    pub timeout: Duration,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            capacity: Capacity::default(),
            sync_first_reply: Duration::from_millis(2400),
            sync_quiet: Duration::from_millis(300),
            sync_limit: Duration::from_secs(60),
            sync_answer_interval: Duration::from_millis(2400),
            repair_interval: Some(Duration::from_secs(30)),
            health_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
        }
    }
}

impl NamespaceOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`NamespaceOptions::capacity`].
    pub fn capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`NamespaceOptions::sync_first_reply`].
    pub fn sync_first_reply(mut self, wait: Duration) -> Self {
        self.sync_first_reply = wait;
        self
    }

    /// Sets [`NamespaceOptions::sync_quiet`].
    pub fn sync_quiet(mut self, quiet: Duration) -> Self {
        self.sync_quiet = quiet;
        self
    }

    /// Sets [`NamespaceOptions::repair_interval`].
    pub fn repair_interval(mut self, interval: Option<Duration>) -> Self {
        self.repair_interval = interval;
        self
    }

    /// Sets [`NamespaceOptions::health_interval`].
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// Sets [`NamespaceOptions::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Counters of one namespace, reported in health reports (§7.1) (and `rejected` by
/// [`Namespace::rejected`]). Each component updates its own.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub sent_messages: AtomicU64,
    pub received_messages: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Activations after the first one.
    pub reconnects: AtomicU64,
    /// Messaging: requests waiting for replies.
    pub pending_requests: AtomicU64,
    /// Messaging: messages queued for handlers / subscribers, and their bytes.
    pub pending_messages: AtomicU64,
    pub pending_bytes: AtomicU64,
    /// Messaging: handlers running now.
    pub in_flight_handlers: AtomicU64,
    /// Messaging: messages dropped because a subscription's queue was full.
    pub dropped_messages: AtomicU64,
    /// Messaging subscriptions and handlers alive.
    pub subscriptions: AtomicU64,
    /// Received input refused by the wire rules (malformed records, reports, messages,
    /// version collisions): dropped and counted, nothing else changes.
    pub rejected: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// An error kept for health reports (`currentError` / `lastError`, §7.1).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorNote {
    pub code: ErrorCode,
    pub message: String,
    /// Epoch milliseconds.
    pub at: u64,
}

/// The errors a health report shows.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    pub current: Option<ErrorNote>,
    pub last: Option<ErrorNote>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The state shared by every handle and component of one namespace.
pub(crate) struct Core {
    pub engine: Arc<Engine>,
    pub name: Name,
    pub subjects: Subjects,
    /// This instance's id in health reports and sync requests (a UUID per namespace handle).
    pub instance_id: Id,
    /// The writer id of this instance's records (a UUID, distinct from `instance_id`).
    pub writer: Id,
    pub options: NamespaceOptions,
    pub stats: Stats,
    pub errors: Mutex<ErrorLog>,
    pub started: Instant,
    /// Cancelled when the last [`Namespace`] handle goes or the namespace is closed; every
    /// background task of the namespace ends on it.
    pub cancel: CancellationToken,
    pub store: store::Shared,
    pub sync: sync::Shared,
    pub presence: presence::Presence,
    pub messaging: messaging::Messaging,
    pub live: live::Live,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).field("instance", &self.instance_id).finish()
    }
}

impl Core {
    /// Records an error of this instance for its health reports.
    pub(crate) fn note_error(&self, code: ErrorCode, message: impl Into<String>) {
        let note = ErrorNote { code, message: message.into(), at: epoch_ms() };
        let mut log = lock(&self.errors);
        log.current = Some(note.clone());
        log.last = Some(note);
    }

    /// Counts one refused input (see [`Stats::rejected`]).
    pub(crate) fn reject(&self, what: &str, error: &Error) {
        Stats::add(&self.stats.rejected, 1);
        tracing::debug!(namespace = %self.name, %error, "dropped {what}");
    }
}

/// A fresh UUID v4 as an [`Id`].
pub(crate) fn new_id() -> Id {
    Id::new(uuid::Uuid::new_v4().to_string()).unwrap_or_else(|_| unreachable!("a UUID is a valid id"))
}

struct Inner {
    core: Arc<Core>,
    _stop: DropGuard,
}

/// One protocol-4 namespace on a hub: its shared variables, events, instances and live
/// channels. Cheap to clone; every clone is the same instance. The namespace keeps running
/// (syncing, answering peers, reporting its health) while a handle exists.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.core.fmt(f)
    }
}

/// The namespaces of one hub, by name: the same name is the same instance.
#[derive(Default)]
pub(crate) struct Registry(Mutex<HashMap<String, Weak<Inner>>>);

impl Hub {
    /// The protocol-4 namespace `name` on this hub (created on first use, with the default
    /// [`NamespaceOptions`]). The same name gives the same instance while a handle exists.
    ///
    /// # Errors
    /// `INVALID_NAME` unless `name` is 1–128 UTF-8 bytes without control characters.
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        self.namespace_with(name, NamespaceOptions::default())
    }

    /// [`Hub::namespace`] with options. The options apply when the namespace is created; a
    /// namespace that already exists on this hub is returned as it is.
    ///
    /// # Errors
    /// As [`Hub::namespace`].
    pub fn namespace_with(&self, name: &str, options: NamespaceOptions) -> Result<Namespace, Error> {
        let name = Name::new(name)?;
        let mut registry = lock(&self.namespaces().0);
        if let Some(inner) = registry.get(name.as_str()).and_then(Weak::upgrade) {
            return Ok(Namespace { inner });
        }
        registry.retain(|_, w| w.strong_count() > 0);
        let cancel = CancellationToken::new();
        let core = Arc::new(Core {
            engine: Arc::clone(self.engine()),
            subjects: Subjects::new(&name),
            instance_id: new_id(),
            writer: new_id(),
            store: store::Shared::new(options.capacity),
            sync: sync::Shared::default(),
            presence: presence::Presence::new(),
            messaging: messaging::Messaging::new(),
            live: live::Live::new(),
            name: name.clone(),
            options,
            stats: Stats::default(),
            errors: Mutex::new(ErrorLog::default()),
            started: Instant::now(),
            cancel: cancel.clone(),
        });
        tokio::spawn(run(Arc::clone(&core)));
        let inner = Arc::new(Inner { core, _stop: cancel.drop_guard() });
        registry.insert(name.as_str().to_owned(), Arc::downgrade(&inner));
        Ok(Namespace { inner })
    }
}

impl Namespace {
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.inner.core.name.as_str()
    }

    /// This instance's id (in health reports and sync requests).
    pub fn instance_id(&self) -> &str {
        self.inner.core.instance_id.as_str()
    }

    /// The writer id of this instance's records.
    pub fn writer(&self) -> &str {
        self.inner.core.writer.as_str()
    }

    /// Drains the namespace (§5.6) before the program closes its hub: messaging drains first
    /// ([`Namespace::drain_messaging`]: new messaging work is refused with `DRAINING`,
    /// handlers answer what they had queued, requests finish), then every local write is
    /// confirmed by the server ([`Namespace::flush`]). One deadline for both. Unlike Python's
    /// `hub.drain` it does not close the hub, which may hold other namespaces.
    ///
    /// # Errors
    /// `DRAIN_TIMEOUT` when messaging or the writes are not done within `timeout` (for
    /// example while disconnected: the writes stay pending).
    ///
    /// # Cancel safety
    /// Cancel safe; the namespace stays draining.
    pub async fn drain(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.drain_messaging(timeout).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.flush(left).await.map_err(|e| match e.kind() {
            ErrorCode::Timeout => Error::new(ErrorCode::DrainTimeout).with_detail(e.to_string()),
            _ => e,
        })
    }

    /// How many received inputs (records, reports, messages, sync answers) were refused by
    /// the wire rules and dropped. A refused input changes nothing else.
    pub fn rejected(&self) -> u64 {
        Stats::get(&self.inner.core.stats.rejected)
    }
}

/// The namespace's background task: the activation sequence on every activation of the hub's
/// connection (§4.5), until the namespace goes.
async fn run(core: Arc<Core>) {
    let mut activations = core.engine.activations();
    // The record, sync and health subscriptions are made once; the engine carries them
    // across connections. Each component starts its own long-lived tasks here.
    if !start(&core).await {
        return;
    }
    // Messages dropped anywhere on the connection (a slow consumer) may include records:
    // a sync round repairs the store.
    let mut events = core.engine.events();
    let mut seen = 0;
    loop {
        // The current activation counts too: a hub that is already connected activates now.
        let current = *activations.borrow_and_update();
        if current != seen {
            if seen != 0 {
                Stats::add(&core.stats.reconnects, 1);
            }
            seen = current;
            activate(&core).await;
        }
        tokio::select! {
            () = core.cancel.cancelled() => break,
            changed = activations.changed() => if changed.is_err() { break },
            Some(event) = futures::StreamExt::next(&mut events) => {
                if matches!(event, crate::state::HubEvent::SlowConsumer { .. }) {
                    tracing::warn!(namespace = %core.name, "messages were dropped on the connection; re-syncing the namespace");
                    sync::on_activation(&core).await;
                }
            }
        }
    }
}

/// Starts the components' subscriptions and tasks (once per namespace), each retried until
/// it succeeds (a hub that cannot connect yet has no connection to subscribe on). False when
/// the namespace went away meanwhile.
async fn start(core: &Arc<Core>) -> bool {
    macro_rules! step {
        ($what:literal, $start:expr) => {
            loop {
                match $start.await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(namespace = %core.name, error = %e, concat!("starting ", $what, " failed; retrying"));
                        tokio::select! {
                            () = core.cancel.cancelled() => return false,
                            () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                }
            }
        };
    }
    step!("the record subscription", store::start(core));
    step!("sync", sync::start(core));
    step!("presence", presence::start(core));
    true
}

/// The activation sequence (§4.5): republish every record, re-grant live sessions, request a
/// sync, report health.
async fn activate(core: &Arc<Core>) {
    store::on_activation(core).await;
    live::on_activation(core).await;
    sync::on_activation(core).await;
    presence::on_activation(core).await;
}
