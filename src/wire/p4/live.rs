//! The messages of live channels (§6): the lease request, the receiver's grant, the data
//! message, and kinopio's optional acknowledgement. Pure: building them with the canonical
//! encoder and checking received ones with the bounded decoder. The lease rules (who may hold
//! a lease, sequence order, expiry) are not here but in the receiver's state machine
//! (`crate::p4::live`).
//!
//! ```text
//! sender                                   receiver(s)
//!   SUB S.inbox.<uuid4>
//!   PUB S.lease  reply S.inbox.<uuid4>   {"protocol":1}
//!                                          grant: new lease, expiry now + max_age
//!   <- S.inbox.<uuid4>  {"protocol":1,"session":…,"lease":…,"ttl_ms":300}
//!   PUB S.data  {"protocol":1,"session":…,"lease":…,"seq":1,"value":…}
//!   PING/PONG (flush)                      accept: same session, lease known and
//!                                          unexpired, seq > last seq, value valid
//! ```
//!
//! `S` is `_sys.v4.<hex(namespace)>.live.<hex(channel)>` ([`super::names::Subjects`]).
//!
//! **Acknowledgement (kinopio only).** The 3.0.0 wire has no answer to a data message. A
//! kinopio sender that asks for confirmation publishes the data message *with a reply
//! subject* (its `S.inbox.<uuid4>`); a kinopio receiver that accepts it answers there with
//! [`Ack`] `{"protocol":1,"session","lease","seq","accepted":true}`, and with
//! `"accepted":false` when the message names its current session but a lease it no longer
//! holds (expired or evicted). A Python 3.0.0 receiver ignores the reply subject of data
//! messages and a Python sender never sets one, so neither side of an interop pair sees a
//! difference; an acknowledgement has no `ttl_ms` and can never pass as a grant.

use indexmap::IndexMap;

use super::ErrorCode;
use super::canonical::{self, DecodeError, Json, MAX_SAFE_INTEGER, MAX_VALUE_BYTES, ValueRuleError};

/// The live protocol version every message carries (`"protocol":1`).
pub const PROTOCOL: u32 = 1;
/// Largest data message a receiver reads: a 64 KiB value plus 1,024 bytes of envelope.
pub const MAX_DATA_BYTES: usize = MAX_VALUE_BYTES + 1024;
/// Longest `session` and `lease` a sender accepts in a grant, in characters.
pub const MAX_GRANT_ID_CHARS: usize = 128;
/// Shortest and longest lease a grant may carry, and a receiver's `max_age` range (ms).
pub const MIN_TTL_MS: u64 = 1;
/// See [`MIN_TTL_MS`].
pub const MAX_TTL_MS: u64 = 60_000;
/// Largest sequence number, 2^53 − 1.
pub const MAX_SEQ: u64 = 9_007_199_254_740_991;

