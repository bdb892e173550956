//! Property tests: decoding any datagram never panics (and what decodes re-encodes to the
//! same beacon), and the election state machine fed arbitrary beacons and leaf events never
//! panics, never stalls, and keeps sending a heartbeat at least every heartbeat interval.

// Test code: helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kinopio_leaf::election::{Action, BeaconCodec, Election, ElectionConfig, Input, NamespaceSecret};

use kinopio::wire::beacon::{Beacon, Role, State, field};
use kinopio::wire::manifest::{BridgeState, LeaderAdvert};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NS: &str = "studio";
const ME: &str = "kinopio-me";

fn wall(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
        Just(json!(9_007_199_254_740_991_u64)),
        Just(json!(9_007_199_254_740_992_u64)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!("nan")),
        Just(json!(" 12.5 ")),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A plausible value for a known beacon field (or, sometimes, anything at all).
fn arb_field(name: &'static str) -> BoxedStrategy<Value> {
    let typed: BoxedStrategy<Value> = match name {
        field::NODE_ID => prop_oneof![
            Just(json!("kinopio-a")),
            Just(json!("kinopio-b")),
            Just(json!("kinopio-c")),
            Just(json!("kinopio-z")),
            Just(json!(ME)),
            Just(json!("")),
        ]
        .boxed(),
        field::DISCOVERY_NAMESPACE => prop_oneof![4 => Just(json!(NS)), 1 => Just(json!("other"))].boxed(),
        field::IS_LEADER | field::ELIGIBLE => any::<bool>().prop_map(Value::Bool).boxed(),
        field::LEADER_EPOCH | field::VERSION => {
            prop_oneof![(0u64..6).prop_map(Value::from), Just(json!(9_007_199_254_740_991_u64)),].boxed()
        }
        field::BACKBONE_RTT_MS => {
            prop_oneof![Just(Value::Null), (0.0f64..500.0).prop_map(Value::from), Just(json!("7.5")),].boxed()
        }
        field::STATE => {
            prop::sample::select(State::ALL.iter().map(|s| s.as_str()).chain(["bogus"]).collect::<Vec<_>>())
                .prop_map(Value::from)
                .boxed()
        }
        field::CANDIDATE_ROLE => {
            prop::sample::select(vec!["candidate", "follower", "leader", "?"]).prop_map(Value::from).boxed()
        }
        field::FALLBACK_SERVERS | field::BACKBONE_SERVERS => {
            prop::collection::vec("[a-z:/.0-9]{0,12}".prop_map(Value::from), 0..3).prop_map(Value::Array).boxed()
        }
        _ => prop_oneof![Just(Value::Null), "[a-z:/.0-9]{0,16}".prop_map(Value::from)].boxed(),
    };
    prop_oneof![6 => typed, 1 => arb_json()].boxed()
}

fn arb_beacon_object() -> impl Strategy<Value = Map<String, Value>> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = field::ALL
        .iter()
        .filter(|name| **name != field::AUTH)
        .map(|name| prop::option::weighted(0.9, arb_field(name).prop_map(|v| (name.to_string(), v))).boxed())
        .collect();
    (fields, prop::collection::btree_map("[a-zA-Z]{1,8}", arb_json(), 0..3)).prop_map(|(known, extra)| {
        let mut map: Map<String, Value> = extra.into_iter().collect();
        map.extend(known.into_iter().flatten());
        map
    })
}

/// Equality that tolerates a last-bit difference in floats after a JSON round trip.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Beacon::from_json_bytes(&bytes);
        let _ = BeaconCodec::open(NS, ME).decode(&bytes, wall(0));
        let secret = NamespaceSecret::new("s").unwrap();
        let _ = BeaconCodec::secured(NS, ME, &secret).decode(&bytes, wall(0));
    }

    #[test]
    fn decoding_arbitrary_json_text_never_panics(value in arb_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = BeaconCodec::open(NS, ME).decode(&bytes, wall(0));
    }

    #[test]
    fn beacon_shaped_objects_decode_or_fail_cleanly_and_round_trip(
        object in arb_beacon_object(),
        with_auth in arb_json(),
        attach_auth in any::<bool>(),
    ) {
        let mut object = object;
        if attach_auth {
            object.insert("auth".into(), with_auth);
        }
        let bytes = serde_json::to_vec(&Value::Object(object)).unwrap();
        let secret = NamespaceSecret::new("s").unwrap();
        let _ = BeaconCodec::secured(NS, ME, &secret).decode(&bytes, wall(0));
        if let Ok(beacon) = BeaconCodec::open(NS, ME).decode(&bytes, wall(0)) {
            prop_assert!(!beacon.node_id.is_empty());
            prop_assert_eq!(beacon.discovery_namespace.as_str(), NS);
            prop_assert_ne!(beacon.node_id.as_str(), ME);
            prop_assert!(beacon.leader_epoch < (1 << 53));
            prop_assert!(beacon.backbone_rtt_ms.is_none_or(|v| !v.is_nan()));
            // What decodes re-encodes (Python-style) to the same beacon.
            let text = beacon.to_python_json();
            prop_assert!(text.is_ascii());
            let again = Beacon::from_json_bytes(text.as_bytes()).unwrap();
            prop_assert!(close(
                &Value::Object(again.to_json_object()),
                &Value::Object(beacon.to_json_object())
            ), "{} vs {:?}", text, beacon);
        }
    }
}

