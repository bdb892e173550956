//! [`Variable`]: a remote variable on one subject that can publish, subscribe, request and
//! serve, and remembers the latest value seen.
//!
//! Unlike the reference, touching or requesting a variable creates no subscription: a
//! request to a subject nobody serves fails at once with "no responders". Value tracking
//! comes from this variable's own publishes and subscriptions, and from
//! [`Variable::watch`], which subscribes for as long as a watch is alive.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::codec::{DecodeError, Payload};
use crate::error::{PublishError, PublishErrorKind, RequestError, RequestErrorKind, SubscribeError};
use crate::hub::{Hub, lock};
use crate::service::{self, Service};
use crate::subscription::{HeaderMap, Message, Subscription};
use crate::value::Value;

/// Shared state of one variable (one per subject per hub).
#[derive(Debug)]
pub(crate) struct VariableState {
    pub subject: async_nats::Subject,
    latest: watch::Sender<Option<Bytes>>,
    tracker: Mutex<Weak<Tracker>>,
    pub(crate) service: Mutex<Option<service::Control>>,
}

impl VariableState {
    pub fn new(subject: &str) -> VariableState {
        VariableState {
            subject: async_nats::Subject::from(subject),
            latest: watch::channel(None).0,
            tracker: Mutex::new(Weak::new()),
            service: Mutex::new(None),
        }
    }

    /// Records a payload seen on (or sent to) this subject.
    pub fn record(&self, payload: &Bytes) {
        if self.latest.receiver_count() == 0 {
            // Nobody watches: store without notifying (waking the watch channel's notify
            // slots on every message costs more than the rest of a delivery).
            self.latest.send_if_modified(|latest| {
                *latest = Some(payload.clone());
                false
            });
        } else {
            self.latest.send_replace(Some(payload.clone()));
        }
    }
}

/// Keeps a value-tracking subscription alive while any [`ValueWatch`] holds it.
#[derive(Debug)]
struct Tracker {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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

/// Header a kinopio service sets on error replies, so kinopio requesters can tell an error
/// reply from a value that happens to look like one. Python 0.1.1 peers ignore it.
pub const ERROR_HEADER: &str = "Kinopio-Error";

impl Variable {
    pub(crate) fn new(hub: Hub, state: Arc<VariableState>) -> Variable {
        Variable { hub, state }
    }

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
    pub async fn publish<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), PublishError> {
        let payload = self
            .hub
            .shared()
            .encoding
            .encode(value)
            .map_err(|e| PublishError::new(PublishErrorKind::Encode).with_source(e))?;
        self.publish_payload(payload, None).await
    }

    /// Publishes a [`Value`] by the reference's rules (strings unquoted, bytes raw).
    pub async fn publish_value(&self, value: &Value) -> Result<(), PublishError> {
        let payload = self
            .hub
            .shared()
            .encoding
            .encode_value(value)
            .map_err(|e| PublishError::new(PublishErrorKind::Encode).with_source(e))?;
        self.publish_payload(payload, None).await
    }

    /// Publishes text as unquoted UTF-8 (what a Python peer sends for a `str`).
    pub async fn publish_text(&self, text: impl Into<String>) -> Result<(), PublishError> {
        self.publish_payload(Payload::text(text), None).await
    }

    /// Publishes raw bytes.
    pub async fn publish_bytes(&self, bytes: impl Into<Bytes>) -> Result<(), PublishError> {
        self.publish_payload(Payload::bytes(bytes), None).await
    }

    /// Publishes an encoded payload, with optional headers.
    pub async fn publish_payload(&self, payload: Payload, headers: Option<HeaderMap>) -> Result<(), PublishError> {
        let bytes = payload.into_bytes();
        self.hub.shared().publish(self.state.subject.clone(), bytes.clone(), headers).await?;
        self.state.record(&bytes);
        Ok(())
    }

    /// Subscribes: a stream of every message published on this subject.
    pub async fn subscribe(&self) -> Result<Subscription, SubscribeError> {
        self.hub.shared().subscribe(&self.hub, Arc::clone(&self.state), None).await
    }

    /// Subscribes as a member of a queue group: each message goes to one member.
    pub async fn subscribe_queue(&self, group: &str) -> Result<Subscription, SubscribeError> {
        self.hub.shared().subscribe(&self.hub, Arc::clone(&self.state), Some(group.to_owned())).await
    }

