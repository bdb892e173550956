//! Events and requests (§5): publish, subscribe, request, request_many and handle on topics,
//! with headers and queue groups — the wire of kinopio-hub 3.0.0's `pub`/`sub`/`req`/
//! `handle`/`request_many`, byte for byte.
//!
//! - [`Namespace::publish`]: the topic is checked ([`Topic`]; a pattern is `INVALID_TOPIC`),
//!   the payload is the canonical encoding of the normalised value (`null` for `None`/`()`,
//!   never empty, at most 64 KiB), headers go through [`Headers::outbound`] (names
//!   lower-cased, values trimmed). Only while connected (`DISCONNECTED` otherwise): there is
//!   no offline buffering, as in Python.
//! - [`Namespace::subscribe`]: a [`MessageStream`] of [`Message`]s. A reader task per
//!   subscription (not per message) takes every message off the connection at once and
//!   queues it, doing nothing else, so it keeps up with the socket. When the queue is full
//!   the **new** message is dropped, counted ([`MessageStream::dropped`] and the
//!   namespace's `droppedMessages`), logged once per burst and noted as the namespace's
//!   `SLOW_CONSUMER` error (cleared when the queue empties). A message is checked when it is
//!   read (topic decodes from the subject, headers valid, payload ≤ 64 KiB and a valid
//!   value); a malformed one is dropped and counted ([`Namespace::rejected`]), never
//!   delivered. (Should the reader itself fall behind the connection, the NATS client drops
//!   and the hub reports it as [`HubEvent::SlowConsumer`](crate::HubEvent::SlowConsumer).)
//! - [`Namespace::request`]: the first reply decides (an invalid first reply is
//!   `INVALID_MESSAGE`, like Python); no responders is `NO_RESPONDERS` at once.
//!   [`Namespace::request_many`] collects replies on its own `_INBOX.<id>` subscription until
//!   `max_replies` or the deadline (a deadline is not an error).
//! - [`Namespace::handle`]: answers every request (a message with a reply subject) with one
//!   reply; messages without a reply subject are ignored. No default queue group.
//!
//! # Deliberate differences from 3.0.0
//!
//! - **Queue sizes.** Python's defaults are 256 messages / 1 MiB per subscription inside a
//!   4,096-message / 8 MiB hub budget, and W14 shows a Python subscriber dropping most of a
//!   burst. A kinopio subscription queues up to [`DEFAULT_PENDING_MESSAGES`] (65,536)
//!   messages and [`DEFAULT_PENDING_BYTES`] (64 MiB) by default (both configurable per
//!   subscription, [`SubscribeOptions`]); there is no hub-wide budget. The queue holds only
//!   what arrived before the consumer read it, so memory is spent only under a real backlog.
//! - **Handler errors (W15).** By default a failing kinopio handler sends no reply, exactly
//!   like Python, so a Python caller sees what it always sees (`TIMEOUT`) and no `null`
//!   masquerades as an answer. The failure is logged, counted ([`Handler::failed`]) and
//!   noted as the namespace's `HANDLER_ERROR`. With [`HandleOptions::error_replies`] a failing
//!   handler instead replies `null` with the header [`ERROR_HEADER`] (`kinopio-error: <text>`);
//!   a kinopio caller turns that into `HANDLER_ERROR` at once instead of waiting for the
//!   timeout (a Python caller would read `null`, so only enable it when every caller is
//!   kinopio).
//! - **Handlers run one at a time per handle by default** (Python's FIFO); more with
//!   [`HandleOptions::concurrency`].
//! - **No per-hub limits** on subscriptions (Python: 128) and concurrent requests (64), and
//!   no 8 MiB outbound budget (`BUFFER_OVERFLOW`): a publish waits for room in the NATS
//!   client's command queue instead.
//! - **Reply inboxes.** [`Namespace::request`] uses the NATS client's shared request inbox
//!   (`_INBOX.<prefix>.<token>`, one subscription for all requests) instead of a fresh
//!   `_INBOX.<nuid>` subscription per request; [`Namespace::request_many`] subscribes its own
//!   `_INBOX.<32 hex digits>`. Any reply subject is valid to a Python handler.
//! - **Reply headers of a handler.** A [`Namespace::handle`] handler returns a value only; to
//!   reply with headers, subscribe and use [`Message::reply_with_headers`].
//! - **Inbound header order.** Repeated values of one name keep their order; the order
//!   *between* different names is not kept (the NATS client stores headers in a map). Names
//!   keep the spelling they arrived with; `Status` is added first for a status line.
//! - **Malformed messages do not change health.** Python records `HANDLER_ERROR` (and so a
//!   health of `error`) for a received message it cannot decode; kinopio drops and counts it
//!   ([`Namespace::rejected`]) and nothing else changes, so a stray publisher cannot flip a
//!   kinopio instance's health (compare W8). A failing handler and a full queue are still
//!   noted (`HANDLER_ERROR`, `SLOW_CONSUMER`) and cleared on the next success / once the
//!   queue empties, as in Python.
//! - **Errors do not carry partial replies** (Python's `MessageError.partial_replies`).
//! - **Drain** ([`Namespace::drain_messaging`]) covers messaging only: it does not flush
//!   records or close the hub, and it cannot tell that it runs inside a handler (Python's
//!   `DRAIN_IN_HANDLER`): called from a handler it waits for itself until its timeout.
//!   A message the server sent just before the unsubscribe reached it may be lost (Python
//!   drains the native subscription).
//!
//! # Layout
//! - this module: the public options and values ([`SubscribeOptions`], [`HandleOptions`],
//!   [`RequestOptions`], [`Message`], [`Reply`], [`ManyReplies`]), the namespace's messaging
//!   state, the drain bookkeeping and [`Namespace::drain_messaging`].
//! - `checks`: the pure rules: outgoing payloads and headers, received messages and replies
//!   checked for delivery, the `request_many` collector.
//! - `send`: the one publish path every outgoing message takes, [`Namespace::publish`],
//!   [`Namespace::request`] and [`Namespace::request_many`].
//! - `stream`: [`Namespace::subscribe`]: the bounded queue, its reader task and
//!   [`MessageStream`].
//! - `handler`: [`Namespace::handle`] and the [`Handler`] that answers requests.

