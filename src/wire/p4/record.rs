//! Variable records of protocol 4 (§4): the envelope, the version order, the
//! last-writer-wins step, the store's capacity rule and the counter of kinopio's own writes.
//!
//! # The envelope
//!
//! `{"name":…,"version":{"counter":…,"writer":…},"deleted":…,"value":…}`, in that order and
//! not key-sorted; the value is normalised by [`canonical::value_of`]. A tombstone
//! (`"deleted":true`) has no `value` key and a live record must have one (`null` is a value):
//! [`Body`] makes any other combination unrepresentable. Decoding follows the reference's
//! `record_of`: a `scope` key or a non-boolean `deleted` is `INVALID_RECORD`, then the name
//! (`INVALID_NAME`), the version (`INVALID_VERSION`) and the value (`INVALID_VALUE` /
//! `VALUE_TOO_LARGE`) are checked; extra keys are dropped, and a tombstone's value is ignored.
//!
//! # Order and merge
//!
//! A [`Version`] is `(counter, writer)`: the counter is 1–40 decimal digits without a leading
//! zero, compared numerically (by length, then digit by digit — 40 digits do not fit a
//! `u128`), and ties are broken by the writer's byte order, higher wins. [`apply`] is the
//! reference's `_commit` as a pure function: older → ignored; equal version → a duplicate if
//! the encodings are identical, else a `VERSION_COLLISION`; newer → store, after
//! [`Capacity::admit`] (10,000 names and 16 MiB of encoded records by default).
//!
//! # Maximal counters (§11 W9): kinopio's decision
//!
//! The wire lets any writer send the largest counter, forty 9s. Python adopts it as its
//! hub-wide clock and then fails every later `set()`/`delete()` on every variable, because
//! `clock + 1` has 41 digits; the record is re-synced to late joiners, so the namespace stays
//! bricked. kinopio accepts the record (refusing it would make kinopio disagree with every
//! compliant peer about the variable's value) but does not let it wedge its own writes:
//!
//! 1. [`Clock::next_version`] uses `clock + 1`, like Python, while that fits in 40 digits;
//! 2. once the clock is saturated it falls back to the written variable's own counter + 1,
//!    which still beats the stored version, so **every other variable stays writable**;
//! 3. for the poisoned variable itself, nothing can beat `(99…9, w)` under the wire's order
//!    except the same counter with a higher writer: kinopio writes `(99…9, own writer)` when
//!    its writer id sorts above `w`, and otherwise refuses the write with
//!    [`RecordError::CounterExhausted`] (`INVALID_VERSION`) instead of publishing a record
//!    that would lose everywhere. Deleting that variable is equally impossible; the way out
//!    is a new variable name.

use std::cmp::Ordering;
use std::fmt;

use indexmap::IndexMap;

use super::ErrorCode;
use super::canonical::{self, DecodeError, Json, ValueRuleError};
use super::names::{Id, Name, NameError, Subjects};

/// Most digits a counter may have.
pub const MAX_COUNTER_DIGITS: usize = 40;
/// Default most distinct names (live or deleted) a store holds (`max_variables`).
pub const DEFAULT_MAX_RECORDS: usize = 10_000;
/// Default most bytes of encoded records a store holds (`max_memory_bytes`, 16 MiB).
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 16 * 1024 * 1024;

/// Why a record was refused, built or not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The message is not JSON ([`DecodeError`]).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Not a record object, a `scope` key, or a non-boolean `deleted`.
    #[error("not a protocol-4 variable record ({0})")]
    NotARecord(&'static str),
    /// The name is invalid.
    #[error("record name: {0}")]
    Name(#[from] NameError),
    /// The version is malformed.
    #[error("invalid record version: {0}")]
    Version(&'static str),
    /// The value breaks the rules of §3.2.
    #[error("record value: {0}")]
    Value(#[from] ValueRuleError),
    /// The record's name does not match the subject it arrived on.
    #[error("record name {name:?} does not match subject {subject:?}")]
    SubjectMismatch {
        /// The record's name.
        name: String,
        /// The subject it came on.
        subject: String,
    },
    /// Storing it would exceed the store's capacity.
    #[error("record store is full ({0}); the record was not stored")]
    MemoryFull(&'static str),
    /// No version kinopio can write beats the stored one (see the module docs, W9).
    #[error(
        "variable {name:?} holds the largest possible version (counter of 40 nines, writer \
         {writer:?}); no write can supersede it, use another variable name"
    )]
    CounterExhausted {
        /// The variable.
        name: String,
        /// The writer holding the maximal counter.
        writer: String,
    },
}

impl RecordError {
    /// The reference's error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            RecordError::Decode(e) => e.code(),
            RecordError::NotARecord(_) | RecordError::SubjectMismatch { .. } => ErrorCode::InvalidRecord,
            RecordError::Name(e) => e.code(),
            RecordError::Version(_) | RecordError::CounterExhausted { .. } => ErrorCode::InvalidVersion,
            RecordError::Value(e) => e.code(),
            RecordError::MemoryFull(_) => ErrorCode::MemoryFull,
        }
    }
}

