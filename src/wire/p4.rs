//! Protocol 4, the wire of kinopio-hub 3.0.0 (PyPI) and its JavaScript sibling: the pure
//! groundwork — names and subjects, canonical JSON, variable records with their
//! last-writer-wins order, and message headers. Nothing here does I/O; the API built on it is
//! [`crate::p4`].
//!
//! The contract is the reference document `kinopio-hub-3.0.0-protocol.md` (§ numbers below are
//! its sections). Every rule that a peer can observe is reproduced byte for byte and checked
//! against vectors computed by the Python package's own functions
//! (`scripts/interop/p4_vectors.py` → `tests/vectors/p4/*.json`).
//!
//! - [`names`]: name, topic, queue and id validation, hex tokens and every subject builder of
//!   §2 (records `<hex(ns)>.<hex(name)>`, control `_sys.v4.<hex(ns)>…`, messaging
//!   `_msg.v1.<hex(ns)>.<hex(segment)>…`, queues `_q.v1.…`), plus the receiving side's subject
//!   parsers.
//! - [`canonical`]: the JSON of §3 — a bounded decoder ([`canonical::decode`]: size checked
//!   before the first byte is read, nesting checked before each container is entered), the
//!   `js_stringify` encoder ([`canonical::encode`]: ECMAScript numbers, `JSON.stringify`
//!   strings, integer-like keys first) and the value rules of `value_of`
//!   ([`canonical::value_of`]).
//! - [`record`]: the record envelope of §4.1 ([`record::Record`], a tombstone cannot carry a
//!   value), the version order of §4.2, the pure LWW step of §4.3 ([`record::apply`]), the
//!   capacity rule, and how kinopio picks the counter of its own writes
//!   ([`record::Clock::next_version`], including the §11 W9 decision).
//! - [`headers`]: header validation and the outbound normalisation of §5.2.
//! - [`live`]: the live-channel messages of §6 (lease request, grant, data) and kinopio's
//!   optional acknowledgement.
//! - [`report`]: health reports (§7) — building kinopio's own and checking a received one
//!   exactly like the reference's `status_of`.
//!
//! Errors carry the reference's error codes ([`ErrorCode`], §10.2) so a later API can report
//! them exactly as a Python peer would name them.
//!
//! # Deliberate differences from 3.0.0
//!
//! None of these changes a byte that a compliant peer sends or accepts.
//!
//! - **Decoding is bounded before parsing.** Python parses up to 1 MiB with no nesting limit
//!   other than its interpreter's recursion limit (§3.3, W2). [`canonical::decode`] rejects
//!   input over [`canonical::MAX_MESSAGE_BYTES`] unread and any nesting deeper than
//!   [`canonical::MAX_DECODE_DEPTH`] (64) before entering it, as `INVALID_MESSAGE`. A valid
//!   value holds at most 33 nested containers and protocol envelopes add one or two, so no
//!   valid message is refused.
//! - **Strings are Unicode.** Python's decoder accepts lone surrogates (`"\ud800"`) and fails
//!   later (`value_of` → `INVALID_VALUE`, or a `UnicodeEncodeError` when encoding); kinopio
//!   refuses them while decoding (`INVALID_MESSAGE`). Either way the message is dropped.
//! - **Numbers beyond `f64`.** Python parses `1e400` to infinity and then fails in `value_of`
//!   (`INVALID_VALUE`) or in `js_stringify`; kinopio parses it to infinity too and reports
//!   `INVALID_VALUE` from [`canonical::value_of`] and a non-finite error from
//!   [`canonical::encode`]. Integers are kept as `f64`, which is exact for every integer
//!   `value_of` accepts (±(2^53−1)) and is what `js_stringify` itself does beyond that range.
//! - **W9, maximal counters** ([`record::Clock::next_version`]): a record whose counter is the
//!   largest the wire allows (forty 9s) is accepted like Python does, but it no longer bricks
//!   every writer: a kinopio write falls back from the hub-wide clock to the variable's own
//!   counter, so only the poisoned variable is affected, and even that one is still writable
//!   when kinopio's writer id sorts above the poisoner's. See [`record`] for the reasoning.
//! - **Header errors** follow Python's order (per entry: name/value check, then the
//!   32-entry/4,096-byte check) so the same input gets the same code.

