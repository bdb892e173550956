//! Health reports (§7): the payload an instance publishes on
//! `_sys.v4.<hex(ns)>.health.<instanceId>` — `{"status":{…},"interval":<ms>}` — how kinopio
//! builds its own ([`Status`], [`encode_report`]) and how a received one is checked
//! ([`receive`], [`status_of`]), exactly like kinopio-hub's `Instances.receive` and
//! `status_of` so that every report kinopio sends is accepted by a Python peer and every report
//! a Python peer accepts is accepted here.
//!
//! What a Python receiver refuses (and then turns its own health to `"error"`, §11 W8): an
//! `interval` that is not an integer of 1…2^31−1 ms; a `status` that fails `value_of` with a
//! 2,048-byte limit, is not an object, whose `instanceId` differs from the subject's last token
//! or is not `[A-Za-z0-9_-]{1,128}`, whose `namespace` differs from the receiver's, that has a
//! `name` key, or whose known fields have the wrong type or an unknown enum value. Unknown
//! top-level keys are dropped, and `messaging` and `mesh` are reduced to their known keys.
//!
//! # Deliberate differences from 3.0.0
//!
//! - kinopio's [`Json`] has one number type, so an integer-valued float (`"interval":5000.0`,
//!   `"members":2.0`) is accepted as that integer, where Python requires a JSON integer. The
//!   value is the same; nothing a compliant peer sends is refused.
//! - [`error_message`] replaces the secrets *before* cutting the message to 240 characters;
//!   Python cuts first, so a secret that straddles the cut leaks its first characters.
//! - A report kinopio builds never exceeds the 2,048-byte limit: [`encode_report`] shortens
//!   the error messages (and drops them last) until it fits.

use indexmap::IndexMap;

use super::ErrorCode;
use super::canonical::{self, DecodeError, Json, MAX_SAFE_INTEGER};
use super::names::Id;

/// Largest canonical encoding of a report's `status` a receiver accepts (2,048 bytes).
pub const MAX_STATUS_BYTES: usize = 2048;
/// Largest `interval` a receiver accepts, 2^31 − 1 ms (about 24.8 days).
pub const MAX_INTERVAL_MS: u64 = 2_147_483_647;
/// Longest error message in a report, in characters (Unicode scalar values).
pub const MAX_ERROR_CHARS: usize = 240;
/// Longest `mesh.reason` / `mesh.leaderId` a receiver accepts, in characters.
const MAX_MESH_REASON_CHARS: usize = 240;
const MAX_MESH_LEADER_CHARS: usize = 128;

/// The top-level status fields a receiver keeps, in the order it keeps them (`status_of`'s
/// `allowed`).
const ALLOWED: [&str; 24] = [
    "instanceId",
    "namespace",
    "sdk",
    "version",
    "runtime",
    "uptimeMs",
    "connection",
    "server",
    "rttMs",
    "lastSwitchReason",
    "pendingVariables",
    "pendingBytes",
    "variables",
    "subscriptions",
    "reconnects",
    "sentMessages",
    "receivedMessages",
    "sentBytes",
    "receivedBytes",
    "health",
    "currentError",
    "lastError",
    "mesh",
    "messaging",
];
const COUNTERS: [&str; 10] = [
    "uptimeMs",
    "pendingVariables",
    "pendingBytes",
    "variables",
    "subscriptions",
    "reconnects",
    "sentMessages",
    "receivedMessages",
    "sentBytes",
    "receivedBytes",
];
const STRINGS: [&str; 6] = ["namespace", "sdk", "version", "runtime", "connection", "health"];
const MESSAGING_COUNTERS: [&str; 6] = [
    "pendingRequests",
    "pendingMessages",
    "pendingBytes",
    "inFlightHandlers",
    "droppedMessages",
    "nativeDroppedMessages",
];
const MESH_ROLES: [&str; 6] = ["discovering", "candidate", "leader", "follower", "error", "disabled"];

/// Why a received health report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The payload is not a protocol message (too large, not UTF-8, not JSON, too deep).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// `interval` is missing or not an integer of 1…2^31−1 ms.
    #[error("health report interval is not an integer of 1 to 2147483647 ms")]
    Interval,
    /// `status` breaks a rule of §7.2; the text names the rule.
    #[error("invalid health report status: {0}")]
    Status(&'static str),
}

