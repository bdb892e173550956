//! Names, topics, queue names and ids of protocol 4, their hex tokens, and every subject of
//! §2: the only place that knows how a protocol-4 subject is spelled.
//!
//! - A [`Name`] (namespace, variable, live channel) is 1–128 UTF-8 bytes without C0 control
//!   characters or DEL; case-sensitive, never trimmed or normalised. Its token is the
//!   lowercase hex of its UTF-8 bytes, so data tokens never contain `.` or wildcards.
//! - A [`Topic`] is a message name: dots split it into segments, each hexed on its own. A
//!   [`TopicPattern`] may also hold the whole-segment wildcards `*` and a final `>`, which stay
//!   literal in the subject.
//! - A [`QueueGroup`] is a name without `*`/`>`, hexed as one token (its dots become `2e`).
//! - An [`Id`] (`[A-Za-z0-9_-]{1,128}`) is a writer, an instance id or an inbox id.
//!
//! [`Subjects`] builds every subject of one namespace and parses the ones a receiver must
//! read back (sync inboxes, message topics).

use std::fmt;

use super::ErrorCode;

/// Longest name, topic or queue name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest [`Id`], in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Prefix of every control subject (`_sys.v4.<hex(ns)>…`).
pub const CONTROL_PREFIX: &str = "_sys.v4";
/// Prefix of every message subject (`_msg.v1.<hex(ns)>…`).
pub const MESSAGE_PREFIX: &str = "_msg.v1";
/// Prefix of every queue group (`_q.v1.<hex(ns)>.<hex(queue)>`).
pub const QUEUE_PREFIX: &str = "_q.v1";

/// What was being validated when a [`NameError`] occurred; decides its [`ErrorCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameRole {
    /// A namespace, variable or live-channel name (`INVALID_NAME`).
    Name,
    /// A message topic or pattern (`INVALID_TOPIC`).
    Topic,
    /// A queue group name (`INVALID_TOPIC`).
    Queue,
    /// A writer, instance or inbox id (`INVALID_NAME`; a record's writer reports
    /// `INVALID_VERSION` through [`super::record`]).
    Id,
    /// A received subject that does not decode (`INVALID_MESSAGE`).
    Subject,
}

impl fmt::Display for NameRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameRole::Name => "name",
            NameRole::Topic => "message topic",
            NameRole::Queue => "queue name",
            NameRole::Id => "id",
            NameRole::Subject => "subject",
        })
    }
}

/// Why a name, topic, queue, id or subject was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameErrorKind {
    /// Empty.
    Empty,
    /// Longer than its byte limit.
    TooLong,
    /// Contains a character in U+0000–U+001F or U+007F.
    ControlCharacter,
    /// A topic with an empty segment (`a..b`, `.a`, `a.`).
    EmptySegment,
    /// `*` or `>` where it is not allowed: inside a segment, `>` not last, or in a queue name.
    MisplacedWildcard,
    /// A wildcard in a topic that must be concrete (publishing or requesting a pattern).
    PatternNotAllowed,
    /// An id character outside `[A-Za-z0-9_-]`.
    InvalidIdCharacter,
    /// A subject that does not have the expected shape or prefix.
    WrongShape,
    /// A subject token that is not lowercase hex of UTF-8.
    NotHex,
}

impl fmt::Display for NameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameErrorKind::Empty => "it is empty",
            NameErrorKind::TooLong => "it is longer than 128 bytes",
            NameErrorKind::ControlCharacter => "it contains a control character (U+0000-U+001F or U+007F)",
            NameErrorKind::EmptySegment => "it has an empty segment (two dots in a row, or a dot at an end)",
            NameErrorKind::MisplacedWildcard => {
                "`*` and `>` must be whole segments, `>` only the last one, and queue names take neither"
            }
            NameErrorKind::PatternNotAllowed => "a wildcard pattern cannot be published or requested",
            NameErrorKind::InvalidIdCharacter => "ids use only the characters A-Z a-z 0-9 _ -",
            NameErrorKind::WrongShape => "it is not a subject of this namespace",
            NameErrorKind::NotHex => "a token is not lowercase hex of UTF-8 text",
        })
    }
}

