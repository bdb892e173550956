//! The raw message stream of one subscription: an [`Inbox`] survives server restarts,
//! manual reconnects and hot switches.
//!
//! In steady state the inbox polls the async-nats subscriber directly (no extra task or
//! channel on the hot path). When the driver moves to another connection it leaves the inbox a
//! subscriber on the new connection (through its [`Mailbox`]); the inbox then merges old and
//! new through a short-lived task that passes every message on exactly once (see
//! [`super::overlap`]) and hands the new subscriber back.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::overlap::{OverlapFilter, fingerprint};
use super::{Engine, lock};

/// What the hub tells a subscription about a switch.
#[derive(Debug)]
pub(super) enum Switch {
    /// A subscription on another connection is about to be made: from now on, remember what
    /// is delivered (those messages may arrive on the new connection too).
    Prepare,
    /// The new subscriber is ready: merge.
    Rebind(Box<Rebind>),
    /// The switch failed: forget what was remembered.
    Abort,
    /// The server refused the subscription (a permissions violation reported after
    /// `subscribe()` returned, see [`Confirmation::Ordered`](crate::Confirmation::Ordered)):
    /// end the stream.
    End,
}

/// One hot switch, shared by the merges it starts; when the last merge ends (or its rebind
/// is dropped unused) the hub is back on one connection and
/// [`HubEvent::SwitchSettled`](crate::HubEvent::SwitchSettled) is emitted.
#[derive(Debug)]
pub(super) struct SwitchSettle {
    pub engine: std::sync::Weak<Engine>,
    pub server: crate::server::ServerUrl,
    pub subscriptions: usize,
    pub started: std::time::Instant,
}

impl Drop for SwitchSettle {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.upgrade() {
            let elapsed = self.started.elapsed();
            tracing::debug!(server = %self.server, subscriptions = self.subscriptions, ?elapsed, "switch settled");
            engine.emit(crate::state::HubEvent::SwitchSettled {
                server: self.server.clone(),
                subscriptions: self.subscriptions,
                elapsed,
            });
        }
    }
}

/// A new subscriber for a binding, on the connection the hub moved to.
#[derive(Debug)]
pub(super) struct Rebind {
    pub subscriber: async_nats::Subscriber,
    /// The new connection's client (for the catch-up round trip).
    pub client: async_nats::Client,
    /// Filter duplicates (plain subscriptions); queue groups need none.
    pub dedup: bool,
    pub overlap: Duration,
    /// The switch this rebind belongs to (none for a restart), held until the merge ends.
    pub settle: Option<Arc<SwitchSettle>>,
}

/// Where the hub leaves [`Switch`] messages for one subscription. Switches are rare, so the
/// stream's hot path only reads one atomic flag, and an idle subscription costs a few dozen
/// bytes (an mpsc channel would allocate a block of slots per subscription).
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    pending: AtomicBool,
    queue: std::sync::Mutex<VecDeque<Switch>>,
    waker: AtomicWaker,
}

impl Mailbox {
    /// Leaves a message and wakes the stream.
    pub(crate) fn send(&self, switch: Switch) {
        {
            let mut queue = lock(&self.queue);
            queue.push_back(switch);
            self.pending.store(true, Ordering::Release);
        }
        self.waker.wake();
    }

    /// Takes the next message, if any (cheap when there is none).
    #[inline]
    fn take(&self) -> Option<Switch> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = lock(&self.queue);
        let next = queue.pop_front();
        if queue.is_empty() {
            self.pending.store(false, Ordering::Release);
        }
        next
    }

    /// Registers the stream's waker; true if a message arrived meanwhile.
    fn register(&self, cx: &Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.pending.load(Ordering::Acquire)
    }
}

/// What the hub keeps about a live subscription so it can re-create it elsewhere. One
/// allocation per subscription, shared (`Arc`) by the engine's registry and the inbox.
#[derive(Debug)]
pub(super) struct Binding {
    /// The subject, shared with the variable and with async-nats' own subscription (one
    /// allocation per subject, however many places hold it).
    pub subject: async_nats::Subject,
    pub queue: Option<String>,
    pub mailbox: Mailbox,
}

impl Binding {
    /// Subscribes this binding's subject (and queue group) on `client`.
    pub(crate) async fn subscribe_on(
        &self,
        client: &async_nats::Client,
    ) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
        match &self.queue {
            Some(q) => client.queue_subscribe(self.subject.clone(), q.clone()).await,
            None => client.subscribe(self.subject.clone()).await,
        }
    }
}