impl ReportError {
    /// `INVALID_MESSAGE` / `MESSAGE_TOO_LARGE` for a payload that does not decode (as Python's
    /// subscription callback reports it), `INVALID_REPORT` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReportError::Decode(e) => e.code(),
            _ => ErrorCode::InvalidReport,
        }
    }
}

/// A received report that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The status as a Python receiver stores it: normalised by `value_of`, only the known
    /// top-level keys, in [`status_of`]'s order.
    pub status: Json,
    /// The sender's report period in milliseconds (1…2^31−1).
    pub interval_ms: u64,
}

/// Checks a received report payload like a Python receiver (`decode`, then
/// `Instances.receive`): bounded decode, `interval`, then [`status_of`]. `instance` is the
/// last token of the subject it arrived on; `namespace` the receiver's namespace.
///
/// # Errors
///
/// [`ReportError`]; never panics on any input.
pub fn receive(payload: &[u8], instance: &str, namespace: &str) -> Result<Received, ReportError> {
    let report = canonical::decode(payload)?;
    let Json::Object(report) = report else { return Err(ReportError::Interval) };
    let interval_ms = match report.get("interval") {
        Some(Json::Number(n)) if n.fract() == 0.0 && *n >= 1.0 && *n <= MAX_INTERVAL_MS as f64 => *n as u64,
        _ => return Err(ReportError::Interval),
    };
    let status = status_of(report.get("status").unwrap_or(&Json::Null), instance, namespace)?;
    Ok(Received { status, interval_ms })
}

fn is_number(value: Option<&Json>) -> bool {
    matches!(value, Some(Json::Number(_)))
}

fn non_negative(value: &Json) -> bool {
    matches!(value, Json::Number(n) if *n >= 0.0)
}

fn null_or(value: Option<&Json>, check: impl Fn(&Json) -> bool) -> bool {
    match value {
        None | Some(Json::Null) => true,
        Some(v) => check(v),
    }
}

fn is_string(value: &Json) -> bool {
    matches!(value, Json::String(_))
}

fn string_in(value: Option<&Json>, allowed: &[&str]) -> bool {
    matches!(value, Some(Json::String(s)) if allowed.contains(&s.as_str()))
}