/// A refused name, topic, queue name, id or subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {role} {input:?}: {kind} (names are 1-128 UTF-8 bytes without control characters)")]
pub struct NameError {
    role: NameRole,
    kind: NameErrorKind,
    /// The input, cut to 64 characters.
    input: String,
}

impl NameError {
    fn new(role: NameRole, kind: NameErrorKind, input: &str) -> Self {
        NameError { role, kind, input: input.chars().take(64).collect() }
    }

    /// What was being validated.
    pub fn role(&self) -> NameRole {
        self.role
    }

    /// Why it was refused.
    pub fn kind(&self) -> NameErrorKind {
        self.kind
    }

    /// The reference's error code: `INVALID_NAME` for names and ids, `INVALID_TOPIC` for
    /// topics and queue names, `INVALID_MESSAGE` for received subjects.
    pub fn code(&self) -> ErrorCode {
        match self.role {
            NameRole::Name | NameRole::Id => ErrorCode::InvalidName,
            NameRole::Topic | NameRole::Queue => ErrorCode::InvalidTopic,
            NameRole::Subject => ErrorCode::InvalidMessage,
        }
    }
}

/// Lowercase hex of `bytes`, two digits per byte (the reference's `hex(x)`).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decodes a lowercase hex token back to text; `None` if it is not lowercase hex of UTF-8.
fn unhex(token: &str) -> Option<String> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = token.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    let decoded =
        bytes.chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect::<Option<Vec<u8>>>()?;
    String::from_utf8(decoded).ok()
}

fn check_name_text(role: NameRole, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::new(role, NameErrorKind::Empty, value));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(NameError::new(role, NameErrorKind::TooLong, value));
    }
    if value.chars().any(is_control) {
        return Err(NameError::new(role, NameErrorKind::ControlCharacter, value));
    }
    Ok(())
}

fn is_control(c: char) -> bool {
    c < ' ' || c == '\u{7f}'
}