/// A version counter: 1–40 decimal digits, no leading zero, ordered numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counter(String);

impl Counter {
    /// Validates `[1-9][0-9]{0,39}`.
    ///
    /// # Errors
    ///
    /// [`RecordError::Version`] (`INVALID_VERSION`).
    pub fn new(value: impl Into<String>) -> Result<Self, RecordError> {
        let value = value.into();
        let bytes = value.as_bytes();
        let valid = matches!(bytes.first(), Some(b'1'..=b'9'))
            && bytes.len() <= MAX_COUNTER_DIGITS
            && bytes.iter().all(u8::is_ascii_digit);
        if valid {
            Ok(Counter(value))
        } else {
            Err(RecordError::Version("counter must be 1-40 digits without a leading zero"))
        }
    }

    /// The first counter, `1`.
    pub fn one() -> Self {
        Counter("1".to_owned())
    }

    /// The largest counter the wire allows, forty 9s.
    pub fn max() -> Self {
        Counter("9".repeat(MAX_COUNTER_DIGITS))
    }

    /// Whether this is [`Counter::max`].
    pub fn is_max(&self) -> bool {
        self.0.len() == MAX_COUNTER_DIGITS && self.0.bytes().all(|b| b == b'9')
    }

    /// `self + 1`, or `None` when that needs 41 digits.
    pub fn successor(&self) -> Option<Counter> {
        let mut digits = self.0.clone().into_bytes();
        for digit in digits.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                return String::from_utf8(digits).ok().map(Counter);
            }
        }
        if digits.len() >= MAX_COUNTER_DIGITS {
            return None;
        }
        digits.insert(0, b'1');
        String::from_utf8(digits).ok().map(Counter)
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for Counter {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Counter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record version: ordered by counter, then by writer (byte order), higher wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// The logical counter.
    pub counter: Counter,
    /// The writer's id (Python uses a UUID per hub lifetime).
    pub writer: Id,
}

/// A record's content: a live value or a tombstone, never both.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `"deleted":false` with a normalised `value`.
    Live(Json),
    /// `"deleted":true`, no `value` key.
    Deleted,
}

/// A variable record (§4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    name: Name,
    version: Version,
    body: Body,
}

impl Record {
    /// A live record; the value is normalised by [`canonical::value_of`].
    ///
    /// # Errors
    ///
    /// [`RecordError::Value`] if the value breaks the rules of §3.2.
    pub fn live(name: Name, version: Version, value: &Json) -> Result<Self, RecordError> {
        Ok(Record { name, version, body: Body::Live(canonical::value_of(value)?) })
    }

    /// A tombstone.
    pub fn tombstone(name: Name, version: Version) -> Self {
        Record { name, version, body: Body::Deleted }
    }

    /// Decodes and validates a received record (the reference's `record_of(decode(data))`).
    /// The subject check is separate ([`Record::check_subject`]): it applies to record
    /// subjects, not to sync inboxes.
    ///
    /// # Errors
    ///
    /// [`RecordError`], checked in the reference's order so the code matches.
    pub fn decode(data: &[u8]) -> Result<Self, RecordError> {
        Self::from_json(&canonical::decode(data)?)
    }

    /// Validates a parsed record.
    ///
    /// # Errors
    ///
    /// See [`Record::decode`].
    pub fn from_json(json: &Json) -> Result<Self, RecordError> {
        let Json::Object(map) = json else {
            return Err(RecordError::NotARecord("not a JSON object"));
        };
        if map.contains_key("scope") {
            return Err(RecordError::NotARecord("records with a `scope` key belong to an older protocol"));
        }
        let deleted = match map.get("deleted") {
            None => false,
            Some(Json::Bool(deleted)) => *deleted,
            Some(_) => return Err(RecordError::NotARecord("`deleted` is not a boolean")),
        };
        let name = match map.get("name") {
            Some(Json::String(name)) => Name::new(name.as_str())?,
            // Python's `name()` rejects a missing or non-string name as INVALID_NAME.
            _ => Name::new("")?,
        };
        let version = version_of(map.get("version"))?;
        if deleted {
            return Ok(Record::tombstone(name, version));
        }
        // A missing value is Python's `UNSET`, which `value_of` refuses.
        let value = map.get("value").ok_or(RecordError::Value(ValueRuleError::Missing))?;
        Record::live(name, version, value)
    }

