//! `manifests/election-beacon.schema.json` against the beacons the codec really sends (both
//! shapes, resign, back-off, signed) and the 0.1.1 samples of the protocol reference, with a
//! small validator for the keywords the schema uses (`pattern` is not checked).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use kinopio_leaf::election::{BeaconCodec, NamespaceSecret};

use kinopio::wire::beacon::{Beacon, Role, State, field};
use kinopio::wire::manifest::{BridgeState, LeaderAdvert};
use serde_json::{Value, json};

const SCHEMA: &str = include_str!("../../manifests/election-beacon.schema.json");

/// The 0.1.1 samples of the protocol reference (kinopio::wire::protocol, Election beacons).
const PY_CANDIDATE: &str = r#"{"version": 1, "nodeId": "kinopio-c5dfed8d-9037", "leaderEpoch": 0, "advertisedHostname": "127.0.0.1", "wssUrl": null, "fallbackServers": [], "backboneRttMs": null, "discoveryUrl": null, "leaseExpiresAt": "2026-11-22T08:29:03Z", "expiresAt": "2026-11-22T08:29:03Z", "discoveryNamespace": "studio", "isLeader": false, "candidateRole": "candidate", "state": "discovering"}"#;
const PY_LEADER: &str = r#"{"version": 1, "nodeId": "kinopio-f66bf667-15054", "leaderEpoch": 1, "advertisedHostname": "127.0.0.1", "wssUrl": "wss://127.0.0.1:37227", "clientUrl": "nats://127.0.0.1:42339", "monitorUrl": "http://127.0.0.1:42457", "fallbackServers": ["wss://127.0.0.1:37227"], "bridgeState": "disabled", "backboneServers": [], "backboneRttMs": null, "discoveryUrl": "http://127.0.0.1:52407/manifest.json", "leaseExpiresAt": "2026-11-22T08:32:34Z", "expiresAt": "2026-11-22T08:32:34Z", "discoveryNamespace": "clins", "isLeader": true, "candidateRole": "leader", "state": "leader"}"#;

struct Validator {
    root: Value,
}

