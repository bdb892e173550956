//! Scope and variable names, and the NATS subjects they map to.
//!
//! `hub.scope("a").scope("b").variable("c")` is subject `a.b.c`, exactly as the Python
//! reference builds it (`"{scope}.{variable}"`). Unlike the reference, names are validated
//! before anything reaches the wire: an empty name, an empty token (`a..b`, `.a`, `a.`),
//! whitespace, the wildcards `*` and `>`, and control characters are rejected with an
//! [`InvalidName`] error that says which part is wrong.

use std::fmt;

/// Why a scope or variable name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameErrorKind {
    /// The name is the empty string.
    Empty,
    /// The name has an empty token: it starts or ends with `.` or contains `..`.
    EmptyToken,
    /// The name contains a whitespace character at this byte offset.
    Whitespace {
        /// Byte offset in the name.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// The name contains a NATS wildcard (`*` or `>`) at this byte offset.
    Wildcard {
        /// Byte offset in the name.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// The name contains a control character at this byte offset.
    Control {
        /// Byte offset in the name.
        offset: usize,
        /// The character.
        ch: char,
    },
}

/// A scope or variable name that cannot be used as (part of) a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} name {name:?}: {kind}")]
pub struct InvalidName {
    /// `"scope"` or `"variable"`.
    pub what: &'static str,
    /// The rejected name, as given.
    pub name: String,
    /// What is wrong with it.
    pub kind: NameErrorKind,
}

impl fmt::Display for NameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameErrorKind::Empty => f.write_str("names must not be empty"),
            NameErrorKind::EmptyToken => {
                f.write_str("empty token (a name must not start or end with '.' or contain '..')")
            }
            NameErrorKind::Whitespace { offset, ch } => {
                write!(f, "whitespace {ch:?} at byte {offset} (NATS subjects cannot contain whitespace)")
            }
            NameErrorKind::Wildcard { offset, ch } => {
                write!(f, "wildcard {ch:?} at byte {offset} (only plain names are allowed)")
            }
            NameErrorKind::Control { offset, ch } => {
                write!(f, "control character {ch:?} at byte {offset}")
            }
        }
    }
}

/// Checks a subject pattern for subscribing: plain tokens as in [`validate`], plus the NATS
/// wildcards `*` (one whole token) and `>` (the whole last token). `what` names the kind of
/// name in the error.
///
/// ```
/// use kinopio::name::validate_pattern;
/// assert!(validate_pattern("subject", "sensors.*.temp").is_ok());
/// assert!(validate_pattern("subject", ">").is_ok());
/// assert!(validate_pattern("subject", "a.b*").is_err());
/// assert!(validate_pattern("subject", "a.>.b").is_err());
/// ```
pub fn validate_pattern(what: &'static str, pattern: &str) -> Result<(), InvalidName> {
    if pattern.is_empty() {
        return Err(InvalidName { what, name: String::new(), kind: NameErrorKind::Empty });
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    let mut offset = 0;
    for (i, token) in tokens.iter().enumerate() {
        let whole_wildcard = *token == "*" || (*token == ">" && i + 1 == tokens.len());
        if !whole_wildcard {
            validate(what, token).map_err(|mut err| {
                err.name = pattern.to_owned();
                match &mut err.kind {
                    NameErrorKind::Whitespace { offset: o, .. }
                    | NameErrorKind::Control { offset: o, .. }
                    | NameErrorKind::Wildcard { offset: o, .. } => *o += offset,
                    NameErrorKind::Empty => err.kind = NameErrorKind::EmptyToken,
                    NameErrorKind::EmptyToken => {}
                }
                err
            })?;
        }
        offset += token.len() + 1;
    }
    Ok(())
}

/// Checks one scope or variable name. `what` names the kind of name in the error.
pub fn validate(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let fail = |kind| Err(InvalidName { what, name: name.to_owned(), kind });
    if name.is_empty() {
        return fail(NameErrorKind::Empty);
    }
    for (offset, ch) in name.char_indices() {
        if ch.is_whitespace() {
            return fail(NameErrorKind::Whitespace { offset, ch });
        }
        if ch.is_control() {
            return fail(NameErrorKind::Control { offset, ch });
        }
        if ch == '*' || ch == '>' {
            return fail(NameErrorKind::Wildcard { offset, ch });
        }
    }
    if name.split('.').any(str::is_empty) {
        return fail(NameErrorKind::EmptyToken);
    }
    Ok(())
}

/// Joins a parent subject prefix and a validated name: `join("a.b", "c") == "a.b.c"`.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        let mut subject = String::with_capacity(prefix.len() + 1 + name.len());
        subject.push_str(prefix);
        subject.push('.');
        subject.push_str(name);
        subject
    }
}

/// The default service queue group for a subject: `<subject>.service`, shared with Python
/// kinopio-hub servers so that mixed fleets load-balance instead of answering twice.
pub fn service_queue_group(subject: &str) -> String {
    format!("{subject}.service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_dotted_names() {
        for ok in ["chat", "messages", "a.b", "x-1_y", "ünïcödé", "UPPER"] {
            assert_eq!(validate("scope", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_each_bad_part_with_its_position() {
        let kind = |n: &str| validate("variable", n).unwrap_err().kind;
        assert_eq!(kind(""), NameErrorKind::Empty);
        assert_eq!(kind("a..b"), NameErrorKind::EmptyToken);
        assert_eq!(kind(".a"), NameErrorKind::EmptyToken);
        assert_eq!(kind("a."), NameErrorKind::EmptyToken);
        assert_eq!(kind("a b"), NameErrorKind::Whitespace { offset: 1, ch: ' ' });
        assert_eq!(kind("ab\t"), NameErrorKind::Whitespace { offset: 2, ch: '\t' });
        assert_eq!(kind("a\u{a0}"), NameErrorKind::Whitespace { offset: 1, ch: '\u{a0}' });
        assert_eq!(kind("*"), NameErrorKind::Wildcard { offset: 0, ch: '*' });
        assert_eq!(kind("a.>"), NameErrorKind::Wildcard { offset: 2, ch: '>' });
        assert_eq!(kind("a\u{0}b"), NameErrorKind::Control { offset: 1, ch: '\u{0}' });
        assert_eq!(kind("a\u{7f}"), NameErrorKind::Control { offset: 1, ch: '\u{7f}' });
    }

    #[test]
    fn error_message_names_the_part() {
        let err = validate("scope", "my scope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scope name \"my scope\": whitespace ' ' at byte 2 (NATS subjects cannot contain whitespace)"
        );
    }

    #[test]
    fn joins_subjects_like_the_reference() {
        assert_eq!(join("chat", "messages"), "chat.messages");
        assert_eq!(join("", "chat"), "chat");
        assert_eq!(join("a.b", "c"), "a.b.c");
        assert_eq!(service_queue_group("math.calc"), "math.calc.service");
    }
}
