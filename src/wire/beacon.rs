//! The election beacon wire format shared with kinopio-hub 0.1.1: multicast group and port
//! rule, the two beacon shapes (non-leader and leader) with their exact field names and order,
//! Python-compatible encoding, and robust decoding into a typed [`Beacon`] or a typed
//! [`BeaconError`] (never a panic).
//!
//! Namespace checks, own-beacon filtering and signatures live in
//! `kinopio-leaf`'s `BeaconCodec`; this module only knows the JSON.

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use super::json as wire_json;
use super::manifest::LeaderAdvert;
use std::fmt;
use std::str::FromStr;

/// The IPv4 multicast group every namespace's beacons go to.
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 71, 71);
/// Multicast TTL: beacons never leave the local link.
pub const MULTICAST_TTL: u32 = 1;
/// Lowest beacon port; see [`port_for_namespace`].
pub const PORT_BASE: u16 = 44710;
/// Number of ports namespaces are spread over; see [`port_for_namespace`].
pub const PORT_SPAN: u16 = 1000;
/// The beacon `version` field this implementation writes.
pub const BEACON_VERSION: u64 = 1;
/// Largest datagram [`Beacon`] encoding produces (fits one Ethernet frame).
pub const MAX_BEACON_BYTES: usize = 1400;
/// Largest datagram decoding looks at; anything bigger is dropped unread.
pub const MAX_DATAGRAM_BYTES: usize = 8 * 1024;
/// Largest integer accepted in `leaderEpoch`, `version` and the auth counters: 2^53 - 1, the
/// largest integer every JSON implementation (including JavaScript) represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The UDP port of a namespace: `44710 + crc32(namespace as UTF-8) % 1000` (zlib CRC-32).
///
/// ```
/// use kinopio::wire::beacon::port_for_namespace;
/// assert_eq!(port_for_namespace("studio"), 44716);
/// assert_eq!(port_for_namespace(""), 44710);
/// ```
pub fn port_for_namespace(namespace: &str) -> u16 {
    let hash = crc32fast::hash(namespace.as_bytes()) % u32::from(PORT_SPAN);
    // `hash < 1000`, so the conversion and the addition cannot overflow.
    PORT_BASE + u16::try_from(hash).unwrap_or(0)
}

/// Beacon JSON field names, in wire order.
pub mod field {
    /// `version`
    pub const VERSION: &str = "version";
    /// `nodeId`
    pub const NODE_ID: &str = "nodeId";
    /// `leaderEpoch`
    pub const LEADER_EPOCH: &str = "leaderEpoch";
    /// `advertisedHostname`
    pub const ADVERTISED_HOSTNAME: &str = "advertisedHostname";
    /// `wssUrl`
    pub const WSS_URL: &str = "wssUrl";
    /// `clientUrl` (leader shape only)
    pub const CLIENT_URL: &str = "clientUrl";
    /// `monitorUrl` (leader shape only)
    pub const MONITOR_URL: &str = "monitorUrl";
    /// `fallbackServers`
    pub const FALLBACK_SERVERS: &str = "fallbackServers";
    /// `bridgeState` (leader shape only)
    pub const BRIDGE_STATE: &str = "bridgeState";
    /// `backboneServers` (leader shape only)
    pub const BACKBONE_SERVERS: &str = "backboneServers";
    /// `backboneRttMs`
    pub const BACKBONE_RTT_MS: &str = "backboneRttMs";
    /// `discoveryUrl`
    pub const DISCOVERY_URL: &str = "discoveryUrl";
    /// `leaseExpiresAt`
    pub const LEASE_EXPIRES_AT: &str = "leaseExpiresAt";
    /// `expiresAt`
    pub const EXPIRES_AT: &str = "expiresAt";
    /// `discoveryNamespace`
    pub const DISCOVERY_NAMESPACE: &str = "discoveryNamespace";
    /// `isLeader`
    pub const IS_LEADER: &str = "isLeader";
    /// `candidateRole`
    pub const CANDIDATE_ROLE: &str = "candidateRole";
    /// `state`
    pub const STATE: &str = "state";
    /// `eligible`: kinopio extension, written only as `false` while a node backs off.
    pub const ELIGIBLE: &str = "eligible";
    /// `auth`: kinopio extension, the signature in secured namespaces.
    pub const AUTH: &str = "auth";