/// The reference's `status_of` (§7.2): checks a report's `status` for the sender `instance`
/// (the subject's last token) in `namespace`, and returns it as a Python receiver stores it.
///
/// # Errors
///
/// [`ReportError::Status`] naming the first rule broken.
pub fn status_of(value: &Json, instance: &str, namespace: &str) -> Result<Json, ReportError> {
    use ReportError::Status as Bad;
    let value = canonical::value_of_with_limit(value, MAX_STATUS_BYTES)
        .map_err(|_| Bad("not a valid value of at most 2048 bytes"))?;
    let Json::Object(value) = value else { return Err(Bad("not an object")) };
    if !matches!(value.get("instanceId"), Some(Json::String(s)) if s == instance) {
        return Err(Bad("instanceId does not match the subject"));
    }
    if !matches!(value.get("namespace"), Some(Json::String(s)) if s == namespace) {
        return Err(Bad("namespace does not match"));
    }
    if value.contains_key("name") {
        return Err(Bad("has a name key"));
    }
    if Id::new(instance).is_err() {
        return Err(Bad("instanceId is not [A-Za-z0-9_-]{1,128}"));
    }
    let mut result: IndexMap<String, Json> = IndexMap::new();
    for key in ALLOWED {
        if let Some(v) = value.get(key) {
            result.insert(key.to_owned(), v.clone());
        }
    }
    if COUNTERS.iter().any(|k| result.get(*k).is_some_and(|v| !non_negative(v))) {
        return Err(Bad("a counter is not a number >= 0"));
    }
    if !null_or(result.get("rttMs"), non_negative) {
        return Err(Bad("rttMs is not null or a number >= 0"));
    }
    if STRINGS.iter().any(|k| result.get(*k).is_some_and(|v| !is_string(v))) {
        return Err(Bad("a text field is not a string"));
    }
    if !null_or(result.get("server"), is_string) || !null_or(result.get("lastSwitchReason"), is_string) {
        return Err(Bad("server or lastSwitchReason is not null or a string"));
    }
    if result.contains_key("connection") && !string_in(result.get("connection"), &Connection::ALL) {
        return Err(Bad("unknown connection"));
    }
    if result.contains_key("health") && !string_in(result.get("health"), &Health::ALL) {
        return Err(Bad("unknown health"));
    }
    for key in ["currentError", "lastError"] {
        let ok = null_or(result.get(key), |detail| match detail {
            Json::Object(d) => {
                matches!(d.get("code"), Some(Json::String(_)))
                    && matches!(d.get("message"), Some(Json::String(_)))
                    && is_number(d.get("at"))
            }
            _ => false,
        });
        if !ok {
            return Err(Bad("an error detail is not {code, message, at}"));
        }
    }
    if let Some(messaging) = result.get("messaging") {
        let Json::Object(m) = messaging else { return Err(Bad("messaging is not an object")) };
        if !string_in(m.get("phase"), &Phase::ALL) {
            return Err(Bad("unknown messaging phase"));
        }
        if MESSAGING_COUNTERS.iter().any(|k| !null_or(m.get(*k), non_negative)) {
            return Err(Bad("a messaging counter is not a number >= 0"));
        }
        let mut kept = IndexMap::new();
        for key in std::iter::once("phase").chain(MESSAGING_COUNTERS) {
            if let Some(v) = m.get(key) {
                kept.insert(key.to_owned(), v.clone());
            }
        }
        result.insert("messaging".to_owned(), Json::Object(kept));
    }
    if let Some(mesh) = result.get("mesh") {
        let Json::Object(m) = mesh else { return Err(Bad("mesh is not an object")) };
        let leader_ok =
            null_or(m.get("leaderId"), |v| matches!(v, Json::String(s) if s.chars().count() <= MAX_MESH_LEADER_CHARS));
        let members_ok = matches!(m.get("members"), Some(Json::Number(n)) if n.fract() == 0.0 && *n >= 0.0 && *n <= MAX_SAFE_INTEGER);
        let reason_ok = matches!(m.get("reason"), Some(Json::String(s)) if s.chars().count() <= MAX_MESH_REASON_CHARS);
        let upstream_ok = null_or(m.get("upstreamConnected"), |v| matches!(v, Json::Bool(_)));
        if !string_in(m.get("role"), &MESH_ROLES) || !leader_ok || !members_ok || !reason_ok || !upstream_ok {
            return Err(Bad("mesh is not {role, leaderId, members, reason, upstreamConnected}"));
        }
        let kept = ["role", "leaderId", "members", "reason", "upstreamConnected"]
            .into_iter()
            .map(|k| (k.to_owned(), m.get(k).cloned().unwrap_or(Json::Null)))
            .collect();
        result.insert("mesh".to_owned(), Json::Object(kept));
    }
    Ok(Json::Object(result))
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant),*
        }

        impl $name {
            const ALL: [&'static str; [$($text),*].len()] = [$($text),*];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// Parses the wire spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// An instance's connection as its report says (`status.connection`).
    Connection {
        /// `starting`: not yet started connecting.
        Starting = "starting",
        /// `connecting`: a connection attempt is in progress.
        Connecting = "connecting",
        /// `connected`.
        Connected = "connected",
        /// `offline`: lost the connection, or not connected.
        Offline = "offline",
        /// `error`: gave up connecting.
        Error = "error",
        /// `closed`: the instance is shutting down.
        Closed = "closed",
    }
}

wire_enum! {
    /// An instance's own judgement of its health (`status.health`).
    Health {
        /// `ok`: connected, no current error.
        Ok = "ok",
        /// `warning`: not connected (or only a discovery error).
        Warning = "warning",
        /// `error`: a current error.
        Error = "error",
    }
}

wire_enum! {
    /// The messaging phase of an instance (`status.messaging.phase`).
    Phase {
        /// `offline`: no connection to send or receive on.
        Offline = "offline",
        /// `active`.
        Active = "active",
        /// `handoff`: moving to another connection.
        Handoff = "handoff",
        /// `draining`.
        Draining = "draining",
        /// `closed`.
        Closed = "closed",
    }
}

/// `currentError` / `lastError` of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The error code (`INVALID_REPORT`, `SDK_ERROR`, …).
    pub code: String,
    /// The message, already passed through [`error_message`].
    pub message: String,
    /// When it happened, epoch milliseconds.
    pub at: u64,
}

