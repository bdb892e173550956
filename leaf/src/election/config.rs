//! Timers and limits of the election state machine, with the reference's defaults, so tests
//! can shrink them.

use std::time::Duration;

/// The longest namespace, in bytes (a beacon must fit one datagram with the leader's URLs).
pub(crate) const MAX_NAMESPACE_BYTES: usize = 128;

/// Election timers and limits. `ElectionConfig::new(namespace)` gives the defaults; every
/// field is public so tests and the CLI can adjust them.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectionConfig {
    /// The discovery namespace (any string, `""` allowed).
    pub namespace: String,
    /// `advertisedHostname` in non-leader beacons (`""` when unset, like 0.1.1).
    pub advertised_hostname: String,
    /// Time between heartbeats. At most 0.5 s (default 0.5 s) so 0.1.1 peers, which expire
    /// peers after 2 s, always have several beacons per lease.
    pub heartbeat_interval: Duration,
    /// Smallest gap between two beacons when a state change triggers an early one.
    pub min_beacon_gap: Duration,
    /// A peer is forgotten this long after its last beacon (2 s, as 0.1.1 does).
    pub peer_expiry: Duration,
    /// After start, a node that sees no leader waits this long before electing (1 s).
    pub settle: Duration,
    /// Followers elect once this long has passed since the leader's last beacon (10 s, like
    /// `leader_missing_grace_ms` of 0.1.1, which counts it from the expiry instead; never
    /// before the peer expiry). A resigning leader skips it.
    pub leader_missing_grace: Duration,
    /// A follower has an RTT advantage when its backbone RTT is at least this much better
    /// than the leader's (or the leader's is unknown) (50 ms).
    pub preemption_threshold_ms: f64,
    /// The advantage must hold continuously this long before the follower preempts (3 s).
    pub preemption_window: Duration,
    /// Back-off after the first failed leaf start (or a dead broker); doubles per failure.
    pub start_backoff_initial: Duration,
    /// Cap of the back-off.
    pub start_backoff_max: Duration,
    /// A leaf start that reports neither success nor failure within this time is abandoned
    /// (and counted as a failure); peers also stop holding back for a node that has been
    /// `starting-leaf` this long.
    pub leaf_start_timeout: Duration,
    /// Number of resign beacons sent on a graceful stop (several, in case one is lost).
    pub resign_copies: u32,
    /// Most peers tracked at once; beacons from further unknown nodes are ignored.
    pub max_peers: usize,
}

impl ElectionConfig {
    /// The defaults for `namespace`.
    pub fn new(namespace: impl Into<String>) -> ElectionConfig {
        ElectionConfig {
            namespace: namespace.into(),
            advertised_hostname: String::new(),
            heartbeat_interval: Duration::from_millis(500),
            min_beacon_gap: Duration::from_millis(100),
            peer_expiry: Duration::from_secs(2),
            settle: Duration::from_secs(1),
            leader_missing_grace: Duration::from_secs(10),
            preemption_threshold_ms: 50.0,
            preemption_window: Duration::from_secs(3),
            start_backoff_initial: Duration::from_secs(2),
            start_backoff_max: Duration::from_secs(60),
            leaf_start_timeout: Duration::from_secs(120),
            resign_copies: 3,
            max_peers: 1024,
        }
    }

    /// Checks the values make sense together.
    ///
    /// # Errors
    ///
    /// The first [`ElectionConfigError`] found.
    pub fn validate(&self) -> Result<(), ElectionConfigError> {
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval > Duration::from_millis(500) {
            return Err(ElectionConfigError::HeartbeatInterval(self.heartbeat_interval));
        }
        if self.min_beacon_gap > self.heartbeat_interval {
            return Err(ElectionConfigError::MinBeaconGap {
                gap: self.min_beacon_gap,
                heartbeat: self.heartbeat_interval,
            });
        }
        if self.peer_expiry < self.heartbeat_interval * 2 {
            return Err(ElectionConfigError::PeerExpiry {
                expiry: self.peer_expiry,
                heartbeat: self.heartbeat_interval,
            });
        }
        if !self.preemption_threshold_ms.is_finite() || self.preemption_threshold_ms < 0.0 {
            return Err(ElectionConfigError::PreemptionThreshold(self.preemption_threshold_ms));
        }
        if self.start_backoff_initial.is_zero() || self.start_backoff_max < self.start_backoff_initial {
            return Err(ElectionConfigError::StartBackoff {
                initial: self.start_backoff_initial,
                max: self.start_backoff_max,
            });
        }
        if self.leaf_start_timeout.is_zero() {
            return Err(ElectionConfigError::LeafStartTimeout);
        }
        if self.max_peers == 0 {
            return Err(ElectionConfigError::MaxPeers);
        }
        if self.namespace.len() > MAX_NAMESPACE_BYTES {
            return Err(ElectionConfigError::NamespaceTooLong { bytes: self.namespace.len() });
        }
        Ok(())
    }

