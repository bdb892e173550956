//! [`Variable`]: a remote variable on one subject that can publish, subscribe, request and
//! serve, and remembers the latest value seen.
//!
//! Unlike the reference, touching or requesting a variable creates no subscription: a
//! request to a subject nobody serves fails at once with "no responders". Value tracking
//! comes from this variable's own publishes and subscriptions, and from
//! [`Variable::watch`], which subscribes for as long as a watch is alive.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::codec::{DecodeError, Payload};
use crate::error::{
    PublishError, PublishErrorKind, RequestError, RequestErrorKind, SubscribeError, SubscribeErrorKind,
};
use crate::hub::Hub;
use crate::name::{self, InvalidName};
use crate::service::{self, ERROR_HEADER, Service};
use crate::subscription::{HeaderMap, Message, Subscription};
use crate::value::Value;
use crate::variable_state::{Tracker, VariableState};

/// A remote variable. Cheap to clone; the same subject on the same hub is always the same
/// variable (see [`Variable::same_as`]).
#[derive(Clone)]
pub struct Variable {
    hub: Hub,
    state: Arc<VariableState>,
}

impl std::fmt::Debug for Variable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variable").field("subject", &self.subject()).finish()
    }
}

/// Per-request settings for [`Variable::request_with`].
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Overrides the hub's default request timeout.
    pub timeout: Option<Duration>,
    /// Headers sent with the request.
    pub headers: Option<HeaderMap>,
}

impl Hub {
    /// The variable at a full dotted path, e.g. `hub.variable("chat.messages")` — the same
    /// object as `hub.scope("chat")?.variable("messages")?`.
    ///
    /// # Errors
    /// [`InvalidName`] for an empty name, an empty token, a wildcard or whitespace.
    pub fn variable(&self, path: &str) -> Result<Variable, InvalidName> {
        name::validate("variable", path)?;
        Ok(Variable { hub: self.clone(), state: self.variable_state(path) })
    }

    /// Subscribes to every subject matching `pattern` (in queue group `queue`, if given),
    /// which may use the NATS wildcards `*` (one token) and `>` (the rest): `sensors.*.temp`,
    /// `chat.>`, `>`. Each message carries its own subject. Returns once the server has the
    /// interest (or, under [`Confirmation::Ordered`](crate::Confirmation::Ordered), once its SUB
    /// is queued), like [`Variable::subscribe`]. A pattern without wildcards is the same as
    /// `hub.variable(pattern)?.subscribe()`.
    ///
    /// # Errors
    /// [`SubscribeErrorKind::InvalidSubject`] for a malformed pattern (a wildcard inside a
    /// token, `>` before the end, an empty token, whitespace), or the errors of
    /// [`Variable::subscribe`].
    ///
    /// # Cancel safety
    /// Cancelling it before it returns drops the subscription (nothing is left subscribed).
    pub async fn subscribe_pattern(&self, pattern: &str, queue: Option<&str>) -> Result<Subscription, SubscribeError> {
        name::validate_pattern("subject", pattern)
            .map_err(|e| SubscribeError::new(SubscribeErrorKind::InvalidSubject).with_detail(e.to_string()))?;
        let state = self.variable_state(pattern);
        let inbox = self.engine().subscribe(&state.subject, queue).await?;
        Ok(Subscription::new(inbox, state))
    }
}

impl Variable {
    /// The NATS subject, e.g. `chat.messages`.
    pub fn subject(&self) -> &str {
        self.state.subject.as_str()
    }