pub mod canonical;
pub mod headers;
pub mod live;
pub mod names;
pub mod record;
pub mod report;

/// The error codes of the reference (§10.2), spelled as Python's `KinopioError.code`: the
/// kind of every protocol-4 error ([`crate::p4::Error`]). The managed-broker codes of the
/// reference (`BROKER_*`, downloads) have no counterpart: kinopio's leaf is a separate
/// program with its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// `INVALID_NAME`: a namespace, variable, channel or id is not a valid name.
    InvalidName,
    /// `INVALID_TOPIC`: a message topic, pattern or queue name is invalid.
    InvalidTopic,
    /// `INVALID_VALUE`: a value breaks the rules of §3.2.
    InvalidValue,
    /// `VALUE_TOO_LARGE`: a value encodes to more than 65,536 bytes.
    ValueTooLarge,
    /// `INVALID_VERSION`: a record version is malformed.
    InvalidVersion,
    /// `INVALID_RECORD`: a record is not an envelope of §4.1, or its name does not match its
    /// subject.
    InvalidRecord,
    /// `VERSION_COLLISION`: two records with the same version and different content.
    VersionCollision,
    /// `INVALID_MESSAGE`: a protocol message is not valid JSON (or is nested too deeply).
    InvalidMessage,
    /// `MESSAGE_TOO_LARGE`: a message or header set is over its limit.
    MessageTooLarge,
    /// `INVALID_HEADERS`: a header name or value is not allowed.
    InvalidHeaders,
    /// `MEMORY_FULL`: the record store's capacity would be exceeded.
    MemoryFull,
    /// `INVALID_REPORT`: a health report breaks the rules of §7.2.
    InvalidReport,
    /// `INVALID_OPTIONS`: an option or argument is out of range.
    InvalidOptions,
    /// `TIMEOUT`: the deadline passed (for a request: remote execution may have started).
    Timeout,
    /// `DISCONNECTED`: not connected, or the connection changed during the operation.
    Disconnected,
    /// `CLOSED`: the hub or namespace is closed.
    Closed,
    /// `DRAINING`: the namespace is draining; no new operations.
    Draining,
    /// `DRAIN_TIMEOUT`: draining did not finish in time.
    DrainTimeout,
    /// `DRAIN_IN_HANDLER`: drain was called from inside one of the namespace's handlers.
    DrainInHandler,
    /// `NO_RESPONDERS`: nobody listens on the request's topic.
    NoResponders,
    /// `NO_REPLY_SUBJECT`: a reply was asked for a message that has no reply subject.
    NoReplySubject,
    /// `HANDLER_ERROR`: a handler failed, or a received message could not be decoded.
    HandlerError,
    /// `BUFFER_OVERFLOW`: a local budget (outbound bytes, collected replies) is exhausted.
    BufferOverflow,
    /// `SLOW_CONSUMER`: a subscription's queue was full and messages were dropped.
    SlowConsumer,
    /// `PERMISSION_DENIED`: the server refused a subscription or publish.
    PermissionDenied,
    /// `NO_RECEIVERS`: a live channel has no receiver.
    NoReceivers,
    /// `EXPIRED`: a live lease expired before the data went out.
    Expired,
    /// `BUSY`: another send on this live channel handle is in progress.
    Busy,
    /// `ALREADY_SUBSCRIBED`: the live channel handle already has a receiver.
    AlreadySubscribed,
    /// `LIMIT_EXCEEDED`: a per-hub limit (channels, receivers, subscriptions) is reached.
    LimitExceeded,
}

impl ErrorCode {
    /// The code as the reference spells it (`INVALID_NAME`, …).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod vectors;