impl Validator {
    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let Value::Object(schema) = schema else { return Ok(()) };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            let name = reference.strip_prefix("#/$defs/").expect("local $ref");
            self.check(&self.root["$defs"][name], value, at)?;
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for sub in all {
                self.check(sub, value, at)?;
            }
        }
        if let Some(Value::Array(one)) = schema.get("oneOf") {
            let passing = one.iter().filter(|sub| self.check(sub, value, at).is_ok()).count();
            if passing != 1 {
                return Err(format!("{at}: matches {passing} branches of oneOf"));
            }
        }
        if let Some(expected) = schema.get("type") {
            let types: Vec<&str> = match expected {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                _ => panic!("bad type"),
            };
            let ok = types.iter().any(|t| match *t {
                "string" => value.is_string(),
                "number" => value.is_number(),
                "integer" => value.is_u64() || value.is_i64(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                other => panic!("unknown type {other}"),
            });
            if !ok {
                return Err(format!("{at}: {value} is not {types:?}"));
            }
        }
        if let Some(expected) = schema.get("const")
            && value != expected
        {
            return Err(format!("{at}: {value} != {expected}"));
        }
        if let Some(Value::Array(options)) = schema.get("enum")
            && !options.contains(value)
        {
            return Err(format!("{at}: {value} not in {options:?}"));
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v < min)
        {
            return Err(format!("{at}: {value} < {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v > max)
        {
            return Err(format!("{at}: {value} > {max}"));
        }
        if let (Some(min), Some(text)) = (schema.get("minLength").and_then(Value::as_u64), value.as_str())
            && (text.chars().count() as u64) < min
        {
            return Err(format!("{at}: too short"));
        }
        if let (Some(max), Some(items)) = (schema.get("maxItems").and_then(Value::as_u64), value.as_array())
            && items.len() as u64 > max
        {
            return Err(format!("{at}: too many items"));
        }
        if let (Some(item_schema), Some(items)) = (schema.get("items"), value.as_array()) {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
        if let Value::Object(object) = value {
            if let Some(Value::Array(required)) = schema.get("required") {
                for key in required {
                    let key = key.as_str().unwrap();
                    if !object.contains_key(key) {
                        return Err(format!("{at}: missing {key}"));
                    }
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(properties) = properties {
                for (key, sub) in properties {
                    if let Some(field_value) = object.get(key) {
                        self.check(sub, field_value, &format!("{at}.{key}"))?;
                    }
                }
            }
            if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                let known = properties.unwrap();
                if let Some(extra) = object.keys().find(|k| !known.contains_key(*k)) {
                    return Err(format!("{at}: unexpected {extra}"));
                }
            }
        }
        Ok(())
    }

    fn validate(&self, value: &Value) -> Result<(), String> {
        self.check(&self.root, value, "$")
    }
}

fn validator() -> Validator {
    Validator { root: serde_json::from_str(SCHEMA).unwrap() }
}

fn advert() -> LeaderAdvert {
    LeaderAdvert::from_urls(
        "10.77.0.1",
        [
            "wss://10.77.0.1:43001",
            "nats://127.0.0.1:42001",
            "http://127.0.0.1:8222",
            "https://10.77.0.1:44001/.well-known/kinopio-leader.json",
        ],
        BridgeState::Connected,
        vec!["tls://hub.example.com:7422".into()],
    )
    .unwrap()
}

fn wire(codec: &mut BeaconCodec, beacon: &Beacon) -> Value {
    serde_json::from_slice(&codec.encode(beacon, SystemTime::now()).unwrap()).unwrap()
}

#[test]
fn every_beacon_the_codec_sends_matches_the_schema() {
    let validator = validator();
    let mut open = BeaconCodec::open("studio", "x");
    let secret = NamespaceSecret::new("s3cret").unwrap();
    let mut secured = BeaconCodec::secured("studio", "x", &secret);
    let id = "kinopio-1a2b3c4d-77";
    let candidate = Beacon::candidate(id, "studio", 4, "10.77.0.3", Some(1.25), Role::Candidate, State::Discovering);
    let mut backing_off = Beacon::candidate(id, "studio", 4, "", None, Role::Candidate, State::Electing);
    backing_off.eligible = Some(false);
    let resign = Beacon::resign(id, "studio", 5, "", Some(3.5));
    let leader = Beacon::leader(id, "studio", 5, Some(0.42), &advert());
    for beacon in [&candidate, &backing_off, &resign, &leader] {
        for codec in [&mut open, &mut secured] {
            let value = wire(codec, beacon);
            validator.validate(&value).unwrap_or_else(|err| panic!("{err}: {value}"));
        }
    }
    let signed = wire(&mut secured, &leader);
    assert_eq!(signed["auth"]["alg"], "hmac-sha256");
    for sample in [PY_CANDIDATE, PY_LEADER] {
        validator.validate(&serde_json::from_str(sample).unwrap()).unwrap();
    }
}

#[test]
fn malformed_beacons_fail_the_schema() {
    let validator = validator();
    let leader: Value = serde_json::from_str(PY_LEADER).unwrap();
    let mut cases = Vec::new();
    let mut bad_epoch = leader.clone();
    bad_epoch["leaderEpoch"] = json!("abc");
    cases.push(bad_epoch);
    let mut null_epoch = leader.clone();
    null_epoch["leaderEpoch"] = Value::Null;
    cases.push(null_epoch);
    let mut no_urls = leader.clone();
    no_urls.as_object_mut().unwrap().remove("wssUrl");
    cases.push(no_urls);
    let mut half_leader = leader.clone();
    half_leader["isLeader"] = json!(false);
    cases.push(half_leader);
    let mut bad_auth = leader.clone();
    bad_auth["auth"] = json!({"alg": "md5", "ts": 1, "seq": 1, "mac": "00"});
    cases.push(bad_auth);
    let mut negative = serde_json::from_str::<Value>(PY_CANDIDATE).unwrap();
    negative["leaderEpoch"] = json!(-1);
    cases.push(negative);
    for case in cases {
        assert!(validator.validate(&case).is_err(), "accepted {case}");
    }
}

#[test]
fn the_schema_describes_exactly_the_known_fields() {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let mut described: Vec<&str> = Vec::new();
    for def in ["common", "nonLeader", "leader"] {
        described.extend(schema["$defs"][def]["properties"].as_object().unwrap().keys().map(String::as_str));
    }
    for name in field::ALL {
        assert!(described.contains(&name), "schema lacks {name}");
    }
    for name in &described {
        assert!(field::ALL.contains(name), "schema has unknown field {name}");
    }
}