enum Merged {
    Message(async_nats::Message),
    Done(async_nats::Subscriber),
}

/// The raw messages of one subscription, across every connection the engine has (see the
/// module docs). Dropping it unsubscribes.
pub(crate) struct Inbox {
    subscriber: Option<async_nats::Subscriber>,
    merging: Option<mpsc::Receiver<Merged>>,
    binding: Arc<Binding>,
    /// Fingerprints of what was delivered since a `Prepare` (plain subscriptions only; boxed:
    /// only during a switch).
    recording: Option<Box<OverlapFilter>>,
    engine: Arc<Engine>,
    id: u64,
    /// The server refused the subscription: the stream has ended.
    ended: bool,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("subject", &self.binding.subject)
            .field("queue", &self.binding.queue)
            .field("switching", &self.merging.is_some())
            .finish()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.engine.unbind(self.id);
    }
}

impl Inbox {
    pub(super) fn new(
        engine: Arc<Engine>,
        id: u64,
        subscriber: async_nats::Subscriber,
        binding: Arc<Binding>,
    ) -> Inbox {
        Inbox { subscriber: Some(subscriber), merging: None, binding, recording: None, engine, id, ended: false }
    }

    /// The subject (or pattern).
    pub(crate) fn subject(&self) -> &str {
        &self.binding.subject
    }

    /// The queue group, if any.
    pub(crate) fn queue_group(&self) -> Option<&str> {
        self.binding.queue.as_deref()
    }

    /// The engine this inbox belongs to.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Unsubscribes and returns once the server has dropped the interest.
    pub(crate) async fn unsubscribe(mut self) {
        if let Some(mut subscriber) = self.subscriber.take() {
            let _ = subscriber.unsubscribe().await;
        }
        self.merging = None;
        self.engine.unbind(self.id);
        self.engine.barrier().await;
    }

    #[inline]
    fn record(&mut self, msg: &async_nats::Message) {
        if let Some(recording) = &mut self.recording {
            recording.record_old(fingerprint(msg));
        }
    }

    fn on_switch(&mut self, switch: Switch) {
        match switch {
            Switch::Prepare if self.binding.queue.is_none() => self.recording = Some(Box::default()),
            Switch::Prepare => {}
            Switch::Abort => self.recording = None,
            Switch::Rebind(rebind) => self.start_merge(*rebind),
            Switch::End => {
                self.ended = true;
                self.subscriber = None;
                self.merging = None;
                self.recording = None;
                self.engine.unbind(self.id);
            }
        }
    }

    fn start_merge(&mut self, rebind: Rebind) {
        let (tx, rx) = mpsc::channel(256);
        let filter = self.recording.take().map(|f| *f).unwrap_or_default();
        match self.subscriber.take() {
            Some(old) => {
                tokio::spawn(merge(old, rebind, filter, tx));
            }
            None => {
                // No old subscriber (it ended): the new one simply takes over.
                let _ = tx.try_send(Merged::Done(rebind.subscriber));
            }
        }
        self.merging = Some(rx);
    }
}

impl Stream for Inbox {
    type Item = async_nats::Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<async_nats::Message>> {
        self.poll_next_with(cx, |msg| msg)
    }
}

