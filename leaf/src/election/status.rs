//! The election's public states and roles (the strings 0.1.1 peers put on the wire) and the
//! status snapshot the CLI prints one line for on every meaningful change.

use std::fmt;

use kinopio::wire::beacon::{Role, State};

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
