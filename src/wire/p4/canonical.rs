//! The JSON of protocol 4 (§3): a bounded decoder, the canonical encoder (kinopio-hub's
//! `js_stringify`/`encode`) and the value rules every variable value, message payload, reply
//! and live value passes through (`value_of`).
//!
//! The canonical form is **not** RFC 8785:
//! - numbers are ECMAScript `Number.prototype.toString` (`1.0` → `1`, `1e21` → `1e+21`,
//!   `1e-7` → `1e-7`, `-0` → `0`);
//! - strings escape only `"`, `\`, `\b \f \n \r \t` and the other C0 characters (`\u00XX`,
//!   lowercase); DEL, U+2028/2029, `/` and all non-ASCII stay raw UTF-8;
//! - object keys are written like a JavaScript object's: integer-like keys (ASCII digits, no
//!   leading zero, below 2^32−1) first in numeric order, then the others in insertion order;
//! - [`value_of`] first re-orders keys by UTF-16 code units, so a normalised value's bytes do
//!   not depend on the order it was built in.
//!
//! Numbers are held as `f64`, exactly like the reference's encoder treats them (its integers
//! beyond ±(2^53−1) become floats before formatting, and [`value_of`] refuses them anyway).

use std::fmt::Write as _;

use indexmap::IndexMap;

use super::ErrorCode;

/// Largest protocol message [`decode`] reads (1 MiB); larger input is refused unread.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Deepest nesting [`decode`] enters: containers inside containers, counting the outermost.
/// A valid value holds at most 33 nested containers and protocol envelopes (a record) add
/// one or two; Python has no limit below its recursion limit.
pub const MAX_DECODE_DEPTH: usize = 64;
/// Largest encoded value [`value_of`] accepts (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Deepest node [`value_of`] accepts; the root is at depth 0.
pub const MAX_VALUE_DEPTH: usize = 32;
/// Most nodes (containers and scalars) [`value_of`] accepts.
pub const MAX_VALUE_NODES: usize = 20_000;
/// Largest integer-valued number [`value_of`] accepts, 2^53 − 1.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A JSON value as protocol 4 sees it: objects keep insertion order (a repeated key keeps its
/// first position and its last value, like a Python `dict`), numbers are `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, in insertion order.
    Object(IndexMap<String, Json>),
}

/// Why [`decode`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("protocol message of {len} bytes exceeds the 1 MiB limit; not read")]
    TooLarge {
        /// The input length.
        len: usize,
    },
    /// Not UTF-8.
    #[error("protocol message is not UTF-8 (bad byte at offset {offset})")]
    NotUtf8 {
        /// Length of the valid prefix.
        offset: usize,
    },
    /// Nested deeper than [`MAX_DECODE_DEPTH`].
    #[error("protocol message nests deeper than {MAX_DECODE_DEPTH} containers; not parsed further")]
    TooDeep,
    /// Not JSON (including empty input, `NaN`/`Infinity`, trailing data and lone surrogates).
    #[error("protocol message is not valid JSON (at byte {offset})")]
    Syntax {
        /// Where parsing stopped.
        offset: usize,
    },
}

impl DecodeError {
    /// `MESSAGE_TOO_LARGE` for oversized input, `INVALID_MESSAGE` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            _ => ErrorCode::InvalidMessage,
        }
    }
}

/// A value refused by [`value_of`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueRuleError {
    /// No value where one is required (a live record without `value`; JSON `null` is a
    /// value).
    #[error("no value given (a live record needs a `value`; JSON null is a value)")]
    Missing,
    /// NaN or an infinity.
    #[error("value holds a NaN or infinite number; use finite JSON numbers")]
    NotFinite,
    /// An integer-valued number beyond ±(2^53−1).
    #[error("value holds an integer beyond ±(2^53-1), which JavaScript peers cannot represent")]
    UnsafeInteger,
    /// A node deeper than [`MAX_VALUE_DEPTH`].
    #[error("value nests deeper than {MAX_VALUE_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_VALUE_NODES`] nodes.
    #[error("value has more than {MAX_VALUE_NODES} nodes")]
    TooManyNodes,
    /// The encoding is larger than the limit.
    #[error("value encodes to {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl ValueRuleError {
    /// `VALUE_TOO_LARGE` for an oversized encoding, `INVALID_VALUE` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            ValueRuleError::TooLarge { .. } => ErrorCode::ValueTooLarge,
            _ => ErrorCode::InvalidValue,
        }
    }
}

/// [`encode`] met a NaN or infinite number, which has no JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("NaN and infinite numbers have no JSON form")]
pub struct NonFiniteNumber;

