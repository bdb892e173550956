//! [`Subscription`]: a stream of [`Message`]s on one variable that survives server restarts,
//! manual reconnects and hot switches.
//!
//! In steady state the stream polls the async-nats subscriber directly (no extra task or
//! channel on the hot path). When the hub moves to another connection it hands the stream a
//! subscriber on the new connection; the stream then merges old and new through a short-lived
//! task that passes every message on exactly once (see [`crate::overlap`]) and hands the new
//! subscriber back.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::codec::{DecodeError, Encoding};
use crate::hub::Hub;
use crate::overlap::{OverlapFilter, fingerprint};
use crate::value::Value;
use crate::variable::VariableState;

pub use async_nats::{HeaderMap, Subject};

/// A message received on a variable.
#[derive(Debug, Clone)]
pub struct Message {
    /// The subject it arrived on.
    pub subject: Subject,
    /// Where to send a reply, for requests.
    pub reply: Option<Subject>,
    /// NATS headers, if any.
    pub headers: Option<HeaderMap>,
    /// The raw payload.
    pub payload: Bytes,
    encoding: Encoding,
}

impl Message {
    pub(crate) fn from_nats(msg: async_nats::Message, encoding: &Encoding) -> Message {
        Message {
            subject: msg.subject,
            reply: msg.reply,
            headers: msg.headers,
            payload: msg.payload,
            encoding: encoding.clone(),
        }
    }

    /// Decodes the payload into `T` (JSON, then text, then bytes; see [`crate::codec::decode`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        self.encoding.decode(&self.payload).map_err(|e| e.with_subject(self.subject.as_str()))
    }

    /// Decodes the payload into a [`Value`]; never fails.
    pub fn value(&self) -> Value {
        self.encoding.decode_value(&self.payload)
    }
}

/// What the hub tells a subscription about a switch.
#[derive(Debug)]
pub(crate) enum Switch {
    /// A subscription on another connection is about to be made: from now on, remember what
    /// is delivered (those messages may arrive on the new connection too).
    Prepare,
    /// The new subscriber is ready: merge.
    Rebind(Box<Rebind>),
    /// The switch failed: forget what was remembered.
    Abort,
}

/// A new subscriber for a binding, on the connection the hub moved to.
#[derive(Debug)]
pub(crate) struct Rebind {
    pub subscriber: async_nats::Subscriber,
    /// The new connection's client (for the catch-up round trip).
    pub client: async_nats::Client,
    /// Filter duplicates (plain subscriptions); queue groups need none.
    pub dedup: bool,
    pub overlap: Duration,
}

/// Where the hub leaves [`Switch`] messages for one subscription. Switches are rare, so the
/// stream's hot path only reads one atomic flag, and an idle subscription costs a few dozen
/// bytes (an mpsc channel would allocate a block of slots per subscription).
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pending: AtomicBool,
    queue: std::sync::Mutex<VecDeque<Switch>>,
    waker: AtomicWaker,
}

impl Mailbox {
    /// Leaves a message and wakes the stream.
    pub fn send(&self, switch: Switch) {
        {
            let mut queue = crate::hub::lock(&self.queue);
            queue.push_back(switch);
            self.pending.store(true, Ordering::Release);
        }
        self.waker.wake();
    }

    /// Takes the next message, if any (cheap when there is none).
    fn take(&self) -> Option<Switch> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = crate::hub::lock(&self.queue);
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

/// What the hub keeps about a live subscription so it can re-create it elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub subject: String,
    pub queue: Option<String>,
    pub mailbox: Arc<Mailbox>,
}

impl Binding {
    /// Subscribes this binding's subject (and queue group) on `client`.
    pub async fn subscribe_on(
        &self,
        client: &async_nats::Client,
    ) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
        nats_subscribe(client, &self.subject, self.queue.as_deref()).await
    }
}

/// A plain or queue-group subscription on one async-nats connection.
pub(crate) async fn nats_subscribe(
    client: &async_nats::Client,
    subject: &str,
    queue: Option<&str>,
) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
    match queue {
        Some(q) => client.queue_subscribe(subject.to_owned(), q.to_owned()).await,
        None => client.subscribe(subject.to_owned()).await,
    }
}

/// Removes the binding from the hub when the subscription goes away.
#[derive(Debug)]
struct BindingGuard {
    hub: Hub,
    id: u64,
}

impl Drop for BindingGuard {
    fn drop(&mut self) {
        self.hub.shared().unbind(self.id);
    }
}

