//! Unit tests of the election state machine, one rule at a time, with a fake clock.

use std::time::{Duration, Instant};

use super::*;
use kinopio::wire::manifest::BridgeState;

const NS: &str = "studio";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn advert(host: &str) -> LeaderAdvert {
    LeaderAdvert::from_urls(
        host,
        [
            &format!("wss://{host}:4443"),
            &format!("nats://{host}:4222"),
            &format!("http://{host}:8222"),
            &format!("https://{host}:8443/manifest.json"),
        ],
        BridgeState::Connected,
        vec!["nats://backbone:4222".into()],
    )
    .unwrap()
}

fn peer(id: &str, state: State, role: Role, epoch: u64) -> Beacon {
    Beacon::candidate(id, NS, epoch, "", None, role, state)
}

fn leader(id: &str, epoch: u64) -> Beacon {
    Beacon::leader(id, NS, epoch, None, &advert("10.0.0.9"))
}

struct Node {
    election: Election,
    t0: Instant,
}

impl Node {
    fn new(id: &str) -> Node {
        Node::with(id, |_| {})
    }

    fn with(id: &str, tweak: impl FnOnce(&mut ElectionConfig)) -> Node {
        let mut config = ElectionConfig::new(NS);
        tweak(&mut config);
        let t0 = Instant::now();
        Node { election: Election::new(config, id, t0).unwrap(), t0 }
    }

    fn at(&self, millis: u64) -> Instant {
        self.t0 + ms(millis)
    }

    fn tick(&mut self, millis: u64) -> Vec<Action> {
        self.election.handle(self.at(millis), Input::Tick)
    }

    fn recv(&mut self, millis: u64, beacon: Beacon) -> Vec<Action> {
        let at = self.at(millis);
        self.election.handle(at, Input::beacon(beacon, at))
    }

    /// Ticks every 10 ms from `from` to `to` (inclusive), collecting actions.
    fn run(&mut self, from: u64, to: u64) -> Vec<Action> {
        (from..=to).step_by(10).flat_map(|t| self.tick(t)).collect()
    }
}

fn starts(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartLeaf { epoch } => Some(*epoch),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[Action]) -> Vec<Beacon> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendBeacon(b) => Some((**b).clone()),
            _ => None,
        })
        .collect()
}

fn statuses(actions: &[Action]) -> Vec<Status> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StatusChanged(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn lone_node_settles_then_leads_without_blocking_heartbeats() {
    let mut node = Node::new("kinopio-a");
    let first = node.tick(0);
    assert_eq!(sent(&first).len(), 1);
    assert_eq!(sent(&first)[0].state, "discovering");
    assert_eq!(statuses(&first)[0].state, State::Discovering);
    assert!(starts(&node.run(10, 990)).is_empty(), "no election before settle");
    let at_settle = node.tick(1000);
    assert_eq!(starts(&at_settle), vec![1]);
    assert_eq!(node.election.state(), State::StartingLeaf);
    // The start is pending, yet heartbeats keep flowing and say `starting-leaf`.
    let pending = node.run(1010, 3000);
    let beacons = sent(&pending);
    assert!(beacons.len() >= 4, "heartbeats continue while the leaf starts");
    assert!(beacons.iter().all(|b| b.state == "starting-leaf" && !b.is_leader));
    let mut became = node.election.handle(node.at(3005), Input::LeafStarted { epoch: 1, advert: advert("10.0.0.2") });
    assert_eq!(node.election.role(), Role::Leader);
    // The changed beacon goes out early, at most `min_beacon_gap` after the previous one.
    became.extend(node.run(3010, 3100));
    let leader_beacon = &sent(&became)[0];
    assert!(leader_beacon.is_leader);
    assert_eq!(leader_beacon.leader_epoch, 1);
    assert_eq!(leader_beacon.fallback_servers, vec!["wss://10.0.0.2:4443"]);
    assert!(became.iter().any(|a| matches!(a, Action::PublishMdns(m) if m.leader_epoch == 1)));
    // Lease renewals do not produce status lines.
    assert!(statuses(&node.run(3010, 10_000)).is_empty());
}

#[test]
fn poll_timeout_is_never_more_than_one_heartbeat_away() {
    let mut node = Node::new("kinopio-a");
    let mut now = node.at(0);
    for _ in 0..200 {
        node.election.handle(now, Input::Tick);
        let next = node.election.poll_timeout().unwrap();
        assert!(next > now && next <= now + ms(500), "{:?}", next - now);
        now = next;
    }
}

#[test]
fn follower_follows_and_does_not_stand() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    let actions = node.recv(100, leader("kinopio-z", 4));
    assert_eq!(node.election.state(), State::FollowingLeader);
    assert_eq!(node.election.role(), Role::Follower);
    let status = &statuses(&actions)[0];
    assert_eq!(status.leader.as_ref().unwrap().node_id, "kinopio-z");
    assert_eq!(node.election.max_seen_epoch(), 4);
    for t in (600..=5000).step_by(400) {
        node.recv(t, leader("kinopio-z", 4));
        assert!(starts(&node.tick(t + 5)).is_empty());
    }
    // Our non-leader beacons advertise the highest epoch seen.
    assert_eq!(node.election.heartbeat().leader_epoch, 4);
}