    /// Every field the election knows, in wire order.
    pub const ALL: [&str; 20] = [
        VERSION,
        NODE_ID,
        LEADER_EPOCH,
        ADVERTISED_HOSTNAME,
        WSS_URL,
        CLIENT_URL,
        MONITOR_URL,
        FALLBACK_SERVERS,
        BRIDGE_STATE,
        BACKBONE_SERVERS,
        BACKBONE_RTT_MS,
        DISCOVERY_URL,
        LEASE_EXPIRES_AT,
        EXPIRES_AT,
        DISCOVERY_NAMESPACE,
        IS_LEADER,
        CANDIDATE_ROLE,
        STATE,
        ELIGIBLE,
        AUTH,
    ];
}

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

/// One election heartbeat, in either of the two 0.1.1 shapes.
///
/// The non-leader shape has `wssUrl: null`, `fallbackServers: []`, `discoveryUrl: null` and no
/// `clientUrl`/`monitorUrl`/`bridgeState`/`backboneServers`; the leader shape carries the
/// leaf's URLs and is the same object served as the discovery manifest. Fields written only
/// when present (`Some`) are marked so below; all others are always written, in wire order.
/// Unknown fields of received beacons are kept in [`extra`](Self::extra) and written back
/// after the known ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    /// `version` (1). Missing on the wire reads as 1.
    pub version: u64,
    /// `nodeId`, never empty.
    pub node_id: String,
    /// `leaderEpoch`: the highest epoch the sender has seen or held (missing reads as 0).
    pub leader_epoch: u64,
    /// `advertisedHostname` (`""` when unset).
    pub advertised_hostname: String,
    /// `wssUrl`: the leaf's WSS URL (leaders), `null` otherwise.
    pub wss_url: Option<String>,
    /// `clientUrl` (written only when `Some`).
    pub client_url: Option<String>,
    /// `monitorUrl` (written only when `Some`).
    pub monitor_url: Option<String>,
    /// `fallbackServers`.
    pub fallback_servers: Vec<String>,
    /// `bridgeState` (written only when `Some`).
    pub bridge_state: Option<String>,
    /// `backboneServers` (written only when `Some`).
    pub backbone_servers: Option<Vec<String>>,
    /// `backboneRttMs`, coerced like Python's `float()` (invalid values read as `None`).
    pub backbone_rtt_ms: Option<f64>,
    /// `discoveryUrl`: the leader's manifest URL, `null` otherwise.
    pub discovery_url: Option<String>,
    /// `leaseExpiresAt` (`YYYY-MM-DDTHH:MM:SSZ`); the leaf's `BeaconCodec::encode` stamps it.
    ///
    pub lease_expires_at: String,
    /// `expiresAt`, same value as `leaseExpiresAt`.
    pub expires_at: String,
    /// `discoveryNamespace`.
    pub discovery_namespace: String,
    /// `isLeader`: only JSON `true` makes a leader (missing reads as `false`).
    pub is_leader: bool,
    /// `candidateRole` (`candidate`, `follower` or `leader`; kept verbatim).
    pub candidate_role: String,
    /// `state` (see [`State`]; kept verbatim).
    pub state: String,
    /// `eligible` (kinopio extension, written only when `Some`): `Some(false)` while the sender
    /// backs off and must not be counted as a candidate. 0.1.1 peers ignore it.
    pub eligible: Option<bool>,
    /// Unknown fields, kept and written back after the known ones (`auth` is never kept).
    pub extra: Map<String, Value>,
}

impl Beacon {
    /// A non-leader heartbeat (shape (a) of the reference). Lease fields are left empty for
    /// the leaf's `BeaconCodec::encode` to stamp.
    pub fn candidate(
        node_id: &str,
        namespace: &str,
        leader_epoch: u64,
        advertised_hostname: &str,
        backbone_rtt_ms: Option<f64>,
        role: Role,
        state: State,
    ) -> Beacon {
        Beacon {
            version: BEACON_VERSION,
            node_id: node_id.to_owned(),
            leader_epoch,
            advertised_hostname: advertised_hostname.to_owned(),
            wss_url: None,
            client_url: None,
            monitor_url: None,
            fallback_servers: Vec::new(),
            bridge_state: None,
            backbone_servers: None,
            backbone_rtt_ms,
            discovery_url: None,
            lease_expires_at: String::new(),
            expires_at: String::new(),
            discovery_namespace: namespace.to_owned(),
            is_leader: false,
            candidate_role: role.as_str().to_owned(),
            state: state.as_str().to_owned(),
            eligible: None,
            extra: Map::new(),
        }
    }

