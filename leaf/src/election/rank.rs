//! Pure ranking rules shared with kinopio-hub 0.1.1 ([Election rules](kinopio::wire::protocol#election-rules)): candidate rank, leader order,
//! the "beats" rule for stepping down, the epoch rule and the preemption advantage. Every node
//! in a mixed fleet must order candidates and leaders identically, so these mirror the
//! reference exactly.

use std::cmp::Ordering;

use kinopio::wire::beacon::{Beacon, MAX_SAFE_INTEGER};

/// A candidate's rank: `(0, rtt, id)` when its backbone RTT is known, else `(1, +inf, id)`,
/// compared lexicographically. **Smaller is better.** Node ids compare as plain strings
/// (Unicode code points, i.e. UTF-8 bytes).
///
/// NaN RTTs are treated as unknown (the reference would compare them inconsistently).
///
/// ```
/// use kinopio_leaf::election::{Rank};
/// assert!(Rank::new(Some(5.0), "b") < Rank::new(Some(9.0), "a"));
/// assert!(Rank::new(Some(900.0), "z") < Rank::new(None, "a"));
/// assert!(Rank::new(None, "a") < Rank::new(None, "b"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Rank<'a> {
    rtt_ms: Option<f64>,
    node_id: &'a str,
}

impl<'a> Rank<'a> {
    /// The rank of a node with backbone RTT `rtt_ms`.
    pub fn new(rtt_ms: Option<f64>, node_id: &'a str) -> Rank<'a> {
        Rank { rtt_ms: rtt_ms.filter(|v| !v.is_nan()), node_id }
    }

    /// The rank a beacon advertises.
    pub fn of(beacon: &'a Beacon) -> Rank<'a> {
        Rank::new(beacon.backbone_rtt_ms, &beacon.node_id)
    }

    /// The RTT part (`None` when unknown).
    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtt_ms
    }

    /// The node id part.
    pub fn node_id(&self) -> &'a str {
        self.node_id
    }
}

impl Ord for Rank<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_rtt = match (self.rtt_ms, other.rtt_ms) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_rtt.then_with(|| self.node_id.cmp(other.node_id))
    }
}

impl PartialOrd for Rank<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Rank<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Rank<'_> {}

/// A leader claim: its epoch and rank. Ordered **best first**: higher epoch, then better
/// (smaller) rank — the reference's sort key `(-leaderEpoch, rank)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderClaim<'a> {
    /// The claimed epoch.
    pub epoch: u64,
    /// The claimant's rank.
    pub rank: Rank<'a>,
}

impl<'a> LeaderClaim<'a> {
    /// The claim a leader beacon makes.
    pub fn of(beacon: &'a Beacon) -> LeaderClaim<'a> {
        LeaderClaim { epoch: beacon.leader_epoch, rank: Rank::of(beacon) }
    }

    /// The reference's "beats" rule: `self` beats `other` when its epoch is greater, or the
    /// epochs are equal and its rank is smaller. A leader steps down when another leader
    /// beats it.
    pub fn beats(&self, other: &LeaderClaim<'_>) -> bool {
        self.epoch > other.epoch || (self.epoch == other.epoch && self.rank < other.rank)
    }
}

impl Ord for LeaderClaim<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.epoch.cmp(&self.epoch).then_with(|| self.rank.cmp(&other.rank))
    }
}

impl PartialOrd for LeaderClaim<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best leader among `beacons` (only those with `isLeader == true` count), by
/// `(-leaderEpoch, rank)`.
pub fn best_leader<'a>(beacons: impl IntoIterator<Item = &'a Beacon>) -> Option<&'a Beacon> {
    beacons.into_iter().filter(|beacon| beacon.is_leader).min_by(|a, b| LeaderClaim::of(a).cmp(&LeaderClaim::of(b)))
}