/// The messaging part of a report (`status.messaging`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagingStatus {
    /// `phase`.
    pub phase: Phase,
    /// `pendingRequests`: requests waiting for replies.
    pub pending_requests: u64,
    /// `pendingMessages`: messages queued for handlers.
    pub pending_messages: u64,
    /// `pendingBytes`: their bytes.
    pub pending_bytes: u64,
    /// `inFlightHandlers`: handlers running now.
    pub in_flight_handlers: u64,
    /// `droppedMessages`: messages dropped because a queue was full.
    pub dropped_messages: u64,
    /// `nativeDroppedMessages`: messages the NATS client dropped.
    pub native_dropped_messages: u64,
}

/// This instance's status, as [`encode_report`] sends it. Every field is a field of §7.1;
/// there is deliberately no `name` (a Python receiver refuses a report with one) and no
/// `mesh` (optional; kinopio takes no part in a Python mesh).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `instanceId`: also the last token of the report's subject.
    pub instance_id: Id,
    /// `namespace`: the namespace's name (not its hex token).
    pub namespace: String,
    /// `sdk`: `"rust"` for kinopio.
    pub sdk: String,
    /// `version`: the crate version.
    pub version: String,
    /// `runtime`: e.g. `rust/tokio`.
    pub runtime: String,
    /// `uptimeMs`: since the namespace was opened.
    pub uptime_ms: u64,
    /// `connection`.
    pub connection: Connection,
    /// `messaging`.
    pub messaging: MessagingStatus,
    /// `server`: `scheme://host:port` of the current server, never with credentials.
    pub server: Option<String>,
    /// `rttMs`: the current server's measured round-trip time.
    pub rtt_ms: Option<f64>,
    /// `lastSwitchReason`: one of Python's reasons — `available-server`, `lower-latency`,
    /// `elected-lan-node`.
    pub last_switch_reason: Option<String>,
    /// `pendingVariables`: local writes not yet confirmed.
    pub pending_variables: u64,
    /// `pendingBytes`: their encoded bytes.
    pub pending_bytes: u64,
    /// `variables`: stored names.
    pub variables: u64,
    /// `subscriptions`.
    pub subscriptions: u64,
    /// `reconnects`: activations after the first.
    pub reconnects: u64,
    /// `sentMessages`.
    pub sent_messages: u64,
    /// `receivedMessages`.
    pub received_messages: u64,
    /// `sentBytes`.
    pub sent_bytes: u64,
    /// `receivedBytes`.
    pub received_bytes: u64,
    /// `health`.
    pub health: Health,
    /// `currentError`.
    pub current_error: Option<ErrorDetail>,
    /// `lastError`.
    pub last_error: Option<ErrorDetail>,
}

fn count(n: u64) -> Json {
    Json::Number((n as f64).min(MAX_SAFE_INTEGER))
}

fn text(s: &str) -> Json {
    Json::String(s.to_owned())
}

fn detail(error: Option<&ErrorDetail>, max_chars: usize) -> Json {
    match error {
        None => Json::Null,
        Some(e) => Json::Object(IndexMap::from([
            ("code".to_owned(), text(&e.code)),
            ("message".to_owned(), Json::String(e.message.chars().take(max_chars).collect())),
            ("at".to_owned(), count(e.at)),
        ])),
    }
}

