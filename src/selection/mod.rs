//! Server selection: the order in which a hub tries its servers, and when it moves.
//!
//! - [`SelectionMode::Ordered`]: the order given.
//! - [`SelectionMode::Random`]: shuffled at every fresh connect.
//! - [`SelectionMode::Latency`] (default): every server is probed in parallel (connect, then
//!   one round trip) and ordered by (reachable, RTT, input order); after connecting the hub
//!   re-probes in the background and hot-switches when another server is faster by at least
//!   the switch threshold, confirmed by a second probe round ([`ranking`] decides, purely).

pub(crate) mod ranking;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::server::ServerUrl;

/// How a hub orders its candidate servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SelectionMode {
    /// Keep the order given.
    Ordered,
    /// Shuffle at every fresh connect.
    Random,
    /// Probe and order by measured round-trip time; re-probe in the background.
    #[default]
    Latency,
}

impl fmt::Display for SelectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectionMode::Ordered => "ordered",
            SelectionMode::Random => "random",
            SelectionMode::Latency => "latency",
        })
    }
}

/// An unknown selection mode name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server selection mode must be one of 'ordered', 'random', or 'latency' (got {0:?})")]
pub struct UnknownSelectionMode(pub String);

impl FromStr for SelectionMode {
    type Err = UnknownSelectionMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ordered" => Ok(SelectionMode::Ordered),
            "random" => Ok(SelectionMode::Random),
            "latency" => Ok(SelectionMode::Latency),
            _ => Err(UnknownSelectionMode(s.to_owned())),
        }
    }
}

/// The result of probing one server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeResult {
    /// The server probed.
    pub server: ServerUrl,
    /// Round-trip time, if the server answered.
    #[serde(with = "opt_millis")]
    pub rtt: Option<Duration>,
    /// Why the probe failed.
    pub error: Option<String>,
}

mod opt_millis {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }
}
