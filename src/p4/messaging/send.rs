//! Sending: the one publish path every outgoing message takes (events, requests, replies),
//! the checks before it (open, not draining, connected), and [`Namespace::publish`],
//! [`Namespace::request`] and [`Namespace::request_many`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::checks::{Collected, Collector, check_reply, header_map, outbound};
use super::{Gauge, ManyReason, ManyReplies, NO_HEADERS, Reply, RequestOptions, Work};
use crate::error::RequestErrorKind;
use crate::p4::Error;
use crate::p4::namespace::{Core, Namespace, Stats};
use crate::state::ConnectionState;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::headers::Headers;
use crate::wire::p4::names::Topic;

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
pub(super) async fn send(
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
pub(super) fn ensure_open(core: &Core) -> Result<(), Error> {
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
    /// Sends a request and returns the first reply (§5.5), waiting at most `timeout`.
    ///
    /// # Errors
    /// `NO_RESPONDERS` (nobody handles the topic; at once), `TIMEOUT` (no reply in time;
    /// remote execution may have started), `INVALID_MESSAGE` / `MESSAGE_TOO_LARGE` /
    /// `INVALID_HEADERS` (the first reply is invalid), `HANDLER_ERROR` (an error reply of a
    /// kinopio handler,
    /// [`HandleOptions::error_replies`](super::HandleOptions::error_replies)), and the
    /// errors of [`Namespace::publish_with_headers`].
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
}
