//! Message headers of protocol 4 (§5.2): validation, the outbound normalisation and the
//! size rule.
//!
//! - Names are RFC 7230 tokens (`` [!#$%&'*+.^_`|~0-9A-Za-z-]+ ``), values visible ASCII
//!   (U+0020–U+007E); anything else is `INVALID_HEADERS`.
//! - At most [`MAX_ENTRIES`] entries and `12 + Σ(len(name) + len(value) + 4)` ≤
//!   [`MAX_BYTES`]; else `MESSAGE_TOO_LARGE`. An empty set has size 0 (a plain `PUB`).
//! - Outbound ([`Headers::outbound`]): the entries are validated as given, then names are
//!   lower-cased and values trimmed of ASCII spaces (only spaces), keeping order and repeated
//!   names as separate entries.
//! - Inbound ([`Headers::inbound`]): validated as received, spelling kept; a raw header
//!   block over [`MAX_INBOUND_BLOCK_BYTES`] is dropped unparsed by the caller. Lookups are
//!   case-insensitive.
//!
//! Errors are checked entry by entry in the reference's order (the entry's name and value,
//! then the count and size with that entry added), so the same input yields the same code.

use super::ErrorCode;

/// Most header entries.
pub const MAX_ENTRIES: usize = 32;
/// Largest header size by the formula `12 + Σ(len(name) + len(value) + 4)`.
pub const MAX_BYTES: usize = 4096;
/// Largest raw inbound header block (`NATS/1.0…`) a receiver parses.
pub const MAX_INBOUND_BLOCK_BYTES: usize = 4096;

/// Why a header set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A name that is not an RFC 7230 token.
    #[error("header name {0:?} is not a token (letters, digits and !#$%&'*+.^_`|~-)")]
    InvalidName(String),
    /// A value with a character outside visible ASCII and space.
    #[error("header {0:?} has a value with characters outside printable ASCII")]
    InvalidValue(String),
    /// More than [`MAX_ENTRIES`] entries.
    #[error("more than {MAX_ENTRIES} header entries")]
    TooMany,
    /// The size formula exceeds [`MAX_BYTES`].
    #[error("headers take {size} bytes, more than {MAX_BYTES}")]
    TooLarge {
        /// `12 + Σ(len(name) + len(value) + 4)`.
        size: usize,
    },
}

impl HeaderError {
    /// `INVALID_HEADERS` for bad names and values, `MESSAGE_TOO_LARGE` for count and size.
    pub fn code(&self) -> ErrorCode {
        match self {
            HeaderError::InvalidName(_) | HeaderError::InvalidValue(_) => ErrorCode::InvalidHeaders,
            HeaderError::TooMany | HeaderError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        }
    }
}

/// A validated, ordered header set; a name may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<(String, String)>);

fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

fn is_visible(value: &str) -> bool {
    value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Headers {
    /// Headers to send: validated as given, then normalised (names lower-cased, values
    /// trimmed of ASCII spaces).
    ///
    /// ```
    /// use kinopio::wire::p4::headers::Headers;
    /// let headers = Headers::outbound([("X-Trace", " op-42 "), ("X-Tag", "a"), ("X-Tag", "b")]).unwrap();
    /// assert_eq!(headers.entries()[0], ("x-trace".to_owned(), "op-42".to_owned()));
    /// assert_eq!(headers.get_all("x-TAG").collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    ///
    /// # Errors
    ///
    /// [`HeaderError`].
    pub fn outbound<I, K, V>(entries: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let given = Self::inbound(entries)?;
        Self::inbound(
            given.0.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.trim_matches(' ').to_owned())),
        )
    }

    /// Received headers: validated, spelling kept.
    ///
    /// # Errors
    ///
    /// [`HeaderError`]; the message should be dropped.
    pub fn inbound<I, K, V>(entries: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut out = Vec::new();
        let mut size = 12;
        for (name, value) in entries {
            let (name, value) = (name.as_ref(), value.as_ref());
            if !is_token(name) {
                return Err(HeaderError::InvalidName(cut(name)));
            }
            if !is_visible(value) {
                return Err(HeaderError::InvalidValue(cut(name)));
            }
            out.push((name.to_owned(), value.to_owned()));
            size += name.len() + value.len() + 4;
            if out.len() > MAX_ENTRIES {
                return Err(HeaderError::TooMany);
            }
            if size > MAX_BYTES {
                return Err(HeaderError::TooLarge { size });
            }
        }
        Ok(Headers(out))
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.0
    }

    /// Whether there are no entries (the message goes out as a plain `PUB`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `12 + Σ(len(name) + len(value) + 4)`, or 0 for an empty set.
    pub fn byte_size(&self) -> usize {
        if self.0.is_empty() { 0 } else { 12 + self.0.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>() }
    }

    /// Every value of `name`, case-insensitively, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Headers::outbound(Vec::<(String, String)>::new()).unwrap().is_empty());
        assert_eq!(Headers::outbound([("Bad Name", "v")]).unwrap_err().code(), ErrorCode::InvalidHeaders);
        assert_eq!(Headers::outbound([("a", "\u{e9}")]).unwrap_err().code(), ErrorCode::InvalidHeaders);
        let many: Vec<_> = (0..33).map(|i| (format!("h{i}"), "v")).collect();
        assert_eq!(Headers::outbound(many).unwrap_err(), HeaderError::TooMany);
        let fits = Headers::inbound([("a", "x".repeat(4079))]).unwrap();
        assert_eq!(fits.byte_size(), MAX_BYTES);
        assert_eq!(Headers::inbound([("a", "x".repeat(4080))]).unwrap_err().code(), ErrorCode::MessageTooLarge);
        let received = Headers::inbound([("X-Tag", "a"), ("x-tag", "b")]).unwrap();
        assert_eq!(received.get("X-TAG"), Some("a"));
        assert_eq!(received.entries()[0].0, "X-Tag");
    }
}
