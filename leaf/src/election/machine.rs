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

use super::beacon::Beacon;
use super::config::{ConfigError, ElectionConfig};
use super::events::{Action, Input, LeafAdvert};
use super::rank::{LeaderClaim, Rank, best_leader, has_rtt_advantage, next_epoch};
use super::status::{LeaderSummary, Role, State, Status};
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
    state: State,
    role: Role,
    /// Highest epoch seen in any accepted beacon or held.
    max_seen_epoch: u64,
    /// Own backbone RTT, rounded to microseconds (what peers see).
    own_rtt_ms: Option<f64>,
    peers: BTreeMap<String, Peer>,
    /// The peer leader being followed (never this node).
    current_leader: Option<String>,
    /// Set while waiting out the leader-missing grace: (lost leader, grace end).
    grace: Option<(String, Instant)>,
    /// When the leader we followed was last heard, if it just expired: the grace counts from
    /// there (so a crashed leader is replaced after max(expiry, grace), not expiry + grace).
    lost_leader_seen: Option<Instant>,
    /// Preemption advantage over this leader, held continuously since this instant.
    advantage: Option<(String, Instant)>,
    starting: Option<Starting>,
    leading: Option<Leading>,
    failures: u32,
    backoff_until: Option<Instant>,
    next_heartbeat: Instant,
    last_beacon_at: Option<Instant>,
    last_beacon_shape: Option<BeaconShape>,
    last_status: Option<Status>,
    dropped_peer_overflow: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    beacon: Beacon,
    last_seen: Instant,
    /// When this peer entered its current state (leader-ness and `state` string).
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
    advert: LeafAdvert,
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
    pub fn new(config: ElectionConfig, node_id: impl Into<String>, now: Instant) -> Result<Election, ConfigError> {
        config.validate()?;
        let node_id = node_id.into();
        if node_id.is_empty() {
            return Err(ConfigError::new("the node id is empty; every node needs a unique id"));
        }
        Ok(Election {
            config,
            node_id,
            started_at: now,
            last_now: now,
            state: State::Discovering,
            role: Role::Candidate,
            max_seen_epoch: 0,
            own_rtt_ms: None,
            peers: BTreeMap::new(),
            current_leader: None,
            grace: None,
            lost_leader_seen: None,
            advantage: None,
            starting: None,
            leading: None,
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
        if self.state == State::Stopped {
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
        if self.state == State::Stopped {
            return None;
        }
        let now = self.last_now;
        let expiry = self.config.peer_expiry;
        let start_timeout = self.config.leaf_start_timeout;
        let mut deadlines = vec![self.next_heartbeat];
        for peer in self.peers.values() {
            deadlines.push(peer.last_seen + expiry);
            if peer.beacon.state == State::StartingLeaf.as_str() {
                deadlines.push(peer.state_since + start_timeout);
            }
        }
        if self.state == State::Discovering {
            deadlines.push(self.started_at + self.config.settle);
        }
        deadlines.extend(self.grace.as_ref().map(|(_, until)| *until));
        deadlines.extend(self.advantage.as_ref().map(|(_, since)| *since + self.config.preemption_window));
        deadlines.extend(self.backoff_until);
        deadlines.extend(self.starting.map(|s| s.since + start_timeout));
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
        self.state
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current status snapshot.
    pub fn status(&self) -> Status {
        Status {
            state: self.state,
            role: self.role,
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
        self.leading.as_ref().map(|l| l.epoch)
    }

    /// The last beacon of the peer leader being followed (`None` when this node leads or no
    /// leader is visible).
    pub fn current_leader(&self) -> Option<&Beacon> {
        self.current_leader.as_ref().and_then(|id| self.peers.get(id)).map(|peer| &peer.beacon)
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
        if let Some(leading) = &self.leading {
            return Beacon::leader(
                &self.node_id,
                &self.config.namespace,
                leading.epoch,
                self.own_rtt_ms,
                &leading.advert,
            );
        }
        let (role, state) =
            if self.state == State::Stopped { (Role::Follower, State::Stopped) } else { (self.role, self.state) };
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
                if peer.beacon.state != beacon.state || peer.beacon.is_leader != beacon.is_leader {
                    peer.state_since = received_at;
                }
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
                self.peers
                    .insert(beacon.node_id.clone(), Peer { beacon, last_seen: received_at, state_since: received_at });
                true
            }
        };
        self.max_seen_epoch = self.max_seen_epoch.max(epoch);
        changed
    }

    fn on_leaf_started(&mut self, epoch: u64, advert: LeafAdvert, out: &mut Outbox) {
        let Some(starting) = self.starting.filter(|s| s.epoch == epoch) else {
            if self.leading.as_ref().is_some_and(|l| l.epoch == epoch) {
                return;
            }
            debug!(epoch, "a leaf we no longer want has started; stopping it");
            out.effects.push(Action::StopLeaf { epoch });
            return;
        };
        self.starting = None;
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
            self.set_state(State::Electing, Role::Candidate);
            return;
        }
        info!(epoch, wss_url = %advert.wss_url, "leaf started; leading the namespace");
        let mdns = self.mdns_advert(epoch, &advert);
        out.effects.push(Action::PublishMdns(mdns.clone()));
        self.leading = Some(Leading { epoch, advert, published: Some(mdns) });
        self.max_seen_epoch = self.max_seen_epoch.max(epoch);
        self.failures = 0;
        self.backoff_until = None;
        self.current_leader = None;
        self.grace = None;
        self.advantage = None;
        self.set_state(State::Leader, Role::Leader);
    }

    fn on_leaf_updated(&mut self, epoch: u64, advert: LeafAdvert, out: &mut Outbox) {
        let mdns = self.mdns_advert(epoch, &advert);
        let Some(leading) = self.leading.as_mut().filter(|l| l.epoch == epoch) else {
            return;
        };
        leading.advert = advert;
        if leading.published.as_ref() != Some(&mdns) {
            leading.published = Some(mdns.clone());
            out.effects.push(Action::PublishMdns(mdns));
        }
    }

    fn on_leaf_failed(&mut self, now: Instant, epoch: u64, reason: &str) {
        if self.starting.is_none_or(|s| s.epoch != epoch) {
            debug!(epoch, reason, "ignoring a failure report for a leaf start we abandoned");
            return;
        }
        self.starting = None;
        let backoff = self.register_failure(now);
        warn!(epoch, reason, ?backoff, "leaf start failed; backing off so others can lead");
        self.set_state(State::Electing, Role::Candidate);
    }

    fn on_leaf_died(&mut self, now: Instant, epoch: u64, reason: &str, out: &mut Outbox) {
        if self.starting.is_some_and(|s| s.epoch == epoch) {
            self.on_leaf_failed(now, epoch, reason);
            return;
        }
        let Some(leading) = self.leading.take_if(|l| l.epoch == epoch) else {
            debug!(epoch, reason, "ignoring a death report for a leaf we do not run");
            return;
        };
        let backoff = self.register_failure(now);
        warn!(epoch, reason, ?backoff, "leaf died and cannot be restarted; resigning");
        out.effects.push(Action::StopLeaf { epoch });
        if leading.published.is_some() {
            out.effects.push(Action::WithdrawMdns);
        }
        self.set_state(State::Electing, Role::Candidate);
        self.push_resigns(out);
    }

    fn on_stop(&mut self, out: &mut Outbox) {
        info!("stopping the election; resigning");
        if let Some(starting) = self.starting.take() {
            out.effects.push(Action::StopLeaf { epoch: starting.epoch });
        }
        if let Some(leading) = self.leading.take() {
            out.effects.push(Action::StopLeaf { epoch: leading.epoch });
            if leading.published.is_some() {
                out.effects.push(Action::WithdrawMdns);
            }
        }
        self.current_leader = None;
        self.grace = None;
        self.advantage = None;
        self.state = State::Stopped;
        self.role = Role::Follower;
        self.push_resigns(out);
    }

    // ----- decisions ----------------------------------------------------------------------

    fn evaluate(&mut self, now: Instant, out: &mut Outbox) {
        self.prune(now);
        if let Some(starting) = self.starting
            && now >= starting.since + self.config.leaf_start_timeout
        {
            self.starting = None;
            let backoff = self.register_failure(now);
            warn!(epoch = starting.epoch, ?backoff, "leaf start did not finish in time; abandoning it");
            out.effects.push(Action::StopLeaf { epoch: starting.epoch });
            self.set_state(State::Electing, Role::Candidate);
        }
        if self.leading.is_some() {
            self.evaluate_leader(out);
            if self.leading.is_some() {
                return;
            }
        }
        if self.starting.is_some() {
            self.evaluate_starting(now, out);
            if self.starting.is_some() {
                return;
            }
        }
        self.evaluate_candidate(now, out);
    }

    fn evaluate_leader(&mut self, out: &mut Outbox) {
        let Some(leading) = &self.leading else { return };
        let own = LeaderClaim { epoch: leading.epoch, rank: self.rank() };
        let Some(other) = self.best_peer_leader() else {
            return;
        };
        if !LeaderClaim::of(other).beats(&own) {
            return;
        }
        let (other_id, other_epoch) = (other.node_id.clone(), other.leader_epoch);
        info!(leader = %other_id, epoch = other_epoch, "a better leader is visible; stepping down");
        if let Some(leading) = self.leading.take() {
            out.effects.push(Action::StopLeaf { epoch: leading.epoch });
            if leading.published.is_some() {
                out.effects.push(Action::WithdrawMdns);
            }
        }
        self.max_seen_epoch = self.max_seen_epoch.max(other_epoch);
        self.current_leader = Some(other_id);
        self.set_state(State::FollowingLeader, Role::Follower);
    }

    fn evaluate_starting(&mut self, now: Instant, out: &mut Outbox) {
        let Some(starting) = self.starting else { return };
        let claim = LeaderClaim { epoch: starting.epoch, rank: self.rank() };
        let leader = self.best_peer_leader().map(|l| (l.node_id.clone(), LeaderClaim::of(l).beats(&claim)));
        let abort_reason = match &leader {
            Some((_, beats_us)) if !starting.preempting || *beats_us => Some("a leader appeared"),
            _ if self.better_peer_starting(now) => Some("a better-ranked peer is starting its leaf"),
            _ => None,
        };
        if starting.preempting {
            // Keep showing the incumbent as the leader while we take over.
            self.current_leader = leader.map(|(id, _)| id);
        }
        if let Some(reason) = abort_reason {
            info!(epoch = starting.epoch, reason, "abandoning our leaf start");
            self.starting = None;
            out.effects.push(Action::StopLeaf { epoch: starting.epoch });
            self.set_state(State::Electing, Role::Candidate);
        }
    }

    fn evaluate_candidate(&mut self, now: Instant, out: &mut Outbox) {
        if let Some(leader) = self.best_peer_leader() {
            let (id, epoch, rtt) = (leader.node_id.clone(), leader.leader_epoch, leader.backbone_rtt_ms);
            if self.current_leader.as_deref() != Some(id.as_str()) {
                info!(leader = %id, epoch, "following leader");
            }
            self.max_seen_epoch = self.max_seen_epoch.max(epoch);
            self.grace = None;
            self.set_state(State::FollowingLeader, Role::Follower);
            if has_rtt_advantage(self.own_rtt_ms, rtt, self.config.preemption_threshold_ms) {
                let since = match &self.advantage {
                    Some((over, since)) if *over == id => *since,
                    _ => now,
                };
                self.advantage = Some((id.clone(), since));
                if now >= since + self.config.preemption_window
                    && self.may_stand(now)
                    && self.is_best_candidate(now)
                    && !self.any_peer_starting(now)
                {
                    info!(leader = %id, "backbone RTT advantage held; preempting");
                    self.current_leader = Some(id);
                    self.begin_start(now, true, out);
                    return;
                }
            } else {
                self.advantage = None;
            }
            self.current_leader = Some(id);
            return;
        }
        self.advantage = None;

        if let Some(lost) = self.current_leader.take() {
            if self.peers.contains_key(&lost) {
                info!(leader = %lost, "leader resigned; electing now");
            } else {
                info!(
                    leader = %lost,
                    grace = ?self.config.leader_missing_grace,
                    "leader's beacons stopped; waiting out the grace period"
                );
                let last_heard = self.lost_leader_seen.take().unwrap_or(now).min(now);
                self.grace = Some((lost, (last_heard + self.config.leader_missing_grace).max(now)));
            }
        }
        if let Some((lost, until)) = &self.grace {
            // A resign (or any non-leader beacon) from the lost leader ends the grace.
            let resigned = self.peers.contains_key(lost);
            if now < *until && !resigned {
                self.set_state(State::LeaderMissingGrace, Role::Follower);
                return;
            }
            self.grace = None;
        }
        if self.state == State::Discovering && now < self.started_at + self.config.settle {
            return;
        }
        self.set_state(State::Electing, Role::Candidate);
        if self.may_stand(now)
            && self.is_best_candidate(now)
            && !self.any_peer_starting(now)
            && !self.any_peer_following(now)
        {
            self.begin_start(now, false, out);
        }
    }

    fn begin_start(&mut self, now: Instant, preempting: bool, out: &mut Outbox) {
        let epoch = next_epoch(self.max_seen_epoch);
        info!(epoch, preempting, "standing for election; starting the leaf");
        self.starting = Some(Starting { epoch, since: now, preempting });
        self.advantage = None;
        if !preempting {
            self.current_leader = None;
        }
        self.set_state(State::StartingLeaf, Role::Candidate);
        out.effects.push(Action::StartLeaf { epoch });
    }

    fn prune(&mut self, now: Instant) {
        let expiry = self.config.peer_expiry;
        let leader = self.current_leader.clone();
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
        if lost_leader_seen.is_some() {
            self.lost_leader_seen = lost_leader_seen;
        }
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
        !peer.beacon.is_leader && peer.beacon.is_eligible() && !self.is_stuck_starting(peer, now)
    }

    fn is_stuck_starting(&self, peer: &Peer, now: Instant) -> bool {
        peer.beacon.state == State::StartingLeaf.as_str()
            && now.saturating_duration_since(peer.state_since) >= self.config.leaf_start_timeout
    }

    /// The reference's best-candidate check, minus peers that cannot lead right now.
    fn is_best_candidate(&self, now: Instant) -> bool {
        let own = self.rank();
        self.peers.values().filter(|peer| self.is_candidate_peer(peer, now)).all(|peer| Rank::of(&peer.beacon) > own)
    }

    fn is_starting_peer(&self, peer: &Peer, now: Instant) -> bool {
        self.is_candidate_peer(peer, now) && peer.beacon.state == State::StartingLeaf.as_str()
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
        self.peers.values().any(|peer| peer.beacon.state == State::FollowingLeader.as_str())
    }

    fn set_state(&mut self, state: State, role: Role) {
        if self.state != state || self.role != role {
            debug!(from = %self.state, to = %state, %role, "election state");
        }
        self.state = state;
        self.role = role;
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
            state: self.state,
            role: self.role,
            eligible: self.is_eligible(now),
            epoch: self.leading.as_ref().map_or(self.max_seen_epoch, |l| l.epoch),
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
        if let Some(leading) = &self.leading {
            return Some(LeaderSummary {
                node_id: self.node_id.clone(),
                epoch: leading.epoch,
                wss_url: Some(leading.advert.wss_url.clone()),
                discovery_url: Some(leading.advert.discovery_url.clone()),
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

    fn mdns_advert(&self, epoch: u64, advert: &LeafAdvert) -> MdnsAdvert {
        MdnsAdvert {
            namespace: self.config.namespace.clone(),
            node_id: self.node_id.clone(),
            wss_url: advert.wss_url.clone(),
            discovery_url: advert.discovery_url.clone(),
            leader_epoch: epoch,
        }
    }
}

#[cfg(test)]
mod tests;