impl Inbox {
    /// [`Stream::poll_next`], with the message passed through `convert` where it is received
    /// (a `Message` is ~200 bytes: returning it through two layers of `Poll` copied it twice
    /// per delivery).
    #[inline]
    pub(crate) fn poll_next_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        convert: impl FnOnce(async_nats::Message) -> T,
    ) -> Poll<Option<T>> {
        let this = self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(merging) = &mut this.merging {
                match merging.poll_recv(cx) {
                    Poll::Ready(Some(Merged::Message(msg))) => {
                        this.record(&msg);
                        return Poll::Ready(Some(convert(msg)));
                    }
                    Poll::Ready(Some(Merged::Done(subscriber))) => {
                        this.subscriber = Some(subscriber);
                        this.merging = None;
                    }
                    Poll::Ready(None) => {
                        // The merge task ended without handing back (runtime shutting down).
                        this.merging = None;
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            if let Some(switch) = this.binding.mailbox.take() {
                this.on_switch(switch);
                continue;
            }
            let Some(subscriber) = &mut this.subscriber else {
                // The connection closed for good (hub closed, or a dead connection the engine
                // is replacing): wait for a rebind while the engine is alive.
                if this.engine.is_closed() {
                    return Poll::Ready(None);
                }
                if this.binding.mailbox.register(cx) {
                    continue;
                }
                return Poll::Pending;
            };
            match subscriber.poll_next_unpin(cx) {
                Poll::Ready(Some(msg)) => {
                    this.record(&msg);
                    return Poll::Ready(Some(convert(msg)));
                }
                Poll::Ready(None) => this.subscriber = None,
                Poll::Pending => {
                    if this.binding.mailbox.register(cx) {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Upper bound for how long the old subscription may take to drain after the overlap, and
/// for the barrier round trip on the new connection.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Messages held back from the new connection before the overlap is cut short.
const HOLD_LIMIT: usize = 100_000;

/// Merges the old and the new subscriber of one binding during a switch (module docs):
///
/// 0. (before: since `Prepare`, the stream itself recorded what old delivered into `filter`)
/// 1. overlap: old delivers (fingerprints recorded), new is held back;
/// 2. old is drained (UNSUB + round trip) and what it still had is delivered;
/// 3. the held-back messages, then everything new delivers, go through the overlap filter
///    until the filter meets a message old never saw, or until a round trip on the new
///    connection (proving it has caught up with everything routed before old's UNSUB) plus
///    one more overlap period (for cluster routes) has passed;
/// 4. the new subscriber is handed back to the stream.
async fn merge(mut old: async_nats::Subscriber, rebind: Rebind, mut filter: OverlapFilter, out: mpsc::Sender<Merged>) {
    // `_settle` lives until this merge ends.
    let Rebind { subscriber: mut new, client, dedup, overlap, settle: _settle } = rebind;
    let mut held = std::collections::VecDeque::new();
    let overlap_end = tokio::time::sleep(overlap);
    tokio::pin!(overlap_end);
    let mut old_open = true;
    let mut new_open = true;

    // 1. Old keeps delivering, new is held back, until the overlap ends.
    while old_open && new_open && held.len() < HOLD_LIMIT {
        tokio::select! {
            biased;
            msg = old.next() => match msg {
                Some(msg) => {
                    if dedup { filter.record_old(fingerprint(&msg)); }
                    if out.send(Merged::Message(msg)).await.is_err() { return; }
                }
                None => old_open = false,
            },
            msg = new.next() => match msg {
                Some(msg) => held.push_back(msg),
                None => new_open = false,
            },
            _ = &mut overlap_end => break,
        }
    }

    // 2. Unsubscribe the old one and pass on what it still has in flight.
    if old_open && old.drain().await.is_ok() {
        let deadline = tokio::time::sleep(DRAIN_LIMIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                msg = old.next() => match msg {
                    Some(msg) => {
                        if dedup { filter.record_old(fingerprint(&msg)); }
                        if out.send(Merged::Message(msg)).await.is_err() { return; }
                    }
                    None => break,
                },
                msg = new.next(), if new_open && held.len() < HOLD_LIMIT => match msg {
                    Some(msg) => held.push_back(msg),
                    None => new_open = false,
                },
                _ = &mut deadline => {
                    tracing::warn!("old subscription did not drain in time; switching anyway");
                    break;
                }
            }
        }
    }
    drop(old);

    // 3. Replay what new held back, then filter new's own stream until it has caught up.
    for msg in held {
        if (!dedup || filter.admit_new(fingerprint(&msg))) && out.send(Merged::Message(msg)).await.is_err() {
            return;
        }
    }
    if dedup && new_open && filter.is_matching() {
        let barrier = super::connection::round_trip(&client, DRAIN_LIMIT);
        tokio::pin!(barrier);
        let tail = tokio::time::sleep(DRAIN_LIMIT + overlap);
        tokio::pin!(tail);
        let mut caught_up = false;
        while filter.is_matching() {
            tokio::select! {
                biased;
                msg = new.next() => match msg {
                    Some(msg) => {
                        if filter.admit_new(fingerprint(&msg)) && out.send(Merged::Message(msg)).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                _ = &mut barrier, if !caught_up => {
                    caught_up = true;
                    tail.as_mut().reset(tokio::time::Instant::now() + overlap);
                }
                _ = &mut tail => break,
            }
        }
    }
    // 4. Hand the new subscriber back.
    let _ = out.send(Merged::Done(new)).await;
}