// Not sorted: rustdoc lists the `Namespace` methods of these modules in this order.
mod checks;
mod send;
mod stream;

mod handler;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::namespace::{Core, Namespace, Stats};
use super::value::from_json;
use super::{Error, Json};
use crate::wire::p4::ErrorCode;
use crate::wire::p4::headers::Headers;
use crate::wire::p4::names::Topic;

use checks::outbound;
pub use handler::Handler;
use send::send;
pub use stream::MessageStream;

/// Default queue length of a subscription, in messages.
pub const DEFAULT_PENDING_MESSAGES: usize = 65_536;
/// Default queue size of a subscription, in bytes (payload, headers, subject and reply).
pub const DEFAULT_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// Most replies [`Namespace::request_many`] collects (the reference's cap).
pub const MAX_MANY_REPLIES: usize = 16;
/// Most reply bytes [`Namespace::request_many`] collects (the reference's cap).
pub const MAX_MANY_BYTES: usize = 1024 * 1024;
/// The header of an error reply ([`HandleOptions::error_replies`]).
pub const ERROR_HEADER: &str = "kinopio-error";

/// Messaging state of one namespace.
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    /// Handler failures of the namespace (also in each [`Handler`]).
    handler_errors: AtomicU64,
    /// Set by [`Namespace::drain_messaging`]: new operations fail with `DRAINING`.
    draining: AtomicBool,
    /// Cancelled by [`Namespace::drain_messaging`]: every reader stops taking messages.
    stop_interest: CancellationToken,
    /// Readers, handler loops and requests in progress, for the drain to wait on.
    work: Work,
    /// Subjects of recently used topics (validating and hex-encoding a topic on every
    /// publish was a measurable part of the publish path). Bounded: cleared when full.
    subjects: std::sync::Mutex<std::collections::HashMap<String, async_nats::Subject>>,
}

/// Most topics [`Messaging::subject`] remembers.
const REMEMBERED_TOPICS: usize = 1024;

impl Messaging {
    pub(crate) fn new() -> Self {
        Messaging::default()
    }

    /// The message subject of `topic` (validated; `INVALID_TOPIC` for a pattern or a bad
    /// topic), remembered for the next publish.
    fn subject(&self, subjects: &crate::wire::p4::names::Subjects, topic: &str) -> Result<async_nats::Subject, Error> {
        if let Some(subject) = crate::engine::lock(&self.subjects).get(topic) {
            return Ok(subject.clone());
        }
        let subject = async_nats::Subject::from(subjects.message(&Topic::new(topic)?));
        let mut remembered = crate::engine::lock(&self.subjects);
        if remembered.len() >= REMEMBERED_TOPICS {
            remembered.clear();
        }
        remembered.insert(topic.to_owned(), subject.clone());
        Ok(subject)
    }
}