/// A namespace, variable or live-channel name (§2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates a name: 1–128 UTF-8 bytes, no U+0000–U+001F or U+007F.
    ///
    /// ```
    /// use kinopio::wire::p4::names::Name;
    /// assert_eq!(Name::new("电池").unwrap().token(), "e794b5e6b1a0");
    /// assert!(Name::new("").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`NameError`] with code `INVALID_NAME`.
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        check_name_text(NameRole::Name, &value)?;
        Ok(Name(value))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its subject token: lowercase hex of its UTF-8 bytes.
    pub fn token(&self) -> String {
        hex(self.0.as_bytes())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A writer, instance or inbox id: `[A-Za-z0-9_-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// Validates an id.
    ///
    /// # Errors
    ///
    /// [`NameError`] with role [`NameRole::Id`].
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        if value.is_empty() {
            return Err(NameError::new(NameRole::Id, NameErrorKind::Empty, &value));
        }
        if value.len() > MAX_ID_BYTES {
            return Err(NameError::new(NameRole::Id, NameErrorKind::TooLong, &value));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(NameError::new(NameRole::Id, NameErrorKind::InvalidIdCharacter, &value));
        }
        Ok(Id(value))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic pattern for subscribing and handling (§2.2): segments split on `.`, where `*` (one
/// segment) and a final `>` (the rest) are wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    text: String,
    wildcard: bool,
}

/// A concrete message topic, for publishing and requesting: a [`TopicPattern`] without
/// wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic(String);

fn check_topic(value: &str, pattern: bool) -> Result<bool, NameError> {
    let role = NameRole::Topic;
    if value.is_empty() {
        return Err(NameError::new(role, NameErrorKind::Empty, value));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(NameError::new(role, NameErrorKind::TooLong, value));
    }
    let segments: Vec<&str> = value.split('.').collect();
    let last = segments.len() - 1;
    let mut wildcard = false;
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(NameError::new(role, NameErrorKind::EmptySegment, value));
        }
        if segment.chars().any(is_control) {
            return Err(NameError::new(role, NameErrorKind::ControlCharacter, value));
        }
        if segment.contains(['*', '>']) {
            if !(*segment == "*" || (*segment == ">" && i == last)) {
                return Err(NameError::new(role, NameErrorKind::MisplacedWildcard, value));
            }
            if !pattern {
                return Err(NameError::new(role, NameErrorKind::PatternNotAllowed, value));
            }
            wildcard = true;
        }
    }
    Ok(wildcard)
}

impl Topic {
    /// Validates a concrete topic: 1–128 UTF-8 bytes, non-empty segments without control
    /// characters, no `*` or `>`.
    ///
    /// # Errors
    ///
    /// [`NameError`] with code `INVALID_TOPIC`.
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        check_topic(&value, false)?;
        Ok(Topic(value))
    }

    /// The topic as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TopicPattern {
    /// Validates a topic pattern: like [`Topic::new`], but `*` may be any whole segment and
    /// `>` the last one.
    ///
    /// # Errors
    ///
    /// [`NameError`] with code `INVALID_TOPIC`.
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let text = value.into();
        let wildcard = check_topic(&text, true)?;
        Ok(TopicPattern { text, wildcard })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it holds a wildcard segment.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl From<Topic> for TopicPattern {
    fn from(topic: Topic) -> Self {
        TopicPattern { text: topic.0, wildcard: false }
    }
}

/// A queue group name: a valid [`Name`] without `*` or `>`, hexed as one token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueGroup(String);

impl QueueGroup {
    /// Validates a queue group name.
    ///
    /// # Errors
    ///
    /// [`NameError`] with code `INVALID_TOPIC` (as Python reports bad queue names).
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        check_name_text(NameRole::Queue, &value)?;
        if value.contains(['*', '>']) {
            return Err(NameError::new(NameRole::Queue, NameErrorKind::MisplacedWildcard, &value));
        }
        Ok(QueueGroup(value))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every subject of one namespace (§2.2).
///
/// ```
/// use kinopio::wire::p4::names::{Name, Subjects, Topic};
/// let ns = Subjects::new(&Name::new("workshop").unwrap());
/// assert_eq!(ns.record(&Name::new("battery").unwrap()), "776f726b73686f70.62617474657279");
/// assert_eq!(ns.sync(), "_sys.v4.776f726b73686f70.sync");
/// assert_eq!(
///     ns.message(&Topic::new("sensor.temperature").unwrap()),
///     "_msg.v1.776f726b73686f70.73656e736f72.74656d7065726174757265"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subjects {
    /// `hex(namespace)`.
    token: String,
    /// `_sys.v4.<token>`.
    control: String,
}

impl Subjects {
    /// The subjects of `namespace`.
    pub fn new(namespace: &Name) -> Self {
        let token = namespace.token();
        let control = format!("{CONTROL_PREFIX}.{token}");
        Subjects { token, control }
    }

    /// The namespace token, `hex(namespace)`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A variable's record subject, `<hex(ns)>.<hex(name)>` (no prefix).
    pub fn record(&self, name: &Name) -> String {
        format!("{}.{}", self.token, name.token())
    }

    /// The subscription for every record of the namespace, `<hex(ns)>.*`.
    pub fn records(&self) -> String {
        format!("{}.*", self.token)
    }

    /// The control prefix, `_sys.v4.<hex(ns)>`.
    pub fn control(&self) -> &str {
        &self.control
    }

    /// The sync request subject, `_sys.v4.<hex(ns)>.sync`.
    pub fn sync(&self) -> String {
        format!("{}.sync", self.control)
    }