impl NonFiniteNumber {
    /// `INVALID_VALUE`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidValue
    }
}

/// Parses a protocol message (the reference's `decode`): at most [`MAX_MESSAGE_BYTES`],
/// checked before reading; UTF-8; strict JSON (no `NaN`/`Infinity`, no trailing commas,
/// surrounding whitespace allowed); at most [`MAX_DECODE_DEPTH`] nested containers, checked
/// before entering each one. Repeated keys: the last value wins, at the first key's position.
///
/// # Errors
///
/// [`DecodeError`]; never panics on any input.
pub fn decode(data: &[u8]) -> Result<Json, DecodeError> {
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { len: data.len() });
    }
    std::str::from_utf8(data).map_err(|e| DecodeError::NotUtf8 { offset: e.valid_up_to() })?;
    let mut parser = Parser { s: data, pos: 0 };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != data.len() {
        return Err(parser.syntax());
    }
    Ok(value)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn syntax(&self) -> DecodeError {
        DecodeError::Syntax { offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), DecodeError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn literal(&mut self, word: &[u8], value: Json) -> Result<Json, DecodeError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.syntax())
        }
    }

    /// Parses one value; `depth` is the number of containers around it.
    fn value(&mut self, depth: usize) -> Result<Json, DecodeError> {
        match self.peek() {
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                if depth >= MAX_DECODE_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    self.skip_ws();
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.syntax()),
                    }
                }
            }
            Some(b'{') => {
                if depth >= MAX_DECODE_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.pos += 1;
                let mut map = IndexMap::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(map));
                }
                loop {
                    self.skip_ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.syntax());
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    self.eat(b':')?;
                    self.skip_ws();
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Json::Object(map));
                        }
                        _ => return Err(self.syntax()),
                    }
                }
            }
            _ => Err(self.syntax()),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, DecodeError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.syntax());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.syntax());
            }
        }
        // The grammar above is a subset of what `f64::from_str` accepts, and the slice is
        // ASCII; its parse is correctly rounded (overflow gives an infinity, like Python).
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.syntax())?;
        text.parse::<f64>().map(Json::Number).map_err(|_| self.syntax())
    }

    fn hex4(&mut self) -> Result<u16, DecodeError> {
        let slice = self.s.get(self.pos..self.pos + 4).ok_or_else(|| self.syntax())?;
        let text = std::str::from_utf8(slice).map_err(|_| self.syntax())?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.syntax());
        }
        let unit = u16::from_str_radix(text, 16).map_err(|_| self.syntax())?;
        self.pos += 4;
        Ok(unit)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let byte = self.peek().ok_or_else(|| self.syntax())?;
            match byte {
                b'"' => {
                    self.pos += 1;
                    // The input is UTF-8 and escapes produce UTF-8, so this cannot fail.
                    return String::from_utf8(out).map_err(|_| self.syntax());
                }
                b'\\' => {
                    self.pos += 1;
                    let escape = self.peek().ok_or_else(|| self.syntax())?;
                    self.pos += 1;
                    let ch = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let unit = self.hex4()?;
                            if (0xd800..0xdc00).contains(&unit) {
                                // A high surrogate must be followed by an escaped low one.
                                if !self.s[self.pos..].starts_with(b"\\u") {
                                    return Err(self.syntax());
                                }
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err(self.syntax());
                                }
                                let code = 0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                                char::from_u32(code).ok_or_else(|| self.syntax())?
                            } else {
                                // A lone low surrogate has no `char`: refused.
                                char::from_u32(u32::from(unit)).ok_or_else(|| self.syntax())?
                            }
                        }
                        _ => return Err(self.syntax()),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1f => return Err(self.syntax()),
                _ => {
                    out.push(byte);
                    self.pos += 1;
                }
            }
        }
    }
}

/// The canonical encoding (the reference's `encode(js_stringify(value))`), byte for byte.
///
/// ```
/// use kinopio::wire::p4::canonical::{decode, encode};
/// let value = decode(br#"{"b":1,"a":2,"10":3,"2":4,"x":[1.0,-0.0,1e21]}"#).unwrap();
/// assert_eq!(encode(&value).unwrap(), br#"{"2":4,"10":3,"b":1,"a":2,"x":[1,0,1e+21]}"#);
/// ```
///
/// # Errors
///
/// [`NonFiniteNumber`] if the value holds a NaN or an infinity.
pub fn encode(value: &Json) -> Result<Vec<u8>, NonFiniteNumber> {
    let mut out = String::new();
    write_json(&mut out, value)?;
    Ok(out.into_bytes())
}