    /// The canonical encoding, as published on the record subject and in sync replies.
    pub fn encode(&self) -> Vec<u8> {
        let mut version = IndexMap::new();
        version.insert("counter".to_owned(), Json::String(self.version.counter.0.clone()));
        version.insert("writer".to_owned(), Json::String(self.version.writer.as_str().to_owned()));
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"{\"name\":");
        // A name, a counter and a writer are strings; a normalised value is finite: the
        // encoder cannot fail on any of them.
        out.extend(canonical::encode(&Json::String(self.name.as_str().to_owned())).unwrap_or_default());
        out.extend_from_slice(b",\"version\":");
        out.extend(canonical::encode(&Json::Object(version)).unwrap_or_default());
        match &self.body {
            Body::Deleted => out.extend_from_slice(b",\"deleted\":true}"),
            Body::Live(value) => {
                out.extend_from_slice(b",\"deleted\":false,\"value\":");
                out.extend(canonical::encode(value).unwrap_or_default());
                out.push(b'}');
            }
        }
        out
    }

    /// Checks that a record that arrived on `subject` names it (`<hex(ns)>.<hex(name)>`).
    ///
    /// # Errors
    ///
    /// [`RecordError::SubjectMismatch`] (`INVALID_RECORD`).
    pub fn check_subject(&self, subjects: &Subjects, subject: &str) -> Result<(), RecordError> {
        if subjects.record(&self.name) == subject {
            Ok(())
        } else {
            Err(RecordError::SubjectMismatch {
                name: self.name.as_str().chars().take(64).collect(),
                subject: subject.chars().take(300).collect(),
            })
        }
    }

    /// The variable's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The version.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The content.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The value, `None` for a tombstone.
    pub fn value(&self) -> Option<&Json> {
        match &self.body {
            Body::Live(value) => Some(value),
            Body::Deleted => None,
        }
    }

    /// Whether this is a tombstone.
    pub fn is_deleted(&self) -> bool {
        matches!(self.body, Body::Deleted)
    }
}

fn version_of(json: Option<&Json>) -> Result<Version, RecordError> {
    let Some(Json::Object(map)) = json else {
        return Err(RecordError::Version("`version` is not an object"));
    };
    let counter = match map.get("counter") {
        Some(Json::String(counter)) => Counter::new(counter.as_str())?,
        _ => return Err(RecordError::Version("`version.counter` is not a string")),
    };
    let writer = match map.get("writer") {
        Some(Json::String(writer)) => Id::new(writer.as_str())
            .map_err(|_| RecordError::Version("`version.writer` is not 1-128 of A-Z a-z 0-9 _ -"))?,
        _ => return Err(RecordError::Version("`version.writer` is not a string")),
    };
    Ok(Version { counter, writer })
}

/// What [`apply`] decided about an incoming record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Newer than the stored record (or there is none): store it, subject to
    /// [`Capacity::admit`].
    Newer(Record),
    /// Older than the stored record: ignored silently.
    Older,
    /// Same version and identical encoding (an echo or a repeated sync reply): ignored.
    Duplicate,
    /// Same version, different content: ignored, and reported as `VERSION_COLLISION`.
    Collision(Record),
}

/// The last-writer-wins step of §4.3 for one variable, without capacity (see
/// [`Capacity::admit`]).
pub fn apply(local: Option<&Record>, incoming: Record) -> Outcome {
    let Some(local) = local else {
        return Outcome::Newer(incoming);
    };
    match incoming.version.cmp(&local.version) {
        Ordering::Greater => Outcome::Newer(incoming),
        Ordering::Less => Outcome::Older,
        Ordering::Equal if incoming.encode() == local.encode() => Outcome::Duplicate,
        Ordering::Equal => Outcome::Collision(incoming),
    }
}

/// How much a store holds: distinct names and the sum of their encoded record sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Stored names (live and deleted).
    pub records: usize,
    /// Sum of `len(encode(record))`.
    pub memory_bytes: usize,
}

/// A store's limits (§4.3 step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Most distinct names.
    pub max_records: usize,
    /// Most bytes of encoded records.
    pub max_memory_bytes: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity { max_records: DEFAULT_MAX_RECORDS, max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES }
    }
}