    /// A resign beacon: the non-leader shape with state `stopped` and role `follower`. 0.1.1
    /// peers simply stop seeing a leader; kinopio peers elect at once.
    pub fn resign(
        node_id: &str,
        namespace: &str,
        leader_epoch: u64,
        advertised_hostname: &str,
        backbone_rtt_ms: Option<f64>,
    ) -> Beacon {
        Beacon::candidate(
            node_id,
            namespace,
            leader_epoch,
            advertised_hostname,
            backbone_rtt_ms,
            Role::Follower,
            State::Stopped,
        )
    }

    /// A leader heartbeat (shape (b) of the reference), built from the running leaf's
    /// advertisement. `fallbackServers` is `[wssUrl]`.
    pub fn leader(
        node_id: &str,
        namespace: &str,
        leader_epoch: u64,
        backbone_rtt_ms: Option<f64>,
        leaf: &LeaderAdvert,
    ) -> Beacon {
        let urls = &leaf.listeners;
        Beacon {
            version: BEACON_VERSION,
            node_id: node_id.to_owned(),
            leader_epoch,
            advertised_hostname: urls.advertised_hostname.clone(),
            wss_url: Some(urls.wss_url.as_str().to_owned()),
            client_url: Some(urls.client_url.as_str().to_owned()),
            monitor_url: Some(urls.monitor_url.as_str().to_owned()),
            fallback_servers: vec![urls.wss_url.as_str().to_owned()],
            bridge_state: Some(leaf.bridge_state.as_str().to_owned()),
            backbone_servers: Some(leaf.backbone_servers.clone()),
            backbone_rtt_ms,
            discovery_url: Some(urls.discovery_url.as_str().to_owned()),
            lease_expires_at: String::new(),
            expires_at: String::new(),
            discovery_namespace: namespace.to_owned(),
            is_leader: true,
            candidate_role: Role::Leader.as_str().to_owned(),
            state: State::Leader.as_str().to_owned(),
            eligible: None,
            extra: Map::new(),
        }
    }

    /// The sender's state, if it is one of the known strings.
    pub fn state(&self) -> Option<State> {
        self.state.parse().ok()
    }

    /// The sender's role, if it is one of the known strings.
    pub fn role(&self) -> Option<Role> {
        self.candidate_role.parse().ok()
    }

    /// `true` for a resign beacon: not a leader and state `stopped`.
    pub fn is_resign(&self) -> bool {
        !self.is_leader && self.state == State::Stopped.as_str()
    }

    /// `true` when the sender may be counted as a candidate: not stopped and not backing off.
    pub fn is_eligible(&self) -> bool {
        self.eligible != Some(false) && self.state != State::Stopped.as_str()
    }

