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

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::namespace::{Core, Namespace, Stats};
use super::value::{from_json, to_json_encoded};
use super::{Error, Json};
use crate::engine::{Inbox, lock};
use crate::error::RequestErrorKind;
use crate::state::ConnectionState;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::{self, MAX_VALUE_BYTES};
use crate::wire::p4::headers::Headers;
use crate::wire::p4::names::{QueueGroup, Subjects, Topic, TopicPattern};

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

// ---------------------------------------------------------------------------------------
// Pure rules
// ---------------------------------------------------------------------------------------

/// No headers.
const NO_HEADERS: [(&str, &str); 0] = [];

/// The payload and headers of an outgoing message: the normalised value's canonical bytes
/// (≤ 64 KiB) and the normalised headers. Value errors are reported like Python's `send`:
/// `MESSAGE_TOO_LARGE` for the size, `INVALID_MESSAGE` for the rest.
fn outbound<T, I, K, V>(value: &T, headers: I) -> Result<(Bytes, Headers), Error>
where
    T: Serialize + ?Sized,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let payload = payload_of(value)?;
    let headers = Headers::outbound(headers)?;
    Ok((payload, headers))
}

fn payload_of<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    let (_, bytes) = to_json_encoded(value).map_err(|e| {
        let code =
            if e.kind() == ErrorCode::ValueTooLarge { ErrorCode::MessageTooLarge } else { ErrorCode::InvalidMessage };
        Error::new(code).with_detail(format!("the payload is not a valid protocol-4 value: {e}"))
    })?;
    Ok(Bytes::from(bytes))
}

/// `Headers` as a NATS header map (None for an empty set: a plain `PUB`).
fn header_map(headers: &Headers) -> Option<async_nats::HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers.entries() {
        map.append(name.as_str(), value.as_str());
    }
    Some(map)
}

/// The headers of a received message, validated: `Status` first for a status line, then
/// every entry (§5.2).
fn inbound_headers(message: &async_nats::Message) -> Result<Headers, Error> {
    let status = message.status.map(|s| ("Status".to_owned(), s.as_u16().to_string()));
    let entries = message.headers.iter().flat_map(|h| {
        h.iter().flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.as_str().to_owned())))
    });
    Ok(Headers::inbound(status.into_iter().chain(entries))?)
}

/// The value of a received payload: ≤ 64 KiB, then the bounded decoder and `value_of`.
/// Errors as Python's receiver names them (`MESSAGE_TOO_LARGE`, `INVALID_MESSAGE`).
fn inbound_value(payload: &[u8]) -> Result<Json, Error> {
    if payload.len() > MAX_VALUE_BYTES {
        return Err(Error::new(ErrorCode::MessageTooLarge)
            .with_detail(format!("payload of {} bytes exceeds 64 KiB", payload.len())));
    }
    let decoded = canonical::decode(payload)?;
    canonical::value_of_decoded(&decoded, payload.len()).map_err(|e| {
        let code =
            if e.code() == ErrorCode::ValueTooLarge { ErrorCode::MessageTooLarge } else { ErrorCode::InvalidMessage };
        Error::new(code).with_detail(e.to_string())
    })
}

/// A received message checked for delivery: its topic, headers and value, and its queue
/// size (payload, header bytes, subject and reply, as Python counts it).
#[derive(Debug, Clone, PartialEq)]
struct Checked {
    topic: Topic,
    headers: Headers,
    value: Json,
    size: usize,
}

/// The last subject a reader decoded and its topic: a subscription without wildcards sees
/// one subject only, so its topic is decoded once.
type TopicCache = Option<(async_nats::Subject, Topic)>;

fn check(subjects: &Subjects, cache: &mut TopicCache, message: &async_nats::Message) -> Result<Checked, Error> {
    let headers = inbound_headers(message)?;
    if message.payload.len() > MAX_VALUE_BYTES {
        return Err(Error::new(ErrorCode::MessageTooLarge)
            .with_detail(format!("payload of {} bytes exceeds 64 KiB", message.payload.len())));
    }
    let topic = match cache {
        Some((subject, topic)) if *subject == message.subject => topic.clone(),
        _ => {
            let topic = subjects.topic_of(&message.subject)?;
            *cache = Some((message.subject.clone(), topic.clone()));
            topic
        }
    };
    let value = inbound_value(&message.payload)?;
    let size = message.payload.len()
        + headers.byte_size()
        + message.subject.len()
        + message.reply.as_ref().map_or(0, |r| r.len());
    Ok(Checked { topic, headers, value, size })
}

