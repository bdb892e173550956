//! The record store of one namespace (§4): the pure last-writer-wins [`Store`], and its I/O —
//! the record subscription, the flusher that sends and confirms local writes, and the
//! republish on every activation.
//!
//! # Writes
//! A local write ([`Store::write`]) is committed at once as *pending*, published straight
//! away when the hub is connected, and confirmed by the flusher (a PING/PONG barrier on the
//! same connection, [`Engine::confirm`](crate::engine::Engine)); a confirmed write stops being
//! pending. Offline writes stay pending and go out on the next activation.
//!
//! # Deliberate difference from 3.0.0 (W11)
//! On (re)connect Python republishes its **whole** store, and `flush()` does it again. kinopio
//! republishes only its pending (unconfirmed) writes: a confirmed record has reached the
//! server, and a peer that missed it gets it from its own sync when it reconnects. Background
//! traffic therefore does not grow with the store size times the fleet.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use indexmap::IndexMap;
use tokio::sync::{Notify, watch};

use super::Error;
use super::namespace::Core;
use crate::engine::lock;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::Json;
use crate::wire::p4::names::{Id, Name};
use crate::wire::p4::record::{self, Capacity, Clock, Outcome, Record, Usage, Version};

/// What a health report says about the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Stored names, live and deleted.
    pub variables: u64,
    /// Local writes not yet confirmed by the server.
    pub pending_variables: u64,
    /// Encoded bytes of those writes.
    pub pending_bytes: u64,
}

/// One stored record.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub record: Arc<Record>,
    /// The canonical encoding, as sent.
    pub encoded: Bytes,
    /// A local write the server has not confirmed yet.
    pub pending: bool,
}

/// What [`Store::apply`] did with a received record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Applied {
    /// Stored: the variable changed.
    Stored,
    /// Older than, or identical to, what is stored.
    Ignored,
    /// Same version, different content (`VERSION_COLLISION`): ignored.
    Collision,
    /// The store is full (`MEMORY_FULL`): ignored.
    Full(String),
}

/// The pure record store: LWW (§4.3), capacity, the clock, pending writes. Records keep
/// insertion order (sync answers follow it, like Python's).
#[derive(Debug)]
pub(crate) struct Store {
    records: IndexMap<Name, Entry>,
    usage: Usage,
    capacity: Capacity,
    clock: Clock,
    pending_bytes: usize,
    pending: usize,
}