#[test]
fn leader_loss_waits_grace_once_and_forgets_the_stale_leader() {
    // "kinopio-z" ranks worse than peer "kinopio-b", so it must not stand; it must not cycle
    // back into leader-missing-grace either (E6).
    let mut node = Node::new("kinopio-z");
    node.tick(0);
    node.recv(100, leader("kinopio-l", 2));
    node.recv(100, peer("kinopio-b", State::FollowingLeader, Role::Follower, 2));
    // Leader silent from 100 ms; expiry at 2100 ms.
    node.run(110, 2090);
    assert_eq!(node.election.state(), State::FollowingLeader);
    node.tick(2100);
    assert_eq!(node.election.state(), State::LeaderMissingGrace);
    assert!(node.election.current_leader().is_none());
    // Peer b keeps beaconing, now in grace too. The grace counts from the leader's last
    // beacon (100 ms), so it ends at 10 100 ms.
    for t in (2100..10_100).step_by(400) {
        node.recv(t, peer("kinopio-b", State::LeaderMissingGrace, Role::Follower, 2));
        node.tick(t + 1);
        assert_eq!(node.election.state(), State::LeaderMissingGrace);
    }
    node.recv(10_100, peer("kinopio-b", State::Electing, Role::Candidate, 2));
    node.tick(10_101);
    assert_eq!(node.election.state(), State::Electing);
    for t in (10_200..40_000).step_by(400) {
        node.recv(t, peer("kinopio-b", State::Electing, Role::Candidate, 2));
        let actions = node.tick(t + 1);
        assert!(starts(&actions).is_empty(), "not the best candidate");
        assert_eq!(node.election.state(), State::Electing, "no second grace period");
    }
}

#[test]
fn best_candidate_elects_right_after_grace_with_next_epoch() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    node.recv(100, leader("kinopio-l", 7));
    let mut all = Vec::new();
    for t in (110..=12_200).step_by(10) {
        all.extend(node.tick(t));
    }
    // Last beacon at 100, grace 10 s counted from it → elects at 10 100 (after expiry at 2100).
    assert_eq!(starts(&all), vec![8]);
    assert_eq!(node.election.state(), State::StartingLeaf);
    assert!(node.election.poll_timeout().is_some());
}

#[test]
fn resign_from_the_leader_skips_the_grace() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    node.recv(100, leader("kinopio-l", 3));
    let mut resign = Beacon::resign("kinopio-l", NS, 3, "", None);
    resign.lease_expires_at = "x".into();
    let actions = node.recv(600, resign);
    assert_eq!(starts(&actions), vec![4], "elects at once");
    assert_eq!(node.election.state(), State::StartingLeaf);
}