/// A reply checked like Python's requester does (§5.5): status 503 with an empty body is
/// `NO_RESPONDERS`; then headers, size and value. A reply carrying [`ERROR_HEADER`] is the
/// handler's `HANDLER_ERROR`.
fn check_reply(message: &async_nats::Message) -> Result<(Reply, usize), Error> {
    if message.payload.is_empty() && message.status.is_some_and(|s| s.as_u16() == 503) {
        return Err(Error::new(ErrorCode::NoResponders).with_detail("nobody handles this topic"));
    }
    let headers = inbound_headers(message)?;
    let value = inbound_value(&message.payload)
        .map_err(|e| Error::new(e.kind()).with_detail(format!("the reply is not a valid protocol-4 message: {e}")))?;
    if let Some(text) = headers.get(ERROR_HEADER) {
        return Err(Error::new(ErrorCode::HandlerError).with_detail(format!("the handler failed: {text}")));
    }
    let size = message.payload.len() + headers.byte_size() + message.subject.len();
    Ok((Reply { value, headers }, size))
}

/// The collection state of one `request_many` (§5.5): replies up to `max_replies` and
/// `max_bytes`, the first invalid reply failing the whole call.
#[derive(Debug)]
struct Collector {
    max_replies: usize,
    max_bytes: usize,
    bytes: usize,
    replies: Vec<Reply>,
}

/// What a [`Collector`] does after a reply.
#[derive(Debug, PartialEq)]
enum Collected {
    /// Keep waiting.
    More,
    /// `max_replies` reached.
    Full,
}

impl Collector {
    fn new(options: &RequestOptions) -> Self {
        Collector { max_replies: options.max_replies, max_bytes: options.max_bytes, bytes: 0, replies: Vec::new() }
    }

    fn offer(&mut self, message: &async_nats::Message) -> Result<Collected, Error> {
        let (reply, size) = check_reply(message)?;
        if self.bytes + size > self.max_bytes {
            return Err(Error::new(ErrorCode::BufferOverflow)
                .with_detail(format!("the replies exceed the {}-byte collection budget", self.max_bytes)));
        }
        self.bytes += size;
        self.replies.push(reply);
        Ok(if self.replies.len() >= self.max_replies { Collected::Full } else { Collected::More })
    }
}

/// The text of an error reply header: visible ASCII, at most 240 characters.
fn error_text(error: &str) -> String {
    let text: String = error.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).take(240).collect();
    if text.trim().is_empty() { "handler failed".to_owned() } else { text }
}

// ---------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------

fn publish_error(e: crate::error::PublishError) -> Error {
    use crate::error::PublishErrorKind;
    let code = match e.kind() {
        PublishErrorKind::Closed => ErrorCode::Closed,
        PublishErrorKind::MaxPayloadExceeded => ErrorCode::MessageTooLarge,
        PublishErrorKind::Rejected => ErrorCode::PermissionDenied,
        _ => ErrorCode::Disconnected,
    };
    Error::new(code).with_source(e)
}

/// Publishes on the current connection, only if connected now, and counts it.
async fn send(
    core: &Core,
    subject: async_nats::Subject,
    reply: Option<async_nats::Subject>,
    payload: Bytes,
    headers: Headers,
) -> Result<(), Error> {
    let size = payload.len() + headers.byte_size();
    core.engine.publish_now(subject, reply, payload, header_map(&headers)).await.map_err(publish_error)?;
    Stats::add(&core.stats.sent_messages, 1);
    Stats::add(&core.stats.sent_bytes, size as u64);
    Ok(())
}

/// New operations are refused while draining.
fn ensure_open(core: &Core) -> Result<(), Error> {
    if core.engine.is_closed() || core.cancel.is_cancelled() {
        return Err(Error::new(ErrorCode::Closed));
    }
    if core.messaging.draining.load(Ordering::Acquire) {
        return Err(Error::new(ErrorCode::Draining).with_detail("the namespace's messaging is draining"));
    }
    Ok(())
}