impl Store {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Store {
            records: IndexMap::new(),
            usage: Usage::default(),
            capacity,
            clock: Clock::default(),
            pending_bytes: 0,
            pending: 0,
        }
    }

    pub(crate) fn get(&self, name: &Name) -> Option<&Entry> {
        self.records.get(name)
    }

    /// Every record, in store order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.records.values()
    }

    pub(crate) fn summary(&self) -> Summary {
        Summary {
            variables: self.records.len() as u64,
            pending_variables: self.pending as u64,
            pending_bytes: self.pending_bytes as u64,
        }
    }

    fn put(&mut self, name: Name, entry: Entry) {
        if let Some(old) = self.records.get(&name)
            && old.pending
        {
            self.pending -= 1;
            self.pending_bytes -= old.encoded.len();
        }
        if entry.pending {
            self.pending += 1;
            self.pending_bytes += entry.encoded.len();
        }
        self.clock.observe(&entry.record.version().counter);
        self.records.insert(name, entry);
    }

    /// Applies a received record (§4.3).
    pub(crate) fn apply(&mut self, incoming: Record) -> Applied {
        let local = self.records.get(incoming.name());
        match record::apply(local.map(|e| &*e.record), incoming) {
            Outcome::Older | Outcome::Duplicate => Applied::Ignored,
            Outcome::Collision(_) => Applied::Collision,
            Outcome::Newer(record) => {
                match self.capacity.admit(self.usage, local.map(|e| &*e.record), &record) {
                    Ok(usage) => self.usage = usage,
                    Err(e) => return Applied::Full(e.to_string()),
                }
                let encoded = Bytes::from(record.encode());
                let name = record.name().clone();
                self.put(name, Entry { record: Arc::new(record), encoded, pending: false });
                Applied::Stored
            }
        }
    }

    /// A local write: `Some(value)` sets, `None` deletes. Committed at once as pending.
    ///
    /// # Errors
    /// `INVALID_VALUE`/`VALUE_TOO_LARGE`, `MEMORY_FULL`, or `INVALID_VERSION` when no version
    /// can beat the stored one (§11 W9, see [`record`]).
    pub(crate) fn write(&mut self, name: &Name, value: Option<&Json>, writer: &Id) -> Result<Entry, Error> {
        let local = self.records.get(name);
        let version = self.clock.next_version(name, local.map(|e| e.record.version()), writer)?;
        let record = match value {
            Some(value) => Record::live(name.clone(), version, value)?,
            None => Record::tombstone(name.clone(), version),
        };
        self.usage = self.capacity.admit(self.usage, local.map(|e| &*e.record), &record)?;
        let encoded = Bytes::from(record.encode());
        let entry = Entry { record: Arc::new(record), encoded, pending: true };
        self.put(name.clone(), entry.clone());
        Ok(entry)
    }

    /// Marks the write `version` of `name` as confirmed, if it is still the stored one.
    /// Returns true when it was pending.
    pub(crate) fn confirm(&mut self, name: &Name, version: &Version) -> bool {
        match self.records.get_mut(name) {
            Some(entry) if entry.pending && entry.record.version() == version => {
                entry.pending = false;
                self.pending -= 1;
                self.pending_bytes -= entry.encoded.len();
                true
            }
            _ => false,
        }
    }

    /// The pending writes: (name, version, encoding).
    pub(crate) fn pending(&self) -> Vec<(Name, Version, Bytes)> {
        self.records
            .iter()
            .filter(|(_, e)| e.pending)
            .map(|(n, e)| (n.clone(), e.record.version().clone(), e.encoded.clone()))
            .collect()
    }
}

/// The state of one variable as its watchers see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    pub entry: Option<Entry>,
}

/// The per-variable watches of [`Shared`].
#[derive(Debug, Default)]
struct Slots {
    map: std::collections::HashMap<Name, watch::Sender<Slot>>,
    /// Prune watches nobody holds when the map reaches this size (amortised).
    prune_at: usize,
}

/// The store shared by a namespace's handles, with per-variable watches.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Per-variable watches, created when a handle asks and dropped once no handle is left
    /// (so a namespace that touched many names does not keep a watch for each).
    slots: Mutex<Slots>,
    /// Wakes the flusher.
    pub flush: Notify,
    /// Counts confirmations, so a waiter sees progress.
    pub confirmed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Shared {
            store: Mutex::new(Store::new(capacity)),
            slots: Mutex::new(Slots::default()),
            flush: Notify::new(),
            confirmed: watch::channel(0).0,
        }
    }

    /// The store's counts for health reports.
    pub(crate) fn summary(&self) -> Summary {
        lock(&self.store).summary()
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut lock(&self.store))
    }

    /// A watch of `name`, created on first use.
    pub(crate) fn slot(&self, name: &Name) -> watch::Receiver<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(tx) = slots.map.get(name) {
            return tx.subscribe();
        }
        let entry = lock(&self.store).get(name).cloned();
        let (tx, rx) = watch::channel(Slot { entry });
        slots.map.insert(name.clone(), tx);
        if slots.map.len() >= slots.prune_at {
            slots.map.retain(|_, tx| tx.receiver_count() > 0);
            slots.prune_at = (slots.map.len() * 2).max(64);
        }
        rx
    }

    /// Tells the watchers of `name` (if any) its current entry.
    pub(crate) fn notify(&self, name: &Name) {
        let mut slots = lock(&self.slots);
        if let Some(tx) = slots.map.get(name) {
            if tx.receiver_count() == 0 {
                slots.map.remove(name);
            } else {
                let entry = lock(&self.store).get(name).cloned();
                tx.send_replace(Slot { entry });
            }
        }
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        lock(&self.slots).map.len()
    }

    /// Applies a received record and tells the watchers; returns what happened.
    pub(crate) fn apply(&self, record: Record) -> Applied {
        let name = record.name().clone();
        let applied = lock(&self.store).apply(record);
        if applied == Applied::Stored {
            self.notify(&name);
        }
        applied
    }
}