    /// The hub this variable belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// True when both handles are the same variable object.
    pub fn same_as(&self, other: &Variable) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// Publishes any serialisable value as JSON (a value that serialises to null is sent as
    /// the empty payload). Waits up to the request timeout for a connection.
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`] when no connection came up within the request
    /// timeout, [`PublishErrorKind::MaxPayloadExceeded`] for a payload over the server's
    /// limit, [`PublishErrorKind::Closed`] after [`Hub::close`], or [`PublishErrorKind::Encode`] when the value does not serialise.
    ///
    /// # Cancel safety
    /// Cancelling before it returns may or may not have sent the message.
    pub async fn publish<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), PublishError> {
        let payload = self
            .hub
            .engine()
            .encoding()
            .encode(value)
            .map_err(|e| PublishError::new(PublishErrorKind::Encode).with_source(e))?;
        self.publish_payload(payload, None).await
    }

    /// Publishes a [`Value`] by the reference's rules (strings unquoted, bytes raw).
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`] when no connection came up within the request
    /// timeout, [`PublishErrorKind::MaxPayloadExceeded`] for a payload over the server's
    /// limit, [`PublishErrorKind::Closed`] after [`Hub::close`], or [`PublishErrorKind::Encode`] when the value does not serialise.
    ///
    /// # Cancel safety
    /// Cancelling before it returns may or may not have sent the message.
    pub async fn publish_value(&self, value: &Value) -> Result<(), PublishError> {
        let payload = self
            .hub
            .engine()
            .encoding()
            .encode_value(value)
            .map_err(|e| PublishError::new(PublishErrorKind::Encode).with_source(e))?;
        self.publish_payload(payload, None).await
    }

    /// Publishes text as unquoted UTF-8 (what a Python peer sends for a `str`).
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`] when no connection came up within the request
    /// timeout, [`PublishErrorKind::MaxPayloadExceeded`] for a payload over the server's
    /// limit, [`PublishErrorKind::Closed`] after [`Hub::close`].
    ///
    /// # Cancel safety
    /// Cancelling before it returns may or may not have sent the message.
    pub async fn publish_text(&self, text: impl Into<String>) -> Result<(), PublishError> {
        self.publish_payload(Payload::text(text), None).await
    }

    /// Publishes raw bytes.
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`] when no connection came up within the request
    /// timeout, [`PublishErrorKind::MaxPayloadExceeded`] for a payload over the server's
    /// limit, [`PublishErrorKind::Closed`] after [`Hub::close`].
    ///
    /// # Cancel safety
    /// Cancelling before it returns may or may not have sent the message.
    pub async fn publish_bytes(&self, bytes: impl Into<Bytes>) -> Result<(), PublishError> {
        self.publish_payload(Payload::bytes(bytes), None).await
    }

    /// Publishes an encoded payload, with optional headers.
    ///
    /// # Errors
    /// [`PublishErrorKind::NotConnected`] when no connection came up within the request
    /// timeout, [`PublishErrorKind::MaxPayloadExceeded`] for a payload over the server's
    /// limit, [`PublishErrorKind::Closed`] after [`Hub::close`].
    ///
    /// # Cancel safety
    /// Cancelling before it returns may or may not have sent the message.
    pub async fn publish_payload(&self, payload: Payload, headers: Option<HeaderMap>) -> Result<(), PublishError> {
        let bytes = payload.into_bytes();
        self.hub.engine().publish(self.state.subject.clone(), bytes.clone(), headers).await?;
        self.state.record(&bytes);
        Ok(())
    }

    /// Subscribes: a stream of every message published on this subject. Returns once the
    /// server has the interest; under
    /// [`Confirmation::Ordered`](crate::Confirmation::Ordered) once the SUB is queued in order
    /// (see [`HubOptions::subscribe_confirmation`](crate::HubOptions::subscribe_confirmation)).
    ///
    /// # Errors
    /// [`SubscribeErrorKind::PermissionDenied`] when the server refuses the subject (under
    /// `Confirmation::Ordered` the refusal comes later: [`Hub::confirm`] fails and the stream
    /// ends),
    /// [`SubscribeErrorKind::Closed`] after [`Hub::close`], or
    /// [`SubscribeErrorKind::Other`] when the hub never got a connection.
    ///
    /// # Cancel safety
    /// Cancelling it before it returns leaves nothing subscribed.
    pub async fn subscribe(&self) -> Result<Subscription, SubscribeError> {
        self.subscribe_in(None).await
    }

    /// Subscribes as a member of a queue group: each message goes to one member.
    ///
    /// # Errors
    /// [`SubscribeErrorKind::PermissionDenied`] when the server refuses the subject,
    /// [`SubscribeErrorKind::Closed`] after [`Hub::close`], or
    /// [`SubscribeErrorKind::Other`] when the hub never got a connection, and [`SubscribeErrorKind::InvalidQueueGroup`] for an empty group or one with whitespace.
    ///
    /// # Cancel safety
    /// Cancelling it before it returns leaves nothing subscribed.
    pub async fn subscribe_queue(&self, group: &str) -> Result<Subscription, SubscribeError> {
        self.subscribe_in(Some(group)).await
    }

    async fn subscribe_in(&self, queue: Option<&str>) -> Result<Subscription, SubscribeError> {
        let inbox = self.hub.engine().subscribe(&self.state.subject, queue).await?;
        Ok(Subscription::new(inbox, Arc::clone(&self.state)))
    }

    /// Sends a request and decodes the reply into `R`, with the hub's default timeout.
    /// Error replies from a service become [`RequestErrorKind::Remote`].
    ///
    /// # Errors
    /// [`RequestErrorKind::NoResponders`] at once when nobody serves the subject,
    /// [`RequestErrorKind::TimedOut`], [`RequestErrorKind::Remote`] for a service's error
    /// reply, [`RequestErrorKind::NotConnected`], [`RequestErrorKind::Closed`], plus [`RequestErrorKind::Encode`] and [`RequestErrorKind::Decode`] for the value and the reply.
    ///
    /// # Cancel safety
    /// Cancelling it drops the reply; the request may already have been sent.
    pub async fn request<R, T>(&self, value: &T) -> Result<R, RequestError>
    where
        R: DeserializeOwned,
        T: Serialize + ?Sized,
    {
        let payload = self
            .hub
            .engine()
            .encoding()
            .encode(value)
            .map_err(|e| RequestError::new(RequestErrorKind::Encode).with_source(e))?;
        let reply = self.request_with(payload, RequestOptions::default()).await?;
        reply.decode().map_err(|e| RequestError::new(RequestErrorKind::Decode).with_source(e))
    }

    /// Sends an encoded request and returns the raw reply.
    ///
    /// # Errors
    /// [`RequestErrorKind::NoResponders`] at once when nobody serves the subject,
    /// [`RequestErrorKind::TimedOut`], [`RequestErrorKind::Remote`] for a service's error
    /// reply, [`RequestErrorKind::NotConnected`], [`RequestErrorKind::Closed`].
    ///
    /// # Cancel safety
    /// Cancelling it drops the reply; the request may already have been sent.
    pub async fn request_with(&self, payload: Payload, options: RequestOptions) -> Result<Message, RequestError> {
        let engine = self.hub.engine();
        let timeout = options.timeout.unwrap_or(engine.options().request_timeout);
        let reply = engine.request(self.state.subject.clone(), payload.into_bytes(), options.headers, timeout).await?;
        let reply = Message::from_nats(reply, engine.encoding());
        if let Some(message) = remote_error(&reply) {
            return Err(RequestError::new(RequestErrorKind::Remote { message })
                .with_detail(format!("subject {}", self.subject())));
        }
        Ok(reply)
    }

    /// Serves requests on this subject in the default queue group `<subject>.service` (shared
    /// with Python servers, so a mixed fleet load-balances). Handlers run concurrently (up to
    /// `HubOptions::max_concurrent_handlers`); a handler error or panic is answered with
    /// `{"error": true, "message": "..."}`. Serving again replaces the previous service.
    ///
    /// ```no_run
    /// # async fn demo(var: kinopio::Variable) -> Result<(), Box<dyn std::error::Error>> {
    /// var.serve(|req: kinopio::Message| async move {
    ///     let n: i64 = req.decode()?;
    ///     Ok::<_, kinopio::DecodeError>(n * 2)
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`SubscribeErrorKind::PermissionDenied`] when the server refuses the subject,
    /// [`SubscribeErrorKind::Closed`] after [`Hub::close`], or
    /// [`SubscribeErrorKind::Other`] when the hub never got a connection.
    ///
    /// # Cancel safety
    /// Cancelling it before it returns leaves nothing subscribed.
    pub async fn serve<F, Fut, R, E>(&self, handler: F) -> Result<Service, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: crate::codec::IntoReply,
        E: std::fmt::Display + Send + 'static,
    {
        let group = crate::name::service_queue_group(self.subject());
        self.serve_queue(&group, handler).await
    }

    /// Like [`Variable::serve`] with another queue group.
    ///
    /// # Errors
    /// [`SubscribeErrorKind::PermissionDenied`] when the server refuses the subject,
    /// [`SubscribeErrorKind::Closed`] after [`Hub::close`], or
    /// [`SubscribeErrorKind::Other`] when the hub never got a connection.
    ///
    /// # Cancel safety
    /// Cancelling it before it returns leaves nothing subscribed.
    pub async fn serve_queue<F, Fut, R, E>(&self, group: &str, handler: F) -> Result<Service, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: crate::codec::IntoReply,
        E: std::fmt::Display + Send + 'static,
    {
        let subscription = self.subscribe_queue(group).await?;
        let service = service::start(subscription, handler);
        self.state.replace_service(service.stopper());
        Ok(service)
    }

    /// The latest value seen on this subject (published or received here), decoded; `None`
    /// before any.
    pub fn value(&self) -> Option<Value> {
        let latest = self.state.latest()?;
        Some(self.hub.engine().encoding().decode_value(&latest))
    }

    /// The latest value decoded into `T`.
    pub fn value_as<T: DeserializeOwned>(&self) -> Option<Result<T, DecodeError>> {
        let latest = self.state.latest()?;
        Some(self.hub.engine().encoding().decode(&latest).map_err(|e| e.with_subject(self.subject())))
    }

    /// Watches the value: subscribes (once per variable, shared by all watches) so remote
    /// updates arrive even when nothing else subscribes, for as long as a watch is alive.
    ///
    /// # Errors
    /// [`SubscribeErrorKind::PermissionDenied`] when the server refuses the subject,
    /// [`SubscribeErrorKind::Closed`] after [`Hub::close`], or
    /// [`SubscribeErrorKind::Other`] when the hub never got a connection.
    ///
    /// # Cancel safety
    /// Cancelling it before it returns leaves nothing subscribed.
    pub async fn watch(&self) -> Result<ValueWatch, SubscribeError> {
        let tracker = match self.state.tracker() {
            Some(t) => t,
            None => {
                let mut sub = self.subscribe().await?;
                let task = tokio::spawn(async move { while sub.next().await.is_some() {} });
                let tracker = Arc::new(Tracker::new(task));
                self.state.set_tracker(&tracker);
                tracker
            }
        };
        Ok(ValueWatch { rx: self.state.watch_latest(), variable: self.clone(), _tracker: tracker })
    }
}