fn ensure_connected(core: &Core) -> Result<(), Error> {
    ensure_open(core)?;
    if core.engine.state() != ConnectionState::Connected {
        return Err(Error::new(ErrorCode::Disconnected)
            .with_detail("not connected; protocol-4 messages are not buffered while offline"));
    }
    Ok(())
}

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
fn clear_error(core: &Core, code: ErrorCode) {
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
    /// Publishes `value` on `topic` (§5.1): `null` for `None`/`()`, at most 64 KiB encoded.
    ///
    /// ```no_run
    /// # async fn f(ns: kinopio::p4::Namespace) -> Result<(), kinopio::p4::Error> {
    /// ns.publish("sensor.temp", &serde_json::json!({"v": 21.5})).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `INVALID_TOPIC` (a pattern or a bad topic), `INVALID_MESSAGE` / `MESSAGE_TOO_LARGE`
    /// (the value), `DISCONNECTED` (not connected now: nothing is buffered), `CLOSED`.
    pub async fn publish<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<(), Error> {
        self.publish_with_headers(topic, value, NO_HEADERS).await
    }

    /// [`Namespace::publish`] with headers: names are lower-cased and values trimmed of
    /// spaces on the way out; a name may repeat.
    ///
    /// # Errors
    /// As [`Namespace::publish`], plus `INVALID_HEADERS` (a name that is not a token, a value
    /// outside visible ASCII) and `MESSAGE_TOO_LARGE` (more than 32 entries or 4 KiB).
    pub async fn publish_with_headers<T, I, K, V>(&self, topic: &str, value: &T, headers: I) -> Result<(), Error>
    where
        T: Serialize + ?Sized,
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let core = self.core();
        let subject = core.messaging.subject(&core.subjects, topic)?;
        let (payload, headers) = outbound(value, headers)?;
        ensure_connected(core)?;
        send(core, subject, None, payload, headers).await
    }

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

    async fn open(
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

    /// Sends a request and returns the first reply (§5.5), waiting at most `timeout`.
    ///
    /// # Errors
    /// `NO_RESPONDERS` (nobody handles the topic; at once), `TIMEOUT` (no reply in time;
    /// remote execution may have started), `INVALID_MESSAGE` / `MESSAGE_TOO_LARGE` /
    /// `INVALID_HEADERS` (the first reply is invalid), `HANDLER_ERROR` (an error reply of a
    /// kinopio handler, [`HandleOptions::error_replies`]), and the errors of
    /// [`Namespace::publish_with_headers`].
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        self.request_with(topic, value, &RequestOptions::new().timeout(timeout)).await
    }

    /// [`Namespace::request`] with options (timeout, headers).
    ///
    /// # Errors
    /// As [`Namespace::request`].
    pub async fn request_with<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
        options: &RequestOptions,
    ) -> Result<Reply, Error> {
        let core = self.core();
        let subject = core.subjects.message(&Topic::new(topic)?);
        let (payload, headers) = outbound(value, options.headers.iter().map(|(k, v)| (k, v)))?;
        ensure_connected(core)?;
        let timeout = options.timeout.unwrap_or(core.options.timeout);
        let size = payload.len() + headers.byte_size();
        let _pending = Gauge::up(&core.stats.pending_requests);
        let _working = Work::enter(core);
        let answer =
            core.engine.request(async_nats::Subject::from(subject), payload, header_map(&headers), timeout).await;
        Stats::add(&core.stats.sent_messages, 1);
        Stats::add(&core.stats.sent_bytes, size as u64);
        let message = answer.map_err(|e| {
            let code = match e.kind() {
                RequestErrorKind::TimedOut => {
                    return Error::new(ErrorCode::Timeout).with_detail(format!(
                        "no reply within {} ms; remote execution may have started",
                        timeout.as_millis()
                    ));
                }
                RequestErrorKind::NoResponders => ErrorCode::NoResponders,
                RequestErrorKind::MaxPayloadExceeded => ErrorCode::MessageTooLarge,
                RequestErrorKind::Closed => ErrorCode::Closed,
                _ => ErrorCode::Disconnected,
            };
            Error::new(code).with_source(e)
        })?;
        Stats::add(&core.stats.received_messages, 1);
        Stats::add(&core.stats.received_bytes, message.payload.len() as u64);
        check_reply(&message).map(|(reply, _)| reply)
    }

    /// Sends a request and collects replies until `options.max_replies` (reason
    /// [`ManyReason::MaxReplies`]) or the timeout ([`ManyReason::Deadline`], not an error;
    /// the list may be empty).
    ///
    /// # Errors
    /// `INVALID_OPTIONS` (limits above 16 replies / 1 MiB, or zero), `NO_RESPONDERS`,
    /// `BUFFER_OVERFLOW` (the replies exceed `max_bytes`), the first invalid reply's error,
    /// and the errors of [`Namespace::publish_with_headers`].
    pub async fn request_many<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
        options: &RequestOptions,
    ) -> Result<ManyReplies, Error> {
        options.check_many()?;
        let core = self.core();
        let subject = core.subjects.message(&Topic::new(topic)?);
        let (payload, headers) = outbound(value, options.headers.iter().map(|(k, v)| (k, v)))?;
        ensure_connected(core)?;
        let timeout = options.timeout.unwrap_or(core.options.timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let _pending = Gauge::up(&core.stats.pending_requests);
        let _working = Work::enter(core);
        let inbox_subject = async_nats::Subject::from(format!("_INBOX.{}", uuid::Uuid::new_v4().simple()));
        let mut inbox = tokio::time::timeout_at(deadline, core.engine.subscribe(&inbox_subject, None))
            .await
            .map_err(|_| Error::new(ErrorCode::Timeout).with_detail("could not subscribe the reply inbox in time"))?
            .map_err(|e| Error::new(ErrorCode::Disconnected).with_source(e))?;
        send(core, async_nats::Subject::from(subject), Some(inbox_subject), payload, headers).await?;
        let mut collector = Collector::new(options);
        let reason = loop {
            let next = tokio::select! {
                () = tokio::time::sleep_until(deadline) => break ManyReason::Deadline,
                m = inbox.next() => m,
            };
            let Some(message) = next else {
                return Err(Error::new(ErrorCode::Closed));
            };
            Stats::add(&core.stats.received_messages, 1);
            Stats::add(&core.stats.received_bytes, message.payload.len() as u64);
            if collector.offer(&message)? == Collected::Full {
                break ManyReason::MaxReplies;
            }
        };
        drop(inbox);
        Ok(ManyReplies { replies: collector.replies, reason })
    }

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

    /// Answers every request on `pattern` with `handler`'s value (§5.4); messages without a
    /// reply subject are ignored. No queue group (every handler on the topic answers); see
    /// [`Namespace::handle_with`]. On a handler error nothing is sent (module docs).
    ///
    /// ```no_run
    /// # async fn f(ns: kinopio::p4::Namespace) -> Result<(), kinopio::p4::Error> {
    /// let handler = ns.handle("math.double", |m: kinopio::p4::Message| async move {
    ///     let n: i64 = m.value()?;
    ///     Ok::<_, kinopio::p4::Error>(n * 2)
    /// }).await?;
    /// # drop(handler); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Namespace::subscribe_with`].
    pub async fn handle<F, Fut, R, E>(&self, pattern: &str, handler: F) -> Result<Handler, Error>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + Send + 'static,
        E: Display + Send + 'static,
    {
        self.handle_with(pattern, HandleOptions::default(), handler).await
    }

    /// [`Namespace::handle`] with options: queue group (shared with Python handlers of the
    /// same queue name), concurrency, error replies.
    ///
    /// # Errors
    /// As [`Namespace::subscribe_with`].
    pub async fn handle_with<F, Fut, R, E>(
        &self,
        pattern: &str,
        options: HandleOptions,
        handler: F,
    ) -> Result<Handler, Error>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + Send + 'static,
        E: Display + Send + 'static,
    {
        let stream = self.open(pattern, &options.subscribe, true).await?;
        let counts = Arc::new(HandlerCounts::default());
        let stop = CancellationToken::new();
        let working = Work::enter(self.core());
        let task = tokio::spawn(serve(
            working,
            stream,
            handler,
            options.concurrency.max(1),
            options.error_replies,
            Arc::clone(&counts),
            stop.clone(),
        ));
        Ok(Handler { counts, stop, task: Some(task) })
    }
}