#[test]
fn a_leader_that_turns_non_leader_without_stopped_is_also_a_resign() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    node.recv(100, leader("kinopio-l", 3));
    let mut stepped = peer("kinopio-l", State::Electing, Role::Candidate, 3);
    stepped.eligible = Some(false);
    let actions = node.recv(600, stepped);
    assert_eq!(starts(&actions), vec![4]);
}

#[test]
fn reordered_pre_leadership_beacon_does_not_fake_a_resign() {
    let mut node = Node::new("kinopio-z");
    node.tick(0);
    node.recv(100, leader("kinopio-l", 3));
    // A late datagram from before kinopio-l led (epoch 2, starting-leaf).
    node.recv(150, peer("kinopio-l", State::StartingLeaf, Role::Candidate, 2));
    assert_eq!(node.election.state(), State::FollowingLeader);
    assert_eq!(node.election.current_leader().unwrap().leader_epoch, 3);
}

#[test]
fn split_brain_the_worse_leader_steps_down_at_once() {
    let mut node = Node::new("kinopio-m");
    node.tick(0);
    node.tick(1000);
    node.election.handle(node.at(1100), Input::LeafStarted { epoch: 1, advert: advert("10.0.0.2") });
    assert_eq!(node.election.role(), Role::Leader);
    // A worse leader at the same epoch does not move us.
    node.recv(1200, leader("kinopio-z", 1));
    assert_eq!(node.election.role(), Role::Leader);
    // A better one (smaller id, same epoch) does.
    let actions = node.recv(1300, leader("kinopio-a", 1));
    assert_eq!(node.election.role(), Role::Follower);
    assert!(actions.contains(&Action::StopLeaf { epoch: 1 }));
    assert!(actions.contains(&Action::WithdrawMdns));
    assert_eq!(node.election.current_leader().unwrap().node_id, "kinopio-a");
}

