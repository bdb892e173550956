//! The LAN election of `kinopio leaf auto`: which device of a discovery namespace runs the
//! leaf. Pure code, no sockets: the beacon wire format shared with kinopio-hub 0.1.1
//! (`beacon`, `codec`, `auth`), the ranking rules (`rank`) and the deterministic,
//! clock-injected state machine ([`Election`]) that the multicast and mDNS shells drive.
//!
//! A shell's loop, in outline:
//!
//! ```text
//! let mut codec = BeaconCodec::open(ns, node_id);        // or ::secured(ns, node_id, &secret)
//! let mut election = Election::new(ElectionConfig::new(ns), node_id, Instant::now())?;
//! loop {
//!     let input = select! {
//!         datagram = socket.recv() => match codec.decode(&datagram, SystemTime::now()) {
//!             Ok(beacon) => Input::beacon(beacon, Instant::now()),
//!             Err(err) => { drops.record(&err); continue }
//!         },
//!         _ = sleep_until(election.poll_timeout()) => Input::Tick,
//!         outcome = leaf_events.recv() => outcome,          // LeafStarted / LeafFailed / ...
//!     };
//!     for action in election.handle(Instant::now(), input) {
//!         match action {
//!             Action::SendBeacon(b) => socket.send(&codec.encode(&b, SystemTime::now())?),
//!             Action::StartLeaf { epoch } => spawn_leaf_start(epoch),   // never block here
//!             ...
//!         }
//!     }
//! }
//! ```

pub(crate) mod auth;
pub(crate) mod codec;
pub(crate) mod config;
pub(crate) mod events;
pub(crate) mod flood;
pub(crate) mod machine;
pub(crate) mod rank;
pub(crate) mod status;

pub use auth::{AUTH_ALG, EmptySecret, NamespaceSecret};
pub use codec::{BeaconCodec, DEFAULT_LEASE, DEFAULT_REPLAY_WINDOW, EncodeError, unix_ms};
pub use config::{ElectionConfig, ElectionConfigError, ElectionConfigErrorKind};
pub use events::{Action, Input};
pub use machine::Election;
pub use rank::{LeaderClaim, Rank, best_leader, has_rtt_advantage, next_epoch};
pub use status::{LeaderSummary, Status};