impl Status {
    /// The status object in Python's field order, with error messages cut to `max_chars`.
    fn to_json_with(&self, max_chars: Option<usize>) -> Json {
        let m = &self.messaging;
        let messaging = IndexMap::from([
            ("phase".to_owned(), text(m.phase.as_str())),
            ("pendingRequests".to_owned(), count(m.pending_requests)),
            ("pendingMessages".to_owned(), count(m.pending_messages)),
            ("pendingBytes".to_owned(), count(m.pending_bytes)),
            ("inFlightHandlers".to_owned(), count(m.in_flight_handlers)),
            ("droppedMessages".to_owned(), count(m.dropped_messages)),
            ("nativeDroppedMessages".to_owned(), count(m.native_dropped_messages)),
        ]);
        let rtt = match self.rtt_ms {
            Some(ms) if ms.is_finite() && ms >= 0.0 => Json::Number(ms),
            _ => Json::Null,
        };
        let errors = |e: Option<&ErrorDetail>| match max_chars {
            Some(n) => detail(e, n),
            None => Json::Null,
        };
        Json::Object(IndexMap::from([
            ("instanceId".to_owned(), text(self.instance_id.as_str())),
            ("namespace".to_owned(), text(&self.namespace)),
            ("sdk".to_owned(), text(&self.sdk)),
            ("version".to_owned(), text(&self.version)),
            ("runtime".to_owned(), text(&self.runtime)),
            ("uptimeMs".to_owned(), count(self.uptime_ms)),
            ("connection".to_owned(), text(self.connection.as_str())),
            ("messaging".to_owned(), Json::Object(messaging)),
            ("server".to_owned(), self.server.as_deref().map_or(Json::Null, text)),
            ("rttMs".to_owned(), rtt),
            ("lastSwitchReason".to_owned(), self.last_switch_reason.as_deref().map_or(Json::Null, text)),
            ("pendingVariables".to_owned(), count(self.pending_variables)),
            ("pendingBytes".to_owned(), count(self.pending_bytes)),
            ("variables".to_owned(), count(self.variables)),
            ("subscriptions".to_owned(), count(self.subscriptions)),
            ("reconnects".to_owned(), count(self.reconnects)),
            ("sentMessages".to_owned(), count(self.sent_messages)),
            ("receivedMessages".to_owned(), count(self.received_messages)),
            ("sentBytes".to_owned(), count(self.sent_bytes)),
            ("receivedBytes".to_owned(), count(self.received_bytes)),
            ("health".to_owned(), text(self.health.as_str())),
            ("currentError".to_owned(), errors(self.current_error.as_ref())),
            ("lastError".to_owned(), errors(self.last_error.as_ref())),
        ]))
    }

    /// The status object as [`encode_report`] sends it (before any shortening).
    pub fn to_json(&self) -> Json {
        self.to_json_with(Some(MAX_ERROR_CHARS))
    }

    /// The largest form of this status that fits [`MAX_STATUS_BYTES`]: error messages are cut
    /// shorter and shorter, and dropped (`null`) last.
    ///
    /// # Errors
    ///
    /// [`ReportError::Status`] if even that does not fit or a receiver would refuse it (a
    /// namespace of invalid text, say) — never for a status built from valid parts.
    pub fn fitted(&self) -> Result<Json, ReportError> {
        for max_chars in [Some(MAX_ERROR_CHARS), Some(120), Some(60), Some(20), None] {
            let json = self.to_json_with(max_chars);
            if status_of(&json, self.instance_id.as_str(), &self.namespace).is_ok() {
                return Ok(json);
            }
        }
        Err(ReportError::Status("this instance's status does not fit 2048 bytes"))
    }
}

/// The report payload `{"status":…,"interval":<ms>}` for `status`, every `interval` (clamped
/// to 1…2^31−1 ms), in canonical JSON. What it returns is accepted by [`receive`] (and by a
/// Python receiver) on `status.instance_id`'s subject in `status.namespace`.
///
/// # Errors
///
/// As [`Status::fitted`].
pub fn encode_report(status: &Status, interval_ms: u64) -> Result<Vec<u8>, ReportError> {
    let status = status.fitted()?;
    let interval = interval_ms.clamp(1, MAX_INTERVAL_MS);
    let report = Json::Object(IndexMap::from([
        ("status".to_owned(), status),
        ("interval".to_owned(), Json::Number(interval as f64)),
    ]));
    canonical::encode(&report).map_err(|_| ReportError::Status("non-finite number"))
}

/// Whether Python's `\s` matches `c` (`str.isspace`): Rust's whitespace plus the
/// information separators U+001C–U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The length of an endpoint (`(?:nats|tls|wss?)://[^\s]+`) starting at the beginning of
/// `s`, if one does.
fn endpoint_at(s: &str) -> Option<usize> {
    let scheme = ["nats://", "tls://", "wss://", "ws://"].into_iter().find(|p| s.starts_with(p))?;
    let rest = &s[scheme.len()..];
    let tail = rest.find(python_space).unwrap_or(rest.len());
    (tail > 0).then_some(scheme.len() + tail)
}