    /// Sends a request and decodes the reply into `R`, with the hub's default timeout.
    /// Error replies from a service become [`RequestErrorKind::Remote`].
    pub async fn request<R, T>(&self, value: &T) -> Result<R, RequestError>
    where
        R: DeserializeOwned,
        T: Serialize + ?Sized,
    {
        let payload = self
            .hub
            .shared()
            .encoding
            .encode(value)
            .map_err(|e| RequestError::new(RequestErrorKind::Encode).with_source(e))?;
        let reply = self.request_with(payload, RequestOptions::default()).await?;
        reply.decode().map_err(|e| RequestError::new(RequestErrorKind::Decode).with_source(e))
    }

    /// Sends an encoded request and returns the raw reply.
    pub async fn request_with(&self, payload: Payload, options: RequestOptions) -> Result<Message, RequestError> {
        let shared = self.hub.shared();
        let timeout = options.timeout.unwrap_or(shared.options.request_timeout);
        let started = tokio::time::Instant::now();
        let conn = shared.connected(timeout).await.map_err(|e| match e.kind() {
            crate::error::ConnectErrorKind::Closed => RequestError::new(RequestErrorKind::Closed),
            _ => RequestError::new(RequestErrorKind::NotConnected).with_source(e),
        })?;
        conn.wait_gate().await;
        let remaining = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        let mut request = async_nats::Request::new().payload(payload.into_bytes()).timeout(Some(remaining));
        if let Some(h) = options.headers {
            request = request.headers(h);
        }
        let reply = conn.client.send_request(self.state.subject.clone(), request).await.map_err(|e| {
            let kind = match e.kind() {
                async_nats::RequestErrorKind::TimedOut => RequestErrorKind::TimedOut,
                async_nats::RequestErrorKind::NoResponders => RequestErrorKind::NoResponders,
                async_nats::RequestErrorKind::MaxPayloadExceeded => RequestErrorKind::MaxPayloadExceeded,
                _ if shared.is_closed() => RequestErrorKind::Closed,
                _ => RequestErrorKind::Other,
            };
            // The kind says all there is for these; async-nats' own text would only repeat it.
            let plain = matches!(kind, RequestErrorKind::TimedOut | RequestErrorKind::NoResponders);
            let error = RequestError::new(kind).with_detail(format!("subject {}", self.subject()));
            if plain { error } else { error.with_source(e) }
        })?;
        let reply = Message::from_nats(reply, &shared.encoding);
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
    pub async fn serve_queue<F, Fut, R, E>(&self, group: &str, handler: F) -> Result<Service, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: crate::codec::IntoReply,
        E: std::fmt::Display + Send + 'static,
    {
        let subscription = self.subscribe_queue(group).await?;
        let service = service::start(self.hub.clone(), subscription, handler);
        let previous = lock(&self.state.service).replace(service.control());
        if let Some(previous) = previous {
            previous.stop();
        }
        Ok(service)
    }

    /// The latest value seen on this subject (published or received here), decoded; `None`
    /// before any.
    pub fn value(&self) -> Option<Value> {
        let latest = self.state.latest.borrow().clone()?;
        Some(self.hub.shared().encoding.decode_value(&latest))
    }

    /// The latest value decoded into `T`.
    pub fn value_as<T: DeserializeOwned>(&self) -> Option<Result<T, DecodeError>> {
        let latest = self.state.latest.borrow().clone()?;
        Some(self.hub.shared().encoding.decode(&latest).map_err(|e| e.with_subject(self.subject())))
    }

    /// Watches the value: subscribes (once per variable, shared by all watches) so remote
    /// updates arrive even when nothing else subscribes, for as long as a watch is alive.
    pub async fn watch(&self) -> Result<ValueWatch, SubscribeError> {
        let existing = lock(&self.state.tracker).upgrade();
        let tracker = match existing {
            Some(t) => t,
            None => {
                let mut sub = self.subscribe().await?;
                let task = tokio::spawn(async move { while sub.next().await.is_some() {} });
                let tracker = Arc::new(Tracker { task });
                *lock(&self.state.tracker) = Arc::downgrade(&tracker);
                tracker
            }
        };
        Ok(ValueWatch { rx: self.state.latest.subscribe(), variable: self.clone(), _tracker: tracker })
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
        Some(self.variable.hub.shared().encoding.decode_value(&latest))
    }

    /// Waits for the next change and returns the new value; `None` once the hub is gone.
    pub async fn changed(&mut self) -> Option<Value> {
        self.rx.changed().await.ok()?;
        let latest = self.rx.borrow_and_update().clone();
        Some(latest.map_or(Value::Null, |p| self.variable.hub.shared().encoding.decode_value(&p)))
    }
}