/// Applies a received record on behalf of `core`: refused and colliding records are counted,
/// nothing else changes (a deliberate difference from 3.0.0, W8: Python turns its health to
/// `error`). True when the record was stored.
pub(crate) fn receive(core: &Core, record: Record) -> bool {
    match core.store.apply(record) {
        Applied::Stored => return true,
        Applied::Ignored => {}
        Applied::Collision => {
            core.reject("a record with a colliding version", &Error::new(ErrorCode::VersionCollision))
        }
        Applied::Full(detail) => {
            // Counted, not reported as this instance's error: a stranger can fill a store.
            tracing::warn!(namespace = %core.name, "a record was refused: {detail} (raise NamespaceOptions::capacity)");
            core.reject("a record the store has no room for", &Error::new(ErrorCode::MemoryFull).with_detail(detail));
        }
    }
    false
}

/// Subscribes the namespace's record subjects and starts the flusher.
pub(crate) async fn start(core: &Arc<Core>) -> Result<(), Error> {
    let subject = async_nats::Subject::from(core.subjects.records());
    let mut inbox = core.engine.subscribe(&subject, None).await.map_err(|e| {
        Error::new(ErrorCode::Disconnected).with_detail("could not subscribe the namespace's records").with_source(e)
    })?;
    let reader = Arc::clone(core);
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                () = reader.cancel.cancelled() => break,
                msg = inbox.next() => match msg { Some(m) => m, None => break },
            };
            let record =
                Record::decode(&msg.payload).and_then(|r| r.check_subject(&reader.subjects, &msg.subject).map(|()| r));
            match record {
                Ok(record) => {
                    receive(&reader, record);
                }
                Err(e) => reader.reject("a malformed record", &e.into()),
            }
        }
    });
    tokio::spawn(flusher(Arc::clone(core)));
    Ok(())
}

/// Sends the pending writes and confirms them with a round trip, whenever woken.
async fn flusher(core: Arc<Core>) {
    loop {
        tokio::select! {
            () = core.cancel.cancelled() => break,
            () = core.store.flush.notified() => {}
        }
        flush_pending(&core).await;
    }
}

/// Publishes every pending write, then confirms them (PING/PONG on the same connection).
/// Writes that could not be confirmed stay pending for the next activation.
pub(crate) async fn flush_pending(core: &Core) {
    let pending = core.store.with(|s| s.pending());
    if pending.is_empty() {
        return;
    }
    let Some(checkpoint) = core.engine.checkpoint() else { return };
    for (name, _, encoded) in &pending {
        let subject = async_nats::Subject::from(core.subjects.record(name));
        if core.engine.publish_now(subject, None, encoded.clone(), None).await.is_err() {
            return;
        }
    }
    if core.engine.confirm(&checkpoint).await.is_err() {
        return;
    }
    let mut any = false;
    for (name, version, _) in &pending {
        if core.store.with(|s| s.confirm(name, version)) {
            any = true;
            core.store.notify(name);
        }
    }
    if any {
        core.store.confirmed.send_modify(|n| *n += 1);
    }
}