// ----- the state machine under random input --------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Datagram(Map<String, Value>),
    Rtt(Option<f64>),
    LeafStarted(u64),
    LeafFailed(u64),
    LeafDied(u64),
    LeafUpdated(u64),
}

fn arb_op() -> impl Strategy<Value = (u64, Op)> {
    let op = prop_oneof![
        12 => arb_beacon_object().prop_map(Op::Datagram),
        1 => prop::option::of(0.0f64..300.0).prop_map(Op::Rtt),
        1 => (0u64..8).prop_map(Op::LeafStarted),
        1 => (0u64..8).prop_map(Op::LeafFailed),
        1 => (0u64..8).prop_map(Op::LeafDied),
        1 => (0u64..8).prop_map(Op::LeafUpdated),
    ];
    (0u64..1_500, op)
}

fn advert() -> LeaderAdvert {
    LeaderAdvert::from_urls(
        "10.0.0.2",
        [
            "wss://10.0.0.2:4443",
            "nats://127.0.0.1:4222",
            "http://127.0.0.1:8222",
            "https://10.0.0.2:8443/manifest.json",
        ],
        BridgeState::Connected,
        Vec::new(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn election_never_panics_or_stalls_under_random_beacons(
        ops in prop::collection::vec(arb_op(), 1..150),
        short_timers in any::<bool>(),
    ) {
        let mut config = ElectionConfig::new(NS);
        if short_timers {
            config.leader_missing_grace = Duration::from_millis(700);
            config.preemption_window = Duration::from_millis(400);
            config.start_backoff_initial = Duration::from_millis(300);
            config.leaf_start_timeout = Duration::from_millis(900);
        }
        let interval = config.heartbeat_interval;
        let t0 = Instant::now();
        let mut election = Election::new(config, ME, t0).unwrap();
        let mut codec = BeaconCodec::open(NS, ME);
        let mut now = t0;
        let mut last_sent: Option<Instant> = None;

        let mut check = |election: &Election, actions: &[Action], at: Instant| -> Result<(), TestCaseError> {
            for action in actions {
                if let Action::SendBeacon(beacon) = action {
                    if let Some(prev) = last_sent {
                        prop_assert!(at - prev <= interval, "heartbeat gap {:?}", at - prev);
                    }
                    last_sent = Some(at);
                    // Our own beacons always encode (fit a datagram) and decode for a peer.
                    let bytes = codec.encode(beacon, wall(0)).unwrap();
                    let decoded = BeaconCodec::open(NS, "kinopio-peer").decode(&bytes, wall(0));
                    prop_assert!(decoded.is_ok(), "{:?}", decoded);
                }
            }
            let next = election.poll_timeout().unwrap();
            prop_assert!(next > at && next <= at + interval, "poll_timeout {:?}", next - at);
            prop_assert_ne!(election.state(), State::Stopped);
            prop_assert_eq!(election.role() == Role::Leader, election.heartbeat().is_leader);
            prop_assert_eq!(election.role() == Role::Leader, election.state() == State::Leader);
            Ok(())
        };

        let first = election.handle(now, Input::Tick);
        check(&election, &first, now)?;
        for (advance, op) in ops {
            let target = now + Duration::from_millis(advance);
            while let Some(due) = election.poll_timeout().filter(|due| *due <= target) {
                now = due;
                let actions = election.handle(now, Input::Tick);
                check(&election, &actions, now)?;
            }
            now = target;
            let input = match op {
                Op::Datagram(object) => {
                    let bytes = serde_json::to_vec(&Value::Object(object)).unwrap();
                    match BeaconCodec::open(NS, ME).decode(&bytes, wall(0)) {
                        Ok(beacon) => Input::beacon(beacon, now),
                        Err(_) => Input::Tick,
                    }
                }
                Op::Rtt(rtt) => Input::BackboneRtt(rtt),
                Op::LeafStarted(epoch) => Input::LeafStarted { epoch, advert: advert() },
                Op::LeafUpdated(epoch) => Input::LeafUpdated { epoch, advert: advert() },
                Op::LeafFailed(epoch) => Input::LeafFailed { epoch, reason: "fuzz".into() },
                Op::LeafDied(epoch) => Input::LeafDied { epoch, reason: "fuzz".into() },
            };
            let actions = election.handle(now, input);
            check(&election, &actions, now)?;
        }
        // A stop still resigns and then goes quiet.
        let actions = election.handle(now, Input::Stop);
        prop_assert!(actions.iter().any(|a| matches!(a, Action::SendBeacon(b) if b.is_resign())));
        prop_assert!(election.poll_timeout().is_none());
        prop_assert!(election.handle(now + interval * 4, Input::Tick).is_empty());
    }
}
