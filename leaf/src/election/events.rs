//! What goes into the election state machine ([`Input`]) and what comes out ([`Action`]),
//! plus the data those carry: the running leaf's advertisement and the mDNS record.

use kinopio::wire::manifest::LeaderAdvert;
use kinopio::wire::mdns::MdnsAdvert;
use std::time::Instant;

use super::status::Status;
use kinopio::wire::beacon::Beacon;

/// Something that happened, fed to [`Election::handle`](super::Election::handle).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Time passed; call at (or after) [`Election::poll_timeout`](super::Election::poll_timeout).
    Tick,
    /// A beacon from a peer, already decoded and verified by
    /// [`BeaconCodec::decode`](super::BeaconCodec::decode).
    Beacon {
        /// The beacon.
        beacon: Box<Beacon>,
        /// When the datagram arrived (clamped to the `now` passed to `handle`).
        received_at: Instant,
    },
    /// A new backbone RTT measurement (`None`: no backbone configured or none reachable).
    BackboneRtt(Option<f64>),
    /// The leaf asked for by [`Action::StartLeaf`] with this epoch is up.
    LeafStarted {
        /// The epoch of the `StartLeaf` action.
        epoch: u64,
        /// What the leader beacon and mDNS record advertise.
        advert: LeaderAdvert,
    },
    /// The running leaf's advertisement changed (for example its `bridgeState`).
    LeafUpdated {
        /// The epoch of the running leaf.
        epoch: u64,
        /// The new advertisement.
        advert: LeaderAdvert,
    },
    /// The leaf start for this epoch failed.
    LeafFailed {
        /// The epoch of the `StartLeaf` action.
        epoch: u64,
        /// Why, for logs.
        reason: String,
    },
    /// The running leaf (or its broker) died and could not be restarted.
    LeafDied {
        /// The epoch of the leaf.
        epoch: u64,
        /// Why, for logs.
        reason: String,
    },
    /// Graceful stop: resign, stop the leaf, withdraw mDNS.
    Stop,
}

impl Input {
    /// Wraps a received beacon.
    pub fn beacon(beacon: Beacon, received_at: Instant) -> Input {
        Input::Beacon { beacon: Box::new(beacon), received_at }
    }
}

/// Something the I/O shell must do, returned by [`Election::handle`](super::Election::handle)
/// in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Encode ([`BeaconCodec::encode`](super::BeaconCodec::encode)) and multicast this beacon.
    SendBeacon(Box<Beacon>),
    /// Start the leaf for this epoch beside the machine (do not block the heartbeats); answer
    /// with [`Input::LeafStarted`] or [`Input::LeafFailed`] carrying the same epoch.
    StartLeaf {
        /// The leadership epoch (0.1.1 puts the leaf in `<runtime_dir>/epoch-<epoch>`).
        epoch: u64,
    },
    /// Stop (or cancel the start of) the leaf of this epoch. Idempotent.
    StopLeaf {
        /// The epoch of the leaf to stop.
        epoch: u64,
    },
    /// Publish (or update) the mDNS advertisement.
    PublishMdns(MdnsAdvert),
    /// Withdraw the mDNS advertisement.
    WithdrawMdns,
    /// State, role, eligibility or leader changed: print one line / emit one event.
    StatusChanged(Status),
}