/// Why a received live message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveMessageError {
    /// A data message longer than [`MAX_DATA_BYTES`], refused unread.
    #[error("live data message of {len} bytes exceeds {MAX_DATA_BYTES} bytes; not read")]
    TooLarge {
        /// The payload length.
        len: usize,
    },
    /// Not JSON (see [`canonical::decode`]).
    #[error("live message: {0}")]
    Decode(#[from] DecodeError),
    /// Not a JSON object with `"protocol":1`.
    #[error("live message is not an object with \"protocol\":1")]
    NotProtocol1,
    /// A field is missing or out of range.
    #[error("live message field `{0}` is missing or invalid")]
    Field(&'static str),
    /// The value breaks the value rules (§3.2).
    #[error("live value: {0}")]
    Value(#[from] ValueRuleError),
}

impl LiveMessageError {
    /// The reference's code: `MESSAGE_TOO_LARGE`, the value's code, else `INVALID_MESSAGE`.
    pub fn code(&self) -> ErrorCode {
        match self {
            LiveMessageError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            LiveMessageError::Decode(e) => e.code(),
            LiveMessageError::Value(e) => e.code(),
            _ => ErrorCode::InvalidMessage,
        }
    }
}

fn object(payload: &[u8]) -> Result<IndexMap<String, Json>, LiveMessageError> {
    match canonical::decode(payload)? {
        Json::Object(map) if map.get("protocol").is_some_and(is_protocol_1) => Ok(map),
        _ => Err(LiveMessageError::NotProtocol1),
    }
}

/// Python compares `protocol == 1`, which `1` and `1.0` pass. (It also lets `true` pass,
/// since `True == 1` in Python; kinopio does not — no sender writes it.)
fn is_protocol_1(value: &Json) -> bool {
    matches!(value, Json::Number(n) if *n == f64::from(PROTOCOL))
}

/// An integer-valued number in `min..=max`. (Python also requires a JSON integer, not `1.0`;
/// [`Json`] does not keep that distinction, so kinopio accepts `1.0` here.)
fn integer(value: Option<&Json>, min: u64, max: u64) -> Option<u64> {
    match value {
        Some(Json::Number(n)) if n.fract() == 0.0 && *n >= min as f64 && *n <= max as f64 && *n <= MAX_SAFE_INTEGER => {
            Some(*n as u64)
        }
        _ => None,
    }
}

fn string(value: Option<&Json>) -> Option<&str> {
    match value {
        Some(Json::String(s)) => Some(s),
        _ => None,
    }
}

fn envelope(fields: impl IntoIterator<Item = (&'static str, Json)>) -> Vec<u8> {
    let mut map = IndexMap::new();
    map.insert("protocol".to_owned(), Json::Number(f64::from(PROTOCOL)));
    for (k, v) in fields {
        map.insert(k.to_owned(), v);
    }
    // Only finite numbers are ever put in an envelope; `Data` checks its value first.
    canonical::encode(&Json::Object(map)).unwrap_or_default()
}

/// The lease request, `{"protocol":1}`.
pub fn lease_request() -> Vec<u8> {
    envelope([])
}

/// Checks a lease request: an object with `"protocol":1` (other fields are ignored).
///
/// # Errors
/// [`LiveMessageError`].
pub fn check_lease_request(payload: &[u8]) -> Result<(), LiveMessageError> {
    object(payload).map(|_| ())
}

/// A receiver's answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The receiver's session (a UUID per connection).
    pub session: String,
    /// The lease id (a UUID per grant).
    pub lease: String,
    /// How long the lease lasts from the receiver's grant, in ms.
    pub ttl_ms: u64,
}

impl Grant {
    /// `{"protocol":1,"session":…,"lease":…,"ttl_ms":…}`.
    pub fn encode(&self) -> Vec<u8> {
        envelope([
            ("session", Json::String(self.session.clone())),
            ("lease", Json::String(self.lease.clone())),
            ("ttl_ms", Json::Number(self.ttl_ms as f64)),
        ])
    }

    /// Checks a grant as the sender does: `"protocol":1`, `session` and `lease` strings of
    /// 1–128 characters, `ttl_ms` an integer 1–60,000. Other fields are ignored.
    ///
    /// # Errors
    /// [`LiveMessageError`].
    pub fn parse(payload: &[u8]) -> Result<Grant, LiveMessageError> {
        let map = object(payload)?;
        let id = |key: &'static str| {
            string(map.get(key))
                .filter(|s| (1..=MAX_GRANT_ID_CHARS).contains(&s.chars().count()))
                .map(str::to_owned)
                .ok_or(LiveMessageError::Field(key))
        };
        Ok(Grant {
            session: id("session")?,
            lease: id("lease")?,
            ttl_ms: integer(map.get("ttl_ms"), MIN_TTL_MS, MAX_TTL_MS).ok_or(LiveMessageError::Field("ttl_ms"))?,
        })
    }
}

/// A data message: one value under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// The receiver session the lease belongs to.
    pub session: String,
    /// The lease id.
    pub lease: String,
    /// The sequence number under this lease: 1, 2, … (at most [`MAX_SEQ`]).
    pub seq: u64,
    /// The value, normalised by `value_of`.
    pub value: Json,
}

impl Data {
    /// `{"protocol":1,"session":…,"lease":…,"seq":…,"value":…}`.
    ///
    /// # Errors
    /// The value breaks the value rules (it is normalised with `value_of` first).
    pub fn encode(&self) -> Result<Vec<u8>, ValueRuleError> {
        let value = canonical::value_of(&self.value)?;
        Ok(envelope([
            ("session", Json::String(self.session.clone())),
            ("lease", Json::String(self.lease.clone())),
            ("seq", Json::Number(self.seq as f64)),
            ("value", value),
        ]))
    }