/// The epoch for a new leadership: `max(seen) + 1`, saturating at 2^53 - 1.
pub fn next_epoch(max_seen: u64) -> u64 {
    max_seen.saturating_add(1).min(MAX_SAFE_INTEGER)
}

/// The reference's preemption advantage ([Preemption](kinopio::wire::protocol#preemption)): our RTT is known and the leader's is unknown
/// or at least `threshold_ms` worse.
pub fn has_rtt_advantage(own_rtt_ms: Option<f64>, leader_rtt_ms: Option<f64>, threshold_ms: f64) -> bool {
    let Some(own) = own_rtt_ms.filter(|v| !v.is_nan()) else {
        return false;
    };
    match leader_rtt_ms.filter(|v| !v.is_nan()) {
        None => true,
        Some(leader) => leader - own >= threshold_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinopio::wire::beacon::{Role, State};

    fn leader(id: &str, epoch: u64, rtt: Option<f64>) -> Beacon {
        let mut beacon = Beacon::candidate(id, "ns", epoch, "", rtt, Role::Leader, State::Leader);
        beacon.is_leader = true;
        beacon
    }

    /// The reference's rank as a Python-like tuple, for cross-checking.
    fn py_rank(rtt: Option<f64>, id: &str) -> (u8, f64, String) {
        match rtt {
            Some(v) => (0, v, id.to_owned()),
            None => (1, f64::INFINITY, id.to_owned()),
        }
    }

    #[test]
    fn rank_matches_python_tuples() {
        let samples = [
            (None, "a"),
            (None, "b"),
            (Some(0.0), "z"),
            (Some(-0.0), "a"),
            (Some(5.0), "m"),
            (Some(5.0), "n"),
            (Some(f64::INFINITY), "a"),
            (Some(80.0), "kinopio-1"),
            (Some(10.0), "kinopio-10"),
            (None, "é"),
            (None, "z"),
        ];
        for (ra, ia) in samples {
            for (rb, ib) in samples {
                let ours = Rank::new(ra, ia).cmp(&Rank::new(rb, ib));
                let theirs = py_rank(ra, ia).partial_cmp(&py_rank(rb, ib)).unwrap();
                assert_eq!(ours, theirs, "{ra:?} {ia} vs {rb:?} {ib}");
            }
        }
        assert_eq!(Rank::new(Some(f64::NAN), "a"), Rank::new(None, "a"));
    }

    #[test]
    fn best_leader_prefers_epoch_then_rank() {
        let beacons = [
            leader("a", 1, Some(1.0)),
            leader("b", 2, None),
            leader("c", 2, Some(90.0)),
            Beacon::candidate("0", "ns", 9, "", Some(0.1), Role::Candidate, State::Electing),
        ];
        assert_eq!(best_leader(&beacons).unwrap().node_id, "c");
        assert!(best_leader(&beacons[3..]).is_none());
    }

    #[test]
    fn beats_rule() {
        let (a, b, c) = (leader("a", 3, None), leader("b", 3, Some(50.0)), leader("c", 4, None));
        let (a, b, c) = (LeaderClaim::of(&a), LeaderClaim::of(&b), LeaderClaim::of(&c));
        assert!(b.beats(&a));
        assert!(!a.beats(&b));
        assert!(c.beats(&b));
        assert!(!a.beats(&a));
        assert!(c < b && b < a);
    }

    #[test]
    fn epochs_and_advantage() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(MAX_SAFE_INTEGER), MAX_SAFE_INTEGER);
        assert_eq!(next_epoch(u64::MAX), MAX_SAFE_INTEGER);
        assert!(has_rtt_advantage(Some(10.0), Some(60.0), 50.0));
        assert!(!has_rtt_advantage(Some(10.0), Some(59.9), 50.0));
        assert!(has_rtt_advantage(Some(500.0), None, 50.0));
        assert!(!has_rtt_advantage(None, None, 50.0));
        assert!(!has_rtt_advantage(None, Some(900.0), 50.0));
    }
}
