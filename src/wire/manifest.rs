//! The discovery manifest (version 1): the JSON object a leader serves over HTTPS and sends as
//! its heartbeat, with a pure builder and a validating parser.
//!
//! The field names and their order are the wire contract of kinopio-hub 0.1.1 ([protocol notes](crate::wire::protocol#discovery-manifest) and the
//! leader beacon shape, [Election beacons](crate::wire::protocol#election-beacons)). Timestamps are UTC
//! `YYYY-MM-DDTHH:MM:SSZ` with whole seconds. Fields of our own (`caCertSha256`) are optional
//! and ignored by 0.1.1 readers; unknown fields sent by others are ignored here.
//!
//! The client parses manifests when it looks for a local leader; `kinopio-leaf` builds and
//! serves them (it re-exports this module).
//!
//! ```
//! use kinopio::wire::manifest::LeaderManifest;
//! use time::macros::datetime;
//!
//! let body = br#"{"version": 1, "nodeId": "n1", "advertisedHostname": "127.0.0.1",
//!   "wssUrl": "wss://127.0.0.1:35277", "clientUrl": "nats://127.0.0.1:52627",
//!   "monitorUrl": "http://127.0.0.1:37311", "discoveryUrl": "http://127.0.0.1:47069/manifest.json",
//!   "fallbackServers": ["wss://127.0.0.1:35277"], "backboneRttMs": null, "backboneServers": [],
//!   "bridgeState": "disabled", "leaderEpoch": 0, "expiresAt": "2026-11-22T08:28:37Z",
//!   "leaseExpiresAt": "2026-11-22T08:28:37Z", "isLeader": true, "candidateRole": "leader"}"#;
//! let manifest = LeaderManifest::parse(body, datetime!(2026-11-22 08:28:33 UTC)).unwrap();
//! assert_eq!(manifest.wss_url.as_str(), "wss://127.0.0.1:35277");
//! ```

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::Url;

/// The only manifest version this crate reads and writes.
pub const MANIFEST_VERSION: u64 = 1;

/// Lifetime of a manual-mode manifest (the reference uses now + 5 s).
pub const MANUAL_MANIFEST_TTL: Duration = Duration::from_secs(5);

/// Lifetime of an auto-mode (elected leader) manifest (the reference uses now + 2 s).
pub const AUTO_MANIFEST_TTL: Duration = Duration::from_secs(2);

/// The `candidateRole` and `state` a leader announces.
pub const LEADER_ROLE: &str = "leader";

/// A leader's discovery manifest.
///
/// Serialising it produces the reference field order; optional fields are left out when
/// `None`. Build one with [`LeaderManifest::build`], read one with [`LeaderManifest::parse`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderManifest {
    /// Always [`MANIFEST_VERSION`].
    pub version: u64,
    /// The leader's node id.
    pub node_id: String,
    /// Host part of the WSS URL.
    pub advertised_hostname: String,
    /// The LAN-facing NATS WebSocket listener (`wss://` or `ws://`).
    pub wss_url: ManifestUrl,
    /// The plain NATS client listener (`nats://` or `tls://`), usually loopback only.
    pub client_url: ManifestUrl,
    /// The nats-server HTTP monitoring endpoint.
    pub monitor_url: ManifestUrl,
    /// Where this manifest is served.
    pub discovery_url: ManifestUrl,
    /// Servers a client may use, best first (the reference sends `[wssUrl]`).
    pub fallback_servers: Vec<ManifestUrl>,
    /// Measured round-trip time to the backbone in milliseconds, if known.
    pub backbone_rtt_ms: Option<f64>,
    /// The upstream servers the leaf node bridges to, as configured.
    pub backbone_servers: Vec<String>,
    /// State of the leaf-node bridge to the backbone.
    pub bridge_state: BridgeState,
    /// Election epoch (0 in manual mode).
    pub leader_epoch: u64,
    /// When this manifest stops being valid.
    #[serde(serialize_with = "serialize_wire_time")]
    pub expires_at: OffsetDateTime,
    /// When the leader's lease ends (equal to `expires_at` in the reference).
    #[serde(serialize_with = "serialize_wire_time")]
    pub lease_expires_at: OffsetDateTime,
    /// True for a leader manifest.
    pub is_leader: bool,
    /// `"leader"` for a leader manifest.
    pub candidate_role: String,
    /// When the manifest was generated (manual mode only).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_optional_wire_time")]
    pub generated_at: Option<OffsetDateTime>,
    /// The election namespace (auto mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_namespace: Option<String>,
    /// The election state, `"leader"` (auto mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Extension: lowercase hex SHA-256 of the DER of the CA that issued the WSS and
    /// discovery certificates, so a client can pin it. Ignored by 0.1.1 readers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert_sha256: Option<String>,
}

/// State of the leaf node's bridge to the backbone, lowercase on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BridgeState {
    /// No backbone servers are configured.
    Disabled,
    /// nats-server is starting or the leafnode connection is not up yet.
    Connecting,
    /// At least one leafnode connection to the backbone is up.
    Connected,
    /// nats-server has exited.
    Error,
    /// The leaf was stopped.
    Stopped,
}

