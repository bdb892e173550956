//! Handlers: [`Namespace::handle`], which answers every request on a topic with one reply,
//! and the [`Handler`] that runs it.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::checks::{error_text, payload_of};
use super::send::send;
use super::stream::{MessageStream, clear_error};
use super::{ERROR_HEADER, Gauge, HandleOptions, Message, Work, Working};
use crate::p4::Error;
use crate::p4::namespace::{Core, Namespace};
use crate::wire::p4::ErrorCode;
use crate::wire::p4::headers::Headers;

impl Namespace {
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