#[derive(Debug, Default)]
struct HandlerCounts {
    answered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A running [`Namespace::handle`]. Dropping it stops answering at once;
/// [`Handler::stop`] lets running handlers finish first.
#[derive(Debug)]
pub struct Handler {
    counts: Arc<HandlerCounts>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Handler {
    /// Requests answered.
    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Ordering::Relaxed)
    }

    /// Requests whose handler failed (or whose reply could not be sent).
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Requests dropped because the handler's queue was full.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking requests, lets the running handlers finish (up to `limit`) and
    /// unsubscribes. Requests still queued are not answered (their callers time out).
    pub async fn stop(mut self, limit: Duration) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(limit, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs a handler over its request stream, up to `concurrency` at once, without a task per
/// request.
async fn serve<F, Fut, R, E>(
    working: Working,
    mut stream: MessageStream,
    handler: F,
    concurrency: usize,
    error_replies: bool,
    counts: Arc<HandlerCounts>,
    stop: CancellationToken,
) where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Serialize + Send + 'static,
    E: Display + Send + 'static,
{
    let core = Arc::clone(&working.0);
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        counts.dropped.store(stream.dropped(), Ordering::Relaxed);
        tokio::select! {
            biased;
            () = stop.cancelled(), if open => open = false,
            Some(()) = running.next(), if !running.is_empty() => {}
            m = stream.next(), if open && running.len() < concurrency => match m {
                Some(message) => running.push(answer(&core, message, &handler, error_replies, &counts)),
                None => open = false,
            },
            else => break,
        }
        if !open && running.is_empty() {
            break;
        }
    }
    drop(stream);
    drop(working);
}

/// Runs the handler for one request and sends its one reply.
async fn answer<F, Fut, R, E>(
    core: &Arc<Core>,
    message: Message,
    handler: &F,
    error_replies: bool,
    counts: &HandlerCounts,
) where
    F: Fn(Message) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: Serialize,
    E: Display,
{
    let _running = Gauge::up(&core.stats.in_flight_handlers);
    let Some(reply) = message.reply.clone() else { return };
    let topic = message.topic.clone();
    let outcome = match handler(message).await {
        Ok(value) => payload_of(&value).map_err(|e| format!("the handler's value cannot be sent: {e}")),
        Err(e) => Err(e.to_string()),
    };
    let sent = match outcome {
        Ok(payload) => send(core, reply.subject, None, payload, Headers::default()).await,
        Err(text) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            core.messaging.handler_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(namespace = %core.name, topic = %topic.as_str(), error = %text, "handler failed");
            core.note_error(ErrorCode::HandlerError, format!("handler of {} failed", topic.as_str()));
            if !error_replies {
                return;
            }
            let headers = Headers::outbound([(ERROR_HEADER, error_text(&text))]).unwrap_or_default();
            if let Err(e) = send(core, reply.subject, None, Bytes::from_static(b"null"), headers).await {
                tracing::warn!(namespace = %core.name, topic = %topic.as_str(), error = %e, "error reply not sent");
            }
            return;
        }
    };
    match sent {
        Ok(()) => {
            counts.answered.fetch_add(1, Ordering::Relaxed);
            clear_error(core, ErrorCode::HandlerError);
        }
        Err(e) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(namespace = %core.name, topic = %topic.as_str(), error = %e, "reply not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::p4::names::Name;

    fn ns() -> Subjects {
        Subjects::new(&Name::new("workshop").unwrap())
    }

    fn message(subject: &str, payload: &[u8]) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: Bytes::copy_from_slice(payload),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn outbound_payloads_follow_the_reference() {
        let (payload, headers) = outbound(&serde_json::json!({"v": 21.5}), [("X-Trace", " op-42 ")]).unwrap();
        assert_eq!(&payload[..], br#"{"v":21.5}"#);
        assert_eq!(headers.entries(), [("x-trace".to_owned(), "op-42".to_owned())]);
        assert_eq!(&payload_of(&()).unwrap()[..], b"null");
        assert_eq!(&payload_of(&None::<u8>).unwrap()[..], b"null");
        assert_eq!(payload_of(&f64::NAN).unwrap_err().kind(), ErrorCode::InvalidMessage);
        assert_eq!(payload_of(&[1.0, f64::INFINITY]).unwrap_err().kind(), ErrorCode::InvalidMessage);
        assert_eq!(payload_of(&"x".repeat(70_000)).unwrap_err().kind(), ErrorCode::MessageTooLarge);
        assert_eq!(outbound(&1, [("Bad Name", "v")]).unwrap_err().kind(), ErrorCode::InvalidHeaders);
        assert!(header_map(&Headers::default()).is_none());
    }

    #[test]
    fn received_messages_are_checked() {
        let subject = "_msg.v1.776f726b73686f70.73656e736f72.74656d70";
        let ok = check(&ns(), &mut None, &message(subject, br#" {"b":1,"a":2.0} "#)).unwrap();
        assert_eq!(ok.topic.as_str(), "sensor.temp");
        assert_eq!(canonical::encode(&ok.value).unwrap(), br#"{"a":2,"b":1}"#);
        assert_eq!(ok.size, 17 + subject.len());
        for bad in [&b""[..], b"{bad", b"NaN", b"[1e400]", b"9007199254740992"] {
            assert_eq!(
                check(&ns(), &mut None, &message(subject, bad)).unwrap_err().kind(),
                ErrorCode::InvalidMessage,
                "{bad:?}"
            );
        }
        let big = format!("\"{}\"", "x".repeat(65_535));
        assert_eq!(
            check(&ns(), &mut None, &message(subject, big.as_bytes())).unwrap_err().kind(),
            ErrorCode::MessageTooLarge
        );
        assert_eq!(
            check(&ns(), &mut None, &message("_msg.v1.776f726b73686f70.zz", b"1")).unwrap_err().kind(),
            ErrorCode::InvalidMessage
        );
        // A valid-hex foreign subject is delivered with its decoded topic (§2.2).
        assert_eq!(check(&ns(), &mut None, &message("_msg.v1.776f726b73686f70.41", b"1")).unwrap().topic.as_str(), "A");
        let mut with_headers = message(subject, b"1");
        let mut map = async_nats::HeaderMap::new();
        map.append("X-Tag", "a");
        map.append("X-Tag", "b");
        with_headers.headers = Some(map);
        let checked = check(&ns(), &mut None, &with_headers).unwrap();
        assert_eq!(checked.headers.get_all("x-tag").collect::<Vec<_>>(), ["a", "b"]);
        let mut bad_value = message(subject, b"1");
        let mut map = async_nats::HeaderMap::new();
        map.append("x", "\u{e9}");
        bad_value.headers = Some(map);
        assert_eq!(check(&ns(), &mut None, &bad_value).unwrap_err().kind(), ErrorCode::InvalidHeaders);
    }

    #[test]
    fn replies_and_collection() {
        let mut no_responders = message("_INBOX.x", b"");
        no_responders.status = Some(async_nats::StatusCode::NO_RESPONDERS);
        assert_eq!(check_reply(&no_responders).unwrap_err().kind(), ErrorCode::NoResponders);
        assert_eq!(check_reply(&message("_INBOX.x", b"")).unwrap_err().kind(), ErrorCode::InvalidMessage);
        let (reply, _) = check_reply(&message("_INBOX.x", b"[1]")).unwrap();
        assert_eq!(reply.value::<Vec<u8>>().unwrap(), [1]);
        let mut failed = message("_INBOX.x", b"null");
        let mut map = async_nats::HeaderMap::new();
        map.append(ERROR_HEADER, "boom");
        failed.headers = Some(map);
        assert_eq!(check_reply(&failed).unwrap_err().kind(), ErrorCode::HandlerError);

        let mut collector = Collector::new(&RequestOptions::new().max_replies(2));
        assert_eq!(collector.offer(&message("_INBOX.x", b"1")).unwrap(), Collected::More);
        assert_eq!(collector.offer(&message("_INBOX.x", b"2")).unwrap(), Collected::Full);
        let mut small = Collector::new(&RequestOptions::new().max_bytes(20));
        assert_eq!(small.offer(&message("_INBOX.x", b"1")).unwrap(), Collected::More);
        assert_eq!(small.offer(&message("_INBOX.x", b"22222222222")).unwrap_err().kind(), ErrorCode::BufferOverflow);
        assert_eq!(RequestOptions::new().max_replies(17).check_many().unwrap_err().kind(), ErrorCode::InvalidOptions);
        assert_eq!(RequestOptions::new().max_bytes(0).check_many().unwrap_err().kind(), ErrorCode::InvalidOptions);
        assert_eq!(error_text("bad\nthing é"), "bad?thing ?");
    }
}