#[test]
fn failed_start_backs_off_exponentially_and_advertises_ineligible() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    assert_eq!(starts(&node.tick(1000)), vec![1]);
    node.election.handle(node.at(1200), Input::LeafFailed { epoch: 1, reason: "no binary".into() });
    assert!(!node.election.status().eligible);
    let beacon = node.election.heartbeat();
    assert_eq!(beacon.eligible, Some(false));
    assert!(beacon.to_python_json().contains(r#""eligible": false"#));
    // Back-off 2 s: no new start before 3200 ms, a start right then.
    assert!(starts(&node.run(1210, 3190)).is_empty());
    assert_eq!(starts(&node.tick(3200)), vec![1]);
    node.election.handle(node.at(3300), Input::LeafFailed { epoch: 1, reason: "no binary".into() });
    // Second failure: 4 s.
    assert!(starts(&node.run(3310, 7290)).is_empty());
    assert_eq!(starts(&node.tick(7300)), vec![1]);
    // Once eligible again the beacon no longer carries the extension.
    assert_eq!(node.election.heartbeat().eligible, None);
}

#[test]
fn a_candidate_in_backoff_does_not_block_others() {
    let mut node = Node::new("kinopio-z");
    node.tick(0);
    let mut failing = peer("kinopio-a", State::Electing, Role::Candidate, 0);
    failing.eligible = Some(false);
    node.recv(100, failing.clone());
    node.recv(600, failing);
    assert_eq!(starts(&node.tick(1000)), vec![1]);
}

#[test]
fn holds_back_while_any_peer_is_starting_and_aborts_for_a_better_one() {
    let mut node = Node::new("kinopio-b");
    node.tick(0);
    // A worse peer is starting: hold back (it will become leader or give up).
    node.recv(900, peer("kinopio-c", State::StartingLeaf, Role::Candidate, 0));
    assert!(starts(&node.tick(1000)).is_empty());
    // It gives up; we stand.
    let actions = node.recv(1100, peer("kinopio-c", State::Electing, Role::Candidate, 0));
    assert_eq!(starts(&actions), vec![1]);
    // A better-ranked peer is also starting: we abandon ours.
    let actions = node.recv(1150, peer("kinopio-a", State::StartingLeaf, Role::Candidate, 0));
    assert!(actions.contains(&Action::StopLeaf { epoch: 1 }));
    assert_eq!(node.election.state(), State::Electing);
    // Our late LeafStarted for the abandoned epoch is answered with a stop.
    let late = node.election.handle(node.at(1300), Input::LeafStarted { epoch: 1, advert: advert("10.0.0.2") });
    assert!(late.contains(&Action::StopLeaf { epoch: 1 }));
    assert!(!late.iter().any(|a| matches!(a, Action::PublishMdns(_))));
    assert_ne!(node.election.role(), Role::Leader);
}

#[test]
fn a_peer_stuck_starting_stops_holding_others_back() {
    let mut node = Node::with("kinopio-b", |c| c.leaf_start_timeout = ms(5000));
    node.tick(0);
    for t in (100..=5000).step_by(400) {
        node.recv(t, peer("kinopio-a", State::StartingLeaf, Role::Candidate, 0));
        assert!(starts(&node.tick(t + 1)).is_empty());
    }
    // A repeated beacon only refreshes the peer; the decision comes with the next tick
    // (which `poll_timeout` schedules for the start timeout).
    let refreshed = node.recv(5300, peer("kinopio-a", State::StartingLeaf, Role::Candidate, 0));
    assert!(starts(&refreshed).is_empty());
    assert_eq!(starts(&node.tick(5301)), vec![1]);
}

#[test]
fn own_start_times_out_as_a_failure() {
    let mut node = Node::with("kinopio-a", |c| c.leaf_start_timeout = ms(3000));
    node.tick(0);
    assert_eq!(starts(&node.tick(1000)), vec![1]);
    let actions = node.run(1010, 4000);
    assert!(actions.contains(&Action::StopLeaf { epoch: 1 }));
    assert!(!node.election.status().eligible);
}

#[test]
fn does_not_stand_while_peers_still_follow_an_unseen_leader() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    for t in (100..=4000).step_by(400) {
        node.recv(t, peer("kinopio-b", State::FollowingLeader, Role::Follower, 5));
        assert!(starts(&node.tick(t + 1)).is_empty());
    }
    let actions = node.recv(4100, peer("kinopio-b", State::LeaderMissingGrace, Role::Follower, 5));
    assert_eq!(starts(&actions), vec![6]);
}

#[test]
fn preemption_needs_a_continuous_advantage_for_the_window() {
    let mut node = Node::new("kinopio-z");
    node.tick(0);
    node.election.handle(node.at(0), Input::BackboneRtt(Some(10.0)));
    let slow_leader = |epoch| {
        let mut beacon = leader("kinopio-l", epoch);
        beacon.backbone_rtt_ms = Some(100.0);
        beacon
    };
    node.recv(100, slow_leader(1));
    let mut t = 100;
    while t < 2800 {
        t += 200;
        assert!(starts(&node.recv(t, slow_leader(1))).is_empty());
    }
    // The advantage lapses once (our RTT got worse): the window restarts.
    node.election.handle(node.at(3000), Input::BackboneRtt(Some(70.0)));
    node.election.handle(node.at(3001), Input::BackboneRtt(Some(10.0)));
    while t < 5900 {
        t += 200;
        assert!(starts(&node.recv(t, slow_leader(1))).is_empty(), "at {t}");
    }
    let actions = node.run(5901, 6100);
    assert_eq!(starts(&actions), vec![2]);
    // While taking over we still show the incumbent, and finish as leader at epoch 2.
    assert_eq!(node.election.current_leader().unwrap().node_id, "kinopio-l");
    node.election.handle(node.at(6200), Input::LeafStarted { epoch: 2, advert: advert("10.0.0.3") });
    assert_eq!(node.election.leading_epoch(), Some(2));
}