    /// The fields in wire order (known fields, then `extra`), as JSON values.
    pub fn to_entries(&self) -> Vec<(String, Value)> {
        fn text(value: &Option<String>) -> Value {
            value.clone().map_or(Value::Null, Value::String)
        }
        fn list(values: &[String]) -> Value {
            Value::Array(values.iter().cloned().map(Value::String).collect())
        }
        let rtt = self
            .backbone_rtt_ms
            .filter(|v| v.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number);
        let mut entries: Vec<(&str, Value)> = vec![
            (field::VERSION, Value::from(self.version)),
            (field::NODE_ID, Value::from(self.node_id.clone())),
            (field::LEADER_EPOCH, Value::from(self.leader_epoch)),
            (field::ADVERTISED_HOSTNAME, Value::from(self.advertised_hostname.clone())),
            (field::WSS_URL, text(&self.wss_url)),
        ];
        if self.client_url.is_some() {
            entries.push((field::CLIENT_URL, text(&self.client_url)));
        }
        if self.monitor_url.is_some() {
            entries.push((field::MONITOR_URL, text(&self.monitor_url)));
        }
        entries.push((field::FALLBACK_SERVERS, list(&self.fallback_servers)));
        if self.bridge_state.is_some() {
            entries.push((field::BRIDGE_STATE, text(&self.bridge_state)));
        }
        if let Some(servers) = &self.backbone_servers {
            entries.push((field::BACKBONE_SERVERS, list(servers)));
        }
        entries.extend([
            (field::BACKBONE_RTT_MS, rtt),
            (field::DISCOVERY_URL, text(&self.discovery_url)),
            (field::LEASE_EXPIRES_AT, Value::from(self.lease_expires_at.clone())),
            (field::EXPIRES_AT, Value::from(self.expires_at.clone())),
            (field::DISCOVERY_NAMESPACE, Value::from(self.discovery_namespace.clone())),
            (field::IS_LEADER, Value::from(self.is_leader)),
            (field::CANDIDATE_ROLE, Value::from(self.candidate_role.clone())),
            (field::STATE, Value::from(self.state.clone())),
        ]);
        if let Some(eligible) = self.eligible {
            entries.push((field::ELIGIBLE, Value::from(eligible)));
        }
        let mut out: Vec<(String, Value)> = entries.into_iter().map(|(key, value)| (key.to_owned(), value)).collect();
        out.extend(
            self.extra
                .iter()
                .filter(|(key, _)| !field::ALL.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        out
    }

    /// The beacon as a JSON object (key order is that of `serde_json::Map`, not the wire).
    pub fn to_json_object(&self) -> Map<String, Value> {
        self.to_entries().into_iter().collect()
    }

    /// The beacon as Python's `json.dumps` would write it (wire order, `", "`/`": "`
    /// separators, ASCII escaping), without any `auth` field. This is exactly what a
    /// 0.1.1 node sends for the same content.
    pub fn to_python_json(&self) -> String {
        wire_json::python_object(&self.to_entries())
    }

    /// Parses one datagram's JSON object, checking its size, encoding and field types only
    /// (no namespace, own-id or signature checks; see the leaf's `BeaconCodec::decode`). An `auth`
    /// field is ignored.
    ///
    pub fn from_json_bytes(datagram: &[u8]) -> Result<Beacon, BeaconError> {
        Beacon::from_json_object(parse_object(datagram)?)
    }

    /// Builds a beacon from a parsed JSON object (see [`from_json_bytes`](Self::from_json_bytes)).
    pub fn from_json_object(mut map: Map<String, Value>) -> Result<Beacon, BeaconError> {
        map.remove(field::AUTH);
        let node_id = match map.remove(field::NODE_ID) {
            None | Some(Value::Null) => return Err(BeaconError::MissingField(field::NODE_ID)),
            Some(Value::String(id)) if id.is_empty() => {
                return Err(BeaconError::MissingField(field::NODE_ID));
            }
            Some(Value::String(id)) => id,
            Some(other) => return Err(wrong_type(field::NODE_ID, "a string", &other)),
        };
        let discovery_namespace = match map.remove(field::DISCOVERY_NAMESPACE) {
            None => return Err(BeaconError::MissingField(field::DISCOVERY_NAMESPACE)),
            Some(Value::String(ns)) => ns,
            Some(other) => return Err(wrong_type(field::DISCOVERY_NAMESPACE, "a string", &other)),
        };
        let beacon = Beacon {
            version: take_integer(&mut map, field::VERSION, BEACON_VERSION)?,
            leader_epoch: take_integer(&mut map, field::LEADER_EPOCH, 0)?,
            advertised_hostname: take_string(&mut map, field::ADVERTISED_HOSTNAME)?,
            wss_url: take_opt_string(&mut map, field::WSS_URL)?,
            client_url: take_opt_string(&mut map, field::CLIENT_URL)?,
            monitor_url: take_opt_string(&mut map, field::MONITOR_URL)?,
            fallback_servers: take_opt_strings(&mut map, field::FALLBACK_SERVERS)?.unwrap_or_default(),
            bridge_state: take_opt_string(&mut map, field::BRIDGE_STATE)?,
            backbone_servers: take_opt_strings(&mut map, field::BACKBONE_SERVERS)?,
            backbone_rtt_ms: map.remove(field::BACKBONE_RTT_MS).and_then(|value| wire_json::python_float(&value)),
            discovery_url: take_opt_string(&mut map, field::DISCOVERY_URL)?,
            lease_expires_at: take_string(&mut map, field::LEASE_EXPIRES_AT)?,
            expires_at: take_string(&mut map, field::EXPIRES_AT)?,
            is_leader: match map.remove(field::IS_LEADER) {
                None => false,
                Some(Value::Bool(flag)) => flag,
                Some(other) => return Err(wrong_type(field::IS_LEADER, "a boolean", &other)),
            },
            candidate_role: take_string(&mut map, field::CANDIDATE_ROLE)?,
            state: take_string(&mut map, field::STATE)?,
            eligible: match map.remove(field::ELIGIBLE) {
                None => None,
                Some(Value::Bool(flag)) => Some(flag),
                Some(other) => return Err(wrong_type(field::ELIGIBLE, "a boolean", &other)),
            },
            node_id,
            discovery_namespace,
            extra: map,
        };
        Ok(beacon)
    }
}

/// Checks size and encoding and parses a datagram into a JSON object.
pub fn parse_object(datagram: &[u8]) -> Result<Map<String, Value>, BeaconError> {
    if datagram.len() > MAX_DATAGRAM_BYTES {
        return Err(BeaconError::TooLarge { len: datagram.len(), max: MAX_DATAGRAM_BYTES });
    }
    let text = std::str::from_utf8(datagram).map_err(|err| BeaconError::NotUtf8 { valid_up_to: err.valid_up_to() })?;
    let value: Value = serde_json::from_str(text).map_err(|err| BeaconError::NotJson { reason: err.to_string() })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(BeaconError::NotObject { found: wire_json::type_name(&other) }),
    }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value) -> BeaconError {
    BeaconError::WrongType { field, expected, found: wire_json::type_name(found) }
}

/// Reads a JSON integer in `0..=MAX_SAFE_INTEGER` (integer tokens only, as Python sends).
pub fn integer_value(field: &'static str, value: &Value) -> Result<u64, BeaconError> {
    let Value::Number(number) = value else {
        return Err(wrong_type(field, "an integer", value));
    };
    match number.as_u64() {
        Some(n) if n <= MAX_SAFE_INTEGER => Ok(n),
        _ => Err(BeaconError::InvalidInteger { field, value: number.to_string() }),
    }
}

fn take_integer(map: &mut Map<String, Value>, field: &'static str, default: u64) -> Result<u64, BeaconError> {
    match map.remove(field) {
        None => Ok(default),
        Some(value) => integer_value(field, &value),
    }
}

fn take_string(map: &mut Map<String, Value>, field: &'static str) -> Result<String, BeaconError> {
    match map.remove(field) {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(wrong_type(field, "a string", &other)),
    }
}

fn take_opt_string(map: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, BeaconError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_type(field, "a string or null", &other)),
    }
}

