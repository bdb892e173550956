//! Payload encoding and decoding, byte-compatible with kinopio-hub 0.1.1 ([protocol notes](crate::wire::protocol#payload-encoding)).
//!
//! Encoding: null → empty payload, bytes → as is, text → UTF-8 without quotes, anything else →
//! JSON written the way Python's `json.dumps` writes it (`", "` and `": "` separators, non-ASCII
//! escaped as `\uXXXX`, Python float repr), so a Python peer receives identical bytes.
//!
//! Decoding: empty → null; else JSON (accepting Python's `NaN`, `Infinity`, `-Infinity`); else
//! UTF-8 text; else raw bytes. Typed decoding ([`decode`]) tries the same ladder against the
//! target type, so a `String` receiver also accepts the unquoted text a Python peer sends and
//! a JSON-looking string like `123`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::value::Value;
use crate::wire::json::to_python_json;

/// An encoded payload, ready for the wire.
///
/// ```
/// use kinopio::Payload;
/// #[derive(serde::Serialize)]
/// struct Reading { x: i32, s: &'static str }
/// assert_eq!(Payload::json(&Reading { x: 1, s: "é" }).unwrap().as_bytes(),
///            br#"{"x": 1, "s": "\u00e9"}"#);
/// assert_eq!(Payload::text("hello").as_bytes(), b"hello");
/// assert!(Payload::null().as_bytes().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload(Bytes);

impl Payload {
    /// The empty payload, which every peer decodes as null.
    pub fn null() -> Payload {
        Payload(Bytes::new())
    }

    /// Raw bytes, sent as they are.
    pub fn bytes(bytes: impl Into<Bytes>) -> Payload {
        Payload(bytes.into())
    }

    /// Text sent as unquoted UTF-8, as Python peers send a `str`. A receiver that decodes
    /// JSON first sees `123` as a number: use [`Payload::json`] to keep a string a string.
    pub fn text(text: impl Into<String>) -> Payload {
        Payload(Bytes::from(text.into()))
    }

    /// Any serialisable value as Python-formatted JSON; a value that serialises to `null`
    /// (`()`, `None`) becomes the empty payload.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Payload, EncodeError> {
        let bytes = to_python_json(value)?;
        if bytes.as_slice() == b"null" { Ok(Payload::null()) } else { Ok(Payload(Bytes::from(bytes))) }
    }

    /// A [`Value`] encoded by the reference's rules: null → empty, string → unquoted text,
    /// bytes → raw, everything else → JSON.
    pub fn from_value(value: &Value) -> Result<Payload, EncodeError> {
        match value {
            Value::Null => Ok(Payload::null()),
            Value::String(s) => Ok(Payload::text(s.clone())),
            Value::Bytes(b) => Ok(Payload::bytes(b.clone())),
            other => Payload::json(other),
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty (null) payload.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload(b)
    }
}

/// A value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode payload as JSON: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// A payload could not be decoded into the requested type. Nothing is lost: the error keeps
/// the subject and the raw payload.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot decode payload on {subject:?} ({len} bytes, {shape}) into {target}: {reason}", len = payload.len())]
pub struct DecodeError {
    /// The subject the payload arrived on (empty when not known).
    pub subject: String,
    /// The raw payload.
    pub payload: Bytes,
    /// The Rust type that was requested.
    pub target: &'static str,
    /// What the payload looked like (`JSON`, `text`, `bytes`, `empty`).
    pub shape: &'static str,
    /// Why it did not fit.
    pub reason: String,
}

impl DecodeError {
    /// Sets the subject the payload came from.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }
}

/// A custom payload codec, tried before the built-in rules (like the reference's `codec`
/// option). It works on [`Value`]s: typed values are converted through JSON first.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// Encodes a value that is not null, text or bytes (those keep the built-in encoding).
    fn encode(&self, value: &Value) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;
    /// Decodes a non-empty payload. On error the built-in decoding is used.
    fn decode(&self, payload: &[u8]) -> Result<Value, Box<dyn std::error::Error + Send + Sync>>;
}