#[test]
fn a_small_advantage_never_preempts() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    node.election.handle(node.at(0), Input::BackboneRtt(Some(60.0)));
    for t in (100..60_000).step_by(300) {
        let mut beacon = leader("kinopio-z", 1);
        beacon.backbone_rtt_ms = Some(100.0);
        assert!(starts(&node.recv(t, beacon)).is_empty());
    }
}

#[test]
fn dead_broker_resigns_and_backs_off() {
    let mut node = Node::with("kinopio-a", |c| c.resign_copies = 2);
    node.tick(0);
    node.tick(1000);
    node.election.handle(node.at(1100), Input::LeafStarted { epoch: 1, advert: advert("10.0.0.2") });
    let actions =
        node.election.handle(node.at(5000), Input::LeafDied { epoch: 1, reason: "nats-server exited".into() });
    let resigns = sent(&actions);
    assert_eq!(resigns.len(), 2);
    assert!(resigns.iter().all(Beacon::is_resign));
    assert!(actions.contains(&Action::StopLeaf { epoch: 1 }));
    assert!(actions.contains(&Action::WithdrawMdns));
    assert_ne!(node.election.role(), Role::Leader);
    assert!(starts(&node.run(5010, 6990)).is_empty(), "backs off");
    assert_eq!(node.election.heartbeat().eligible, Some(false));
    assert_eq!(starts(&node.tick(7000)), vec![2]);
}

#[test]
fn stop_resigns_and_goes_quiet() {
    let mut node = Node::new("kinopio-a");
    node.tick(0);
    node.tick(1000);
    node.election.handle(node.at(1100), Input::LeafStarted { epoch: 1, advert: advert("10.0.0.2") });
    let actions = node.election.handle(node.at(2000), Input::Stop);
    let resigns = sent(&actions);
    assert_eq!(resigns.len(), 3);
    assert!(resigns.iter().all(|b| b.is_resign() && b.candidate_role == "follower"));
    assert!(actions.contains(&Action::StopLeaf { epoch: 1 }));
    assert!(actions.contains(&Action::WithdrawMdns));
    assert_eq!(statuses(&actions)[0].state, State::Stopped);
    assert_eq!(node.election.poll_timeout(), None);
    assert!(node.tick(3000).is_empty());
    // A leaf start that completes after the stop is stopped again.
    let late = node.election.handle(node.at(3100), Input::LeafStarted { epoch: 2, advert: advert("10.0.0.2") });
    assert_eq!(late, vec![Action::StopLeaf { epoch: 2 }]);
}

#[test]
fn ignores_own_and_foreign_beacons_and_caps_peers() {
    let mut node = Node::with("kinopio-a", |c| c.max_peers = 2);
    node.tick(0);
    node.recv(10, leader("kinopio-a", 9));
    let mut foreign = leader("kinopio-x", 9);
    foreign.discovery_namespace = "elsewhere".into();
    node.recv(20, foreign);
    assert_eq!(node.election.peers().count(), 0);
    for id in ["p1", "p2", "p3"] {
        node.recv(30, peer(id, State::Discovering, Role::Candidate, 0));
    }
    assert_eq!(node.election.peers().count(), 2);
    assert_eq!(node.election.dropped_peer_overflow(), 1);
}

#[test]
fn invalid_config_and_node_id_are_refused() {
    let t0 = Instant::now();
    let mut config = ElectionConfig::new(NS);
    config.heartbeat_interval = ms(900);
    assert!(Election::new(config, "a", t0).is_err());
    assert!(Election::new(ElectionConfig::new(NS), "", t0).is_err());
}