fn take_opt_strings(map: &mut Map<String, Value>, field: &'static str) -> Result<Option<Vec<String>>, BeaconError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                other => Err(wrong_type(field, "an array of strings", &other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(wrong_type(field, "an array of strings", &other)),
    }
}

/// Why a received datagram was dropped. Every variant maps to a [`BeaconErrorKind`] so the
/// I/O shell can keep drop counters ([`DropCounts`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(BeaconErrorKind),
    doc = "The kind of a [`BeaconError`] (one per variant, derived), for drop counters.",
    derive(Hash, strum::IntoStaticStr, strum::VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum BeaconError {
    /// The datagram is larger than [`MAX_DATAGRAM_BYTES`].
    #[error(
        "beacon datagram of {len} bytes is larger than the {max}-byte limit; dropped unread \
         (beacons are single small JSON objects)"
    )]
    TooLarge {
        /// Datagram length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The datagram is not UTF-8.
    #[error("beacon datagram is not valid UTF-8 (bad byte at offset {valid_up_to}); dropped")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The datagram is not JSON.
    #[error("beacon datagram is not JSON ({reason}); dropped")]
    NotJson {
        /// The parser's message.
        reason: String,
    },
    /// The JSON is not an object.
    #[error("beacon JSON is {found}, not an object; dropped")]
    NotObject {
        /// What it was.
        found: &'static str,
    },
    /// A required field (`nodeId`, `discoveryNamespace`) is missing, null or empty.
    #[error("beacon has no usable `{0}` field; dropped (every beacon must name its sender and namespace)")]
    MissingField(&'static str),
    /// A known field has the wrong JSON type.
    #[error("beacon field `{field}` is {found}, expected {expected}; dropped")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The expected type.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// An integer field (`leaderEpoch`, `version`, auth counters) is negative, fractional or
    /// larger than 2^53 - 1.
    #[error("beacon field `{field}` is {value}, expected a whole number from 0 to 2^53-1; dropped")]
    InvalidInteger {
        /// The field.
        field: &'static str,
        /// The number as received.
        value: String,
    },
    /// The beacon belongs to another namespace that shares the port.
    #[error("beacon is for namespace {found:?}, not ours; dropped")]
    ForeignNamespace {
        /// The other namespace (truncated to 64 characters).
        found: String,
    },
    /// Our own beacon came back (multicast loopback).
    #[error("beacon carries our own node id (multicast loopback); dropped")]
    OwnBeacon,
    /// A secured namespace received a beacon without `auth`.
    #[error(
        "unsigned beacon in a secured namespace; dropped (give that node the same namespace \
         secret, or it is a stranger)"
    )]
    Unsigned,
    /// The `auth` field is malformed or uses an unknown algorithm.
    #[error("beacon `auth` field is unusable ({reason}); dropped")]
    MalformedAuth {
        /// What is wrong with it.
        reason: String,
    },
    /// The MAC does not verify.
    #[error(
        "beacon signature does not verify; dropped (forged, altered, or signed with a \
         different namespace secret)"
    )]
    Forged,
    /// The signed timestamp is outside the accepted window.
    #[error(
        "signed beacon timestamp is {skew_ms} ms away from our clock, more than the {window_ms} \
         ms window; dropped (replayed, or the clocks disagree: check NTP)"
    )]
    Stale {
        /// Sender timestamp minus our clock, in ms.
        skew_ms: i64,
        /// The accepted window.
        window_ms: u64,
    },
    /// The signed sequence number is not newer than the last accepted one from that node.
    #[error("signed beacon seq {seq} from {node_id} is not newer than {last}; replay dropped")]
    Replayed {
        /// The sender.
        node_id: String,
        /// The sequence number received.
        seq: u64,
        /// The last sequence number accepted from that sender.
        last: u64,
    },
    /// A new node id from a source address that has already introduced too many lately (a
    /// flood of fake candidates).
    #[error("beacon from {source_addr} introduces another new node id {node_id}; over the per-source limit, dropped")]
    RateLimited {
        /// The sending address.
        source_addr: String,
        /// The new node id.
        node_id: String,
    },
}