/// What a service handler may answer with: any `Serialize` value (encoded like every other
/// value, JSON in Python's format by default), or a [`Payload`] sent as it is (bytes exactly
/// as given, e.g. to echo a request untouched).
pub trait IntoReply: Send + 'static {
    /// The reply's payload.
    ///
    /// # Errors
    /// The value cannot be encoded.
    fn into_reply(self, encoding: &Encoding) -> Result<Payload, EncodeError>;
}

impl<T: Serialize + Send + 'static> IntoReply for T {
    fn into_reply(self, encoding: &Encoding) -> Result<Payload, EncodeError> {
        encoding.encode(&self)
    }
}

impl IntoReply for Payload {
    fn into_reply(self, _: &Encoding) -> Result<Payload, EncodeError> {
        Ok(self)
    }
}

/// Encoding and decoding with an optional custom [`Codec`]; what a hub uses.
#[derive(Debug, Clone, Default)]
pub struct Encoding {
    codec: Option<Arc<dyn Codec>>,
}

impl Encoding {
    /// Uses the given codec before the built-in rules.
    pub fn with_codec(codec: Arc<dyn Codec>) -> Self {
        Encoding { codec: Some(codec) }
    }

    /// Encodes a serialisable value (see [`Payload::json`]). With a codec, the value goes
    /// through the codec unless it is null.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Payload, EncodeError> {
        let payload = Payload::json(value)?;
        match &self.codec {
            None => Ok(payload),
            Some(_) if payload.is_empty() => Ok(payload),
            Some(codec) => {
                let v = decode_value(payload.as_bytes());
                self.encode_with(codec.as_ref(), &v, payload)
            }
        }
    }

    /// Encodes a [`Value`] (see [`Payload::from_value`]); the codec never sees null, text or
    /// bytes, as in the reference.
    pub fn encode_value(&self, value: &Value) -> Result<Payload, EncodeError> {
        match (&self.codec, value) {
            (Some(codec), v) if !matches!(v, Value::Null | Value::String(_) | Value::Bytes(_)) => {
                let fallback = Payload::from_value(v)?;
                self.encode_with(codec.as_ref(), v, fallback)
            }
            _ => Payload::from_value(value),
        }
    }

    fn encode_with(&self, codec: &dyn Codec, value: &Value, fallback: Payload) -> Result<Payload, EncodeError> {
        match codec.encode(value) {
            Ok(bytes) => Ok(Payload(bytes)),
            Err(err) => {
                tracing::warn!(error = %err, "custom codec encode failed; falling back to JSON");
                Ok(fallback)
            }
        }
    }

    /// Decodes a payload to a [`Value`]: the codec first (if any), then the built-in ladder.
    pub fn decode_value(&self, payload: &[u8]) -> Value {
        if let (Some(codec), false) = (&self.codec, payload.is_empty()) {
            match codec.decode(payload) {
                Ok(v) => return v,
                Err(err) => tracing::warn!(error = %err, "custom codec decode failed; falling back"),
            }
        }
        decode_value(payload)
    }

    /// Decodes a payload into `T`: the codec first (if any), then [`decode`].
    pub fn decode<T: DeserializeOwned>(&self, payload: &Bytes) -> Result<T, DecodeError> {
        if let (Some(codec), false) = (&self.codec, payload.is_empty()) {
            match codec.decode(payload) {
                Ok(v) => {
                    return v.deserialize_into().map_err(|e| DecodeError {
                        subject: String::new(),
                        payload: payload.clone(),
                        target: std::any::type_name::<T>(),
                        shape: "codec",
                        reason: e.to_string(),
                    });
                }
                Err(err) => tracing::warn!(error = %err, "custom codec decode failed; falling back"),
            }
        }
        decode(payload)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes a payload by the reference's rules: empty → null, JSON (with `NaN`/`Infinity`),
/// else UTF-8 text, else bytes. Never fails.
pub fn decode_value(payload: &[u8]) -> Value {
    if payload.is_empty() {
        return Value::Null;
    }
    if let Some(v) = parse_json(payload) {
        return v;
    }
    match std::str::from_utf8(payload) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::Bytes(Bytes::copy_from_slice(payload)),
    }
}

