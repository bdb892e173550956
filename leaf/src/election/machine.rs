//! The election state machine: deterministic, clock-injected, no I/O (quinn-proto style).
//! Inputs (beacons, ticks, RTT measurements, leaf outcomes, stop) go in with `now`; actions
//! (send a beacon, start/stop the leaf, publish/withdraw mDNS, status changed) come out.
//!
//! It follows kinopio-hub 0.1.1 ([Election rules](kinopio::wire::protocol#election-rules)) so mixed fleets converge, with these fixes:
//! heartbeats never block (the leaf starts beside the machine while it beacons
//! `starting-leaf`, and peers hold back meanwhile); an expired leader is forgotten (no repeated
//! grace periods); a graceful stop or a dead broker sends resign beacons and followers elect at
//! once; failed starts back off without blocking others; stale or reordered beacons cannot
//! fake a resign; a node that cannot see the leader does not stand while peers still follow one.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::config::{ElectionConfig, ElectionConfigError};
use super::events::{Action, Input};
use super::rank::{LeaderClaim, Rank, best_leader, has_rtt_advantage, next_epoch};
use super::status::{LeaderSummary, PeerState, Status};
use kinopio::wire::beacon::Beacon;
use kinopio::wire::beacon::{Role, State};
use kinopio::wire::manifest::LeaderAdvert;
use kinopio::wire::mdns::MdnsAdvert;

/// One node's view of the LAN election for one namespace.
///
/// Drive it with [`handle`](Self::handle): call it for every input, and with [`Input::Tick`]
/// whenever [`poll_timeout`](Self::poll_timeout) passes. Execute the returned actions in order.
///
/// ```
/// use std::time::{Duration, Instant};
/// use kinopio_leaf::election::{Action, Election, ElectionConfig, Input};
///
/// let start = Instant::now();
/// let mut election = Election::new(ElectionConfig::new("studio"), "kinopio-a-1", start).unwrap();
/// let actions = election.handle(start, Input::Tick);
/// assert!(actions.iter().any(|a| matches!(a, Action::SendBeacon(_))));
/// // Alone on the LAN: after the 1 s settle period it stands for election.
/// let later = start + Duration::from_millis(1000);
/// let actions = election.handle(later, Input::Tick);
/// assert!(actions.contains(&Action::StartLeaf { epoch: 1 }));
/// ```
#[derive(Debug)]
pub struct Election {
    config: ElectionConfig,
    node_id: String,
    started_at: Instant,
    last_now: Instant,
    /// Where this node is in the election, with what that phase needs.
    phase: Phase,
    /// Highest epoch seen in any accepted beacon or held.
    max_seen_epoch: u64,
    /// Own backbone RTT, rounded to microseconds (what peers see).
    own_rtt_ms: Option<f64>,
    peers: BTreeMap<String, Peer>,
    /// Consecutive failed leaf starts (or dead brokers); sets the backoff.
    failures: u32,
    backoff_until: Option<Instant>,
    next_heartbeat: Instant,
    last_beacon_at: Option<Instant>,
    last_beacon_shape: Option<BeaconShape>,
    last_status: Option<Status>,
    dropped_peer_overflow: u64,
}