    /// A sync reply inbox, `_sys.v4.<hex(ns)>.inbox.<id>`.
    pub fn inbox(&self, id: &Id) -> String {
        format!("{}.inbox.{id}", self.control)
    }

    /// The id of a sync reply inbox of this namespace, or `None` if `subject` is not one (the
    /// responder's check of §4.7).
    pub fn inbox_id(&self, subject: &str) -> Option<Id> {
        let rest = subject.strip_prefix(self.control.as_str())?.strip_prefix(".inbox.")?;
        Id::new(rest).ok()
    }

    /// An instance's health report subject, `_sys.v4.<hex(ns)>.health.<instanceId>`.
    pub fn health(&self, instance: &Id) -> String {
        format!("{}.health.{instance}", self.control)
    }

    /// The subscription for every health report, `_sys.v4.<hex(ns)>.health.*`.
    pub fn healths(&self) -> String {
        format!("{}.health.*", self.control)
    }

    /// A live channel's lease subject, `_sys.v4.<hex(ns)>.live.<hex(channel)>.lease`.
    pub fn live_lease(&self, channel: &Name) -> String {
        format!("{}.live.{}.lease", self.control, channel.token())
    }

    /// A live channel's data subject, `_sys.v4.<hex(ns)>.live.<hex(channel)>.data`.
    pub fn live_data(&self, channel: &Name) -> String {
        format!("{}.live.{}.data", self.control, channel.token())
    }

    /// A live lease reply inbox, `_sys.v4.<hex(ns)>.live.<hex(channel)>.inbox.<id>`.
    pub fn live_inbox(&self, channel: &Name, id: &Id) -> String {
        format!("{}.live.{}.inbox.{id}", self.control, channel.token())
    }

    /// A message subject, `_msg.v1.<hex(ns)>.<hex(seg1)>.<hex(seg2)>…`.
    pub fn message(&self, topic: &Topic) -> String {
        self.message_subject(&topic.0)
    }

    /// A subscription subject: like [`Subjects::message`], with `*` and `>` kept literal.
    pub fn message_pattern(&self, pattern: &TopicPattern) -> String {
        self.message_subject(&pattern.text)
    }

    fn message_subject(&self, text: &str) -> String {
        let mut out = format!("{MESSAGE_PREFIX}.{}", self.token);
        for segment in text.split('.') {
            out.push('.');
            if segment == "*" || segment == ">" {
                out.push_str(segment);
            } else {
                out.push_str(&hex(segment.as_bytes()));
            }
        }
        out
    }

    /// A queue group subject, `_q.v1.<hex(ns)>.<hex(queue)>`.
    pub fn queue(&self, queue: &QueueGroup) -> String {
        format!("{QUEUE_PREFIX}.{}.{}", self.token, hex(queue.0.as_bytes()))
    }