/// Decodes a payload into `T`, trying in order: null (empty payload), JSON, Python-flavoured
/// JSON (`NaN`, `Infinity`), the UTF-8 text as a string, the raw bytes.
///
/// ```
/// let n: i32 = kinopio::decode(&"42".into()).unwrap();
/// assert_eq!(n, 42);
/// // A Python peer sends the str "123" unquoted; a String receiver still gets a string.
/// let s: String = kinopio::decode(&"123".into()).unwrap();
/// assert_eq!(s, "123");
/// let f: f64 = kinopio::decode(&"NaN".into()).unwrap();
/// assert!(f.is_nan());
/// let none: Option<u8> = kinopio::decode(&"".into()).unwrap();
/// assert_eq!(none, None);
/// ```
pub fn decode<T: DeserializeOwned>(payload: &Bytes) -> Result<T, DecodeError> {
    let fail = |shape, reason: String| DecodeError {
        subject: String::new(),
        payload: payload.clone(),
        target: std::any::type_name::<T>(),
        shape,
        reason,
    };
    if payload.is_empty() {
        return Value::Null
            .deserialize_into()
            .or_else(|_| Value::String(String::new()).deserialize_into())
            .map_err(|e| fail("empty", e.to_string()));
    }
    let json_error = match serde_json::from_slice::<T>(payload) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if json_error.is_data() {
        // Valid JSON of another shape: a string target may still take the raw text below.
    } else if let Some(value) = parse_python_json(payload)
        && let Ok(v) = value.deserialize_into()
    {
        return Ok(v);
    }
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text,
        Err(_) => {
            return Value::Bytes(payload.clone()).deserialize_into().map_err(|e| fail("bytes", e.to_string()));
        }
    };
    Value::String(text.to_owned()).deserialize_into().map_err(|text_error| {
        if json_error.is_data() { fail("JSON", json_error.to_string()) } else { fail("text", text_error.to_string()) }
    })
}

/// Parses JSON, accepting Python's non-finite float tokens. `None` if it is not JSON.
fn parse_json(payload: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => Some(v),
        // Python-flavoured JSON: `NaN`/`Infinity` tokens (syntax errors to serde_json) and
        // numbers beyond f64 (data errors).
        Err(e) if e.is_syntax() || e.is_eof() || e.is_data() => parse_python_json(payload),
        Err(_) => None,
    }
}

const NAN: &str = "\u{0}kinopio:NaN\u{0}";
const INF: &str = "\u{0}kinopio:Infinity\u{0}";
const NEG_INF: &str = "\u{0}kinopio:-Infinity\u{0}";

/// Parses JSON that contains `NaN`, `Infinity` or `-Infinity` outside strings (what Python's
/// `json.dumps` writes for non-finite floats). Returns `None` if the payload has none of them
/// or is not JSON even with them.
fn parse_python_json(payload: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(payload).ok()?;
    if text.contains("kinopio:") {
        return None;
    }
    let rewritten = rewrite_non_finite(text)?;
    let value: Value = serde_json::from_str(&rewritten).ok()?;
    Some(restore_non_finite(value))
}