impl Capacity {
    /// Whether `new` may replace `old` (`None`: a new name) in a store at `usage`; returns the
    /// usage afterwards.
    ///
    /// # Errors
    ///
    /// [`RecordError::MemoryFull`] (`MEMORY_FULL`); the store must stay unchanged.
    pub fn admit(&self, usage: Usage, old: Option<&Record>, new: &Record) -> Result<Usage, RecordError> {
        if old.is_none() && usage.records >= self.max_records {
            return Err(RecordError::MemoryFull("too many variable names"));
        }
        let old_size = old.map_or(0, |r| r.encode().len());
        let memory_bytes = usage.memory_bytes.saturating_sub(old_size).saturating_add(new.encode().len());
        if memory_bytes > self.max_memory_bytes {
            return Err(RecordError::MemoryFull("too many bytes of records"));
        }
        Ok(Usage { records: usage.records + usize::from(old.is_none()), memory_bytes })
    }
}

/// A hub's logical clock: the highest counter it has stored (§4.3 step 4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clock(Option<Counter>);

impl Clock {
    /// The highest counter observed, if any.
    pub fn get(&self) -> Option<&Counter> {
        self.0.as_ref()
    }

    /// Raises the clock to `counter` if it is higher (call for every stored record).
    pub fn observe(&mut self, counter: &Counter) {
        if self.0.as_ref().is_none_or(|c| counter > c) {
            self.0 = Some(counter.clone());
        }
    }

