//! The election's public states and roles (the strings 0.1.1 peers put on the wire) and the
//! status snapshot the CLI prints one line for on every meaningful change.

use std::fmt;
use std::str::FromStr;

/// Where a node is in the election. The wire strings are those of kinopio-hub 0.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Just started; listening for peers during the settle period.
    Discovering,
    /// A leader is visible and this node follows it.
    FollowingLeader,
    /// The leader's beacons stopped; waiting out the grace period before electing.
    LeaderMissingGrace,
    /// No leader; this node stands if it is the best candidate.
    Electing,
    /// This node won and its leaf is being started (heartbeats keep flowing).
    StartingLeaf,
    /// This node runs the leaf for the namespace.
    Leader,
    /// The node stopped (or resigned).
    Stopped,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 7] = [
        State::Discovering,
        State::FollowingLeader,
        State::LeaderMissingGrace,
        State::Electing,
        State::StartingLeaf,
        State::Leader,
        State::Stopped,
    ];

    /// The wire string (`"following-leader"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Discovering => "discovering",
            State::FollowingLeader => "following-leader",
            State::LeaderMissingGrace => "leader-missing-grace",
            State::Electing => "electing",
            State::StartingLeaf => "starting-leaf",
            State::Leader => "leader",
            State::Stopped => "stopped",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a state or role string that is not one of the known wire strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown election {what} {value:?}; expected one of {expected}")]
pub struct UnknownName {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for State {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownName {
            what: "state",
            value: s.to_owned(),
            expected: "discovering, following-leader, leader-missing-grace, electing, \
                           starting-leaf, leader, stopped",
        })
    }
}

/// A peer's `state` as its beacon carries it, parsed once when the beacon arrives: one of
/// the known [`State`]s, or a string this version does not know (kept, so that a change
/// between two unknown states still counts as a change of state).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PeerState {
    /// A state this version knows.
    Known(State),
    /// Any other string (a newer peer's state); it matches no [`State`].
    Unknown(String),
}

impl PeerState {
    /// Parses a beacon's `state` string.
    pub(crate) fn parse(wire: &str) -> PeerState {
        wire.parse().map_or_else(|_| PeerState::Unknown(wire.to_owned()), PeerState::Known)
    }

    /// Whether it is `state`.
    pub(crate) fn is(&self, state: State) -> bool {
        *self == PeerState::Known(state)
    }
}

/// What part a node plays (`candidateRole` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May stand for election.
    Candidate,
    /// Follows a leader (or waits out the grace period).
    Follower,
    /// Runs the leaf.
    Leader,
}

impl Role {
    /// The wire string (`"candidate"`, `"follower"`, `"leader"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Follower => "follower",
            Role::Leader => "leader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Role::Candidate, Role::Follower, Role::Leader]
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownName { what: "role", value: s.to_owned(), expected: "candidate, follower, leader" })
    }
}

/// The leader a node currently follows (or itself, when it leads).
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderSummary {
    /// The leader's node id.
    pub node_id: String,
    /// The leader's epoch.
    pub epoch: u64,
    /// Its WSS URL (`wssUrl`), if it advertises one.
    pub wss_url: Option<String>,
    /// Its discovery manifest URL (`discoveryUrl`), if it advertises one.
    pub discovery_url: Option<String>,
    /// `true` when the leader is this node.
    pub is_self: bool,
}

/// A snapshot of what the election looks like from this node; emitted as
/// [`Action::StatusChanged`](super::Action::StatusChanged) whenever any field changes (never
/// merely because a lease was renewed).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The current state.
    pub state: State,
    /// The current role.
    pub role: Role,
    /// The leader being followed, if any.
    pub leader: Option<LeaderSummary>,
    /// `false` while this node backs off after a failed leaf start or a dead broker.
    pub eligible: bool,
}

impl fmt::Display for Status {
    /// One human line, e.g. `following-leader (follower), leader kinopio-ab-1 epoch 3 at wss://...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.state, self.role)?;
        match &self.leader {
            Some(leader) if leader.is_self => write!(f, ", leading at epoch {}", leader.epoch)?,
            Some(leader) => write!(f, ", leader {} epoch {}", leader.node_id, leader.epoch)?,
            None => f.write_str(", no leader")?,
        }
        if let Some(url) = self.leader.as_ref().and_then(|l| l.wss_url.as_deref()) {
            write!(f, " at {url}")?;
        }
        if !self.eligible {
            f.write_str(", backing off")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_round_trip() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        }
        for role in [Role::Candidate, Role::Follower, Role::Leader] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("leading".parse::<State>().is_err());
        for state in State::ALL {
            assert_eq!(PeerState::parse(state.as_str()), PeerState::Known(state));
            assert!(PeerState::parse(state.as_str()).is(state));
        }
        assert_eq!(State::LeaderMissingGrace.to_string(), "leader-missing-grace");
    }

    #[test]
    fn unknown_peer_states_match_no_state_and_keep_their_string() {
        let newer = PeerState::parse("standing-by");
        assert_eq!(newer, PeerState::Unknown("standing-by".to_owned()));
        assert!(State::ALL.into_iter().all(|state| !newer.is(state)));
        assert_ne!(newer, PeerState::parse("warming-up"), "a change between unknown states is a change");
        assert!(!PeerState::parse("Leader").is(State::Leader), "states are case-sensitive on the wire");
    }
}
