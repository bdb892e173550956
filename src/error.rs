//! Typed errors, one kind enum per operation, in the async-nats style: an
//! [`Error<Kind>`](Error) carries its [`kind()`](Error::kind), a message that says what to do
//! next, and the underlying cause as its `source()`.

use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of kind `K` with context and an optional cause.
pub struct Error<K> {
    kind: K,
    detail: Option<String>,
    source: Option<Source>,
}

impl<K: Clone + PartialEq + fmt::Display + fmt::Debug> Error<K> {
    /// An error of this kind.
    pub fn new(kind: K) -> Self {
        Error { kind, detail: None, source: None }
    }

    /// Adds a human-readable detail (shown after the kind).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds the underlying cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong, for matching.
    pub fn kind(&self) -> K {
        self.kind.clone()
    }
}

impl<K: fmt::Display> fmt::Display for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl<K: fmt::Debug> fmt::Debug for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl<K: fmt::Debug + fmt::Display> std::error::Error for Error<K> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl<K: Clone + PartialEq + fmt::Display + fmt::Debug> From<K> for Error<K> {
    fn from(kind: K) -> Self {
        Error::new(kind)
    }
}

/// Why waiting for a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// No server accepted a connection within the timeout; the hub keeps trying.
    TimedOut,
    /// The hub gave up (auto retry off, or `max_reconnect_attempts` reached).
    Failed,
    /// The hub was closed.
    Closed,
}

impl fmt::Display for ConnectErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectErrorKind::TimedOut => {
                "not connected in time (is a nats-server running at the given --server URLs?)"
            }
            ConnectErrorKind::Failed => "gave up connecting",
            ConnectErrorKind::Closed => "the hub is closed",
        })
    }
}

/// Waiting for a connection failed.
pub type ConnectError = Error<ConnectErrorKind>;

/// Why a publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// No connection within the request timeout.
    NotConnected,
    /// The value could not be encoded.
    Encode,
    /// The payload is larger than the server's `max_payload`.
    MaxPayloadExceeded,
    /// The server reported an error about what was sent (a refused subject, a permissions
    /// violation).
    Rejected,
    /// The hub was closed.
    Closed,
    /// The connection refused the message (closed while sending).
    Other,
}

impl fmt::Display for PublishErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishErrorKind::NotConnected => "not connected to any server",
            PublishErrorKind::Encode => "cannot encode the payload",
            PublishErrorKind::MaxPayloadExceeded => "payload exceeds the server's max_payload",
            PublishErrorKind::Rejected => "the server rejected it",
            PublishErrorKind::Closed => "the hub is closed",
            PublishErrorKind::Other => "publish failed",
        })
    }
}

/// A publish failed.
pub type PublishError = Error<PublishErrorKind>;

/// Why a subscription (or service) could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeErrorKind {
    /// The subject or pattern is not valid.
    InvalidSubject,
    /// The queue group name is not valid.
    InvalidQueueGroup,
    /// The server's authorization does not allow subscribing to this subject.
    PermissionDenied,
    /// The hub was closed.
    Closed,
    /// The connection refused the subscription.
    Other,
}

impl fmt::Display for SubscribeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubscribeErrorKind::InvalidSubject => "invalid subject",
            SubscribeErrorKind::InvalidQueueGroup => "invalid queue group",
            SubscribeErrorKind::PermissionDenied => "permission denied by the server",
            SubscribeErrorKind::Closed => "the hub is closed",
            SubscribeErrorKind::Other => "subscribe failed",
        })
    }
}

/// A subscription could not be set up.
pub type SubscribeError = Error<SubscribeErrorKind>;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestErrorKind {
    /// A responder exists but did not answer within the timeout.
    TimedOut,
    /// Nobody serves this subject (the server answered at once).
    NoResponders,
    /// The service answered with an error reply (`{"error": true, "message": ...}`).
    Remote {
        /// The service's error message.
        message: String,
    },
    /// The reply could not be decoded into the requested type.
    Decode,
    /// The request payload could not be encoded.
    Encode,
    /// No connection within the request timeout.
    NotConnected,
    /// The payload is larger than the server's `max_payload`.
    MaxPayloadExceeded,
    /// The hub was closed.
    Closed,
    /// Anything else (connection lost while waiting).
    Other,
}

impl fmt::Display for RequestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestErrorKind::TimedOut => f.write_str("request timed out"),
            RequestErrorKind::NoResponders => f.write_str("no responders (nothing serves this subject)"),
            RequestErrorKind::Remote { message } => write!(f, "the service failed: {message}"),
            RequestErrorKind::Decode => f.write_str("cannot decode the reply"),
            RequestErrorKind::Encode => f.write_str("cannot encode the request"),
            RequestErrorKind::NotConnected => f.write_str("not connected to any server"),
            RequestErrorKind::MaxPayloadExceeded => f.write_str("payload exceeds the server's max_payload"),
            RequestErrorKind::Closed => f.write_str("the hub is closed"),
            RequestErrorKind::Other => f.write_str("request failed"),
        }
    }
}

/// A request failed.
pub type RequestError = Error<RequestErrorKind>;

/// Why a manual reconnect or a switch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwitchErrorKind {
    /// No candidate server accepted a connection; the hub stays where it is.
    Unreachable,
    /// Subscriptions could not be re-created on the new connection.
    Rebind,
    /// The hub was closed.
    Closed,
}

impl fmt::Display for SwitchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchErrorKind::Unreachable => "no server accepted the new connection",
            SwitchErrorKind::Rebind => "could not re-create subscriptions on the new connection",
            SwitchErrorKind::Closed => "the hub is closed",
        })
    }
}

/// A manual reconnect or switch failed.
pub type SwitchError = Error<SwitchErrorKind>;
