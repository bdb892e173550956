//! Connection state and hub events, observable as a snapshot, a `watch` and a stream.

use std::fmt;
use std::time::Duration;

use crate::server::ServerUrl;

/// The state of a hub's connection, named as in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ConnectionState {
    /// Not connected (initially, during an outage, after close).
    Disconnected,
    /// A connection attempt is in progress.
    Connecting,
    /// Connected to a server.
    Connected,
    /// Gave up connecting (auto retry off or attempts exhausted).
    Error,
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Error => "error",
        })
    }
}

/// Why the hub changed servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SwitchReason {
    /// A background probe found a clearly faster server.
    Faster,
    /// `Hub::reconnect()` was called.
    Manual,
    /// A local leader was discovered and connected.
    LocalLeader,
    /// The local leader went away; back to the configured servers.
    LocalLeaderLost,
}

/// Something that happened to a hub's connection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HubEvent {
    /// Connected (or reconnected) to a server.
    Connected {
        /// The server, when known.
        server: Option<ServerUrl>,
    },
    /// Lost the connection; the hub is reconnecting.
    Disconnected {
        /// The server, when known.
        server: Option<ServerUrl>,
    },
    /// Moved to another server without losing subscriptions or services.
    #[serde(rename = "switched")]
    ServerSwitched {
        /// The server left, when known.
        from: Option<ServerUrl>,
        /// The server the hub is on now.
        to: ServerUrl,
        /// The old server's RTT, when measured.
        #[serde(rename = "rttBeforeMs", serialize_with = "opt_ms")]
        rtt_before: Option<Duration>,
        /// The new server's RTT, when measured.
        #[serde(rename = "rttAfterMs", serialize_with = "opt_ms")]
        rtt_after: Option<Duration>,
        /// Why the hub moved.
        reason: SwitchReason,
    },
    /// A hot switch has finished: every subscription's merge of the old and the new
    /// connection is done and nothing is received on the old connection any more (the hub
    /// is back on one connection). Follows the [`HubEvent::ServerSwitched`] of the same switch.
    /// A subscription's merge starts when its stream is next polled, so one that is never
    /// polled holds this back (and keeps its old subscription) until it is polled or dropped.
    SwitchSettled {
        /// The server the hub is on.
        server: ServerUrl,
        /// Subscriptions that were moved.
        subscriptions: usize,
        /// From the start of the switch until now.
        #[serde(rename = "elapsedMs", serialize_with = "ms")]
        elapsed: Duration,
    },
    /// A subscription could not keep up and the client dropped messages for it. Raise
    /// `HubOptions::subscription_capacity` or consume faster.
    SlowConsumer {
        /// The async-nats subscription id.
        sid: u64,
    },
    /// The server is shutting down gracefully (lame duck mode); expect a reconnect.
    LameDuck {
        /// The server, when known.
        server: Option<ServerUrl>,
    },
    /// The server reported an error (e.g. a permissions violation).
    ServerError {
        /// The server's error text.
        message: String,
    },
    /// The hub gave up connecting.
    Failed {
        /// What was tried and the last error.
        message: String,
    },
    /// A local leader candidate was refused: its manifest or listener did not verify
    /// against the namespace's trust, it offered only plaintext, or it did not connect. The
    /// hub stays where it is.
    LocalLeaderRejected {
        /// The manifest or server URL of the candidate.
        url: String,
        /// Why.
        reason: String,
    },
    /// The hub was closed.
    Closed,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

fn opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3),
        None => s.serialize_none(),
    }
}
