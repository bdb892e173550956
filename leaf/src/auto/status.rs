//! What a running auto-leaf reports: the [`AutoLeafStatus`] snapshot (election status, own
//! leaf when leading, interfaces, drop counters) and the [`AutoEvent`]s emitted on every
//! meaningful change (never on a mere lease renewal).

use std::path::PathBuf;

use crate::election::Status;
use crate::runtime::LeafUrls;
use kinopio::wire::beacon::DropCounts;

use super::transport::{JoinedInterface, SendStats};

/// This node's own leaf while it leads.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderLeaf {
    /// The leadership epoch the leaf runs for.
    pub epoch: u64,
    /// Its listener URLs (`wssUrl`, `discoveryUrl`, ...).
    pub urls: LeafUrls,
    /// The CA certificate clients should trust for the WSS and discovery listeners.
    pub ca_cert_file: PathBuf,
}

/// A snapshot of one auto-leaf node.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoLeafStatus {
    /// The election node id.
    pub node_id: String,
    /// The discovery namespace.
    pub namespace: String,
    /// The namespace's UDP port.
    pub port: u16,
    /// `true` when beacons are signed and verified (namespace secret).
    pub secured: bool,
    /// State, role, followed leader and eligibility.
    pub election: Status,
    /// The highest leadership epoch seen or held.
    pub max_seen_epoch: u64,
    /// Own backbone RTT as advertised (self-reported TCP connect time).
    pub backbone_rtt_ms: Option<f64>,
    /// Own leaf, while leading.
    pub leaf: Option<LeaderLeaf>,
    /// Interfaces the election multicasts on.
    pub interfaces: Vec<JoinedInterface>,
    /// Live peers.
    pub peers: usize,
    /// Received datagrams dropped, by kind (own looped-back beacons count as `own_beacon`).
    pub drops: DropCounts,
    /// Beacon send counters.
    pub sends: SendStats,
    /// The last leaf start failure or broker death, if any.
    pub last_leaf_error: Option<String>,
    /// `true` while the mDNS leader record is registered.
    pub mdns_published: bool,
}

/// Something that changed; see [`AutoLeaf::events`](super::AutoLeaf::events).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AutoEvent {
    /// The election status (state, role, leader, eligibility) changed; the snapshot after it.
    StatusChanged(Box<AutoLeafStatus>),
    /// The set of interfaces the election uses changed.
    InterfacesChanged(Vec<JoinedInterface>),
    /// The node resigned, stopped its leaf and withdrew mDNS; the final snapshot.
    Stopped(Box<AutoLeafStatus>),
}