impl BeaconErrorKind {
    /// A short snake_case name for logs and `--json` output (`too_large`, `forged`, ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn index(self) -> usize {
        use strum::VariantArray;
        BeaconErrorKind::VARIANTS.iter().position(|kind| *kind == self).unwrap_or(0)
    }
}

impl BeaconError {
    /// The error's kind.
    pub fn kind(&self) -> BeaconErrorKind {
        BeaconErrorKind::from(self)
    }

    /// `true` for drops that are normal operation rather than bad input: our own looped-back
    /// beacons and other namespaces sharing the port.
    pub fn is_benign(&self) -> bool {
        matches!(self.kind(), BeaconErrorKind::OwnBeacon | BeaconErrorKind::ForeignNamespace)
    }
}

/// Counts dropped datagrams per [`BeaconErrorKind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts {
    counts: [u64; <BeaconErrorKind as strum::VariantArray>::VARIANTS.len()],
}

impl DropCounts {
    /// Counts one drop.
    pub fn record(&mut self, error: &BeaconError) {
        let slot = &mut self.counts[error.kind().index()];
        *slot = slot.saturating_add(1);
    }

    /// Drops of one kind so far.
    pub fn get(&self, kind: BeaconErrorKind) -> u64 {
        self.counts[kind.index()]
    }

