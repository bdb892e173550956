//! What a hub keeps per subject for its [`Variable`](crate::Variable) handles: the subject,
//! the latest value seen (from this hub's publishes and subscriptions), the watch tracker and
//! the variable's current service. Shared by variables, subscriptions and watches; it knows
//! nothing about connections.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::lock;

/// Per-subject state (see the module docs).
#[derive(Debug)]
pub(crate) struct VariableState {
    /// The subject (or pattern, for [`Hub::subscribe_pattern`](crate::Hub::subscribe_pattern)),
    /// shared with the engine's binding and async-nats' subscription.
    pub(crate) subject: async_nats::Subject,
    /// The latest payload seen.
    latest: Mutex<Latest>,
    /// The subscription that keeps `latest` fresh while any watch is alive.
    tracker: Mutex<Weak<Tracker>>,
    /// Stops the variable's current service when another one replaces it.
    service: Mutex<Option<CancellationToken>>,
}

/// Where the latest payload lives: a plain slot until the first
/// [`ValueWatch`](crate::ValueWatch) asks for a `watch` channel, then that channel (so
/// watches wake up). Most variables are never watched, and a `watch` channel costs a few
/// hundred bytes and a notification per update.
#[derive(Debug, Default)]
struct Latest {
    value: Option<Bytes>,
    watch: Option<watch::Sender<Option<Bytes>>>,
}

impl VariableState {
    pub(crate) fn new(subject: &str) -> VariableState {
        VariableState {
            subject: async_nats::Subject::from(subject),
            latest: Mutex::new(Latest::default()),
            tracker: Mutex::new(Weak::new()),
            service: Mutex::new(None),
        }
    }

    /// Records a payload as the latest value (waking the watches, if any).
    #[inline]
    pub(crate) fn record(&self, payload: &Bytes) {
        let mut latest = lock(&self.latest);
        match &latest.watch {
            None => latest.value = Some(payload.clone()),
            Some(watch) if watch.receiver_count() == 0 => {
                // Nobody watches any more: store without notifying.
                watch.send_if_modified(|latest| {
                    *latest = Some(payload.clone());
                    false
                });
            }
            Some(watch) => {
                watch.send_replace(Some(payload.clone()));
            }
        }
    }

    /// The latest payload seen.
    pub(crate) fn latest(&self) -> Option<Bytes> {
        let latest = lock(&self.latest);
        match &latest.watch {
            None => latest.value.clone(),
            Some(watch) => watch.borrow().clone(),
        }
    }

    /// A watch of the latest payload.
    pub(crate) fn watch_latest(&self) -> watch::Receiver<Option<Bytes>> {
        let mut latest = lock(&self.latest);
        let Latest { value, watch } = &mut *latest;
        watch.get_or_insert_with(|| watch::channel(value.take()).0).subscribe()
    }

    /// The live tracker, if a watch holds one.
    pub(crate) fn tracker(&self) -> Option<Arc<Tracker>> {
        lock(&self.tracker).upgrade()
    }

    /// Remembers the tracker (weakly: it lives as long as the watches holding it).
    pub(crate) fn set_tracker(&self, tracker: &Arc<Tracker>) {
        *lock(&self.tracker) = Arc::downgrade(tracker);
    }

    /// Makes `service` the variable's service and stops the previous one.
    pub(crate) fn replace_service(&self, service: CancellationToken) {
        if let Some(previous) = lock(&self.service).replace(service) {
            previous.cancel();
        }
    }
}

/// A task that keeps a variable's latest value fresh; aborted when the last watch goes.
#[derive(Debug)]
pub(crate) struct Tracker {
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    pub(crate) fn new(task: tokio::task::JoinHandle<()>) -> Tracker {
        Tracker { task }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