/// Republishes the pending writes (§4.5 step 2, see the module docs).
pub(crate) async fn on_activation(core: &Arc<Core>) {
    flush_pending(core).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::p4::record::Counter;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }
    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }
    fn remote(n: &str, counter: &str, writer: &str, value: f64) -> Record {
        let version = Version { counter: Counter::new(counter).unwrap(), writer: id(writer) };
        Record::live(name(n), version, &Json::Number(value)).unwrap()
    }

    #[test]
    fn local_writes_follow_the_clock_and_stay_pending_until_confirmed() {
        let mut store = Store::new(Capacity::default());
        assert_eq!(store.apply(remote("a", "7", "w-1", 1.0)), Applied::Stored);
        let entry = store.write(&name("b"), Some(&Json::Number(2.0)), &id("me")).unwrap();
        assert_eq!(entry.record.version().counter.as_str(), "8", "clock + 1");
        assert!(entry.pending);
        assert_eq!(
            store.summary(),
            Summary { variables: 2, pending_variables: 1, pending_bytes: entry.encoded.len() as u64 }
        );
        assert!(store.confirm(&name("b"), entry.record.version()));
        assert_eq!(store.summary().pending_variables, 0);
        assert!(!store.confirm(&name("b"), entry.record.version()), "confirming twice does nothing");
    }

    #[test]
    fn a_newer_remote_record_replaces_a_pending_write() {
        let mut store = Store::new(Capacity::default());
        store.write(&name("a"), Some(&Json::Number(1.0)), &id("me")).unwrap();
        assert_eq!(store.apply(remote("a", "5", "w", 9.0)), Applied::Stored);
        assert_eq!(store.summary().pending_variables, 0);
        assert_eq!(store.summary().pending_bytes, 0);
        assert_eq!(store.get(&name("a")).unwrap().record.value(), Some(&Json::Number(9.0)));
    }

    #[test]
    fn older_duplicate_and_colliding_records_change_nothing() {
        let mut store = Store::new(Capacity::default());
        store.apply(remote("a", "5", "w", 1.0));
        assert_eq!(store.apply(remote("a", "4", "z", 2.0)), Applied::Ignored);
        assert_eq!(store.apply(remote("a", "5", "w", 1.0)), Applied::Ignored);
        assert_eq!(store.apply(remote("a", "5", "w", 3.0)), Applied::Collision);
        assert_eq!(store.get(&name("a")).unwrap().record.value(), Some(&Json::Number(1.0)));
    }

    #[test]
    fn capacity_refuses_new_names_and_the_store_is_unchanged() {
        let mut store = Store::new(Capacity { max_records: 1, max_memory_bytes: 1 << 20 });
        store.apply(remote("a", "1", "w", 1.0));
        assert!(matches!(store.apply(remote("b", "1", "w", 1.0)), Applied::Full(_)));
        let err = store.write(&name("b"), Some(&Json::Null), &id("me")).unwrap_err();
        assert_eq!(err.kind(), ErrorCode::MemoryFull);
        assert_eq!(store.summary().variables, 1);
        // The existing name stays writable.
        store.write(&name("a"), Some(&Json::Number(2.0)), &id("me")).unwrap();
    }

    #[test]
    fn a_maximal_counter_does_not_wedge_other_variables() {
        let mut store = Store::new(Capacity::default());
        store.apply(remote("poison", &"9".repeat(40), "zzz", 1.0));
        let entry = store.write(&name("other"), Some(&Json::Number(1.0)), &id("me")).unwrap();
        assert_eq!(entry.record.version().counter.as_str(), "1");
        // The poisoned variable: a writer that sorts above the poisoner's wins at the same counter…
        store.write(&name("poison"), Some(&Json::Number(2.0)), &id("zzzz")).unwrap();
        // …and one that sorts below is refused rather than publishing a record that loses.
        let err = store.write(&name("poison"), Some(&Json::Number(3.0)), &id("a")).unwrap_err();
        assert_eq!(err.kind(), ErrorCode::InvalidVersion);
    }

    #[test]
    fn watches_nobody_holds_are_dropped() {
        let shared = Shared::new(Capacity::default());
        let held = shared.slot(&name("held"));
        for i in 0..1000 {
            drop(shared.slot(&name(&format!("v{i}"))));
        }
        assert!(shared.watched() <= 128, "{} watches kept", shared.watched());
        shared.with(|s| s.write(&name("held"), Some(&Json::Number(1.0)), &id("me"))).unwrap();
        shared.notify(&name("held"));
        assert!(held.has_changed().unwrap(), "a held watch is kept and notified");
    }

    #[test]
    fn tombstones_keep_the_name() {
        let mut store = Store::new(Capacity::default());
        store.write(&name("a"), Some(&Json::Number(1.0)), &id("me")).unwrap();
        let entry = store.write(&name("a"), None, &id("me")).unwrap();
        assert!(entry.record.is_deleted());
        assert_eq!(store.summary().variables, 1);
        assert_eq!(store.summary().pending_variables, 1);
    }
}
