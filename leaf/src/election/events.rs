//! What goes into the election state machine ([`Input`]) and what comes out ([`Action`]),
//! plus the data those carry: the running leaf's advertisement and the mDNS record.

use std::time::Instant;

use super::beacon::Beacon;
use super::status::Status;

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
        advert: LeafAdvert,
    },
    /// The running leaf's advertisement changed (for example its `bridgeState`).
    LeafUpdated {
        /// The epoch of the running leaf.
        epoch: u64,
        /// The new advertisement.
        advert: LeafAdvert,
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

/// What a running leaf advertises: the leader-only fields of the leader beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafAdvert {
    /// `advertisedHostname`: the host of the WSS URL.
    pub advertised_hostname: String,
    /// `wssUrl` (also the single `fallbackServers` entry).
    pub wss_url: String,
    /// `clientUrl`: the local NATS URL.
    pub client_url: String,
    /// `monitorUrl`.
    pub monitor_url: String,
    /// `discoveryUrl`: the discovery manifest URL.
    pub discovery_url: String,
    /// `bridgeState` (`connected`, `connecting`, `disabled`, `error`, ...).
    pub bridge_state: String,
    /// `backboneServers`.
    pub backbone_servers: Vec<String>,
}

/// The mDNS service type leaders advertise.
pub const MDNS_SERVICE_TYPE: &str = "_kinopio-hub._tcp.local.";

/// The mDNS advertisement of a leader (service [`MDNS_SERVICE_TYPE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsAdvert {
    /// The namespace.
    pub namespace: String,
    /// The leader's node id.
    pub node_id: String,
    /// The leader's WSS URL.
    pub wss_url: String,
    /// The discovery manifest URL (its port is the service port, its host the address).
    pub discovery_url: String,
    /// The leadership epoch.
    pub leader_epoch: u64,
}

impl MdnsAdvert {
    /// The TXT records, all strings, as 0.1.1 publishes them: `nodeId`, `namespace`,
    /// `wssUrl`, `discoveryUrl`, `candidateRole` (`leader`), `leaderEpoch`.
    pub fn txt_records(&self) -> Vec<(&'static str, String)> {
        vec![
            ("nodeId", self.node_id.clone()),
            ("namespace", self.namespace.clone()),
            ("wssUrl", self.wss_url.clone()),
            ("discoveryUrl", self.discovery_url.clone()),
            ("candidateRole", "leader".to_owned()),
            ("leaderEpoch", self.leader_epoch.to_string()),
        ]
    }

    /// A per-node instance name, `KinopioHub-<namespace>-<crc32(nodeId) hex>` cut to the
    /// 63-byte DNS label limit. (0.1.1 uses `nodeId[:8]`, which is the same `kinopio-` for
    /// every node, so its leaders' names collide.)
    pub fn instance_name(&self) -> String {
        let suffix = format!("-{:08x}", crc32fast::hash(self.node_id.as_bytes()));
        let mut name = String::from("KinopioHub-");
        for ch in self.namespace.chars() {
            if name.len() + ch.len_utf8() + suffix.len() > 63 {
                break;
            }
            name.push(ch);
        }
        name.push_str(&suffix);
        name
    }

    /// A per-node host name, `kinopio-<crc32(nodeId) hex>.local.`.
    pub fn host_name(&self) -> String {
        format!("kinopio-{:08x}.local.", crc32fast::hash(self.node_id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdns_names_are_unique_per_node_and_fit_a_label() {
        let advert = |node: &str, ns: &str| MdnsAdvert {
            namespace: ns.into(),
            node_id: node.into(),
            wss_url: "wss://10.0.0.2:4443".into(),
            discovery_url: "https://10.0.0.2:8443/manifest.json".into(),
            leader_epoch: 7,
        };
        let a = advert("kinopio-aaaa-1", "room-1");
        let b = advert("kinopio-bbbb-2", "room-1");
        assert_ne!(a.instance_name(), b.instance_name());
        assert_ne!(a.host_name(), b.host_name());
        assert!(a.instance_name().starts_with("KinopioHub-room-1-"));
        let long = advert("kinopio-aaaa-1", &"é".repeat(80));
        assert!(long.instance_name().len() <= 63);
        let txt = a.txt_records();
        assert_eq!(txt[5], ("leaderEpoch", "7".to_owned()));
        assert_eq!(txt[4], ("candidateRole", "leader".to_owned()));
    }
}