fn write_json(out: &mut String, value: &Json) -> Result<(), NonFiniteNumber> {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => write_number(out, *n)?,
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item)?;
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, key) in key_order(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                if let Some(item) = map.get(key) {
                    write_json(out, item)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The array index a JavaScript object would hoist this key as, if any: ASCII digits, at
/// most 10, no leading zero, below 2^32 − 1.
fn array_index(key: &str) -> Option<u64> {
    if key.is_empty() || key.len() > 10 || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if key.len() > 1 && key.starts_with('0') {
        return None;
    }
    key.parse::<u64>().ok().filter(|n| *n < 4_294_967_295)
}

/// Keys in JavaScript property order: array indices ascending, then the rest as inserted.
fn key_order(map: &IndexMap<String, Json>) -> Vec<&str> {
    let mut indices: Vec<(u64, &str)> = map.keys().filter_map(|k| array_index(k).map(|n| (n, k.as_str()))).collect();
    indices.sort_unstable_by_key(|(n, _)| *n);
    let mut keys: Vec<&str> = indices.into_iter().map(|(_, k)| k).collect();
    keys.extend(map.keys().map(String::as_str).filter(|k| array_index(k).is_none()));
    keys
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript `Number.prototype.toString()` for a finite number (RFC 8785 §3.2.2.3).
fn write_number(out: &mut String, n: f64) -> Result<(), NonFiniteNumber> {
    if !n.is_finite() {
        return Err(NonFiniteNumber);
    }
    if n == 0.0 {
        out.push('0');
        return Ok(());
    }
    if n < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` writes the shortest digits that round-trip, closest to the value: the
    // digits ECMAScript asks for. Its shape is `d[.ddd]e[-]x`.
    let sci = format!("{:e}", n.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let point = exponent + 1; // ECMAScript's n: the value is 0.digits × 10^point
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', usize::try_from(point - k).unwrap_or(0)));
    } else if 0 < point && point <= 21 {
        let split = usize::try_from(point).unwrap_or(0);
        out.push_str(&digits[..split]);
        out.push('.');
        out.push_str(&digits[split..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', usize::try_from(-point).unwrap_or(0)));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if point > 0 { '+' } else { '-' }, (point - 1).abs());
    }
    Ok(())
}

/// Normalises a value like the reference's `value_of` (§3.2) with the default 64 KiB limit.
///
/// # Errors
///
/// See [`value_of_with_limit`].
pub fn value_of(value: &Json) -> Result<Json, ValueRuleError> {
    value_of_with_limit(value, MAX_VALUE_BYTES)
}

/// Normalises a value like the reference's `value_of`: every number finite and, if
/// integer-valued, within ±(2^53−1) (`-0` becomes `0`); at most [`MAX_VALUE_NODES`] nodes and
/// depth [`MAX_VALUE_DEPTH`]; object keys re-ordered by UTF-16 code units; the encoding at
/// most `max_bytes`.
///
/// # Errors
///
/// [`ValueRuleError`]: `VALUE_TOO_LARGE` for the size, `INVALID_VALUE` for the rest.
pub fn value_of_with_limit(value: &Json, max_bytes: usize) -> Result<Json, ValueRuleError> {
    value_of_encoded(value, max_bytes).map(|(normalised, _)| normalised)
}

/// [`value_of_with_limit`], also returning the normalised value's canonical encoding (it is
/// computed for the size check anyway): what a sender puts on the wire.
///
/// # Errors
///
/// See [`value_of_with_limit`].
pub fn value_of_encoded(value: &Json, max_bytes: usize) -> Result<(Json, Vec<u8>), ValueRuleError> {
    let mut nodes = 0;
    let normalised = normalise(value, 0, &mut nodes)?;
    let bytes = encode(&normalised).map_err(|_| ValueRuleError::NotFinite)?;
    if bytes.len() > max_bytes {
        return Err(ValueRuleError::TooLarge { len: bytes.len(), max: max_bytes });
    }
    Ok((normalised, bytes))
}

/// [`value_of_encoded`] on an owned value, normalised in place (no second tree): a sender's
/// hot path.
///
/// # Errors
///
/// See [`value_of_with_limit`].
pub fn value_of_owned_encoded(mut value: Json, max_bytes: usize) -> Result<(Json, Vec<u8>), ValueRuleError> {
    let mut nodes = 0;
    normalise_in_place(&mut value, 0, &mut nodes)?;
    let bytes = encode(&value).map_err(|_| ValueRuleError::NotFinite)?;
    if bytes.len() > max_bytes {
        return Err(ValueRuleError::TooLarge { len: bytes.len(), max: max_bytes });
    }
    Ok((value, bytes))
}

fn normalise_in_place(value: &mut Json, depth: usize, nodes: &mut usize) -> Result<(), ValueRuleError> {
    *nodes += 1;
    if *nodes > MAX_VALUE_NODES {
        return Err(ValueRuleError::TooManyNodes);
    }
    if depth > MAX_VALUE_DEPTH {
        return Err(ValueRuleError::TooDeep);
    }
    match value {
        Json::Null | Json::Bool(_) | Json::String(_) => {}
        Json::Number(n) => {
            if !n.is_finite() {
                return Err(ValueRuleError::NotFinite);
            }
            if n.fract() == 0.0 && n.abs() > MAX_SAFE_INTEGER {
                return Err(ValueRuleError::UnsafeInteger);
            }
            if *n == 0.0 {
                *n = 0.0;
            }
        }
        Json::Array(items) => {
            for item in items {
                normalise_in_place(item, depth + 1, nodes)?;
            }
        }
        Json::Object(map) => {
            if !map.keys().zip(map.keys().skip(1)).all(|(a, b)| a.encode_utf16().le(b.encode_utf16())) {
                map.sort_by(|a, _, b, _| a.encode_utf16().cmp(b.encode_utf16()));
            }
            for item in map.values_mut() {
                normalise_in_place(item, depth + 1, nodes)?;
            }
        }
    }
    Ok(())
}

/// The longest JSON text whose canonical re-encoding cannot exceed 64 KiB, so
/// [`value_of_decoded`] needs no size check: re-encoding only grows number tokens, and a
/// number `value_of` accepts grows at most 4× (`1e15` → 16 digits; `1e-6` → `0.000001`);
/// whitespace, escapes and repeated keys only shrink.
pub const MAX_UNCHECKED_TEXT_BYTES: usize = MAX_VALUE_BYTES / 6;

/// [`value_of`] for a value just [`decode`]d from `text_len` bytes of JSON: the same result,
/// without encoding the value again to measure it when `text_len` is at most
/// [`MAX_UNCHECKED_TEXT_BYTES`] (a receiver's hot path).
///
/// # Errors
///
/// See [`value_of_with_limit`].
pub fn value_of_decoded(value: &Json, text_len: usize) -> Result<Json, ValueRuleError> {
    if text_len > MAX_UNCHECKED_TEXT_BYTES {
        return value_of(value);
    }
    let mut nodes = 0;
    normalise(value, 0, &mut nodes)
}

fn normalise(value: &Json, depth: usize, nodes: &mut usize) -> Result<Json, ValueRuleError> {
    *nodes += 1;
    if *nodes > MAX_VALUE_NODES {
        return Err(ValueRuleError::TooManyNodes);
    }
    if depth > MAX_VALUE_DEPTH {
        return Err(ValueRuleError::TooDeep);
    }
    Ok(match value {
        Json::Null | Json::Bool(_) | Json::String(_) => value.clone(),
        Json::Number(n) => {
            if !n.is_finite() {
                return Err(ValueRuleError::NotFinite);
            }
            if n.fract() == 0.0 && n.abs() > MAX_SAFE_INTEGER {
                return Err(ValueRuleError::UnsafeInteger);
            }
            Json::Number(if *n == 0.0 { 0.0 } else { *n })
        }
        Json::Array(items) => {
            Json::Array(items.iter().map(|item| normalise(item, depth + 1, nodes)).collect::<Result<_, _>>()?)
        }
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let mut out = IndexMap::with_capacity(keys.len());
            for key in keys {
                if let Some(item) = map.get(key) {
                    out.insert(key.clone(), normalise(item, depth + 1, nodes)?);
                }
            }
            Json::Object(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_values_skip_only_a_size_check_that_cannot_fail() {
        // The worst growth: number tokens that re-encode longer (larger integers are refused).
        for token in ["1e15", "-1e15", "9e15", "1e-6", "1.5e-6", "1E15", "1e-7", "5e-324"] {
            let grown = encode(&value_of(&decode(token.as_bytes()).unwrap()).unwrap()).unwrap().len();
            assert!(grown <= token.len() * 4, "{token} grows to {grown}");
        }
        let text = vec!["1e15"; MAX_UNCHECKED_TEXT_BYTES / 5].join(",");
        let text = format!("[{text}]");
        assert!(text.len() <= MAX_UNCHECKED_TEXT_BYTES);
        let value = decode(text.as_bytes()).unwrap();
        assert_eq!(value_of_decoded(&value, text.len()), value_of(&value));
        let big = format!("[{}]", vec!["1e15"; 4000].join(","));
        let value = decode(big.as_bytes()).unwrap();
        assert!(big.len() > MAX_UNCHECKED_TEXT_BYTES);
        assert_eq!(value_of_decoded(&value, big.len()).unwrap_err().code(), ErrorCode::ValueTooLarge);
        let (normalised, bytes) = value_of_encoded(&decode(br#"{"b":1,"a":-0.0}"#).unwrap(), MAX_VALUE_BYTES).unwrap();
        // In place, the same result, for every shape (nested, unsorted, -0, too deep, unsafe).
        for text in [
            &br#"{"b":1,"a":-0.0,"\u00e9":[{"z":1,"y":2}],"\ud83d\ude00":0,"\uffff":1}"#[..],
            b"[1,2,[3,{}],null,true,\"x\"]",
            b"9007199254740992",
            format!("{}1{}", "[".repeat(34), "]".repeat(34)).as_bytes(),
        ] {
            let value = decode(text).unwrap();
            assert_eq!(
                value_of_owned_encoded(value.clone(), MAX_VALUE_BYTES),
                value_of_encoded(&value, MAX_VALUE_BYTES)
            );
        }
        assert_eq!((encode(&normalised).unwrap(), bytes), (br#"{"a":0,"b":1}"#.to_vec(), br#"{"a":0,"b":1}"#.to_vec()));
    }

    fn canon(text: &str) -> String {
        String::from_utf8(encode(&decode(text.as_bytes()).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn reference_vectors_of_section_3_4() {
        assert_eq!(
            canon("[0.30000000000000004,1.0,-0.0,1e20,1e21,1e-6,1e-7]"),
            "[0.30000000000000004,1,0,100000000000000000000,1e+21,0.000001,1e-7]"
        );
        assert_eq!(canon("[5e-324,1.7976931348623157e308]"), "[5e-324,1.7976931348623157e+308]");
        let normalised =
            value_of(&decode(r#"{"b":1,"a":2,"10":3,"2":4,"é":5,"😀":6,"\uffff":7}"#.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(encode(&normalised).unwrap()).unwrap(),
            "{\"2\":4,\"10\":3,\"a\":2,\"b\":1,\"é\":5,\"😀\":6,\"\u{ffff}\":7}"
        );
    }

    #[test]
    fn depth_is_bounded_before_descending() {
        // Far deeper than any stack could take if the parser recursed without a bound.
        let deep = "[".repeat(1_000_000);
        assert_eq!(decode(deep.as_bytes()), Err(DecodeError::TooDeep));
        let ok = format!("{}{}", "[".repeat(MAX_DECODE_DEPTH), "]".repeat(MAX_DECODE_DEPTH));
        assert!(decode(ok.as_bytes()).is_ok());
        let too_deep = format!("{}{}", "[".repeat(MAX_DECODE_DEPTH + 1), "]".repeat(MAX_DECODE_DEPTH + 1));
        assert_eq!(decode(too_deep.as_bytes()), Err(DecodeError::TooDeep));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(MAX_DECODE_DEPTH + 1), "}".repeat(MAX_DECODE_DEPTH + 1));
        assert_eq!(decode(objects.as_bytes()), Err(DecodeError::TooDeep));
    }

    #[test]
    fn size_is_bounded_before_reading() {
        let big = vec![0xffu8; MAX_MESSAGE_BYTES + 1];
        assert_eq!(decode(&big), Err(DecodeError::TooLarge { len: MAX_MESSAGE_BYTES + 1 }));
        assert_eq!(decode(&big).unwrap_err().code(), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn hostile_input_never_panics() {
        for text in [
            "\"\\u",
            "\"\\ud800\\u",
            "\"\\ud800\\udbff\"",
            "\"\\udc00\"",
            "-",
            "[",
            "{\"a\"",
            "\u{feff}1",
            "1 2",
            "[1,",
            "\"\\uzzzz\"",
        ] {
            assert!(decode(text.as_bytes()).is_err(), "{text:?}");
        }
        assert!(decode(&[b'"', 0xc3, b'"']).is_err());
        assert_eq!(encode(&Json::Number(f64::NAN)), Err(NonFiniteNumber));
        assert_eq!(value_of(&Json::Number(f64::INFINITY)), Err(ValueRuleError::NotFinite));
    }
}