enum Merged {
    Message(async_nats::Message),
    Done(async_nats::Subscriber),
}

/// A stream of [`Message`]s on a variable's subject.
///
/// Dropping it unsubscribes. Every message also updates the variable's
/// [`value()`](crate::Variable::value).
#[must_use = "a subscription delivers nothing unless polled"]
pub struct Subscription {
    subscriber: Option<async_nats::Subscriber>,
    merging: Option<mpsc::Receiver<Merged>>,
    mailbox: Arc<Mailbox>,
    /// Fingerprints of what was delivered since a `Prepare` (plain subscriptions only).
    recording: Option<OverlapFilter>,
    variable: Arc<VariableState>,
    encoding: Encoding,
    subject: String,
    queue: Option<String>,
    _binding: BindingGuard,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("subject", &self.subject)
            .field("queue", &self.queue)
            .field("switching", &self.merging.is_some())
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        hub: Hub,
        id: u64,
        subscriber: async_nats::Subscriber,
        mailbox: Arc<Mailbox>,
        variable: Arc<VariableState>,
        queue: Option<String>,
    ) -> Subscription {
        Subscription {
            subscriber: Some(subscriber),
            merging: None,
            mailbox,
            recording: None,
            encoding: hub.shared().encoding.clone(),
            subject: variable.subject.to_string(),
            variable,
            queue,
            _binding: BindingGuard { hub, id },
        }
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The queue group, if any.
    pub fn queue_group(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// Unsubscribes and returns once the server has dropped the interest (a request to a
    /// subject whose only subscription this was then gets "no responders"). Dropping a
    /// subscription also unsubscribes, without waiting.
    pub async fn unsubscribe(mut self) {
        if let Some(mut subscriber) = self.subscriber.take() {
            let _ = subscriber.unsubscribe().await;
        }
        self.merging = None;
        let shared = self._binding.hub.shared();
        shared.unbind(self._binding.id);
        if let Some(conn) = shared.current()
            && conn.is_connected()
        {
            let _ = crate::connection::round_trip(&conn.client, shared.options.request_timeout).await;
        }
    }

    /// Decoded values instead of messages: each item is the payload decoded into `T`, or a
    /// [`DecodeError`] that keeps the raw payload.
    pub fn values<T: DeserializeOwned>(self) -> impl Stream<Item = Result<T, DecodeError>> + Send + Unpin {
        self.map(|m| m.decode::<T>())
    }

    fn deliver(&mut self, msg: async_nats::Message) -> Message {
        self.variable.record(&msg.payload);
        if let Some(recording) = &mut self.recording {
            recording.record_old(fingerprint(&msg));
        }
        Message::from_nats(msg, &self.encoding)
    }

    fn on_switch(&mut self, switch: Switch) {
        match switch {
            Switch::Prepare if self.queue.is_none() => self.recording = Some(OverlapFilter::new()),
            Switch::Prepare => {}
            Switch::Abort => self.recording = None,
            Switch::Rebind(rebind) => self.start_merge(*rebind),
        }
    }

    fn start_merge(&mut self, rebind: Rebind) {
        let (tx, rx) = mpsc::channel(256);
        let filter = self.recording.take().unwrap_or_default();
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

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        loop {
            if let Some(merging) = &mut this.merging {
                match merging.poll_recv(cx) {
                    Poll::Ready(Some(Merged::Message(msg))) => return Poll::Ready(Some(this.deliver(msg))),
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
            if let Some(switch) = this.mailbox.take() {
                this.on_switch(switch);
                continue;
            }
            let Some(subscriber) = &mut this.subscriber else {
                // The connection closed for good (hub closed, or a dead connection the hub is
                // replacing): wait for a rebind while the hub is alive.
                if this._binding.hub.shared().is_closed() {
                    return Poll::Ready(None);
                }
                if this.mailbox.register(cx) {
                    continue;
                }
                return Poll::Pending;
            };
            match subscriber.poll_next_unpin(cx) {
                Poll::Ready(Some(msg)) => return Poll::Ready(Some(this.deliver(msg))),
                Poll::Ready(None) => this.subscriber = None,
                Poll::Pending => {
                    if this.mailbox.register(cx) {
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
    let Rebind { subscriber: mut new, client, dedup, overlap } = rebind;
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
        let barrier = crate::connection::round_trip(&client, DRAIN_LIMIT);
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