    /// Checks a data message as a receiver does before looking at its lease: at most
    /// [`MAX_DATA_BYTES`] (checked unread), an object with `"protocol":1`, `session` and
    /// `lease` strings, `seq` an integer 1…2^53−1, and a `value` that passes `value_of`.
    ///
    /// # Errors
    /// [`LiveMessageError`].
    pub fn parse(payload: &[u8]) -> Result<Data, LiveMessageError> {
        if payload.len() > MAX_DATA_BYTES {
            return Err(LiveMessageError::TooLarge { len: payload.len() });
        }
        let map = object(payload)?;
        let session = string(map.get("session")).ok_or(LiveMessageError::Field("session"))?.to_owned();
        let lease = string(map.get("lease")).ok_or(LiveMessageError::Field("lease"))?.to_owned();
        let seq = integer(map.get("seq"), 1, MAX_SEQ).ok_or(LiveMessageError::Field("seq"))?;
        let value = canonical::value_of(map.get("value").ok_or(LiveMessageError::Field("value"))?)?;
        Ok(Data { session, lease, seq, value })
    }
}

/// kinopio's acknowledgement of a data message (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The session of the data message.
    pub session: String,
    /// Its lease.
    pub lease: String,
    /// Its sequence number.
    pub seq: u64,
    /// Whether the receiver accepted it (`false`: the receiver no longer holds the lease).
    pub accepted: bool,
}

impl Ack {
    /// `{"protocol":1,"session":…,"lease":…,"seq":…,"accepted":…}`.
    pub fn encode(&self) -> Vec<u8> {
        envelope([
            ("session", Json::String(self.session.clone())),
            ("lease", Json::String(self.lease.clone())),
            ("seq", Json::Number(self.seq as f64)),
            ("accepted", Json::Bool(self.accepted)),
        ])
    }