/// An error message as a report may show it (`safe_error`): every non-empty secret (token,
/// password) replaced by `[redacted]`, every `nats|tls|ws|wss://…` up to the next whitespace
/// replaced by `[endpoint]`, then cut to [`MAX_ERROR_CHARS`] characters.
pub fn error_message(message: &str, secrets: &[&str]) -> String {
    let mut text = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some(len) = endpoint_at(&text[i..]) {
            out.push_str("[endpoint]");
            i += len;
            continue;
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Status {
        Status {
            instance_id: Id::new("2b7e1516-28ae-4d2a-a6d2-ab15f7158809").unwrap(),
            namespace: "workshop".to_owned(),
            sdk: "rust".to_owned(),
            version: "0.1.0".to_owned(),
            runtime: "rust/tokio".to_owned(),
            uptime_ms: 1234,
            connection: Connection::Connected,
            messaging: MessagingStatus {
                phase: Phase::Active,
                pending_requests: 0,
                pending_messages: 1,
                pending_bytes: 2,
                in_flight_handlers: 0,
                dropped_messages: 0,
                native_dropped_messages: 0,
            },
            server: Some("nats://127.0.0.1:4222".to_owned()),
            rtt_ms: Some(0.25),
            last_switch_reason: Some("available-server".to_owned()),
            pending_variables: 0,
            pending_bytes: 0,
            variables: 3,
            subscriptions: 1,
            reconnects: 0,
            sent_messages: 10,
            received_messages: 20,
            sent_bytes: 300,
            received_bytes: 400,
            health: Health::Ok,
            current_error: None,
            last_error: Some(ErrorDetail {
                code: "TIMEOUT".to_owned(),
                message: "late".to_owned(),
                at: 1_700_000_000_000,
            }),
        }
    }

    fn json(text: &str) -> Json {
        canonical::decode(text.as_bytes()).unwrap()
    }

    fn status_text(fields: &str) -> String {
        format!(r#"{{"status":{{"instanceId":"i-1","namespace":"workshop"{fields}}},"interval":5000}}"#)
    }

    #[test]
    fn own_report_is_accepted_and_has_no_name() {
        let status = sample();
        let payload = encode_report(&status, 5000).unwrap();
        let text = String::from_utf8(payload.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"status":{"instanceId":"2b7e1516-28ae-4d2a-a6d2-ab15f7158809","namespace":"workshop","sdk":"rust""#
            ),
            "{text}"
        );
        assert!(text.ends_with(r#""interval":5000}"#), "{text}");
        assert!(!text.contains("\"name\""));
        let received = receive(&payload, status.instance_id.as_str(), "workshop").unwrap();
        assert_eq!(received.interval_ms, 5000);
        let Json::Object(stored) = &received.status else { panic!() };
        assert_eq!(stored.get("sdk"), Some(&text_json("rust")));
        assert_eq!(stored.get("health"), Some(&text_json("ok")));
        // Another subject or namespace refuses it.
        assert!(receive(&payload, "someone-else", "workshop").is_err());
        assert!(receive(&payload, status.instance_id.as_str(), "other").is_err());
    }

    fn text_json(s: &str) -> Json {
        Json::String(s.to_owned())
    }

    #[test]
    fn interval_rules() {
        let ok = |interval: &str| {
            receive(
                format!(r#"{{"status":{{"instanceId":"i","namespace":"n"}},"interval":{interval}}}"#).as_bytes(),
                "i",
                "n",
            )
        };
        assert_eq!(ok("1").unwrap().interval_ms, 1);
        assert_eq!(ok("2147483647").unwrap().interval_ms, MAX_INTERVAL_MS);
        for bad in ["0", "-1", "2147483648", "1.5", "\"5000\"", "null", "true", "[]"] {
            assert_eq!(ok(bad), Err(ReportError::Interval), "{bad}");
        }
        assert_eq!(receive(br#"{"status":{"instanceId":"i","namespace":"n"}}"#, "i", "n"), Err(ReportError::Interval));
        assert_eq!(receive(b"[1]", "i", "n"), Err(ReportError::Interval));
        assert_eq!(receive(b"", "i", "n").unwrap_err().code(), ErrorCode::InvalidMessage);
        assert_eq!(receive(b"{", "i", "n").unwrap_err().code(), ErrorCode::InvalidMessage);
        assert_eq!(receive(b"{}", "i", "n").unwrap_err().code(), ErrorCode::InvalidReport);
    }

    #[test]
    fn status_rules() {
        let check = |fields: &str| receive(status_text(fields).as_bytes(), "i-1", "workshop");
        assert!(check("").is_ok());
        let huge = format!(r#","huge":"{}""#, "x".repeat(2048));
        for bad in [
            r#","name":"x""#,
            r#","uptimeMs":-1"#,
            r#","uptimeMs":true"#,
            r#","rttMs":"1""#,
            r#","sdk":1"#,
            r#","server":1"#,
            r#","connection":"online""#,
            r#","health":"fine""#,
            r#","currentError":{"code":"X","message":"m"}"#,
            r#","currentError":{"code":"X","message":"m","at":true}"#,
            r#","messaging":{}"#,
            r#","messaging":{"phase":"active","pendingBytes":-1}"#,
            r#","mesh":{"role":"leader","members":1}"#,
            r#","mesh":{"role":"king","members":1,"reason":"r"}"#,
            r#","mesh":{"role":"leader","members":1.5,"reason":"r"}"#,
            r#","mesh":{"role":"leader","members":1,"reason":"r","upstreamConnected":1}"#,
            huge.as_str(),
        ] {
            assert_eq!(check(bad).unwrap_err().code(), ErrorCode::InvalidReport, "{bad}");
        }
        // Unknown keys are dropped; messaging and mesh are reduced to their known keys.
        let kept = check(
            r#","extra":1,"messaging":{"phase":"active","limits":{},"pendingBytes":null},"mesh":{"role":"disabled","members":0,"reason":"initializing","x":1}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(canonical::encode(&kept.status).unwrap()).unwrap(),
            r#"{"instanceId":"i-1","namespace":"workshop","mesh":{"role":"disabled","leaderId":null,"members":0,"reason":"initializing","upstreamConnected":null},"messaging":{"phase":"active","pendingBytes":null}}"#
        );
        // The subject's id must be a valid id even when the status repeats it.
        let dotted = r#"{"status":{"instanceId":"a b","namespace":"workshop"},"interval":1}"#;
        assert!(receive(dotted.as_bytes(), "a b", "workshop").is_err());
        assert!(status_of(&json("[]"), "i", "n").is_err());
    }

    #[test]
    fn oversized_errors_are_shortened_to_fit() {
        let mut status = sample();
        let long = "😀".repeat(400);
        status.current_error = Some(ErrorDetail { code: "SDK_ERROR".to_owned(), message: long.clone(), at: 1 });
        status.last_error = status.current_error.clone();
        status.namespace = "名".repeat(42);
        let payload = encode_report(&status, 5000).unwrap();
        let received = receive(&payload, status.instance_id.as_str(), &status.namespace).unwrap();
        let encoded = canonical::encode(&received.status).unwrap();
        assert!(encoded.len() <= MAX_STATUS_BYTES, "{}", encoded.len());
        let Json::Object(map) = &received.status else { panic!() };
        assert_ne!(map.get("currentError"), Some(&Json::Null), "shortened, not dropped");
        // An instance id that is not an id never leaves (the type prevents it); an interval
        // beyond the limit is clamped.
        let payload = encode_report(&sample(), u64::MAX).unwrap();
        assert_eq!(receive(&payload, sample().instance_id.as_str(), "workshop").unwrap().interval_ms, MAX_INTERVAL_MS);
    }

    #[test]
    fn error_messages_hide_endpoints_and_secrets() {
        assert_eq!(
            error_message("connect to nats://user:pw@10.0.0.1:4222 failed", &[]),
            "connect to [endpoint] failed"
        );
        assert_eq!(error_message("a wss://h:443/x,tls://y\tb ws:// c", &[]), "a [endpoint]\tb ws:// c");
        assert_eq!(error_message("token s3cret refused", &["s3cret", ""]), "token [redacted] refused");
        assert_eq!(error_message(&"é".repeat(300), &[]).chars().count(), MAX_ERROR_CHARS);
        // A secret at the cut is removed before cutting.
        let msg = format!("{}hunter2", "x".repeat(236));
        assert!(!error_message(&msg, &["hunter2"]).contains("hunt"));
        assert_eq!(error_message("nats://a\u{1c}b", &[]), "[endpoint]\u{1c}b");
    }
}