    /// All drops so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// Non-zero counters, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (BeaconErrorKind, u64)> + '_ {
        <BeaconErrorKind as strum::VariantArray>::VARIANTS
            .iter()
            .map(|kind| (*kind, self.get(*kind)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::manifest::{BridgeState, ListenerUrls, ManifestUrl};

    fn test_advert(host: &str, [wss, client, monitor, discovery]: [&str; 4], bridge: BridgeState) -> LeaderAdvert {
        let url = |u: &str| ManifestUrl::parse(u).unwrap();
        LeaderAdvert {
            listeners: ListenerUrls {
                advertised_hostname: host.into(),
                wss_url: url(wss),
                client_url: url(client),
                monitor_url: url(monitor),
                discovery_url: url(discovery),
            },
            bridge_state: bridge,
            backbone_servers: Vec::new(),
        }
    }
    use serde_json::json;

    /// The observed 0.1.1 non-leader beacon from the protocol notes (Election beacons, shape (a)).
    const PY_CANDIDATE: &str = r#"{"version": 1, "nodeId": "kinopio-c5dfed8d-9037", "leaderEpoch": 0, "advertisedHostname": "127.0.0.1", "wssUrl": null, "fallbackServers": [], "backboneRttMs": null, "discoveryUrl": null, "leaseExpiresAt": "2026-11-22T08:29:03Z", "expiresAt": "2026-11-22T08:29:03Z", "discoveryNamespace": "studio", "isLeader": false, "candidateRole": "candidate", "state": "discovering"}"#;
    /// The observed 0.1.1 leader beacon from the protocol notes (Election beacons, shape (b)).
    const PY_LEADER: &str = r#"{"version": 1, "nodeId": "kinopio-f66bf667-15054", "leaderEpoch": 1, "advertisedHostname": "127.0.0.1", "wssUrl": "wss://127.0.0.1:37227", "clientUrl": "nats://127.0.0.1:42339", "monitorUrl": "http://127.0.0.1:42457", "fallbackServers": ["wss://127.0.0.1:37227"], "bridgeState": "disabled", "backboneServers": [], "backboneRttMs": null, "discoveryUrl": "http://127.0.0.1:52407/manifest.json", "leaseExpiresAt": "2026-11-22T08:32:34Z", "expiresAt": "2026-11-22T08:32:34Z", "discoveryNamespace": "clins", "isLeader": true, "candidateRole": "leader", "state": "leader"}"#;

    #[test]
    fn ports_match_the_reference_examples() {
        assert_eq!(port_for_namespace("studio"), 44716);
        assert_eq!(port_for_namespace("studio-a"), 44814);
        assert_eq!(port_for_namespace("demo-room"), 44831);
        assert_eq!(port_for_namespace("default"), 45349);
        assert_eq!(port_for_namespace(""), 44710);
        assert_eq!(crc32fast::hash(b"studio"), 0x4a2b07b6);
        assert_eq!(MULTICAST_GROUP.to_string(), "239.255.71.71");
    }

    #[test]
    fn python_beacons_round_trip_byte_for_byte() {
        for text in [PY_CANDIDATE, PY_LEADER] {
            let beacon = Beacon::from_json_bytes(text.as_bytes()).unwrap();
            assert_eq!(beacon.to_python_json(), text);
        }
        let leader = Beacon::from_json_bytes(PY_LEADER.as_bytes()).unwrap();
        assert!(leader.is_leader);
        assert_eq!(leader.leader_epoch, 1);
        assert_eq!(leader.wss_url.as_deref(), Some("wss://127.0.0.1:37227"));
        assert_eq!(leader.bridge_state.as_deref(), Some("disabled"));
        assert_eq!(leader.state(), Some(State::Leader));
        let candidate = Beacon::from_json_bytes(PY_CANDIDATE.as_bytes()).unwrap();
        assert_eq!(candidate.role(), Some(Role::Candidate));
        assert_eq!(candidate.state(), Some(State::Discovering));
        assert!(candidate.is_eligible());
    }

    #[test]
    fn built_shapes_have_the_reference_field_order() {
        let mut beacon = Beacon::candidate(
            "kinopio-c5dfed8d-9037",
            "studio",
            0,
            "127.0.0.1",
            None,
            Role::Candidate,
            State::Discovering,
        );
        beacon.lease_expires_at = "2026-11-22T08:29:03Z".into();
        beacon.expires_at = "2026-11-22T08:29:03Z".into();
        assert_eq!(beacon.to_python_json(), PY_CANDIDATE);

        let leaf = test_advert(
            "127.0.0.1",
            [
                "wss://127.0.0.1:37227",
                "nats://127.0.0.1:42339",
                "http://127.0.0.1:42457",
                "http://127.0.0.1:52407/manifest.json",
            ],
            BridgeState::Disabled,
        );
        let mut leader = Beacon::leader("kinopio-f66bf667-15054", "clins", 1, None, &leaf);
        leader.lease_expires_at = "2026-11-22T08:32:34Z".into();
        leader.expires_at = "2026-11-22T08:32:34Z".into();
        assert_eq!(leader.to_python_json(), PY_LEADER);
    }

    #[test]
    fn unknown_fields_are_kept_and_written_last() {
        let mut value: Value = serde_json::from_str(PY_CANDIDATE).unwrap();
        value["zeta"] = json!({"nested": [1, 2]});
        value["auth"] = json!({"alg": "hmac-sha256"});
        let beacon = Beacon::from_json_bytes(value.to_string().as_bytes()).unwrap();
        assert_eq!(beacon.extra.get("zeta"), Some(&json!({"nested": [1, 2]})));
        assert!(!beacon.extra.contains_key("auth"));
        assert!(beacon.to_python_json().ends_with(r#""state": "discovering", "zeta": {"nested": [1, 2]}}"#));
    }

    #[test]
    fn rtt_is_coerced_like_python_float() {
        let with_rtt = |rtt: Value| {
            let mut value: Value = serde_json::from_str(PY_CANDIDATE).unwrap();
            value["backboneRttMs"] = rtt;
            Beacon::from_json_bytes(value.to_string().as_bytes()).unwrap().backbone_rtt_ms
        };
        assert_eq!(with_rtt(json!(5.177308999975594)), Some(5.177308999975594));
        assert_eq!(with_rtt(json!("12.5")), Some(12.5));
        assert_eq!(with_rtt(json!(true)), Some(1.0));
        assert_eq!(with_rtt(json!("fast")), None);
        assert_eq!(with_rtt(json!([1])), None);
        assert_eq!(with_rtt(json!(null)), None);
    }

    fn decode_with(key: &str, value: Value) -> Result<Beacon, BeaconError> {
        let mut object: Value = serde_json::from_str(PY_LEADER).unwrap();
        object[key] = value;
        Beacon::from_json_bytes(object.to_string().as_bytes())
    }

    #[test]
    fn bad_datagrams_give_typed_errors() {
        let kind = |bytes: &[u8]| Beacon::from_json_bytes(bytes).unwrap_err().kind();
        assert_eq!(kind(&[0xff, 0xfe]), BeaconErrorKind::NotUtf8);
        assert_eq!(kind(b"{not json"), BeaconErrorKind::NotJson);
        assert_eq!(kind(b"[1,2]"), BeaconErrorKind::NotObject);
        assert_eq!(kind(b"{}"), BeaconErrorKind::MissingField);
        assert_eq!(kind(&vec![b' '; MAX_DATAGRAM_BYTES + 1]), BeaconErrorKind::TooLarge);
        let epoch = |v: Value| decode_with("leaderEpoch", v).map_err(|e| e.kind());
        assert_eq!(epoch(json!(null)), Err(BeaconErrorKind::WrongType));
        assert_eq!(epoch(json!("abc")), Err(BeaconErrorKind::WrongType));
        assert_eq!(epoch(json!(-1)), Err(BeaconErrorKind::InvalidInteger));
        assert_eq!(epoch(json!(1.5)), Err(BeaconErrorKind::InvalidInteger));
        assert_eq!(epoch(json!(1e300)), Err(BeaconErrorKind::InvalidInteger));
        assert_eq!(epoch(json!(MAX_SAFE_INTEGER + 1)), Err(BeaconErrorKind::InvalidInteger));
        assert_eq!(epoch(json!(MAX_SAFE_INTEGER)).map(|b| b.leader_epoch), Ok(MAX_SAFE_INTEGER));
        assert_eq!(decode_with("nodeId", json!("")).unwrap_err(), BeaconError::MissingField("nodeId"));
        assert_eq!(decode_with("nodeId", json!(7)).unwrap_err().kind(), BeaconErrorKind::WrongType);
        assert_eq!(decode_with("isLeader", json!("true")).unwrap_err().kind(), BeaconErrorKind::WrongType);
        assert_eq!(decode_with("fallbackServers", json!([1])).unwrap_err().kind(), BeaconErrorKind::WrongType);
        assert!(decode_with("wssUrl", json!(null)).is_ok());
    }

    #[test]
    fn drop_counts_count_by_kind() {
        let mut counts = DropCounts::default();
        counts.record(&BeaconError::Forged);
        counts.record(&BeaconError::Forged);
        counts.record(&BeaconError::OwnBeacon);
        assert_eq!(counts.get(BeaconErrorKind::Forged), 2);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.iter().count(), 2);
        assert!(BeaconError::OwnBeacon.is_benign());
    }

    #[test]
    fn the_leader_beacon_and_the_manifest_of_one_advert_agree_on_every_shared_field() {
        use crate::wire::manifest::{LeaderManifest, ManifestInputs, ManifestMode};
        let mut advert = test_advert(
            "10.0.0.2",
            ["wss://10.0.0.2:4443", "nats://127.0.0.1:4222", "http://127.0.0.1:8222", "https://10.0.0.2:8443/m.json"],
            BridgeState::Connected,
        );
        advert.backbone_servers = vec!["tls://hub.example:7422".into()];
        let inputs = ManifestInputs {
            node_id: "n1".into(),
            advert: advert.clone(),
            leader_epoch: 4,
            backbone_rtt_ms: Some(2.5),
            mode: ManifestMode::Auto { discovery_namespace: "ns".into() },
            ca_cert_sha256: None,
        };
        let manifest =
            LeaderManifest::build(&inputs, time::OffsetDateTime::now_utc(), std::time::Duration::from_secs(2));
        let manifest: Map<String, Value> = serde_json::from_slice(&manifest.to_json_bytes()).unwrap();
        let beacon = Beacon::leader("n1", "ns", 4, Some(2.5), &advert).to_json_object();
        for key in [
            field::NODE_ID,
            field::LEADER_EPOCH,
            field::ADVERTISED_HOSTNAME,
            field::WSS_URL,
            field::CLIENT_URL,
            field::MONITOR_URL,
            field::DISCOVERY_URL,
            field::FALLBACK_SERVERS,
            field::BRIDGE_STATE,
            field::BACKBONE_SERVERS,
            field::BACKBONE_RTT_MS,
            field::DISCOVERY_NAMESPACE,
            field::IS_LEADER,
            field::CANDIDATE_ROLE,
            field::STATE,
        ] {
            assert_eq!(manifest.get(key), beacon.get(key), "{key}");
            assert!(beacon.get(key).is_some(), "{key}");
        }
    }
}
