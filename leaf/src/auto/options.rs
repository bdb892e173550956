//! Settings of an auto-leaf node: the namespace and election timers, the leaf it runs when
//! elected, the namespace secret, the interfaces, and the background probes' intervals.

use std::path::PathBuf;
use std::time::Duration;

use crate::election::{DEFAULT_REPLAY_WINDOW, ElectionConfig, NamespaceSecret};
use crate::runtime::LeafOptions;

use super::rtt::{DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_TIMEOUT};
use super::transport::InterfaceFilter;

/// Default time between interface re-scans.
pub const DEFAULT_INTERFACE_RESCAN: Duration = Duration::from_secs(3);

/// Everything [`AutoLeaf::start`](super::AutoLeaf::start) needs.
///
/// ```
/// use std::time::Duration;
/// use kinopio_leaf::auto::{AutoLeafOptions, InterfaceFilter};
/// use kinopio_leaf::runtime::LeafOptions;
///
/// let options = AutoLeafOptions::new("studio")
///     .leaf(LeafOptions::new().backbone_server("tls://hub.example.com:7422"))
///     .leader_missing_grace(Duration::from_secs(5))
///     .interfaces(InterfaceFilter::only(["eth0"]));
/// assert_eq!(options.namespace(), "studio");
/// ```
#[derive(Debug, Clone)]
pub struct AutoLeafOptions {
    pub(crate) election: ElectionConfig,
    pub(crate) leaf: LeafOptions,
    pub(crate) secret: Option<NamespaceSecret>,
    pub(crate) replay_window: Duration,
    pub(crate) interfaces: InterfaceFilter,
    pub(crate) node_id: Option<String>,
    pub(crate) node_id_dir: Option<PathBuf>,
    pub(crate) rtt_probe_interval: Duration,
    pub(crate) rtt_probe_timeout: Duration,
    pub(crate) interface_rescan: Duration,
    pub(crate) mdns: bool,
}

impl AutoLeafOptions {
    /// Defaults for `namespace`: the reference's election timers ([`ElectionConfig::new`]),
    /// a default [`LeafOptions`], an open namespace, automatic interface selection, the node
    /// id cached under the leaf's cache root, RTT probes every 5 s (0.5 s limit), interface
    /// re-scans every 3 s, mDNS on.
    pub fn new(namespace: impl Into<String>) -> AutoLeafOptions {
        AutoLeafOptions {
            election: ElectionConfig::new(namespace),
            leaf: LeafOptions::new(),
            secret: None,
            replay_window: DEFAULT_REPLAY_WINDOW,
            interfaces: InterfaceFilter::automatic(),
            node_id: None,
            node_id_dir: None,
            rtt_probe_interval: DEFAULT_PROBE_INTERVAL,
            rtt_probe_timeout: DEFAULT_PROBE_TIMEOUT,
            interface_rescan: DEFAULT_INTERFACE_RESCAN,
            mdns: true,
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.election.namespace
    }

    /// The leaf this node runs when elected (backbone servers, binary, cache, ports, TLS).
    /// With a runtime directory, each leadership uses `<dir>/epoch-<epoch>`.
    pub fn leaf(mut self, leaf: LeafOptions) -> AutoLeafOptions {
        self.leaf = leaf;
        self
    }

    /// Adjusts the election timers and limits (the namespace stays as given to `new`).
    pub fn election(mut self, adjust: impl FnOnce(&mut ElectionConfig)) -> AutoLeafOptions {
        let namespace = self.election.namespace.clone();
        adjust(&mut self.election);
        self.election.namespace = namespace;
        self
    }

    /// Wait this long after the leader's beacons stop (and it expired) before electing
    /// (`--leader-missing-grace-ms`, default 10 s).
    pub fn leader_missing_grace(self, grace: Duration) -> AutoLeafOptions {
        self.election(|config| config.leader_missing_grace = grace)
    }

    /// Secures the namespace: beacons are signed with a key derived from `secret`, and
    /// unsigned, forged, stale or replayed beacons are dropped.
    pub fn namespace_secret(mut self, secret: NamespaceSecret) -> AutoLeafOptions {
        self.secret = Some(secret);
        self
    }

    /// Accepted clock difference for signed beacons (default 30 s).
    pub fn replay_window(mut self, window: Duration) -> AutoLeafOptions {
        self.replay_window = window;
        self
    }

    /// Which interfaces multicast and mDNS use.
    pub fn interfaces(mut self, filter: InterfaceFilter) -> AutoLeafOptions {
        self.interfaces = filter;
        self
    }

    /// Uses this node id instead of the cached one (no id file, no lock).
    pub fn node_id(mut self, id: impl Into<String>) -> AutoLeafOptions {
        self.node_id = Some(id.into());
        self
    }

    /// Where the node id file lives (default: the leaf's cache root).
    pub fn node_id_dir(mut self, dir: impl Into<PathBuf>) -> AutoLeafOptions {
        self.node_id_dir = Some(dir.into());
        self
    }

    /// Time between backbone RTT probes (default 5 s).
    pub fn rtt_probe_interval(mut self, interval: Duration) -> AutoLeafOptions {
        self.rtt_probe_interval = interval;
        self
    }

    /// Limit of one backbone TCP connect (default 0.5 s).
    pub fn rtt_probe_timeout(mut self, timeout: Duration) -> AutoLeafOptions {
        self.rtt_probe_timeout = timeout;
        self
    }

    /// Time between interface re-scans (default 3 s).
    pub fn interface_rescan(mut self, interval: Duration) -> AutoLeafOptions {
        self.interface_rescan = interval;
        self
    }

    /// Turns the mDNS leader advertisement on or off (default on).
    pub fn mdns(mut self, enabled: bool) -> AutoLeafOptions {
        self.mdns = enabled;
        self
    }

    /// The directory of the node id file.
    pub(crate) fn effective_node_id_dir(&self) -> PathBuf {
        match (&self.node_id_dir, &self.leaf.cache_dir) {
            (Some(dir), _) | (None, Some(dir)) => crate::paths::expand_tilde(dir.clone()),
            (None, None) => crate::paths::cache_root(),
        }
    }

    /// `advertisedHostname` of non-leader beacons: the leaf's advertised host, else its LAN
    /// bind address, else `""` (like 0.1.1).
    pub(crate) fn advertised_hostname(&self) -> String {
        match (&self.leaf.advertised_host, self.leaf.lan_bind_address) {
            (Some(host), _) => host.trim().to_owned(),
            (None, Some(ip)) if !ip.is_unspecified() => ip.to_string(),
            _ => String::new(),
        }
    }
}