    /// The version of kinopio's next write of a variable whose stored version is `current`,
    /// by `writer`: `clock + 1`, falling back to `current + 1` when the clock is saturated,
    /// and to `(max, writer)` when the variable itself holds the maximal counter and `writer`
    /// sorts above its writer (see the module docs, W9). The result always beats `current`.
    ///
    /// # Errors
    ///
    /// [`RecordError::CounterExhausted`] when no version can beat `current`.
    pub fn next_version(&self, name: &Name, current: Option<&Version>, writer: &Id) -> Result<Version, RecordError> {
        let from_clock = match &self.0 {
            None => Some(Counter::one()),
            Some(clock) => clock.successor(),
        };
        let beats = |counter: &Counter| current.is_none_or(|v| *counter > v.counter);
        if let Some(counter) = from_clock.filter(|c| beats(c)) {
            return Ok(Version { counter, writer: writer.clone() });
        }
        let Some(current) = current else {
            return Ok(Version { counter: Counter::one(), writer: writer.clone() });
        };
        if let Some(counter) = current.counter.successor() {
            return Ok(Version { counter, writer: writer.clone() });
        }
        if *writer > current.writer {
            return Ok(Version { counter: current.counter.clone(), writer: writer.clone() });
        }
        Err(RecordError::CounterExhausted {
            name: name.as_str().chars().take(64).collect(),
            writer: current.writer.as_str().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn version(counter: &str, writer: &str) -> Version {
        Version { counter: Counter::new(counter).unwrap(), writer: id(writer) }
    }

    fn live(n: &str, counter: &str, writer: &str, value: Json) -> Record {
        Record::live(name(n), version(counter, writer), &value).unwrap()
    }

    #[test]
    fn counters_compare_numerically_beyond_u128() {
        let max = Counter::max();
        assert!(max.is_max());
        assert!(max.successor().is_none());
        let almost = Counter::new(format!("{}8", "9".repeat(39))).unwrap();
        assert_eq!(almost.successor(), Some(max.clone()));
        assert!(Counter::new("10").unwrap() > Counter::new("9").unwrap());
        assert!(Counter::new(format!("1{}", "0".repeat(39))).unwrap() > Counter::new("9".repeat(39)).unwrap());
        assert_eq!(Counter::new("9").unwrap().successor().unwrap().as_str(), "10");
        assert_eq!(Counter::new("199").unwrap().successor().unwrap().as_str(), "200");
        for bad in ["", "0", "01", "1a", "-1", "+1", &"1".repeat(41)] {
            assert_eq!(Counter::new(bad).unwrap_err().code(), ErrorCode::InvalidVersion, "{bad:?}");
        }
    }

    #[test]
    fn lww_merge() {
        let stored = live("v", "7", "b", Json::Number(1.0));
        assert_eq!(apply(None, stored.clone()), Outcome::Newer(stored.clone()));
        assert_eq!(apply(Some(&stored), live("v", "6", "z", Json::Null)), Outcome::Older);
        assert_eq!(apply(Some(&stored), live("v", "7", "a", Json::Null)), Outcome::Older);
        let higher_writer = live("v", "7", "c", Json::Null);
        assert_eq!(apply(Some(&stored), higher_writer.clone()), Outcome::Newer(higher_writer));
        assert_eq!(apply(Some(&stored), stored.clone()), Outcome::Duplicate);
        let collision = live("v", "7", "b", Json::Number(2.0));
        assert_eq!(apply(Some(&stored), collision.clone()), Outcome::Collision(collision));
        let tombstone = Record::tombstone(name("v"), version("8", "a"));
        assert_eq!(apply(Some(&stored), tombstone.clone()), Outcome::Newer(tombstone.clone()));
        assert_eq!(apply(Some(&tombstone), stored), Outcome::Older);
    }

    #[test]
    fn capacity() {
        let cap = Capacity { max_records: 2, max_memory_bytes: 200 };
        let a = live("a", "1", "w", Json::Null);
        let b = live("b", "1", "w", Json::Null);
        let size = a.encode().len();
        let usage = cap.admit(Usage::default(), None, &a).unwrap();
        assert_eq!(usage, Usage { records: 1, memory_bytes: size });
        let usage = cap.admit(usage, None, &b).unwrap();
        let c = live("c", "1", "w", Json::Null);
        assert_eq!(cap.admit(usage, None, &c).unwrap_err().code(), ErrorCode::MemoryFull);
        // Replacing an existing name is fine at the name limit, but not past the byte limit.
        let a2 = live("a", "2", "w", Json::Bool(true));
        assert_eq!(cap.admit(usage, Some(&a), &a2).unwrap().records, 2);
        let big = live("a", "3", "w", Json::String("x".repeat(200)));
        assert_eq!(cap.admit(usage, Some(&a), &big).unwrap_err().code(), ErrorCode::MemoryFull);
    }

    #[test]
    fn envelope_and_subject() {
        let record = live("battery", "7", "w-1", Json::Number(80.0));
        assert_eq!(
            record.encode(),
            br#"{"name":"battery","version":{"counter":"7","writer":"w-1"},"deleted":false,"value":80}"#
        );
        let subjects = Subjects::new(&name("workshop"));
        assert!(record.check_subject(&subjects, "776f726b73686f70.62617474657279").is_ok());
        let err = record.check_subject(&subjects, "776f726b73686f70.636f6e666967").unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRecord);
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        let tombstone = Record::tombstone(name("config"), version("7", "w"));
        assert_eq!(tombstone.value(), None);
        assert_eq!(Record::decode(&tombstone.encode()).unwrap(), tombstone);
        assert_eq!(Record::decode(b"").unwrap_err().code(), ErrorCode::InvalidMessage);
    }

    /// §11 W9: a record with the maximal counter is accepted (as every compliant peer does)
    /// but does not wedge later kinopio writes.
    #[test]
    fn maximal_counter_does_not_wedge_writes() {
        let poison = Record::decode(
            format!(r#"{{"name":"poison","version":{{"counter":"{}","writer":"m"}},"value":1}}"#, "9".repeat(40))
                .as_bytes(),
        )
        .unwrap();
        let mut clock = Clock::default();
        let other = live("other", "5", "x", Json::Null);
        clock.observe(&other.version().counter);
        clock.observe(&poison.version().counter);
        assert!(clock.get().unwrap().is_max());

        // Another variable: the saturated clock falls back to that variable's counter.
        let me = id("w-kinopio");
        let next = clock.next_version(other.name(), Some(other.version()), &me).unwrap();
        assert_eq!(next, version("6", "w-kinopio"));
        let write = Record::live(other.name().clone(), next, &Json::Bool(true)).unwrap();
        assert!(matches!(apply(Some(&other), write), Outcome::Newer(_)));
        // A variable never written before.
        assert_eq!(clock.next_version(&name("new"), None, &me).unwrap(), version("1", "w-kinopio"));

        // The poisoned variable: a writer that sorts above the poisoner still wins...
        let next = clock.next_version(poison.name(), Some(poison.version()), &me).unwrap();
        assert!(next.counter.is_max());
        let overwrite = Record::tombstone(poison.name().clone(), next);
        assert!(matches!(apply(Some(&poison), overwrite), Outcome::Newer(_)));
        // ...and one that cannot win gets a typed error instead of a record that loses.
        let err = clock.next_version(poison.name(), Some(poison.version()), &id("a")).unwrap_err();
        assert!(matches!(err, RecordError::CounterExhausted { .. }));
        assert_eq!(err.code(), ErrorCode::InvalidVersion);

        // Without saturation kinopio follows the hub-wide clock, like Python.
        let mut clock = Clock::default();
        clock.observe(&Counter::new("41").unwrap());
        assert_eq!(clock.next_version(other.name(), Some(other.version()), &me).unwrap(), version("42", "w-kinopio"));
        assert_eq!(Clock::default().next_version(&name("x"), None, &me).unwrap(), version("1", "w-kinopio"));
    }
}