    /// The topic of a received message subject of this namespace: its tokens after
    /// `_msg.v1.<hex(ns)>` decoded, and accepted only if it re-encodes to exactly `subject`
    /// (as the receiving side of §2.2 does).
    ///
    /// # Errors
    ///
    /// [`NameError`] with role [`NameRole::Subject`] (code `INVALID_MESSAGE`).
    pub fn topic_of(&self, subject: &str) -> Result<Topic, NameError> {
        let wrong = |kind| NameError::new(NameRole::Subject, kind, subject);
        let rest = subject
            .strip_prefix(MESSAGE_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(self.token.as_str()))
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or_else(|| wrong(NameErrorKind::WrongShape))?;
        let segments =
            rest.split('.').map(unhex).collect::<Option<Vec<String>>>().ok_or_else(|| wrong(NameErrorKind::NotHex))?;
        let topic = Topic::new(segments.join(".")).map_err(|e| NameError { role: NameRole::Subject, ..e })?;
        if self.message(&topic) != subject {
            return Err(wrong(NameErrorKind::WrongShape));
        }
        Ok(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Subjects {
        Subjects::new(&Name::new("workshop").unwrap())
    }

    #[test]
    fn reference_table() {
        let ns = ns();
        let channel = Name::new("arm").unwrap();
        let id = Id::new("abc-1_Z").unwrap();
        assert_eq!(ns.records(), "776f726b73686f70.*");
        assert_eq!(ns.inbox(&id), "_sys.v4.776f726b73686f70.inbox.abc-1_Z");
        assert_eq!(ns.health(&id), "_sys.v4.776f726b73686f70.health.abc-1_Z");
        assert_eq!(ns.healths(), "_sys.v4.776f726b73686f70.health.*");
        assert_eq!(ns.live_lease(&channel), "_sys.v4.776f726b73686f70.live.61726d.lease");
        assert_eq!(ns.live_data(&channel), "_sys.v4.776f726b73686f70.live.61726d.data");
        assert_eq!(ns.live_inbox(&channel, &id), "_sys.v4.776f726b73686f70.live.61726d.inbox.abc-1_Z");
        assert_eq!(
            ns.queue(&QueueGroup::new("workers.队列").unwrap()),
            "_q.v1.776f726b73686f70.776f726b6572732ee9989fe58897"
        );
        assert_eq!(ns.message_pattern(&TopicPattern::new("a.*.>").unwrap()), "_msg.v1.776f726b73686f70.61.*.>");
    }

    #[test]
    fn inbox_ids_are_checked() {
        let ns = ns();
        assert_eq!(ns.inbox_id("_sys.v4.776f726b73686f70.inbox.x-1").unwrap().as_str(), "x-1");
        assert!(ns.inbox_id("_sys.v4.776f726b73686f70.inbox.").is_none());
        assert!(ns.inbox_id("_sys.v4.776f726b73686f70.inbox.a.b").is_none());
        assert!(ns.inbox_id("_sys.v4.776f726b73686f71.inbox.a").is_none());
        assert!(ns.inbox_id(&format!("_sys.v4.776f726b73686f70.inbox.{}", "a".repeat(129))).is_none());
    }

    #[test]
    fn received_topics_round_trip_or_fail() {
        let ns = ns();
        assert_eq!(ns.topic_of("_msg.v1.776f726b73686f70.41").unwrap().as_str(), "A");
        assert_eq!(ns.topic_of("_msg.v1.776f726b73686f70.e794b5.61").unwrap().as_str(), "电.a");
        for bad in [
            "_msg.v1.776f726b73686f70.4G",
            "_msg.v1.776f726b73686f70.4A",
            "_msg.v1.776f726b73686f70.4",
            "_msg.v1.776f726b73686f70.ff",
            "_msg.v1.776f726b73686f70.*",
            "_msg.v1.776f726b73686f70.2e",
            "_msg.v1.776f726b73686f70",
            "_msg.v1.776f726b73686f71.41",
            "_msg.v1.776f726b73686f70.41..42",
            "_msg.v1.776f726b73686f70.00",
        ] {
            let err = ns.topic_of(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidMessage, "{bad}");
        }
    }

    #[test]
    fn error_codes_follow_the_role() {
        assert_eq!(Name::new("a\u{0}").unwrap_err().code(), ErrorCode::InvalidName);
        assert_eq!(Topic::new("a.*").unwrap_err().kind(), NameErrorKind::PatternNotAllowed);
        assert_eq!(Topic::new("a.*").unwrap_err().code(), ErrorCode::InvalidTopic);
        assert_eq!(QueueGroup::new("a*").unwrap_err().code(), ErrorCode::InvalidTopic);
        assert_eq!(Id::new("a.b").unwrap_err().kind(), NameErrorKind::InvalidIdCharacter);
        assert!(TopicPattern::new("a.>").unwrap().is_wildcard());
        assert!(!TopicPattern::from(Topic::new("a.b").unwrap()).is_wildcard());
    }
}
