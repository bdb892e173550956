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
    /// The subject (or pattern, for [`Hub::subscribe_pattern`](crate::Hub::subscribe_pattern)).
    pub(crate) subject: async_nats::Subject,
    /// The latest payload seen, as a watch so [`ValueWatch`](crate::ValueWatch)es wake up.
    latest: watch::Sender<Option<Bytes>>,
    /// The subscription that keeps `latest` fresh while any watch is alive.
    tracker: Mutex<Weak<Tracker>>,
    /// Stops the variable's current service when another one replaces it.
    service: Mutex<Option<CancellationToken>>,
}

impl VariableState {
    pub(crate) fn new(subject: &str) -> VariableState {
        VariableState {
            subject: async_nats::Subject::from(subject),
            latest: watch::channel(None).0,
            tracker: Mutex::new(Weak::new()),
            service: Mutex::new(None),
        }
    }

    /// Records a payload as the latest value.
    pub(crate) fn record(&self, payload: &Bytes) {
        if self.latest.receiver_count() == 0 {
            // Nobody watches: store without notifying (waking the watch channel's notify
            // slots on every message costs more than the rest of a delivery).
            self.latest.send_if_modified(|latest| {
                *latest = Some(payload.clone());
                false
            });
        } else {
            self.latest.send_replace(Some(payload.clone()));
        }
    }

    /// The latest payload seen.
    pub(crate) fn latest(&self) -> Option<Bytes> {
        self.latest.borrow().clone()
    }

    /// A watch of the latest payload.
    pub(crate) fn watch_latest(&self) -> watch::Receiver<Option<Bytes>> {
        self.latest.subscribe()
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