/// Counts work in progress and wakes a waiter when none is left.
#[derive(Debug, Default)]
struct Work {
    active: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One piece of work in progress (see [`Work`]).
#[derive(Debug)]
struct Working(Arc<Core>);

impl Work {
    fn enter(core: &Arc<Core>) -> Working {
        core.messaging.work.active.fetch_add(1, Ordering::AcqRel);
        Working(Arc::clone(core))
    }

    /// Waits until no work is in progress.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        let work = &self.0.messaging.work;
        if work.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            work.idle.notify_waiters();
        }
    }
}

/// Decrements a counter on drop.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicU64) -> Self {
        Stats::add(counter, 1);
        Gauge(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        Stats::sub(self.0, 1);
    }
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// Options of [`Namespace::subscribe_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Queue group: each message goes to one member of the group (kinopio or Python);
    /// `_q.v1.<hex(ns)>.<hex(queue)>` on the wire. None by default.
    pub queue: Option<String>,
    /// Most messages waiting to be read ([`DEFAULT_PENDING_MESSAGES`]).
    pub max_pending_messages: usize,
    /// Most bytes waiting to be read ([`DEFAULT_PENDING_BYTES`]).
    pub max_pending_bytes: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            queue: None,
            max_pending_messages: DEFAULT_PENDING_MESSAGES,
            max_pending_bytes: DEFAULT_PENDING_BYTES,
        }
    }
}

impl SubscribeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SubscribeOptions::queue`].
    ///
    /// ```
    /// let options = kinopio::p4::SubscribeOptions::new().queue("workers").max_pending_messages(1024);
    /// assert_eq!(options.queue.as_deref(), Some("workers"));
    /// ```
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets [`SubscribeOptions::max_pending_messages`].
    pub fn max_pending_messages(mut self, messages: usize) -> Self {
        self.max_pending_messages = messages;
        self
    }

    /// Sets [`SubscribeOptions::max_pending_bytes`].
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }
}

/// Options of [`Namespace::handle_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandleOptions {
    /// Queue and queue sizes, as for a subscription.
    pub subscribe: SubscribeOptions,
    /// How many requests are handled at once (1: one after the other, in order, like Python).
    pub concurrency: usize,
    /// Reply `null` with an [`ERROR_HEADER`] header when the handler fails, instead of not
    /// replying (module docs). Off by default.
    pub error_replies: bool,
}

impl Default for HandleOptions {
    fn default() -> Self {
        HandleOptions { subscribe: SubscribeOptions::default(), concurrency: 1, error_replies: false }
    }
}

impl HandleOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue group (no default: without one, every handler on the topic answers).
    ///
    /// ```
    /// let options = kinopio::p4::HandleOptions::new().queue("lamp-workers").concurrency(8);
    /// assert_eq!(options.subscribe.queue.as_deref(), Some("lamp-workers"));
    /// ```
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.subscribe.queue = Some(queue.into());
        self
    }

    /// Sets [`HandleOptions::concurrency`] (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets [`HandleOptions::error_replies`].
    pub fn error_replies(mut self, on: bool) -> Self {
        self.error_replies = on;
        self
    }

    /// Sets the queue sizes ([`SubscribeOptions`]).
    pub fn pending(mut self, messages: usize, bytes: usize) -> Self {
        self.subscribe.max_pending_messages = messages;
        self.subscribe.max_pending_bytes = bytes;
        self
    }
}

/// Options of [`Namespace::request_with`] and [`Namespace::request_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// How long to wait (the namespace's timeout, 3 s, when `None`).
    pub timeout: Option<Duration>,
    /// Headers of the request (normalised like [`Namespace::publish_with_headers`]).
    pub headers: Vec<(String, String)>,
    /// `request_many`: stop after this many replies (1–16, default 16).
    pub max_replies: usize,
    /// `request_many`: most reply bytes collected (up to 1 MiB, the default).
    pub max_bytes: usize,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions { timeout: None, headers: Vec::new(), max_replies: MAX_MANY_REPLIES, max_bytes: MAX_MANY_BYTES }
    }
}

