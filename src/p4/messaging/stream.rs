//! Subscriptions: [`Namespace::subscribe`], the bounded queue of a subscription, the reader
//! task that fills it and the [`MessageStream`] that empties it (module docs of `messaging`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checks::{TopicCache, check};
use super::send::ensure_open;
use super::{Message, ReplyTo, SubscribeOptions, Work, Working};
use crate::engine::{Inbox, lock};
use crate::p4::Error;
use crate::p4::namespace::{Core, Namespace, Stats};
use crate::wire::p4::ErrorCode;
use crate::wire::p4::names::{QueueGroup, TopicPattern};

/// A subscription's queue state shared by its reader task and its stream.
#[derive(Debug, Default)]
struct Queue {
    /// Bytes waiting to be read.
    bytes: AtomicUsize,
    /// Messages dropped because the queue was full.
    dropped: AtomicU64,
    /// In a burst of drops (warned once; cleared when the reader finds the queue empty).
    slow: AtomicBool,
}

/// A received message waiting in a subscription's queue, checked only when read (so the
/// reader task does nothing but move it, and keeps up with the connection).
struct Queued {
    message: async_nats::Message,
    size: usize,
}

/// A stream of received [`Message`]s (module docs). Dropping it unsubscribes.
pub struct MessageStream {
    rx: mpsc::Receiver<Queued>,
    queue: Arc<Queue>,
    core: Arc<Core>,
    stop: tokio_util::sync::DropGuard,
    pattern: TopicPattern,
    topics: TopicCache,
}

impl std::fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream").field("pattern", &self.pattern).field("dropped", &self.dropped()).finish()
    }
}

impl MessageStream {
    /// The topic or pattern subscribed.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }

    /// Messages dropped so far because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Messages waiting to be read.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// The next message (`None` once the namespace or hub is gone).
    ///
    /// # Cancel safety
    /// Cancel safe: a message is taken off the queue only when returned.
    pub async fn recv(&mut self) -> Option<Message> {
        self.next().await
    }

    /// Unsubscribes; messages still queued are discarded (and not counted as dropped).
    pub fn unsubscribe(self) {}
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(queued) = self.rx.try_recv() {
            self.release(queued.size);
        }
        Stats::sub(&self.core.stats.subscriptions, 1);
        let _ = &self.stop;
    }
}

impl MessageStream {
    fn release(&self, size: usize) {
        self.queue.bytes.fetch_sub(size, Ordering::Relaxed);
        Stats::sub(&self.core.stats.pending_messages, 1);
        Stats::sub(&self.core.stats.pending_bytes, size as u64);
    }
}