    /// The back-off after `failures` consecutive failures (1 → initial, doubling, capped).
    pub fn backoff_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.start_backoff_initial.saturating_mul(1u32 << doublings).min(self.start_backoff_max)
    }
}

crate::error::error_with_kind! {
    /// An [`ElectionConfig`] (or node id) that cannot work.
    #[derive(Debug, Clone, PartialEq, thiserror::Error)]
    pub enum ElectionConfigError => ElectionConfigErrorKind {
        /// `heartbeat_interval` is zero or above 500 ms.
        #[error(
            "invalid election configuration: heartbeat_interval is {0:?}; it must be above 0 and at most \
             500 ms so peers that expire after 2 s always hear several beacons"
        )]
        HeartbeatInterval(Duration),
        /// `min_beacon_gap` exceeds `heartbeat_interval`.
        #[error(
            "invalid election configuration: min_beacon_gap ({gap:?}) must not exceed heartbeat_interval ({heartbeat:?})"
        )]
        MinBeaconGap {
            /// The gap.
            gap: Duration,
            /// The heartbeat interval.
            heartbeat: Duration,
        },
        /// `peer_expiry` is shorter than two heartbeats.
        #[error(
            "invalid election configuration: peer_expiry ({expiry:?}) must be at least twice \
             heartbeat_interval ({heartbeat:?}) or peers flap when one beacon is lost"
        )]
        PeerExpiry {
            /// The expiry.
            expiry: Duration,
            /// The heartbeat interval.
            heartbeat: Duration,
        },
        /// `preemption_threshold_ms` is negative or not finite.
        #[error(
            "invalid election configuration: preemption_threshold_ms is {0}; use a finite number of milliseconds >= 0"
        )]
        PreemptionThreshold(f64),
        /// The start back-off is zero or its maximum is below its start.
        #[error(
            "invalid election configuration: start back-off must be positive with max ({max:?}) >= initial ({initial:?})"
        )]
        StartBackoff {
            /// The first back-off.
            initial: Duration,
            /// The largest back-off.
            max: Duration,
        },
        /// `leaf_start_timeout` is zero.
        #[error("invalid election configuration: leaf_start_timeout must be positive")]
        LeafStartTimeout,
        /// `max_peers` is zero.
        #[error("invalid election configuration: max_peers must be at least 1")]
        MaxPeers,
        /// The namespace is too long for a beacon.
        #[error(
            "invalid election configuration: the namespace is {bytes} bytes; at most \
             {MAX_NAMESPACE_BYTES} fit in a beacon with room for the leader's URLs"
        )]
        NamespaceTooLong {
            /// Its length in bytes.
            bytes: usize,
        },
        /// The node id is empty.
        #[error("invalid election configuration: the node id is empty; every node needs a unique id")]
        EmptyNodeId,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_backoff_doubles_to_the_cap() {
        let config = ElectionConfig::new("studio");
        config.validate().unwrap();
        assert_eq!(config.backoff_after(1), Duration::from_secs(2));
        assert_eq!(config.backoff_after(2), Duration::from_secs(4));
        assert_eq!(config.backoff_after(5), Duration::from_secs(32));
        assert_eq!(config.backoff_after(6), Duration::from_secs(60));
        assert_eq!(config.backoff_after(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn bad_values_are_refused() {
        let long = ElectionConfig::new("n".repeat(MAX_NAMESPACE_BYTES + 1));
        assert!(long.validate().unwrap_err().to_string().contains("fit in a beacon"));
        assert!(ElectionConfig::new("n".repeat(MAX_NAMESPACE_BYTES)).validate().is_ok());
        let mut config = ElectionConfig::new("studio");
        config.heartbeat_interval = Duration::from_millis(800);
        assert!(config.validate().unwrap_err().to_string().contains("500 ms"));
        let mut config = ElectionConfig::new("studio");
        config.peer_expiry = Duration::from_millis(600);
        assert!(config.validate().is_err());
        let mut config = ElectionConfig::new("studio");
        config.preemption_threshold_ms = f64::NAN;
        assert_eq!(config.validate().unwrap_err().kind(), ElectionConfigErrorKind::PreemptionThreshold);
    }
}