/// Replaces bare `NaN` / `Infinity` / `-Infinity` tokens and numbers beyond f64 (outside
/// strings) with sentinel strings. `None` if there were none.
fn rewrite_non_finite(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    let mut in_string = false;
    let mut replaced = false;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            match ch {
                '\\' => {
                    let mut it = rest.chars();
                    it.next();
                    let escaped = it.next().map_or(0, char::len_utf8);
                    out.push_str(&rest[..1 + escaped]);
                    rest = &rest[1 + escaped..];
                    continue;
                }
                '"' => in_string = false,
                _ => {}
            }
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
            continue;
        }
        let token = [("-Infinity", NEG_INF), ("Infinity", INF), ("NaN", NAN)]
            .into_iter()
            .find(|(tok, _)| rest.starts_with(tok));
        if let Some((tok, sentinel)) = token {
            out.push_str(&serde_json::to_string(sentinel).ok()?);
            rest = &rest[tok.len()..];
            replaced = true;
            continue;
        }
        if ch == '-' || ch.is_ascii_digit() {
            // A number beyond f64 (`1e400`): Python reads it as an infinity, and so do we.
            let len = rest.find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E')).unwrap_or(rest.len());
            let number = &rest[..len];
            match number.parse::<f64>() {
                Ok(f) if f.is_infinite() => {
                    let sentinel = if f < 0.0 { NEG_INF } else { INF };
                    out.push_str(&serde_json::to_string(sentinel).ok()?);
                    replaced = true;
                }
                _ => out.push_str(number),
            }
            rest = &rest[len..];
            continue;
        }
        if ch == '"' {
            in_string = true;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    replaced.then_some(out)
}