/// Where this node is in the election (quinn's `State` shape): each phase carries the data
/// only it has, so that, say, a grace deadline without a lost leader cannot be written.
/// The public [`State`] and [`Role`] follow from it.
#[derive(Debug, Clone)]
enum Phase {
    /// Just started; listening for peers during the settle period.
    Discovering,
    /// Following a peer leader.
    Following {
        /// The leader's node id (never this node).
        leader: String,
        /// Since when this node has held a backbone RTT advantage over it, continuously.
        advantage_since: Option<Instant>,
    },
    /// The followed leader's beacons stopped; waiting until `until` before electing.
    LeaderMissingGrace {
        /// The leader that went missing.
        lost: String,
        /// End of the grace period (counted from when it was last heard).
        until: Instant,
    },
    /// No leader; this node stands if it is the best candidate.
    Electing {
        /// The leader followed until a moment ago, if any: set only between abandoning a
        /// preempting leaf start and the candidate evaluation that follows at once (which
        /// follows it again, or waits out its grace).
        last_leader: Option<String>,
    },
    /// This node's leaf is starting.
    StartingLeaf {
        /// The start.
        starting: Starting,
        /// The leader this start preempts, while it is visible (always `None` when not
        /// preempting).
        incumbent: Option<String>,
    },
    /// This node runs the leaf (boxed: the advert is large).
    Leader(Box<Leading>),
    /// The node stopped (it resigned).
    Stopped,
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Phase::Discovering => State::Discovering,
            Phase::Following { .. } => State::FollowingLeader,
            Phase::LeaderMissingGrace { .. } => State::LeaderMissingGrace,
            Phase::Electing { .. } => State::Electing,
            Phase::StartingLeaf { .. } => State::StartingLeaf,
            Phase::Leader(_) => State::Leader,
            Phase::Stopped => State::Stopped,
        }
    }

    fn role(&self) -> Role {
        match self {
            Phase::Discovering | Phase::Electing { .. } | Phase::StartingLeaf { .. } => Role::Candidate,
            Phase::Following { .. } | Phase::LeaderMissingGrace { .. } | Phase::Stopped => Role::Follower,
            Phase::Leader(_) => Role::Leader,
        }
    }

    /// The peer leader this node follows (or preempts), if any.
    fn followed(&self) -> Option<&str> {
        match self {
            Phase::Following { leader, .. } => Some(leader),
            Phase::StartingLeaf { incumbent, .. } => incumbent.as_deref(),
            Phase::Electing { last_leader } => last_leader.as_deref(),
            _ => None,
        }
    }

    fn starting(&self) -> Option<Starting> {
        match self {
            Phase::StartingLeaf { starting, .. } => Some(*starting),
            _ => None,
        }
    }

    fn leading(&self) -> Option<&Leading> {
        match self {
            Phase::Leader(leading) => Some(leading.as_ref()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Peer {
    beacon: Beacon,
    /// The beacon's `state`, parsed once on receipt.
    state: PeerState,
    last_seen: Instant,
    /// When this peer entered its current state (leader-ness and `state`).
    state_since: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Starting {
    epoch: u64,
    since: Instant,
    /// Started to preempt a visible leader (not to fill a vacancy).
    preempting: bool,
}

#[derive(Debug, Clone)]
struct Leading {
    epoch: u64,
    advert: LeaderAdvert,
    published: Option<MdnsAdvert>,
}

/// The parts of our beacon whose change warrants sending one early.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BeaconShape {
    state: State,
    role: Role,
    eligible: bool,
    epoch: u64,
}

/// Actions collected during one `handle` call: beacons go out first, then other effects.
#[derive(Debug, Default)]
struct Outbox {
    beacons: Vec<Action>,
    effects: Vec<Action>,
}

impl Election {
    /// A node that has just started: state `discovering`, role `candidate`, epoch 0, no
    /// leader. Its first heartbeat is due at `now`.
    pub fn new(
        config: ElectionConfig,
        node_id: impl Into<String>,
        now: Instant,
    ) -> Result<Election, ElectionConfigError> {
        config.validate()?;
        let node_id = node_id.into();
        if node_id.is_empty() {
            return Err(ElectionConfigError::EmptyNodeId);
        }
        Ok(Election {
            config,
            node_id,
            started_at: now,
            last_now: now,
            phase: Phase::Discovering,
            max_seen_epoch: 0,
            own_rtt_ms: None,
            peers: BTreeMap::new(),
            failures: 0,
            backoff_until: None,
            next_heartbeat: now,
            last_beacon_at: None,
            last_beacon_shape: None,
            last_status: None,
            dropped_peer_overflow: 0,
        })
    }

    /// Feeds one input at time `now` and returns what to do, in order. `now` values that go
    /// backwards are treated as the latest `now` seen.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let now = now.max(self.last_now);
        self.last_now = now;
        if matches!(self.phase, Phase::Stopped) {
            // A leaf that finishes starting after the stop must not be left running.
            return match input {
                Input::LeafStarted { epoch, .. } => vec![Action::StopLeaf { epoch }],
                _ => Vec::new(),
            };
        }
        let mut out = Outbox::default();
        match input {
            Input::Tick => {}
            Input::Beacon { beacon, received_at } => {
                // A beacon that only refreshes a known peer changes no decision: skip the
                // evaluation, so a stream of heartbeats costs O(log peers) each.
                if !self.on_beacon(*beacon, received_at.min(now)) {
                    self.maybe_heartbeat(now, &mut out);
                    return self.finish(out);
                }
            }
            Input::BackboneRtt(rtt) => {
                self.own_rtt_ms = rtt.filter(|v| v.is_finite()).map(|v| (v * 1000.0).round() / 1000.0);
            }
            Input::LeafStarted { epoch, advert } => self.on_leaf_started(epoch, advert, &mut out),
            Input::LeafUpdated { epoch, advert } => self.on_leaf_updated(epoch, advert, &mut out),
            Input::LeafFailed { epoch, reason } => self.on_leaf_failed(now, epoch, &reason),
            Input::LeafDied { epoch, reason } => self.on_leaf_died(now, epoch, &reason, &mut out),
            Input::Stop => {
                self.on_stop(&mut out);
                return self.finish(out);
            }
        }
        self.evaluate(now, &mut out);
        self.maybe_heartbeat(now, &mut out);
        self.finish(out)
    }

    /// When to call [`handle`](Self::handle) with [`Input::Tick`] next, at the latest (never
    /// more than one heartbeat interval away). `None` once stopped.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Stopped) {
            return None;
        }
        let now = self.last_now;
        let expiry = self.config.peer_expiry;
        let start_timeout = self.config.leaf_start_timeout;
        let mut deadlines = vec![self.next_heartbeat];
        for peer in self.peers.values() {
            deadlines.push(peer.last_seen + expiry);
            if peer.state.is(State::StartingLeaf) {
                deadlines.push(peer.state_since + start_timeout);
            }
        }
        match &self.phase {
            Phase::Discovering => deadlines.push(self.started_at + self.config.settle),
            Phase::LeaderMissingGrace { until, .. } => deadlines.push(*until),
            Phase::Following { advantage_since: Some(since), .. } => {
                deadlines.push(*since + self.config.preemption_window);
            }
            Phase::StartingLeaf { starting, .. } => deadlines.push(starting.since + start_timeout),
            _ => {}
        }
        deadlines.extend(self.backoff_until);
        deadlines.into_iter().filter(|at| *at > now).min().or(Some(self.next_heartbeat.max(now)))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.phase.role()
    }

    /// The current status snapshot.
    pub fn status(&self) -> Status {
        Status {
            state: self.phase.state(),
            role: self.phase.role(),
            leader: self.leader_summary(),
            eligible: self.is_eligible(self.last_now),
        }
    }

    /// The highest epoch seen or held.
    pub fn max_seen_epoch(&self) -> u64 {
        self.max_seen_epoch
    }

    /// The epoch this node leads at, if it leads.
    pub fn leading_epoch(&self) -> Option<u64> {
        self.phase.leading().map(|l| l.epoch)
    }

    /// The last beacon of the peer leader being followed (`None` when this node leads or no
    /// leader is visible).
    pub fn current_leader(&self) -> Option<&Beacon> {
        self.phase.followed().and_then(|id| self.peers.get(id)).map(|peer| &peer.beacon)
    }

    /// Own backbone RTT as advertised (rounded to microseconds).
    pub fn backbone_rtt_ms(&self) -> Option<f64> {
        self.own_rtt_ms
    }

    /// Whether `node_id` is a live peer.
    pub fn knows_peer(&self, node_id: &str) -> bool {
        self.peers.contains_key(node_id)
    }

    /// The live peers' latest beacons.
    pub fn peers(&self) -> impl Iterator<Item = &Beacon> {
        self.peers.values().map(|peer| &peer.beacon)
    }

    /// Beacons ignored because [`ElectionConfig::max_peers`] peers were already tracked.
    pub fn dropped_peer_overflow(&self) -> u64 {
        self.dropped_peer_overflow
    }

    /// The beacon this node sends now: the leader shape (the discovery manifest) while it
    /// leads, else the non-leader shape. Lease fields are stamped by the codec.
    pub fn heartbeat(&self) -> Beacon {
        if let Some(leading) = self.phase.leading() {
            return Beacon::leader(
                &self.node_id,
                &self.config.namespace,
                leading.epoch,
                self.own_rtt_ms,
                &leading.advert,
            );
        }
        let (role, state) = (self.phase.role(), self.phase.state());
        let mut beacon = Beacon::candidate(
            &self.node_id,
            &self.config.namespace,
            self.max_seen_epoch,
            &self.config.advertised_hostname,
            self.own_rtt_ms,
            role,
            state,
        );
        if !self.is_eligible(self.last_now) && state != State::Stopped {
            beacon.eligible = Some(false);
        }
        beacon
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Records a peer's beacon; `false` when it only refreshed a known peer (nothing that
    /// ranks or decides changed).
    fn on_beacon(&mut self, beacon: Beacon, received_at: Instant) -> bool {
        if beacon.node_id == self.node_id || beacon.discovery_namespace != self.config.namespace {
            return false;
        }
        let epoch = beacon.leader_epoch;
        let changed = match self.peers.get_mut(&beacon.node_id) {
            Some(peer) => {
                // Epochs never go down for a node, so a lower one is a late (reordered)
                // datagram; so is one received before the beacon we already hold.
                if epoch < peer.beacon.leader_epoch || received_at < peer.last_seen {
                    debug!(peer = %beacon.node_id, "ignoring an out-of-order beacon");
                    return false;
                }
                let state = PeerState::parse(&beacon.state);
                if peer.state != state || peer.beacon.is_leader != beacon.is_leader {
                    peer.state_since = received_at;
                }
                peer.state = state;
                let old = &peer.beacon;
                let changed = old.state != beacon.state
                    || old.is_leader != beacon.is_leader
                    || old.leader_epoch != beacon.leader_epoch
                    || old.candidate_role != beacon.candidate_role
                    || old.backbone_rtt_ms != beacon.backbone_rtt_ms
                    || old.wss_url != beacon.wss_url
                    || old.discovery_url != beacon.discovery_url
                    || old.bridge_state != beacon.bridge_state;
                peer.beacon = beacon;
                peer.last_seen = received_at;
                changed
            }
            None => {
                if self.peers.len() >= self.config.max_peers {
                    self.dropped_peer_overflow = self.dropped_peer_overflow.saturating_add(1);
                    if self.dropped_peer_overflow == 1 {
                        warn!(
                            max_peers = self.config.max_peers,
                            "too many election peers; ignoring beacons from new ones"
                        );
                    }
                    return false;
                }
                debug!(peer = %beacon.node_id, state = %beacon.state, "new election peer");
                let state = PeerState::parse(&beacon.state);
                self.peers.insert(
                    beacon.node_id.clone(),
                    Peer { beacon, state, last_seen: received_at, state_since: received_at },
                );
                true
            }
        };
        self.max_seen_epoch = self.max_seen_epoch.max(epoch);
        changed
    }

    fn on_leaf_started(&mut self, epoch: u64, advert: LeaderAdvert, out: &mut Outbox) {
        let Some(starting) = self.phase.starting().filter(|s| s.epoch == epoch) else {
            if self.phase.leading().is_some_and(|l| l.epoch == epoch) {
                return;
            }
            debug!(epoch, "a leaf we no longer want has started; stopping it");
            out.effects.push(Action::StopLeaf { epoch });
            return;
        };
        let claim = LeaderClaim { epoch, rank: self.rank() };
        if let Some(other) = self.best_peer_leader()
            && (!starting.preempting || LeaderClaim::of(other).beats(&claim))
        {
            info!(
                leader = %other.node_id,
                epoch = other.leader_epoch,
                "another leader appeared while our leaf started; stopping ours and following it"
            );
            out.effects.push(Action::StopLeaf { epoch });
            self.abandon_start();
            return;
        }
        info!(epoch, wss_url = %advert.listeners.wss_url, "leaf started; leading the namespace");
        let mdns = self.mdns_advert(epoch, &advert);
        out.effects.push(Action::PublishMdns(mdns.clone()));
        self.max_seen_epoch = self.max_seen_epoch.max(epoch);
        self.failures = 0;
        self.backoff_until = None;
        self.enter(Phase::Leader(Box::new(Leading { epoch, advert, published: Some(mdns) })));
    }

    fn on_leaf_updated(&mut self, epoch: u64, advert: LeaderAdvert, out: &mut Outbox) {
        let mdns = self.mdns_advert(epoch, &advert);
        let Phase::Leader(leading) = &mut self.phase else { return };
        if leading.epoch != epoch {
            return;
        }
        leading.advert = advert;
        if leading.published.as_ref() != Some(&mdns) {
            leading.published = Some(mdns.clone());
            out.effects.push(Action::PublishMdns(mdns));
        }
    }

    fn on_leaf_failed(&mut self, now: Instant, epoch: u64, reason: &str) {
        if self.phase.starting().is_none_or(|s| s.epoch != epoch) {
            debug!(epoch, reason, "ignoring a failure report for a leaf start we abandoned");
            return;
        }
        let backoff = self.register_failure(now);
        warn!(epoch, reason, ?backoff, "leaf start failed; backing off so others can lead");
        self.abandon_start();
    }

    fn on_leaf_died(&mut self, now: Instant, epoch: u64, reason: &str, out: &mut Outbox) {
        if self.phase.starting().is_some_and(|s| s.epoch == epoch) {
            self.on_leaf_failed(now, epoch, reason);
            return;
        }
        let Some(published) = self.phase.leading().filter(|l| l.epoch == epoch).map(|l| l.published.is_some()) else {
            debug!(epoch, reason, "ignoring a death report for a leaf we do not run");
            return;
        };
        let backoff = self.register_failure(now);
        warn!(epoch, reason, ?backoff, "leaf died and cannot be restarted; resigning");
        out.effects.push(Action::StopLeaf { epoch });
        if published {
            out.effects.push(Action::WithdrawMdns);
        }
        self.enter(Phase::Electing { last_leader: None });
        self.push_resigns(out);
    }

    fn on_stop(&mut self, out: &mut Outbox) {
        info!("stopping the election; resigning");
        match &self.phase {
            Phase::StartingLeaf { starting, .. } => out.effects.push(Action::StopLeaf { epoch: starting.epoch }),
            Phase::Leader(leading) => {
                out.effects.push(Action::StopLeaf { epoch: leading.epoch });
                if leading.published.is_some() {
                    out.effects.push(Action::WithdrawMdns);
                }
            }
            _ => {}
        }
        self.phase = Phase::Stopped;
        self.push_resigns(out);
    }

    // ----- decisions ----------------------------------------------------------------------

    fn evaluate(&mut self, now: Instant, out: &mut Outbox) {
        let lost_leader_seen = self.prune(now);
        if let Some(starting) = self.phase.starting()
            && now >= starting.since + self.config.leaf_start_timeout
        {
            let backoff = self.register_failure(now);
            warn!(epoch = starting.epoch, ?backoff, "leaf start did not finish in time; abandoning it");
            out.effects.push(Action::StopLeaf { epoch: starting.epoch });
            self.abandon_start();
        }
        if matches!(self.phase, Phase::Leader(_)) {
            self.evaluate_leader(out);
            if matches!(self.phase, Phase::Leader(_)) {
                return;
            }
        }
        if matches!(self.phase, Phase::StartingLeaf { .. }) {
            self.evaluate_starting(now, out);
            if matches!(self.phase, Phase::StartingLeaf { .. }) {
                return;
            }
        }
        self.evaluate_candidate(now, lost_leader_seen, out);
    }

    fn evaluate_leader(&mut self, out: &mut Outbox) {
        let Some(leading) = self.phase.leading() else { return };
        let own = LeaderClaim { epoch: leading.epoch, rank: self.rank() };
        let Some(other) = self.best_peer_leader() else {
            return;
        };
        if !LeaderClaim::of(other).beats(&own) {
            return;
        }
        let (other_id, other_epoch) = (other.node_id.clone(), other.leader_epoch);
        info!(leader = %other_id, epoch = other_epoch, "a better leader is visible; stepping down");
        out.effects.push(Action::StopLeaf { epoch: leading.epoch });
        if leading.published.is_some() {
            out.effects.push(Action::WithdrawMdns);
        }
        self.max_seen_epoch = self.max_seen_epoch.max(other_epoch);
        self.enter(Phase::Following { leader: other_id, advantage_since: None });
    }

    fn evaluate_starting(&mut self, now: Instant, out: &mut Outbox) {
        let Some(starting) = self.phase.starting() else { return };
        let claim = LeaderClaim { epoch: starting.epoch, rank: self.rank() };
        let leader = self.best_peer_leader().map(|l| (l.node_id.clone(), LeaderClaim::of(l).beats(&claim)));
        let abort_reason = match &leader {
            Some((_, beats_us)) if !starting.preempting || *beats_us => Some("a leader appeared"),
            _ if self.better_peer_starting(now) => Some("a better-ranked peer is starting its leaf"),
            _ => None,
        };
        if starting.preempting
            && let Phase::StartingLeaf { incumbent, .. } = &mut self.phase
        {
            // Keep showing the incumbent as the leader while we take over.
            *incumbent = leader.map(|(id, _)| id);
        }
        if let Some(reason) = abort_reason {
            info!(epoch = starting.epoch, reason, "abandoning our leaf start");
            out.effects.push(Action::StopLeaf { epoch: starting.epoch });
            self.abandon_start();
        }
    }

    /// `lost_leader_seen`: when the followed leader was last heard, if it expired in this
    /// evaluation's prune: its grace counts from there (so a crashed leader is replaced
    /// after max(expiry, grace), not expiry + grace).
    fn evaluate_candidate(&mut self, now: Instant, lost_leader_seen: Option<Instant>, out: &mut Outbox) {
        if let Some(leader) = self.best_peer_leader() {
            let (id, epoch, rtt) = (leader.node_id.clone(), leader.leader_epoch, leader.backbone_rtt_ms);
            if self.phase.followed() != Some(id.as_str()) {
                info!(leader = %id, epoch, "following leader");
            }
            self.max_seen_epoch = self.max_seen_epoch.max(epoch);
            let held_since = match &self.phase {
                Phase::Following { leader, advantage_since } if *leader == id => *advantage_since,
                _ => None,
            };
            if !has_rtt_advantage(self.own_rtt_ms, rtt, self.config.preemption_threshold_ms) {
                self.enter(Phase::Following { leader: id, advantage_since: None });
                return;
            }
            let since = held_since.unwrap_or(now);
            self.enter(Phase::Following { leader: id.clone(), advantage_since: Some(since) });
            if now >= since + self.config.preemption_window
                && self.may_stand(now)
                && self.is_best_candidate(now)
                && !self.any_peer_starting(now)
            {
                info!(leader = %id, "backbone RTT advantage held; preempting");
                self.begin_start(now, Some(id), out);
            }
            return;
        }

        let mut grace = match &self.phase {
            Phase::LeaderMissingGrace { lost, until } => Some((lost.clone(), *until)),
            _ => None,
        };
        if let Some(lost) = self.phase.followed().map(str::to_owned) {
            if self.peers.contains_key(&lost) {
                info!(leader = %lost, "leader resigned; electing now");
            } else {
                info!(
                    leader = %lost,
                    grace = ?self.config.leader_missing_grace,
                    "leader's beacons stopped; waiting out the grace period"
                );
                let last_heard = lost_leader_seen.unwrap_or(now).min(now);
                grace = Some((lost, (last_heard + self.config.leader_missing_grace).max(now)));
            }
        }
        if let Some((lost, until)) = grace {
            // A resign (or any non-leader beacon) from the lost leader ends the grace.
            let resigned = self.peers.contains_key(&lost);
            if now < until && !resigned {
                self.enter(Phase::LeaderMissingGrace { lost, until });
                return;
            }
        }
        if matches!(self.phase, Phase::Discovering) && now < self.started_at + self.config.settle {
            return;
        }
        self.enter(Phase::Electing { last_leader: None });
        if self.may_stand(now)
            && self.is_best_candidate(now)
            && !self.any_peer_starting(now)
            && !self.any_peer_following(now)
        {
            self.begin_start(now, None, out);
        }
    }

    /// Starts this node's leaf; `incumbent` is the leader it preempts, if any.
    fn begin_start(&mut self, now: Instant, incumbent: Option<String>, out: &mut Outbox) {
        let epoch = next_epoch(self.max_seen_epoch);
        let preempting = incumbent.is_some();
        info!(epoch, preempting, "standing for election; starting the leaf");
        self.enter(Phase::StartingLeaf { starting: Starting { epoch, since: now, preempting }, incumbent });
        out.effects.push(Action::StartLeaf { epoch });
    }

    /// Leaves `starting-leaf` for `electing`, remembering the incumbent (if a preempting
    /// start is abandoned) for the candidate evaluation that follows.
    fn abandon_start(&mut self) {
        let last_leader = match &mut self.phase {
            Phase::StartingLeaf { incumbent, .. } => incumbent.take(),
            _ => None,
        };
        self.enter(Phase::Electing { last_leader });
    }

    /// Forgets expired peers; returns when the followed leader was last heard if it was
    /// one of them.
    fn prune(&mut self, now: Instant) -> Option<Instant> {
        let expiry = self.config.peer_expiry;
        let leader = self.phase.followed().map(str::to_owned);
        let mut lost_leader_seen = None;
        self.peers.retain(|id, peer| {
            let live = now.saturating_duration_since(peer.last_seen) < expiry;
            if !live {
                debug!(peer = %id, "election peer expired");
                if leader.as_deref() == Some(id.as_str()) {
                    lost_leader_seen = Some(peer.last_seen);
                }
            }
            live
        });
        lost_leader_seen
    }

    fn register_failure(&mut self, now: Instant) -> std::time::Duration {
        self.failures = self.failures.saturating_add(1);
        let backoff = self.config.backoff_after(self.failures);
        self.backoff_until = Some(now + backoff);
        backoff
    }

    fn may_stand(&self, now: Instant) -> bool {
        self.is_eligible(now)
    }

    fn is_eligible(&self, now: Instant) -> bool {
        self.backoff_until.is_none_or(|until| now >= until)
    }

    fn rank(&self) -> Rank<'_> {
        Rank::new(self.own_rtt_ms, &self.node_id)
    }

    fn best_peer_leader(&self) -> Option<&Beacon> {
        best_leader(self.peers.values().map(|peer| &peer.beacon))
    }

    /// A peer that counts as a candidate: live, not a leader, eligible, and not stuck in
    /// `starting-leaf` past the start timeout.
    fn is_candidate_peer(&self, peer: &Peer, now: Instant) -> bool {
        !peer.beacon.is_leader
            && peer.beacon.eligible != Some(false)
            && !peer.state.is(State::Stopped)
            && !self.is_stuck_starting(peer, now)
    }

    fn is_stuck_starting(&self, peer: &Peer, now: Instant) -> bool {
        peer.state.is(State::StartingLeaf)
            && now.saturating_duration_since(peer.state_since) >= self.config.leaf_start_timeout
    }

    /// The reference's best-candidate check, minus peers that cannot lead right now.
    fn is_best_candidate(&self, now: Instant) -> bool {
        let own = self.rank();
        self.peers.values().filter(|peer| self.is_candidate_peer(peer, now)).all(|peer| Rank::of(&peer.beacon) > own)
    }

    fn is_starting_peer(&self, peer: &Peer, now: Instant) -> bool {
        self.is_candidate_peer(peer, now) && peer.state.is(State::StartingLeaf)
    }

    fn any_peer_starting(&self, now: Instant) -> bool {
        self.peers.values().any(|peer| self.is_starting_peer(peer, now))
    }

    fn better_peer_starting(&self, now: Instant) -> bool {
        let own = self.rank();
        self.peers.values().any(|peer| self.is_starting_peer(peer, now) && Rank::of(&peer.beacon) < own)
    }

    /// Some peer still follows a leader we cannot see: we are probably missing its beacons.
    fn any_peer_following(&self, _now: Instant) -> bool {
        self.peers.values().any(|peer| peer.state.is(State::FollowingLeader))
    }

    fn enter(&mut self, phase: Phase) {
        let (from, to, role) = (self.phase.state(), phase.state(), phase.role());
        if from != to || self.phase.role() != role {
            debug!(%from, %to, %role, "election state");
        }
        self.phase = phase;
    }

    // ----- output -------------------------------------------------------------------------

    fn push_resigns(&mut self, out: &mut Outbox) {
        let resign = Beacon::resign(
            &self.node_id,
            &self.config.namespace,
            self.max_seen_epoch,
            &self.config.advertised_hostname,
            self.own_rtt_ms,
        );
        for _ in 0..self.config.resign_copies.max(1) {
            out.beacons.push(Action::SendBeacon(Box::new(resign.clone())));
        }
        self.last_beacon_at = Some(self.last_now);
        self.last_beacon_shape = Some(self.beacon_shape(self.last_now));
        self.next_heartbeat = self.last_now + self.config.heartbeat_interval;
    }

    fn beacon_shape(&self, now: Instant) -> BeaconShape {
        BeaconShape {
            state: self.phase.state(),
            role: self.phase.role(),
            eligible: self.is_eligible(now),
            epoch: self.phase.leading().map_or(self.max_seen_epoch, |l| l.epoch),
        }
    }

    fn maybe_heartbeat(&mut self, now: Instant, out: &mut Outbox) {
        let shape = self.beacon_shape(now);
        if let Some(last) = self.last_beacon_shape
            && last != shape
        {
            // Claiming or giving up leadership, and announcing a leaf start (so peers hold
            // back), go out at once; other changes respect the minimum gap.
            let urgent = (shape.state == State::StartingLeaf || shape.role == Role::Leader)
                != (last.state == State::StartingLeaf || last.role == Role::Leader)
                || shape.epoch != last.epoch && shape.role == Role::Leader;
            let earliest = match self.last_beacon_at {
                Some(at) if !urgent => at + self.config.min_beacon_gap,
                _ => now,
            };
            self.next_heartbeat = self.next_heartbeat.min(earliest.max(now));
        }
        if now >= self.next_heartbeat {
            out.beacons.push(Action::SendBeacon(Box::new(self.heartbeat())));
            self.last_beacon_at = Some(now);
            self.last_beacon_shape = Some(shape);
            self.next_heartbeat = now + self.config.heartbeat_interval;
        }
    }

    fn finish(&mut self, out: Outbox) -> Vec<Action> {
        let mut actions = out.beacons;
        actions.extend(out.effects);
        let status = self.status();
        if self.last_status.as_ref() != Some(&status) {
            debug!(%status, "election status");
            self.last_status = Some(status.clone());
            actions.push(Action::StatusChanged(status));
        }
        actions
    }

    fn leader_summary(&self) -> Option<LeaderSummary> {
        if let Some(leading) = self.phase.leading() {
            return Some(LeaderSummary {
                node_id: self.node_id.clone(),
                epoch: leading.epoch,
                wss_url: Some(leading.advert.listeners.wss_url.as_str().to_owned()),
                discovery_url: Some(leading.advert.listeners.discovery_url.as_str().to_owned()),
                is_self: true,
            });
        }
        self.current_leader().map(|beacon| LeaderSummary {
            node_id: beacon.node_id.clone(),
            epoch: beacon.leader_epoch,
            wss_url: beacon.wss_url.clone(),
            discovery_url: beacon.discovery_url.clone(),
            is_self: false,
        })
    }

    fn mdns_advert(&self, epoch: u64, advert: &LeaderAdvert) -> MdnsAdvert {
        MdnsAdvert {
            namespace: self.config.namespace.clone(),
            node_id: self.node_id.clone(),
            wss_url: advert.listeners.wss_url.as_str().to_owned(),
            discovery_url: advert.listeners.discovery_url.as_str().to_owned(),
            leader_epoch: epoch,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod phase_tests {
    use super::*;
    use kinopio::wire::manifest::BridgeState;

    fn leading() -> Leading {
        let advert = LeaderAdvert::from_urls(
            "10.0.0.9",
            [
                "wss://10.0.0.9:4443",
                "nats://127.0.0.1:4222",
                "http://127.0.0.1:8222",
                "https://10.0.0.9:8443/.well-known/kinopio-leader.json",
            ],
            BridgeState::Connected,
            Vec::new(),
        )
        .unwrap();
        Leading { epoch: 3, advert, published: None }
    }

    #[test]
    fn each_phase_has_one_state_role_and_followed_leader() {
        let now = Instant::now();
        let starting = Starting { epoch: 4, since: now, preempting: true };
        let cases = [
            (Phase::Discovering, State::Discovering, Role::Candidate, None),
            (
                Phase::Following { leader: "b".into(), advantage_since: Some(now) },
                State::FollowingLeader,
                Role::Follower,
                Some("b"),
            ),
            (
                Phase::LeaderMissingGrace { lost: "b".into(), until: now },
                State::LeaderMissingGrace,
                Role::Follower,
                None,
            ),
            (Phase::Electing { last_leader: None }, State::Electing, Role::Candidate, None),
            (Phase::Electing { last_leader: Some("b".into()) }, State::Electing, Role::Candidate, Some("b")),
            (
                Phase::StartingLeaf { starting, incumbent: Some("b".into()) },
                State::StartingLeaf,
                Role::Candidate,
                Some("b"),
            ),
            (Phase::Leader(Box::new(leading())), State::Leader, Role::Leader, None),
            (Phase::Stopped, State::Stopped, Role::Follower, None),
        ];
        for (phase, state, role, followed) in cases {
            assert_eq!((phase.state(), phase.role(), phase.followed()), (state, role, followed), "{phase:?}");
            assert_eq!(phase.starting().is_some(), state == State::StartingLeaf);
            assert_eq!(phase.leading().is_some(), state == State::Leader);
        }
    }

    #[test]
    fn an_abandoned_preempting_start_remembers_its_incumbent_once() {
        let now = Instant::now();
        let mut election = Election::new(ElectionConfig::new("studio"), "a", now).unwrap();
        election.phase = Phase::StartingLeaf {
            starting: Starting { epoch: 2, since: now, preempting: true },
            incumbent: Some("b".into()),
        };
        election.abandon_start();
        assert!(matches!(&election.phase, Phase::Electing { last_leader: Some(id) } if id == "b"));
        election.abandon_start(); // not starting: nothing to remember
        assert!(matches!(election.phase, Phase::Electing { last_leader: None }));
    }
}