impl BridgeState {
    /// The wire spelling (`"connected"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeState::Disabled => "disabled",
            BridgeState::Connecting => "connecting",
            BridgeState::Connected => "connected",
            BridgeState::Error => "error",
            BridgeState::Stopped => "stopped",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn from_wire(value: &str) -> Option<Self> {
        [
            BridgeState::Disabled,
            BridgeState::Connecting,
            BridgeState::Connected,
            BridgeState::Error,
            BridgeState::Stopped,
        ]
        .into_iter()
        .find(|state| state.as_str() == value)
    }
}

impl fmt::Display for BridgeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URL as it appears in a manifest: the exact text (kept for the wire) plus its parsed
/// form.
///
/// Parsing repairs the unbracketed IPv6 literals the reference emits
/// (`wss://fe80::1:4443` is read as `wss://[fe80::1]:4443`); the text is kept as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManifestUrl {
    raw: String,
    url: Url,
}

impl ManifestUrl {
    /// Parses `text`, accepting unbracketed IPv6 hosts followed by a port.
    pub fn parse(text: &str) -> Result<Self, url::ParseError> {
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(err) => match bracket_ipv6_host(text) {
                Some(repaired) => Url::parse(&repaired).map_err(|_| err)?,
                None => return Err(err),
            },
        };
        Ok(ManifestUrl { raw: text.to_owned(), url })
    }

    /// `scheme://host:port` followed by `path` (which may be empty or start with `/`),
    /// bracketing IPv6 literals.
    pub fn from_parts(scheme: &str, host: &str, port: u16, path: &str) -> Result<Self, url::ParseError> {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let text = if host.parse::<Ipv6Addr>().is_ok() {
            format!("{scheme}://[{host}]:{port}{path}")
        } else {
            format!("{scheme}://{host}:{port}{path}")
        };
        Self::parse(&text)
    }

    /// The text as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL scheme, lowercase.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }
}

impl fmt::Display for ManifestUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for ManifestUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for ManifestUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ManifestUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Rewrites `scheme://<ipv6>:<port>/rest` to `scheme://[<ipv6>]:<port>/rest`, or
/// `scheme://<ipv6>/rest` to `scheme://[<ipv6>]/rest`; `None` when the host is no IPv6
/// literal.
fn bracket_ipv6_host(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.starts_with('[') || authority.contains('@') {
        return None;
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        let numeric_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if numeric_port && host.parse::<Ipv6Addr>().is_ok() {
            return Some(format!("{scheme}://[{host}]:{port}{tail}"));
        }
    }
    authority.parse::<Ipv6Addr>().ok().map(|_| format!("{scheme}://[{authority}]{tail}"))
}

/// The listener URLs a manifest advertises.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerUrls {
    /// Host part of the WSS URL.
    pub advertised_hostname: String,
    /// LAN-facing NATS WebSocket listener.
    pub wss_url: ManifestUrl,
    /// Plain NATS client listener.
    pub client_url: ManifestUrl,
    /// nats-server monitoring endpoint.
    pub monitor_url: ManifestUrl,
    /// Where the manifest is served.
    pub discovery_url: ManifestUrl,
}

/// What a leader's leaf advertises: the leader-only fields that the discovery manifest and
/// the leader beacon ([`Beacon::leader`](super::beacon::Beacon::leader)) share. Both are built
/// from this one value, so they cannot disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderAdvert {
    /// Listener URLs (`wssUrl`, `clientUrl`, `monitorUrl`, `discoveryUrl`, and
    /// `advertisedHostname`).
    pub listeners: ListenerUrls,
    /// `bridgeState`.
    pub bridge_state: BridgeState,
    /// `backboneServers`, as configured (credentials removed).
    pub backbone_servers: Vec<String>,
}

impl LeaderAdvert {
    /// An advertisement from URL texts: `[wssUrl, clientUrl, monitorUrl, discoveryUrl]`.
    ///
    /// # Errors
    /// A URL that does not parse.
    pub fn from_urls(
        advertised_hostname: &str,
        [wss, client, monitor, discovery]: [&str; 4],
        bridge_state: BridgeState,
        backbone_servers: Vec<String>,
    ) -> Result<LeaderAdvert, url::ParseError> {
        Ok(LeaderAdvert {
            listeners: ListenerUrls {
                advertised_hostname: advertised_hostname.to_owned(),
                wss_url: ManifestUrl::parse(wss)?,
                client_url: ManifestUrl::parse(client)?,
                monitor_url: ManifestUrl::parse(monitor)?,
                discovery_url: ManifestUrl::parse(discovery)?,
            },
            bridge_state,
            backbone_servers,
        })
    }
}

/// Manual leaf (`generatedAt` is set) or elected leader (`discoveryNamespace` and `state`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestMode {
    /// `kinopio leaf start`: the manifest carries `generatedAt`.
    Manual,
    /// `kinopio leaf auto`: the manifest carries the namespace and `state: "leader"`.
    Auto {
        /// The election namespace.
        discovery_namespace: String,
    },
}