fn restore_non_finite(value: Value) -> Value {
    match value {
        Value::String(s) if s == NAN => Value::Float(f64::NAN),
        Value::String(s) if s == INF => Value::Float(f64::INFINITY),
        Value::String(s) if s == NEG_INF => Value::Float(f64::NEG_INFINITY),
        Value::Array(a) => Value::Array(a.into_iter().map(restore_non_finite).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, restore_non_finite(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::json::python_float_repr;
    use serde_json::json;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (123.456, "123.456"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (5.177308999975594, "5.177308999975594"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn json_output_is_byte_identical_to_python() {
        let v = json!({"x": 1, "s": "\u{e9}", "l": [1, 2.0, null, true], "e": "😀\u{7f}\n\"/"});
        let out = String::from_utf8(to_python_json(&v).unwrap()).unwrap();
        assert_eq!(out, r#"{"e": "\ud83d\ude00\u007f\n\"/", "l": [1, 2.0, null, true], "s": "\u00e9", "x": 1}"#);
        assert_eq!(
            Payload::json(&json!({"error": true, "message": "boom"})).unwrap().as_bytes(),
            br#"{"error": true, "message": "boom"}"#
        );
    }

    #[test]
    fn null_like_values_encode_empty() {
        assert!(Payload::json(&()).unwrap().is_empty());
        assert!(Payload::json(&None::<u8>).unwrap().is_empty());
        assert!(Payload::from_value(&Value::Null).unwrap().is_empty());
        assert_eq!(Payload::from_value(&Value::from("hi")).unwrap().as_bytes(), b"hi");
        assert_eq!(Payload::json("hi").unwrap().as_bytes(), b"\"hi\"");
    }

    #[test]
    fn decode_ladder_matches_the_reference() {
        assert_eq!(decode_value(b""), Value::Null);
        assert_eq!(decode_value(b"123"), Value::Int(123));
        assert_eq!(decode_value(b" 1 "), Value::Int(1));
        assert_eq!(decode_value(b"true"), Value::Bool(true));
        assert_eq!(decode_value(b"null"), Value::Null);
        assert_eq!(decode_value(b"\"q\""), Value::from("q"));
        assert_eq!(decode_value(b"hello"), Value::from("hello"));
        assert_eq!(decode_value(b"\x01\x02"), Value::from("\u{1}\u{2}"));
        assert_eq!(decode_value(b"\xff\xfe"), Value::Bytes(Bytes::from_static(b"\xff\xfe")));
        assert_eq!(decode_value(b"{bad json"), Value::from("{bad json"));
    }

    #[test]
    fn accepts_python_non_finite_tokens() {
        let v = decode_value(br#"{"nan": NaN, "inf": Infinity, "neg": -Infinity, "s": "NaN"}"#);
        assert!(v["nan"].as_f64().unwrap().is_nan());
        assert_eq!(v["inf"], Value::Float(f64::INFINITY));
        assert_eq!(v["neg"], Value::Float(f64::NEG_INFINITY));
        assert_eq!(v["s"], Value::from("NaN"));
        assert!(decode_value(b"NaN").as_f64().unwrap().is_nan());
        assert_eq!(decode_value(b"[Infinity, 1]")[0], Value::Float(f64::INFINITY));
        // Text that merely contains the word stays text.
        assert_eq!(decode_value(b"NaN is not a number"), Value::from("NaN is not a number"));
        let typed: Vec<f64> = decode(&b("[NaN, -Infinity]")).unwrap();
        assert!(typed[0].is_nan() && typed[1] == f64::NEG_INFINITY);
        // Numbers beyond f64 are infinities, as Python's json.loads reads them.
        assert_eq!(decode_value(b"1e400"), Value::Float(f64::INFINITY));
        assert_eq!(decode_value(b"[-1E+400, 2, \"1e400\"]")[0], Value::Float(f64::NEG_INFINITY));
        assert_eq!(decode_value(b"[-1E+400, 2, \"1e400\"]")[2], Value::from("1e400"));
        assert_eq!(decode_value(b"1e-400"), Value::Float(0.0));
        assert_eq!(decode_value(b"12e"), Value::from("12e"));
    }

    #[test]
    fn typed_decoding_tries_json_then_text_then_bytes() {
        assert_eq!(decode::<u32>(&b("7")).unwrap(), 7);
        assert_eq!(decode::<String>(&b("\"x\"")).unwrap(), "x");
        assert_eq!(decode::<String>(&b("plain text")).unwrap(), "plain text");
        assert_eq!(decode::<String>(&b("123")).unwrap(), "123");
        assert_eq!(decode::<String>(&b("")).unwrap(), "");
        assert_eq!(decode::<Option<String>>(&b("")).unwrap(), None);
        assert_eq!(decode::<()>(&b("")).unwrap(), ());
        assert_eq!(decode::<Vec<u8>>(&Bytes::from_static(b"\xff\x00")).unwrap(), vec![0xff, 0]);
        assert_eq!(decode::<serde_json::Value>(&b(r#"{"a":[1]}"#)).unwrap(), json!({"a": [1]}));
    }

    #[test]
    fn typed_decoding_failure_keeps_the_payload_and_says_why() {
        let err = decode::<u32>(&b("\"seven\"")).unwrap_err();
        assert_eq!(err.payload, b("\"seven\""));
        assert_eq!(err.shape, "JSON");
        assert!(err.to_string().contains("into u32"), "{err}");
        let err = decode::<u32>(&b("not json")).unwrap_err();
        assert_eq!(err.shape, "text");
        let err = decode::<u32>(&Bytes::from_static(b"\xff")).unwrap_err();
        assert_eq!(err.shape, "bytes");
    }

    #[derive(Debug)]
    struct Upper;
    impl Codec for Upper {
        fn encode(&self, value: &Value) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
            Ok(Bytes::from(format!("UP:{}", value.to_string().to_uppercase())))
        }
        fn decode(&self, payload: &[u8]) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            let text = std::str::from_utf8(payload)?;
            let rest = text.strip_prefix("UP:").ok_or("no prefix")?;
            Ok(decode_value(rest.to_lowercase().as_bytes()))
        }
    }

    #[test]
    fn custom_codec_round_trips_and_falls_back() {
        let enc = Encoding::with_codec(Arc::new(Upper));
        let p = enc.encode(&json!({"k": "v"})).unwrap();
        assert_eq!(p.as_bytes(), br#"UP:{"K": "V"}"#);
        assert_eq!(enc.decode_value(p.as_bytes()), decode_value(br#"{"k": "v"}"#));
        // Text and null bypass the codec, as in the reference.
        assert_eq!(enc.encode_value(&Value::from("t")).unwrap().as_bytes(), b"t");
        assert!(enc.encode(&()).unwrap().is_empty());
        // A payload the codec rejects falls back to the built-in rules.
        assert_eq!(enc.decode::<u8>(&b("5")).unwrap(), 5);
    }
}
