//! [`Subscription`]: a stream of [`Message`]s on one variable (or pattern) that survives
//! server restarts, manual reconnects and hot switches (the engine's inbox does the work), and
//! records every message as the variable's latest value.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

use crate::codec::{DecodeError, Encoding};
use crate::engine::Inbox;
use crate::value::Value;
use crate::variable_state::VariableState;

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
    #[inline]
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

/// A stream of [`Message`]s on a variable's subject.
///
/// Dropping it unsubscribes. Every message also updates the variable's
/// [`value()`](crate::Variable::value).
#[must_use = "a subscription delivers nothing unless polled"]
pub struct Subscription {
    inbox: Inbox,
    variable: Arc<VariableState>,
    encoding: Encoding,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("inbox", &self.inbox).finish()
    }
}

impl Subscription {
    pub(crate) fn new(inbox: Inbox, variable: Arc<VariableState>) -> Subscription {
        let encoding = inbox.engine().encoding().clone();
        Subscription { inbox, variable, encoding }
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        self.inbox.subject()
    }

    /// The queue group, if any.
    pub fn queue_group(&self) -> Option<&str> {
        self.inbox.queue_group()
    }

    /// The engine this subscription belongs to.
    pub(crate) fn engine(&self) -> &Arc<crate::engine::Engine> {
        self.inbox.engine()
    }

    /// Unsubscribes and returns once the server has dropped the interest (a request to a
    /// subject whose only subscription this was then gets "no responders"). Dropping a
    /// subscription also unsubscribes, without waiting.
    ///
    /// # Cancel safety
    /// Cancelling it still unsubscribes (the subscription is consumed); only the wait for the
    /// server's confirmation is lost.
    pub async fn unsubscribe(self) {
        self.inbox.unsubscribe().await;
    }

    /// Decoded values instead of messages: each item is the payload decoded into `T`, or a
    /// [`DecodeError`] that keeps the raw payload.
    pub fn values<T: DeserializeOwned>(self) -> impl Stream<Item = Result<T, DecodeError>> + Send + Unpin {
        self.map(|m| m.decode::<T>())
    }
}

impl Stream for Subscription {
    type Item = Message;

    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let Subscription { inbox, variable, encoding } = &mut *self;
        inbox.poll_next_with(cx, |msg| {
            variable.record(&msg.payload);
            Message::from_nats(msg, encoding)
        })
    }
}