/// Everything [`LeaderManifest::build`] needs besides the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestInputs {
    /// The leader's node id.
    pub node_id: String,
    /// What the leaf advertises (the fields shared with the leader beacon).
    pub advert: LeaderAdvert,
    /// Election epoch (0 in manual mode).
    pub leader_epoch: u64,
    /// Last measured backbone round-trip time in milliseconds, if any.
    pub backbone_rtt_ms: Option<f64>,
    /// Manual or auto mode.
    pub mode: ManifestMode,
    /// Optional CA fingerprint extension (`caCertSha256`).
    pub ca_cert_sha256: Option<String>,
}

impl LeaderManifest {
    /// Builds the manifest a leader serves at `now`, valid for `ttl` (truncated to whole
    /// seconds like the reference). Pure: no I/O, no clock.
    pub fn build(inputs: &ManifestInputs, now: OffsetDateTime, ttl: Duration) -> LeaderManifest {
        let now = truncate_to_seconds(now);
        let expires_at = now.saturating_add(time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)));
        let (generated_at, discovery_namespace, state) = match &inputs.mode {
            ManifestMode::Manual => (Some(now), None, None),
            ManifestMode::Auto { discovery_namespace } => {
                (None, Some(discovery_namespace.clone()), Some(LEADER_ROLE.to_owned()))
            }
        };
        let listeners = &inputs.advert.listeners;
        LeaderManifest {
            version: MANIFEST_VERSION,
            node_id: inputs.node_id.clone(),
            advertised_hostname: listeners.advertised_hostname.clone(),
            wss_url: listeners.wss_url.clone(),
            client_url: listeners.client_url.clone(),
            monitor_url: listeners.monitor_url.clone(),
            discovery_url: listeners.discovery_url.clone(),
            fallback_servers: vec![listeners.wss_url.clone()],
            backbone_rtt_ms: inputs.backbone_rtt_ms.filter(|rtt| rtt.is_finite()),
            backbone_servers: inputs.advert.backbone_servers.clone(),
            bridge_state: inputs.advert.bridge_state,
            leader_epoch: inputs.leader_epoch,
            expires_at,
            lease_expires_at: expires_at,
            is_leader: true,
            candidate_role: LEADER_ROLE.to_owned(),
            generated_at,
            discovery_namespace,
            state,
            ca_cert_sha256: inputs.ca_cert_sha256.clone(),
        }
    }

    /// Parses and validates a manifest body received at `now`.
    ///
    /// Accepts the manual-mode and auto-mode shapes of the reference and our own; ignores
    /// unknown fields. Fails with a [`ManifestError`] naming the offending field, or
    /// [`ManifestError::Expired`] when `expiresAt` is before `now`.
    pub fn parse(bytes: &[u8], now: OffsetDateTime) -> Result<LeaderManifest, ManifestError> {
        let value: Value = serde_json::from_slice(bytes).map_err(ManifestError::NotJson)?;
        let manifest = Self::from_json_value(&value)?;
        if manifest.is_expired(now) {
            return Err(ManifestError::Expired {
                expires_at: format_wire_time(manifest.expires_at),
                now: format_wire_time(now),
            });
        }
        Ok(manifest)
    }

    /// Validates an already decoded JSON value, without the expiry check (use
    /// [`LeaderManifest::is_expired`]).
    pub fn from_json_value(value: &Value) -> Result<LeaderManifest, ManifestError> {
        let object = value.as_object().ok_or(ManifestError::NotAnObject { found: json_kind(value) })?;
        let fields = Fields(object);

        let version = fields.unsigned("version")?;
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion { version });
        }
        Ok(LeaderManifest {
            version,
            node_id: fields.string("nodeId")?.to_owned(),
            advertised_hostname: fields.string("advertisedHostname")?.to_owned(),
            wss_url: fields.url("wssUrl", &["wss", "ws"])?,
            client_url: fields.url("clientUrl", &["nats", "tls"])?,
            monitor_url: fields.url("monitorUrl", &["http", "https"])?,
            discovery_url: fields.url("discoveryUrl", &["http", "https"])?,
            fallback_servers: fields.url_list("fallbackServers")?,
            backbone_rtt_ms: fields.optional_number("backboneRttMs")?,
            backbone_servers: fields.string_list("backboneServers")?.into_iter().map(str::to_owned).collect(),
            bridge_state: fields.bridge_state("bridgeState")?,
            leader_epoch: fields.unsigned("leaderEpoch")?,
            expires_at: fields.timestamp("expiresAt")?,
            lease_expires_at: fields.timestamp("leaseExpiresAt")?,
            is_leader: fields.boolean("isLeader")?,
            candidate_role: fields.string("candidateRole")?.to_owned(),
            generated_at: fields.optional_timestamp("generatedAt")?,
            discovery_namespace: fields.optional_string("discoveryNamespace")?,
            state: fields.optional_string("state")?,
            ca_cert_sha256: fields.optional_string("caCertSha256")?,
        })
    }

    /// True when `expiresAt` is before `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at < now
    }

    /// The manifest as JSON bytes (reference field order).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising this struct cannot fail: every field is a string, number, bool or list.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for LeaderManifest {
    /// Deserialises with the same validation as [`LeaderManifest::from_json_value`] (no
    /// expiry check).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        LeaderManifest::from_json_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The body is not JSON at all.
    #[error(
        "the discovery manifest is not valid JSON ({0}); the URL probably does not point at a kinopio leaf's /.well-known/kinopio-leader.json"
    )]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("the discovery manifest is a JSON {found}, expected an object with the manifest fields")]
    NotAnObject {
        /// JSON kind found instead.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("the discovery manifest lacks the required field `{field}`; the leader may run an incompatible version")]
    MissingField {
        /// The missing field's wire name.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("discovery manifest field `{field}` is a JSON {found}, expected {expected}")]
    WrongType {
        /// The field's wire name (with an index for list items).
        field: String,
        /// The expected type.
        expected: &'static str,
        /// The JSON kind found.
        found: &'static str,
    },
    /// `version` is not 1.
    #[error("discovery manifest version {version} is not supported (only version 1 is); upgrade kinopio")]
    UnsupportedVersion {
        /// The version received.
        version: u64,
    },
    /// A URL field does not parse or has the wrong scheme.
    #[error("discovery manifest field `{field}` holds `{value}`, which is not a usable URL: {reason}")]
    InvalidUrl {
        /// The field's wire name (with an index for list items).
        field: String,
        /// The text received.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `bridgeState` is not one of the known states.
    #[error(
        "discovery manifest field `bridgeState` is `{value}`, expected one of disabled, connecting, connected, error, stopped"
    )]
    InvalidBridgeState {
        /// The text received.
        value: String,
    },
    /// A timestamp does not parse.
    #[error("discovery manifest field `{field}` holds `{value}`, expected a UTC time like 2026-11-22T08:28:37Z")]
    InvalidTimestamp {
        /// The field's wire name.
        field: String,
        /// The text received.
        value: String,
    },
    /// `expiresAt` is in the past: the leader stopped refreshing it or the clocks differ.
    #[error(
        "the discovery manifest expired at {expires_at} (now {now}); the leader is gone or the clocks of the two machines differ"
    )]
    Expired {
        /// `expiresAt` as received.
        expires_at: String,
        /// The reader's clock.
        now: String,
    },
}