/// The `{"error": true, "message": ...}` reply of a failed service (kinopio or Python).
fn remote_error(reply: &Message) -> Option<String> {
    let flagged = reply.headers.as_ref().is_some_and(|h| h.get(ERROR_HEADER).is_some());
    if !flagged && !reply.payload.starts_with(b"{") {
        return None;
    }
    let value = reply.value();
    let object = value.as_object()?;
    let is_error_shape = object.len() == 2 && object.get("error") == Some(&Value::Bool(true));
    if !(flagged || is_error_shape) {
        return None;
    }
    Some(match object.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    })
}

/// A live view of a variable's value (see [`Variable::watch`]).
#[derive(Debug)]
pub struct ValueWatch {
    rx: watch::Receiver<Option<Bytes>>,
    variable: Variable,
    _tracker: Arc<Tracker>,
}

impl ValueWatch {
    /// The current value.
    pub fn current(&self) -> Option<Value> {
        let latest = self.rx.borrow().clone()?;
        Some(self.variable.hub.engine().encoding().decode_value(&latest))
    }

    /// Waits for the next change and returns the new value; `None` once the hub is gone.
    ///
    /// # Cancel safety
    /// Cancel safe: a change not yet returned is returned by the next call.
    pub async fn changed(&mut self) -> Option<Value> {
        self.rx.changed().await.ok()?;
        let latest = self.rx.borrow_and_update().clone();
        Some(latest.map_or(Value::Null, |p| self.variable.hub.engine().encoding().decode_value(&p)))
    }
}
