//! The mDNS advertisement of a namespace's leader, as kinopio-hub 0.1.1 publishes and browses
//! it: the service type, the TXT keys, and kinopio's per-node instance and host names. The
//! leaf publishes it (`kinopio-leaf`'s advertiser); hubs browse for it
//! ([`crate::discovery`]).

/// The TXT record keys (all values are strings).
pub mod txt {
    /// The leader's node id.
    pub const NODE_ID: &str = "nodeId";
    /// The election namespace.
    pub const NAMESPACE: &str = "namespace";
    /// The leader's `wss://` URL.
    pub const WSS_URL: &str = "wssUrl";
    /// The HTTPS manifest URL.
    pub const DISCOVERY_URL: &str = "discoveryUrl";
    /// The advertiser's role; only [`LEADER`] records are leaders.
    pub const CANDIDATE_ROLE: &str = "candidateRole";
    /// The leadership epoch, in decimal.
    pub const LEADER_EPOCH: &str = "leaderEpoch";
    /// The value of [`CANDIDATE_ROLE`] for a leader.
    pub const LEADER: &str = "leader";
}

/// The mDNS service type leaders advertise (the same as the Python reference).
pub const SERVICE_TYPE: &str = "_kinopio-hub._tcp.local.";

/// The mDNS advertisement of a leader (service [`SERVICE_TYPE`]).
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
            (txt::NODE_ID, self.node_id.clone()),
            (txt::NAMESPACE, self.namespace.clone()),
            (txt::WSS_URL, self.wss_url.clone()),
            (txt::DISCOVERY_URL, self.discovery_url.clone()),
            (txt::CANDIDATE_ROLE, txt::LEADER.to_owned()),
            (txt::LEADER_EPOCH, self.leader_epoch.to_string()),
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