/// Typed access to the fields of a manifest object.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn required(&self, field: &str) -> Result<&'a Value, ManifestError> {
        self.0.get(field).ok_or_else(|| ManifestError::MissingField { field: field.to_owned() })
    }

    /// `None` when the field is absent or null.
    fn optional(&self, field: &str) -> Option<&'a Value> {
        self.0.get(field).filter(|value| !value.is_null())
    }

    fn string(&self, field: &str) -> Result<&'a str, ManifestError> {
        expect_str(field, self.required(field)?)
    }

    fn optional_string(&self, field: &str) -> Result<Option<String>, ManifestError> {
        self.optional(field).map(|value| expect_str(field, value).map(str::to_owned)).transpose()
    }

    fn bridge_state(&self, field: &str) -> Result<BridgeState, ManifestError> {
        let text = self.string(field)?;
        BridgeState::from_wire(text).ok_or_else(|| ManifestError::InvalidBridgeState { value: text.to_owned() })
    }

    fn unsigned(&self, field: &str) -> Result<u64, ManifestError> {
        let value = self.required(field)?;
        value.as_u64().ok_or_else(|| wrong_type(field, "a non-negative integer", value))
    }

    fn boolean(&self, field: &str) -> Result<bool, ManifestError> {
        let value = self.required(field)?;
        value.as_bool().ok_or_else(|| wrong_type(field, "a boolean", value))
    }

    /// A number or null; the field itself must be present.
    fn optional_number(&self, field: &str) -> Result<Option<f64>, ManifestError> {
        let value = self.required(field)?;
        if value.is_null() {
            return Ok(None);
        }
        value.as_f64().map(Some).ok_or_else(|| wrong_type(field, "a number or null", value))
    }

    fn string_list(&self, field: &str) -> Result<Vec<&'a str>, ManifestError> {
        let value = self.required(field)?;
        let items = value.as_array().ok_or_else(|| wrong_type(field, "an array of strings", value))?;
        items.iter().enumerate().map(|(index, item)| expect_str(&format!("{field}[{index}]"), item)).collect()
    }

    fn url(&self, field: &str, schemes: &[&str]) -> Result<ManifestUrl, ManifestError> {
        parse_url(field, self.string(field)?, schemes)
    }

    fn url_list(&self, field: &str) -> Result<Vec<ManifestUrl>, ManifestError> {
        self.string_list(field)?
            .into_iter()
            .enumerate()
            .map(|(index, text)| parse_url(&format!("{field}[{index}]"), text, &[]))
            .collect()
    }

    fn timestamp(&self, field: &str) -> Result<OffsetDateTime, ManifestError> {
        parse_timestamp(field, self.string(field)?)
    }

    fn optional_timestamp(&self, field: &str) -> Result<Option<OffsetDateTime>, ManifestError> {
        self.optional(field).map(|value| parse_timestamp(field, expect_str(field, value)?)).transpose()
    }
}