impl RequestOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`RequestOptions::timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = kinopio::p4::RequestOptions::new().timeout(Duration::from_millis(500)).header("x-trace", "op-1");
    /// assert_eq!(options.headers.len(), 1);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`RequestOptions::max_replies`].
    pub fn max_replies(mut self, replies: usize) -> Self {
        self.max_replies = replies;
        self
    }

    /// Sets [`RequestOptions::max_bytes`].
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    fn check_many(&self) -> Result<(), Error> {
        if self.max_replies == 0
            || self.max_replies > MAX_MANY_REPLIES
            || self.max_bytes == 0
            || self.max_bytes > MAX_MANY_BYTES
        {
            return Err(Error::new(ErrorCode::InvalidOptions).with_detail(format!(
                "request_many collects 1–{MAX_MANY_REPLIES} replies and 1–{MAX_MANY_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Received messages and replies
// ---------------------------------------------------------------------------------------

/// A received event or request.
#[derive(Debug, Clone)]
pub struct Message {
    topic: Topic,
    headers: Headers,
    value: Json,
    /// The reply subject and the namespace to answer through (requests only).
    reply: Option<ReplyTo>,
}

#[derive(Clone)]
struct ReplyTo {
    subject: async_nats::Subject,
    core: Arc<Core>,
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.subject)
    }
}

impl Message {
    /// The topic, decoded from the subject (`sensor.temp`).
    pub fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// The headers as received (a status line appears as `Status`).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The value, as protocol-4 JSON.
    pub fn json(&self) -> &Json {
        &self.value
    }

    /// The value as `T`.
    ///
    /// # Errors
    /// `INVALID_VALUE` when the value does not have `T`'s shape.
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, Error> {
        from_json(&self.value)
    }

    /// The reply subject, if the sender asked for a reply (a request).
    pub fn reply_subject(&self) -> Option<&str> {
        self.reply.as_ref().map(|r| r.subject.as_str())
    }

    /// Whether the sender asked for a reply.
    pub fn is_request(&self) -> bool {
        self.reply.is_some()
    }

    /// Replies to a request (any number of times).
    ///
    /// # Errors
    /// `NO_REPLY_SUBJECT` for an event; as [`Namespace::publish`] otherwise.
    pub async fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        self.reply_with_headers(value, NO_HEADERS).await
    }

    /// Replies with headers.
    ///
    /// # Errors
    /// As [`Message::reply`], plus the header errors of [`Namespace::publish_with_headers`].
    pub async fn reply_with_headers<T, I, K, V>(&self, value: &T, headers: I) -> Result<(), Error>
    where
        T: Serialize + ?Sized,
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let Some(reply) = &self.reply else {
            return Err(Error::new(ErrorCode::NoReplySubject).with_detail("this message is an event, not a request"));
        };
        let (payload, headers) = outbound(value, headers)?;
        send(&reply.core, reply.subject.clone(), None, payload, headers).await
    }
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    value: Json,
    headers: Headers,
}

impl Reply {
    /// The value, as protocol-4 JSON.
    pub fn json(&self) -> &Json {
        &self.value
    }

    /// The value as `T`.
    ///
    /// # Errors
    /// `INVALID_VALUE` when the value does not have `T`'s shape.
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, Error> {
        from_json(&self.value)
    }

    /// The reply's headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }
}

/// Why [`Namespace::request_many`] stopped collecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManyReason {
    /// `max_replies` replies arrived (`maxReplies`).
    MaxReplies,
    /// The deadline passed (`deadline`); not an error, and there may be no replies.
    Deadline,
}

impl ManyReason {
    /// The reference's spelling: `maxReplies` or `deadline`.
    pub fn as_str(self) -> &'static str {
        match self {
            ManyReason::MaxReplies => "maxReplies",
            ManyReason::Deadline => "deadline",
        }
    }
}

/// What [`Namespace::request_many`] collected.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ManyReplies {
    /// The replies, in arrival order.
    pub replies: Vec<Reply>,
    /// Why collection stopped.
    pub reason: ManyReason,
}

/// No headers.
const NO_HEADERS: [(&str, &str); 0] = [];

impl Namespace {
    /// Drains this namespace's messaging (§5.6): from now on publish, subscribe, request and
    /// handle fail with `DRAINING`; every subscription and handler stops taking messages
    /// (what is already queued stays readable, then the stream ends); handlers answer what
    /// they had queued; requests in progress finish. Returns when all of that is done.
    ///
    /// Unlike Python's `hub.drain`, it neither flushes records nor closes the hub (close
    /// the [`Hub`](crate::Hub) for that), and a message the server sent just before the
    /// unsubscribe reached it may be lost.
    ///
    /// # Errors
    /// `DRAIN_TIMEOUT` if that takes longer than `timeout` (the namespace stays draining).
    pub async fn drain_messaging(&self, timeout: Duration) -> Result<(), Error> {
        let core = self.core();
        core.messaging.draining.store(true, Ordering::Release);
        core.messaging.stop_interest.cancel();
        tokio::time::timeout(timeout, core.messaging.work.idle()).await.map_err(|_| {
            Error::new(ErrorCode::DrainTimeout)
                .with_detail(format!("handlers or requests still running after {} ms", timeout.as_millis()))
        })
    }
}
