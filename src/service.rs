//! [`Service`]: a request handler on a variable. Requests are handled concurrently up to a
//! bound; every request with a reply subject gets exactly one reply — the handler's value, or
//! `{"error": true, "message": "..."}` (plus the `Kinopio-Error` header) when it fails or
//! panics.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::codec::Payload;
use crate::engine::Engine;
use crate::subscription::{HeaderMap, Message, Subscription};

/// Header a kinopio service sets on error replies, so kinopio requesters can tell an error
/// reply from a value that happens to look like one. Python 0.1.1 peers ignore it.
pub const ERROR_HEADER: &str = "Kinopio-Error";

/// A running service. It keeps serving when this handle is dropped; call [`Service::stop`]
/// to end it (it is never brought back by a reconnect or switch).
#[derive(Debug)]
pub struct Service {
    subject: String,
    queue: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    /// The subject served.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The queue group.
    pub fn queue_group(&self) -> &str {
        &self.queue
    }

    /// True until the service is stopped (or the hub closed).
    pub fn is_active(&self) -> bool {
        !self.task.is_finished()
    }

    /// A token that stops this service when cancelled.
    pub(crate) fn stopper(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Unsubscribes and waits for requests already being handled to be answered.
    ///
    /// # Cancel safety
    /// The service stops taking requests at the first poll; cancelling only skips the wait
    /// for in-flight handlers' replies.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// The error reply body, exactly as the Python reference writes it.
pub(crate) fn error_reply(message: &str) -> Payload {
    #[derive(Serialize)]
    struct ErrorReply<'a> {
        error: bool,
        message: &'a str,
    }
    Payload::json(&ErrorReply { error: true, message })
        .unwrap_or_else(|_| Payload::text("{\"error\": true, \"message\": \"\"}"))
}

pub(crate) fn start<F, Fut, R, E>(mut subscription: Subscription, handler: F) -> Service
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: crate::codec::IntoReply,
    E: std::fmt::Display + Send + 'static,
{
    let subject = subscription.subject().to_owned();
    let queue = subscription.queue_group().unwrap_or_default().to_owned();
    let cancel = CancellationToken::new();
    let handler = Arc::new(handler);
    let engine = Arc::clone(subscription.engine());
    let limit = engine.options().max_concurrent_handlers;
    let permits = Arc::new(Semaphore::new(limit));
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let msg = tokio::select! {
                _ = stop.cancelled() => break,
                m = subscription.next() => match m { Some(m) => m, None => break },
            };
            let handler = Arc::clone(&handler);
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let _permit = permit;
                handle(&engine, msg, handler).await;
            });
        }
        subscription.unsubscribe().await;
        // Wait for in-flight handlers so their replies go out before `stop()` returns.
        let _ = permits.acquire_many(limit as u32).await;
    });
    Service { subject, queue, cancel, task }
}

async fn handle<F, Fut, R, E>(engine: &Engine, msg: Message, handler: Arc<F>)
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: crate::codec::IntoReply,
    E: std::fmt::Display + Send + 'static,
{
    let reply_to = msg.reply.clone();
    let subject = msg.subject.clone();
    let outcome = AssertUnwindSafe(async move { handler(msg).await }).catch_unwind().await;
    let (payload, failed) = match outcome {
        Ok(Ok(value)) => match value.into_reply(engine.encoding()) {
            Ok(p) => (p, false),
            Err(e) => (error_reply(&format!("cannot encode the reply: {e}")), true),
        },
        Ok(Err(e)) => {
            tracing::debug!(subject = %subject, error = %e, "service handler failed");
            (error_reply(&e.to_string()), true)
        }
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_owned());
            tracing::error!(subject = %subject, panic = %text, "service handler panicked");
            (error_reply(&format!("handler panicked: {text}")), true)
        }
    };
    let Some(reply_to) = reply_to else {
        return;
    };
    let headers = failed.then(|| {
        let mut h = HeaderMap::new();
        h.insert(ERROR_HEADER, "true");
        h
    });
    if let Err(e) = engine.publish(reply_to, payload.into_bytes(), headers).await {
        tracing::warn!(subject = %subject, error = %e, "could not send the reply");
    }
}