fn expect_str<'v>(field: &str, value: &'v Value) -> Result<&'v str, ManifestError> {
    value.as_str().ok_or_else(|| wrong_type(field, "a string", value))
}

fn wrong_type(field: &str, expected: &'static str, value: &Value) -> ManifestError {
    ManifestError::WrongType { field: field.to_owned(), expected, found: json_kind(value) }
}

/// Parses a URL field; `schemes` empty means any scheme.
fn parse_url(field: &str, text: &str, schemes: &[&str]) -> Result<ManifestUrl, ManifestError> {
    let invalid =
        |reason: String| ManifestError::InvalidUrl { field: field.to_owned(), value: text.to_owned(), reason };
    let url = ManifestUrl::parse(text).map_err(|err| invalid(err.to_string()))?;
    if url.url().host().is_none() {
        return Err(invalid("it has no host".to_owned()));
    }
    if !schemes.is_empty() && !schemes.contains(&url.scheme()) {
        return Err(invalid(format!(
            "the scheme must be {}",
            schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
        )));
    }
    Ok(url)
}

fn parse_timestamp(field: &str, text: &str) -> Result<OffsetDateTime, ManifestError> {
    parse_wire_time(text)
        .ok_or_else(|| ManifestError::InvalidTimestamp { field: field.to_owned(), value: text.to_owned() })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

const WIRE_TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Formats `at` as the manifest does: UTC, whole seconds, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_wire_time(at: OffsetDateTime) -> String {
    let utc = truncate_to_seconds(at).to_offset(time::UtcOffset::UTC);
    utc.format(WIRE_TIME_FORMAT).unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

/// Parses a manifest timestamp. Accepts the reference's `YYYY-MM-DDTHH:MM:SSZ` and, more
/// leniently, any RFC 3339 time (fractions, offsets).
pub fn parse_wire_time(text: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(text, WIRE_TIME_FORMAT)
        .map(|naive| naive.assume_utc())
        .or_else(|_| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339))
        .ok()
}

fn truncate_to_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}

fn serialize_wire_time<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_wire_time(*at))
}