    /// Checks an acknowledgement.
    ///
    /// # Errors
    /// [`LiveMessageError`].
    pub fn parse(payload: &[u8]) -> Result<Ack, LiveMessageError> {
        let map = object(payload)?;
        Ok(Ack {
            session: string(map.get("session")).ok_or(LiveMessageError::Field("session"))?.to_owned(),
            lease: string(map.get("lease")).ok_or(LiveMessageError::Field("lease"))?.to_owned(),
            seq: integer(map.get("seq"), 1, MAX_SEQ).ok_or(LiveMessageError::Field("seq"))?,
            accepted: match map.get("accepted") {
                Some(Json::Bool(b)) => *b,
                _ => return Err(LiveMessageError::Field("accepted")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "021afa34-5e57-49bb-a7aa-0228cdab4ae5";
    const LEASE: &str = "e49fc1b1-8bcc-4b04-bf4b-39eb176899fb";

    #[test]
    fn messages_match_the_observed_wire() {
        // The exchange of §6 [observed], byte for byte (123 and 137 bytes on the wire there
        // with the same ids).
        assert_eq!(lease_request(), br#"{"protocol":1}"#);
        let grant = Grant { session: SESSION.into(), lease: LEASE.into(), ttl_ms: 300 };
        let wire = grant.encode();
        assert_eq!(
            wire,
            format!(r#"{{"protocol":1,"session":"{SESSION}","lease":"{LEASE}","ttl_ms":300}}"#).as_bytes()
        );
        assert_eq!(wire.len(), 123);
        assert_eq!(Grant::parse(&wire).unwrap(), grant);
        let mut step = IndexMap::new();
        step.insert("step".to_owned(), Json::Number(1.0));
        let data = Data { session: SESSION.into(), lease: LEASE.into(), seq: 1, value: Json::Object(step) };
        let wire = data.encode().unwrap();
        assert_eq!(
            wire,
            format!(r#"{{"protocol":1,"session":"{SESSION}","lease":"{LEASE}","seq":1,"value":{{"step":1}}}}"#)
                .as_bytes()
        );
        assert_eq!(wire.len(), 137);
        assert_eq!(Data::parse(&wire).unwrap(), data);
        let ack = Ack { session: SESSION.into(), lease: LEASE.into(), seq: 7, accepted: true };
        assert_eq!(Ack::parse(&ack.encode()).unwrap(), ack);
        // An acknowledgement is never a grant (no ttl_ms), so a Python sender ignores it.
        assert_eq!(Grant::parse(&ack.encode()), Err(LiveMessageError::Field("ttl_ms")));
    }

    #[test]
    fn lease_requests_need_protocol_1() {
        assert!(check_lease_request(br#"{"protocol":1}"#).is_ok());
        assert!(check_lease_request(br#" {"protocol":1.0,"extra":[1]} "#).is_ok());
        for bad in
            [&br#"{"protocol":2}"#[..], br#"{"protocol":"1"}"#, br#"{"protocol":true}"#, b"[1]", b"{}", b"", b"null"]
        {
            assert!(check_lease_request(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn grants_are_checked_like_the_python_sender() {
        let ok = |s: &str| Grant::parse(s.as_bytes());
        assert!(ok(r#"{"protocol":1,"session":"s","lease":"l","ttl_ms":1}"#).is_ok());
        assert!(ok(r#"{"protocol":1,"session":"s","lease":"l","ttl_ms":60000,"x":0}"#).is_ok());
        let long = "é".repeat(128); // 128 characters, 256 bytes: Python counts characters
        assert!(ok(&format!(r#"{{"protocol":1,"session":"{long}","lease":"l","ttl_ms":5}}"#)).is_ok());
        let too_long = "a".repeat(129);
        for bad in [
            r#"{"protocol":1,"session":"s","lease":"l","ttl_ms":0}"#.to_owned(),
            r#"{"protocol":1,"session":"s","lease":"l","ttl_ms":60001}"#.to_owned(),
            r#"{"protocol":1,"session":"s","lease":"l","ttl_ms":1.5}"#.to_owned(),
            r#"{"protocol":1,"session":"","lease":"l","ttl_ms":5}"#.to_owned(),
            r#"{"protocol":1,"session":"s","lease":7,"ttl_ms":5}"#.to_owned(),
            r#"{"protocol":2,"session":"s","lease":"l","ttl_ms":5}"#.to_owned(),
            format!(r#"{{"protocol":1,"session":"{too_long}","lease":"l","ttl_ms":5}}"#),
        ] {
            assert!(ok(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_messages_are_bounded_and_checked() {
        let ok = |s: &str| Data::parse(s.as_bytes());
        assert_eq!(
            ok(r#"{"protocol":1,"session":"s","lease":"l","seq":9007199254740991,"value":null}"#).unwrap().seq,
            MAX_SEQ
        );
        for (bad, code) in [
            (r#"{"protocol":1,"session":"s","lease":"l","seq":0,"value":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"session":"s","lease":"l","seq":9007199254740992,"value":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"session":"s","lease":"l","seq":-1,"value":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"session":"s","lease":"l","seq":1.5,"value":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"session":"s","lease":"l","seq":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"session":1,"lease":"l","seq":1,"value":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"session":"s","lease":"l","seq":1,"value":1e300}"#, ErrorCode::InvalidValue),
            (r#"{"session":"s","lease":"l","seq":1,"value":1}"#, ErrorCode::InvalidMessage),
            (r#"{"protocol":1,"#, ErrorCode::InvalidMessage),
        ] {
            assert_eq!(ok(bad).unwrap_err().code(), code, "{bad}");
        }
        // The size limit is checked before decoding: a value of exactly 64 KiB fits, one byte
        // more of envelope room than 1,024 does not.
        let big = format!(r#""{}""#, "x".repeat(MAX_VALUE_BYTES - 2));
        let fits = format!(r#"{{"protocol":1,"session":"s","lease":"l","seq":1,"value":{big}}}"#);
        assert!(fits.len() <= MAX_DATA_BYTES && ok(&fits).is_ok());
        let oversize = vec![b' '; MAX_DATA_BYTES + 1];
        assert_eq!(Data::parse(&oversize).unwrap_err(), LiveMessageError::TooLarge { len: MAX_DATA_BYTES + 1 });
        let big_value =
            format!(r#"{{"protocol":1,"session":"s","lease":"l","seq":1,"value":"{}"}}"#, "x".repeat(MAX_VALUE_BYTES));
        assert_eq!(ok(&big_value).unwrap_err().code(), ErrorCode::ValueTooLarge);
    }
}