impl Stream for MessageStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(queued)) => {
                    this.release(queued.size);
                    // Malformed: dropped and counted, never delivered.
                    let checked = match check(&this.core.subjects, &mut this.topics, &queued.message) {
                        Ok(checked) => checked,
                        Err(e) => {
                            this.core.reject("message", &e);
                            continue;
                        }
                    };
                    let reply = queued.message.reply.map(|subject| ReplyTo { subject, core: Arc::clone(&this.core) });
                    return Poll::Ready(Some(Message {
                        topic: checked.topic,
                        headers: checked.headers,
                        value: checked.value,
                        reply,
                    }));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if this.queue.slow.swap(false, Ordering::Relaxed) {
                        tracing::info!(pattern = %this.pattern.as_str(), dropped = this.queue.dropped.load(Ordering::Relaxed), "subscription caught up");
                        recovered(&this.core);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Clears the namespace's `SLOW_CONSUMER` error once a queue has emptied.
fn recovered(core: &Core) {
    clear_error(core, ErrorCode::SlowConsumer);
}

/// Clears the namespace's current error if messaging set it with `code` (Python clears its
/// `messaging` / `messaging-handler` errors the same way: on recovery, on the next success).
pub(super) fn clear_error(core: &Core, code: ErrorCode) {
    let mut errors = lock(&core.errors);
    if errors.current.as_ref().is_some_and(|e| e.code == code) {
        errors.current = None;
    }
}

/// Takes messages off the connection and queues them (module docs).
#[allow(clippy::too_many_arguments)]
async fn read(
    working: Working,
    core: Arc<Core>,
    mut inbox: Inbox,
    tx: mpsc::Sender<Queued>,
    queue: Arc<Queue>,
    max_bytes: usize,
    requests_only: bool,
    stop: CancellationToken,
    pattern: String,
) {
    // Draining: take what the connection has already delivered, then stop.
    let mut draining = false;
    loop {
        let message = if draining {
            match futures::FutureExt::now_or_never(inbox.next()) {
                Some(Some(m)) => m,
                _ => break,
            }
        } else {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = core.cancel.cancelled() => break,
                () = core.messaging.stop_interest.cancelled() => { draining = true; continue },
                m = inbox.next() => match m { Some(m) => m, None => break },
            }
        };
        Stats::add(&core.stats.received_messages, 1);
        Stats::add(&core.stats.received_bytes, message.payload.len() as u64);
        if requests_only && message.reply.is_none() {
            continue;
        }
        // Payload, headers, subject and reply (async-nats' `length`), as Python counts a
        // message.
        let size = message.length.max(message.payload.len());
        let queued = Queued { message, size };
        let fits = queue.bytes.load(Ordering::Relaxed) + size <= max_bytes;
        let sent = if fits {
            // Counted before the send: the reader may take it at once.
            queue.bytes.fetch_add(size, Ordering::Relaxed);
            Stats::add(&core.stats.pending_messages, 1);
            Stats::add(&core.stats.pending_bytes, size as u64);
            match tx.try_send(queued) {
                Ok(()) => true,
                Err(e) => {
                    queue.bytes.fetch_sub(size, Ordering::Relaxed);
                    Stats::sub(&core.stats.pending_messages, 1);
                    Stats::sub(&core.stats.pending_bytes, size as u64);
                    if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                        break;
                    }
                    false
                }
            }
        } else {
            false
        };
        if !sent {
            queue.dropped.fetch_add(1, Ordering::Relaxed);
            Stats::add(&core.stats.dropped_messages, 1);
            if !queue.slow.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    namespace = %core.name,
                    pattern = %pattern,
                    dropped = queue.dropped.load(Ordering::Relaxed),
                    "subscription queue full: dropping new messages until it is read"
                );
                core.note_error(ErrorCode::SlowConsumer, "message queue is full; new messages dropped");
            }
        }
    }
    drop(inbox);
    drop(working);
}

impl Namespace {
    /// Subscribes `pattern` (a topic, or segments `*` and a final `>`) with the default
    /// [`SubscribeOptions`]. Receives events and requests.
    ///
    /// # Errors
    /// As [`Namespace::subscribe_with`].
    pub async fn subscribe(&self, pattern: &str) -> Result<MessageStream, Error> {
        self.subscribe_with(pattern, SubscribeOptions::default()).await
    }

    /// Subscribes with options (queue group, queue sizes).
    ///
    /// # Errors
    /// `INVALID_TOPIC` (pattern or queue name), `INVALID_OPTIONS` (a zero queue size),
    /// `PERMISSION_DENIED` (the server refused the subscription), `CLOSED`.
    pub async fn subscribe_with(&self, pattern: &str, options: SubscribeOptions) -> Result<MessageStream, Error> {
        self.open(pattern, &options, false).await
    }

    pub(super) async fn open(
        &self,
        pattern: &str,
        options: &SubscribeOptions,
        requests_only: bool,
    ) -> Result<MessageStream, Error> {
        let core = self.core();
        let pattern = TopicPattern::new(pattern)?;
        let queue = options.queue.as_deref().map(QueueGroup::new).transpose()?.map(|q| core.subjects.queue(&q));
        if options.max_pending_messages == 0 || options.max_pending_bytes == 0 {
            return Err(Error::new(ErrorCode::InvalidOptions).with_detail("queue sizes must be at least 1"));
        }
        ensure_open(core)?;
        let subject = async_nats::Subject::from(core.subjects.message_pattern(&pattern));
        let inbox = core.engine.subscribe(&subject, queue.as_deref()).await.map_err(|e| {
            let code = match e.kind() {
                crate::error::SubscribeErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
                crate::error::SubscribeErrorKind::Closed => ErrorCode::Closed,
                _ => ErrorCode::Disconnected,
            };
            Error::new(code).with_source(e)
        })?;
        let (tx, rx) = mpsc::channel(options.max_pending_messages);
        let state = Arc::new(Queue::default());
        let stop = CancellationToken::new();
        Stats::add(&core.stats.subscriptions, 1);
        let working = Work::enter(core);
        tokio::spawn(read(
            working,
            Arc::clone(core),
            inbox,
            tx,
            Arc::clone(&state),
            options.max_pending_bytes,
            requests_only,
            stop.clone(),
            pattern.as_str().to_owned(),
        ));
        Ok(MessageStream { rx, queue: state, core: Arc::clone(core), stop: stop.drop_guard(), pattern, topics: None })
    }
}