fn serialize_optional_wire_time<S: Serializer>(at: &Option<OffsetDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize_wire_time(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The manual-mode manifest of the protocol notes (Discovery manifest), verbatim (manual mode, Python).
    const PYTHON_MANUAL: &str = r#"{"version": 1, "nodeId": "a7b7b290fcf74f669a9ff25bc9233c08", "advertisedHostname": "127.0.0.1",
 "wssUrl": "wss://127.0.0.1:35277", "clientUrl": "nats://127.0.0.1:52627",
 "monitorUrl": "http://127.0.0.1:37311", "discoveryUrl": "http://127.0.0.1:47069/manifest.json",
 "fallbackServers": ["wss://127.0.0.1:35277"], "backboneRttMs": null,
 "backboneServers": ["nats://127.0.0.1:36911"], "bridgeState": "connecting", "leaderEpoch": 0,
 "expiresAt": "2026-11-22T08:28:37Z", "leaseExpiresAt": "2026-11-22T08:28:37Z",
 "isLeader": true, "candidateRole": "leader", "generatedAt": "2026-11-22T08:28:32Z"}"#;

    /// The auto-mode leader beacon (b) of the protocol notes (Election beacons), verbatim (auto mode leader, Python).
    const PYTHON_AUTO: &str = r#"{"version": 1, "nodeId": "kinopio-f66bf667-15054", "leaderEpoch": 1, "advertisedHostname": "127.0.0.1",
 "wssUrl": "wss://127.0.0.1:37227", "clientUrl": "nats://127.0.0.1:42339", "monitorUrl": "http://127.0.0.1:42457",
 "fallbackServers": ["wss://127.0.0.1:37227"], "bridgeState": "disabled", "backboneServers": [],
 "backboneRttMs": null, "discoveryUrl": "http://127.0.0.1:52407/manifest.json",
 "leaseExpiresAt": "2026-11-22T08:32:34Z", "expiresAt": "2026-11-22T08:32:34Z",
 "discoveryNamespace": "clins", "isLeader": true, "candidateRole": "leader", "state": "leader"}"#;

    const BEFORE_EXPIRY: OffsetDateTime = datetime!(2026-11-22 08:28:33 UTC);

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text).unwrap() {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn parse_map(map: Map<String, Value>) -> Result<LeaderManifest, ManifestError> {
        LeaderManifest::parse(&serde_json::to_vec(&Value::Object(map)).unwrap(), BEFORE_EXPIRY)
    }

    fn sample_inputs(mode: ManifestMode) -> ManifestInputs {
        ManifestInputs {
            node_id: "node-1".into(),
            advert: LeaderAdvert {
                listeners: ListenerUrls {
                    advertised_hostname: "192.168.1.5".into(),
                    wss_url: ManifestUrl::from_parts("wss", "192.168.1.5", 4443, "").unwrap(),
                    client_url: ManifestUrl::from_parts("nats", "127.0.0.1", 4222, "").unwrap(),
                    monitor_url: ManifestUrl::from_parts("http", "127.0.0.1", 8222, "").unwrap(),
                    discovery_url: ManifestUrl::from_parts(
                        "https",
                        "192.168.1.5",
                        7777,
                        "/.well-known/kinopio-leader.json",
                    )
                    .unwrap(),
                },
                bridge_state: BridgeState::Connected,
                backbone_servers: vec!["nats://backbone.example:7422".into()],
            },
            leader_epoch: 3,
            backbone_rtt_ms: Some(5.177308999975594),
            mode,
            ca_cert_sha256: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn python_manual_example_parses() {
        let manifest = LeaderManifest::parse(PYTHON_MANUAL.as_bytes(), BEFORE_EXPIRY).unwrap();
        assert_eq!(manifest.node_id, "a7b7b290fcf74f669a9ff25bc9233c08");
        assert_eq!(manifest.wss_url.as_str(), "wss://127.0.0.1:35277");
        assert_eq!(manifest.client_url.url().port(), Some(52627));
        assert_eq!(manifest.bridge_state, BridgeState::Connecting);
        assert_eq!(manifest.backbone_rtt_ms, None);
        assert_eq!(manifest.expires_at, datetime!(2026-11-22 08:28:37 UTC));
        assert_eq!(manifest.generated_at, Some(datetime!(2026-11-22 08:28:32 UTC)));
        assert_eq!(manifest.discovery_namespace, None);
        assert!(manifest.is_leader);
    }

    #[test]
    fn python_auto_example_parses() {
        let manifest = LeaderManifest::parse(PYTHON_AUTO.as_bytes(), BEFORE_EXPIRY).unwrap();
        assert_eq!(manifest.leader_epoch, 1);
        assert_eq!(manifest.discovery_namespace.as_deref(), Some("clins"));
        assert_eq!(manifest.state.as_deref(), Some("leader"));
        assert_eq!(manifest.generated_at, None);
        assert_eq!(manifest.bridge_state, BridgeState::Disabled);
        assert!(manifest.backbone_servers.is_empty());
    }

    #[test]
    fn reserialising_python_manual_example_gives_the_same_json_value() {
        let manifest = LeaderManifest::parse(PYTHON_MANUAL.as_bytes(), BEFORE_EXPIRY).unwrap();
        let ours: Value = serde_json::to_value(&manifest).unwrap();
        let theirs: Value = serde_json::from_str(PYTHON_MANUAL).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn serialised_field_order_matches_reference() {
        let manifest = LeaderManifest::parse(PYTHON_MANUAL.as_bytes(), BEFORE_EXPIRY).unwrap();
        let json = String::from_utf8(manifest.to_json_bytes()).unwrap();
        let keys: Vec<String> = object(&json).keys().cloned().collect();
        // serde_json's Map is sorted unless preserve_order is on, so read the order from text.
        let mut positions: Vec<(usize, &str)> =
            keys.iter().map(|key| (json.find(&format!("\"{key}\":")).unwrap(), key.as_str())).collect();
        positions.sort();
        let order: Vec<&str> = positions.into_iter().map(|(_, key)| key).collect();
        assert_eq!(
            order,
            [
                "version",
                "nodeId",
                "advertisedHostname",
                "wssUrl",
                "clientUrl",
                "monitorUrl",
                "discoveryUrl",
                "fallbackServers",
                "backboneRttMs",
                "backboneServers",
                "bridgeState",
                "leaderEpoch",
                "expiresAt",
                "leaseExpiresAt",
                "isLeader",
                "candidateRole",
                "generatedAt"
            ]
        );
    }

    #[test]
    fn build_manual_mode_sets_generated_at_and_ttl() {
        let now = datetime!(2026-01-02 03:04:05.987 UTC);
        let manifest = LeaderManifest::build(&sample_inputs(ManifestMode::Manual), now, MANUAL_MANIFEST_TTL);
        assert_eq!(manifest.generated_at, Some(datetime!(2026-01-02 03:04:05 UTC)));
        assert_eq!(manifest.expires_at, datetime!(2026-01-02 03:04:10 UTC));
        assert_eq!(manifest.lease_expires_at, manifest.expires_at);
        assert_eq!(manifest.fallback_servers, vec![manifest.wss_url.clone()]);
        assert_eq!(manifest.discovery_namespace, None);
        assert_eq!(manifest.state, None);
        let json: Value = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["generatedAt"], "2026-01-02T03:04:05Z");
        assert_eq!(json["expiresAt"], "2026-01-02T03:04:10Z");
        assert_eq!(json["bridgeState"], "connected");
        assert_eq!(json["backboneRttMs"], 5.177308999975594);
        assert!(json.get("discoveryNamespace").is_none());
        assert!(json.get("state").is_none());
    }

    #[test]
    fn build_auto_mode_sets_namespace_and_state() {
        let now = datetime!(2026-01-02 03:04:05 UTC);
        let manifest = LeaderManifest::build(
            &sample_inputs(ManifestMode::Auto { discovery_namespace: "studio".into() }),
            now,
            AUTO_MANIFEST_TTL,
        );
        let json: Value = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["discoveryNamespace"], "studio");
        assert_eq!(json["state"], "leader");
        assert_eq!(json["leaderEpoch"], 3);
        assert_eq!(json["expiresAt"], "2026-01-02T03:04:07Z");
        assert!(json.get("generatedAt").is_none());
    }

    #[test]
    fn built_manifest_round_trips_through_parse() {
        let now = datetime!(2026-01-02 03:04:05 UTC);
        let built = LeaderManifest::build(&sample_inputs(ManifestMode::Manual), now, MANUAL_MANIFEST_TTL);
        let parsed = LeaderManifest::parse(&built.to_json_bytes(), now).unwrap();
        assert_eq!(parsed, built);
        assert_eq!(parsed.ca_cert_sha256.as_deref(), Some("ab".repeat(32).as_str()));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut map = object(PYTHON_MANUAL);
        map.insert("somethingNew".into(), Value::from(vec![1, 2]));
        assert!(parse_map(map).is_ok());
    }

    #[test]
    fn rejects_non_json_and_non_objects() {
        assert!(matches!(LeaderManifest::parse(b"<html>", BEFORE_EXPIRY), Err(ManifestError::NotJson(_))));
        assert!(matches!(
            LeaderManifest::parse(b"[1]", BEFORE_EXPIRY),
            Err(ManifestError::NotAnObject { found: "array" })
        ));
        assert!(matches!(LeaderManifest::parse(b"{}", BEFORE_EXPIRY), Err(ManifestError::MissingField { .. })));
    }

    #[test]
    fn rejects_every_missing_required_field() {
        for field in [
            "version",
            "nodeId",
            "advertisedHostname",
            "wssUrl",
            "clientUrl",
            "monitorUrl",
            "discoveryUrl",
            "fallbackServers",
            "backboneRttMs",
            "backboneServers",
            "bridgeState",
            "leaderEpoch",
            "expiresAt",
            "leaseExpiresAt",
            "isLeader",
            "candidateRole",
        ] {
            let mut map = object(PYTHON_MANUAL);
            map.remove(field);
            match parse_map(map) {
                Err(ManifestError::MissingField { field: missing }) => assert_eq!(missing, field),
                other => panic!("removing {field} gave {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_wrong_types() {
        let cases: [(&str, Value); 7] = [
            ("nodeId", Value::from(5)),
            ("leaderEpoch", Value::from("abc")),
            ("leaderEpoch", Value::from(-1)),
            ("isLeader", Value::from("true")),
            ("fallbackServers", Value::from("wss://a:1")),
            ("backboneRttMs", Value::from("fast")),
            ("version", Value::Null),
        ];
        for (field, value) in cases {
            let mut map = object(PYTHON_MANUAL);
            map.insert(field.into(), value.clone());
            match parse_map(map) {
                Err(ManifestError::WrongType { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field} = {value} gave {other:?}"),
            }
        }
        let mut map = object(PYTHON_MANUAL);
        map.insert("backboneServers".into(), serde_json::json!(["ok", 7]));
        match parse_map(map) {
            Err(ManifestError::WrongType { field, .. }) => assert_eq!(field, "backboneServers[1]"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_other_versions() {
        let mut map = object(PYTHON_MANUAL);
        map.insert("version".into(), Value::from(2));
        assert!(matches!(parse_map(map), Err(ManifestError::UnsupportedVersion { version: 2 })));
    }

    #[test]
    fn rejects_bad_urls_and_schemes() {
        let cases = [
            ("wssUrl", "https://127.0.0.1:1"),
            ("wssUrl", "not a url"),
            ("clientUrl", "wss://127.0.0.1:1"),
            ("monitorUrl", "nats://127.0.0.1:1"),
            ("discoveryUrl", "mailto:someone"),
        ];
        for (field, text) in cases {
            let mut map = object(PYTHON_MANUAL);
            map.insert(field.into(), Value::from(text));
            match parse_map(map) {
                Err(ManifestError::InvalidUrl { field: f, value, .. }) => {
                    assert_eq!(f, field);
                    assert_eq!(value, text);
                }
                other => panic!("{field} = {text} gave {other:?}"),
            }
        }
        let mut map = object(PYTHON_MANUAL);
        map.insert("fallbackServers".into(), serde_json::json!(["wss://ok:1", "::"]));
        assert!(matches!(
            parse_map(map),
            Err(ManifestError::InvalidUrl { field, .. }) if field == "fallbackServers[1]"
        ));
    }

    #[test]
    fn accepts_plain_ws_tls_and_https_schemes() {
        let mut map = object(PYTHON_MANUAL);
        map.insert("wssUrl".into(), Value::from("ws://127.0.0.1:1"));
        map.insert("clientUrl".into(), Value::from("tls://127.0.0.1:2"));
        map.insert("discoveryUrl".into(), Value::from("https://127.0.0.1:3/.well-known/kinopio-leader.json"));
        let manifest = parse_map(map).unwrap();
        assert_eq!(manifest.wss_url.scheme(), "ws");
        assert_eq!(manifest.discovery_url.scheme(), "https");
    }

    #[test]
    fn repairs_unbracketed_ipv6_hosts_from_the_reference() {
        let mut map = object(PYTHON_MANUAL);
        map.insert("wssUrl".into(), Value::from("wss://fe80::1:35277"));
        map.insert("discoveryUrl".into(), Value::from("http://::1:47069/manifest.json"));
        let manifest = parse_map(map).unwrap();
        assert_eq!(manifest.wss_url.as_str(), "wss://fe80::1:35277");
        assert_eq!(manifest.wss_url.url().host_str(), Some("[fe80::1]"));
        assert_eq!(manifest.wss_url.url().port(), Some(35277));
        assert_eq!(manifest.discovery_url.url().path(), "/manifest.json");
    }

    #[test]
    fn from_parts_brackets_ipv6() {
        let url = ManifestUrl::from_parts("wss", "::1", 4443, "").unwrap();
        assert_eq!(url.as_str(), "wss://[::1]:4443");
        let url = ManifestUrl::from_parts("https", "[fe80::2]", 1, "/x").unwrap();
        assert_eq!(url.as_str(), "https://[fe80::2]:1/x");
    }

    #[test]
    fn rejects_bad_bridge_state_and_timestamps() {
        let mut map = object(PYTHON_MANUAL);
        map.insert("bridgeState".into(), Value::from("flying"));
        assert!(matches!(parse_map(map), Err(ManifestError::InvalidBridgeState { value }) if value == "flying"));

        for (field, text) in [
            ("expiresAt", "tomorrow"),
            ("leaseExpiresAt", "2026-13-01T00:00:00Z"),
            ("generatedAt", "2026-11-22 08:28:32"),
        ] {
            let mut map = object(PYTHON_MANUAL);
            map.insert(field.into(), Value::from(text));
            match parse_map(map) {
                Err(ManifestError::InvalidTimestamp { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field} = {text} gave {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_expired_manifest_but_accepts_until_expiry() {
        let at_expiry = datetime!(2026-11-22 08:28:37 UTC);
        assert!(LeaderManifest::parse(PYTHON_MANUAL.as_bytes(), at_expiry).is_ok());
        let after = datetime!(2026-11-22 08:28:38 UTC);
        match LeaderManifest::parse(PYTHON_MANUAL.as_bytes(), after) {
            Err(ManifestError::Expired { expires_at, now }) => {
                assert_eq!(expires_at, "2026-11-22T08:28:37Z");
                assert_eq!(now, "2026-11-22T08:28:38Z");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn null_optional_fields_are_treated_as_absent() {
        let mut map = object(PYTHON_MANUAL);
        map.insert("generatedAt".into(), Value::Null);
        map.insert("state".into(), Value::Null);
        let manifest = parse_map(map).unwrap();
        assert_eq!(manifest.generated_at, None);
        assert_eq!(manifest.state, None);
    }

    #[test]
    fn wire_time_accepts_rfc3339_and_formats_whole_seconds() {
        assert_eq!(parse_wire_time("2026-11-22T09:28:37.5+01:00"), Some(datetime!(2026-11-22 08:28:37.5 UTC)));
        assert_eq!(format_wire_time(datetime!(2026-11-22 09:28:37.9 +01:00)), "2026-11-22T08:28:37Z");
    }

    #[test]
    fn serde_deserialize_validates_like_parse() {
        let manifest: LeaderManifest = serde_json::from_str(PYTHON_AUTO).unwrap();
        assert_eq!(manifest.node_id, "kinopio-f66bf667-15054");
        let err = serde_json::from_str::<LeaderManifest>(r#"{"version": 1}"#).unwrap_err();
        assert!(err.to_string().contains("nodeId"), "{err}");
    }

    #[test]
    fn json_schema_lists_exactly_the_manifest_fields() {
        let schema: Value =
            serde_json::from_str(include_str!("../../manifests/discovery-manifest.schema.json")).unwrap();
        let mut required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        required.sort();
        let mut expected = vec![
            "version",
            "nodeId",
            "advertisedHostname",
            "wssUrl",
            "clientUrl",
            "monitorUrl",
            "discoveryUrl",
            "fallbackServers",
            "backboneRttMs",
            "backboneServers",
            "bridgeState",
            "leaderEpoch",
            "expiresAt",
            "leaseExpiresAt",
            "isLeader",
            "candidateRole",
        ];
        expected.sort();
        assert_eq!(required, expected);

        // Every field we can emit is described.
        let properties = schema["properties"].as_object().unwrap();
        let full = LeaderManifest::build(
            &sample_inputs(ManifestMode::Auto { discovery_namespace: "x".into() }),
            BEFORE_EXPIRY,
            AUTO_MANIFEST_TTL,
        );
        let mut emitted = object(&String::from_utf8(full.to_json_bytes()).unwrap());
        emitted.insert("generatedAt".into(), Value::Null);
        for key in emitted.keys() {
            assert!(properties.contains_key(key), "schema lacks {key}");
        }
        let states: Vec<&str> = schema["properties"]["bridgeState"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for state in states {
            assert!(BridgeState::from_wire(state).is_some(), "{state}");
        }
    }
}
