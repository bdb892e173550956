//! JSON text the way the Python reference writes and reads it — the one writer every
//! kinopio wire format uses: `json.dumps` formatting (`", "` / `": "` separators, ASCII
//! escaping, Python float `repr`) for payloads and beacons, Python's `float()` coercion, and
//! the canonical compact form (sorted keys) that beacon MACs are computed over.

use std::io;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

/// Serialises like Python's `json.dumps(obj)` with default arguments: `", "` / `": "`
/// separators, `ensure_ascii`, Python float repr. Non-finite floats become `null` (Python
/// would write the non-standard `NaN`/`Infinity` tokens).
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(64);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// A `serde_json` formatter that writes what Python's `json.dumps` writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        w.write_all(python_float_repr(f64::from(value)).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        if fragment.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return w.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if (' '..'\u{7f}').contains(&ch) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// An object written with its entries in the given order (wire order), not sorted.
struct Ordered<'a>(&'a [(String, Value)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A JSON object made of `entries` in the given order, formatted like Python's
/// `json.dumps` (a beacon, say).
pub fn python_object(entries: &[(String, Value)]) -> String {
    // Serializing strings and JSON values cannot fail, and the formatter writes UTF-8.
    to_python_json(&Ordered(entries)).ok().and_then(|bytes| String::from_utf8(bytes).ok()).unwrap_or_default()
}

/// `value` formatted like Python's `json.dumps(value)`.
pub fn python_value(value: &Value) -> String {
    to_python_json(value).ok().and_then(|bytes| String::from_utf8(bytes).ok()).unwrap_or_default()
}

/// Formats a float like Python's `repr(float)` (and so `json.dumps`): shortest round-trip
/// digits, fixed notation for decimal exponents in `-4..16` (always with a fractional part,
/// `5.0`), scientific notation otherwise (`1e+16`, `1.5e-07`). Non-finite values use Python's
/// JSON tokens `NaN`, `Infinity`, `-Infinity`.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-7" or "5e0".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let int_len = usize::try_from(exponent).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            let zeros = usize::try_from(-exponent - 1).unwrap_or(0);
            out.push_str("0.");
            out.push_str(&"0".repeat(zeros));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exponent.unsigned_abs()));
    }
    out
}

/// Python's `float(value)` as the reference applies it to `backboneRttMs`: `None` for null
/// and for anything `float()` rejects (lists, objects, unparsable strings). Numbers, booleans
/// (`True` → 1.0) and numeric strings (`" 5.5 "`, `"1_000"`, `"inf"`) convert.
///
/// One deliberate difference: NaN (`float("nan")`) becomes `None`, because NaN has no
/// consistent order and would make peers disagree on ranking.
pub fn python_float(value: &Value) -> Option<f64> {
    let converted = match value {
        Value::Number(number) => number.as_f64(),
        Value::Bool(flag) => Some(if *flag { 1.0 } else { 0.0 }),
        Value::String(text) => parse_python_float_str(text),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    };
    converted.filter(|v| !v.is_nan())
}

fn parse_python_float_str(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.is_ascii() {
        return None;
    }
    // PEP 515: `float()` accepts single underscores between digits.
    let bytes = trimmed.as_bytes();
    let mut cleaned = String::with_capacity(trimmed.len());
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'_' {
            let before = index.checked_sub(1).and_then(|i| bytes.get(i)).is_some_and(u8::is_ascii_digit);
            let after = bytes.get(index + 1).is_some_and(u8::is_ascii_digit);
            if !(before && after) {
                return None;
            }
        } else {
            cleaned.push(char::from(byte));
        }
    }
    let lower = cleaned.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if lower.len() - unsigned.len() > 1 {
        return None;
    }
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok();
    }
    // Rust accepts exactly Python's decimal float grammar, except that it also accepts
    // `inf`/`nan` spellings handled above.
    if !unsigned.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-')) {
        return None;
    }
    lower.parse::<f64>().ok()
}

/// Appends the canonical form of `value`: compact JSON (no spaces), object keys sorted by
/// their UTF-8 bytes at every level, strings and numbers as `serde_json` writes them.
pub fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_canonical_object(out, map),
        scalar => {
            // Serializing a scalar `Value` cannot fail.
            let text = serde_json::to_string(scalar).unwrap_or_else(|_| "null".to_owned());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Appends the canonical form of an object (see [`write_canonical`]).
pub fn write_canonical_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (index, (key, value)) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_canonical(out, &Value::String(key.clone()));
        out.push(b':');
        write_canonical(out, value);
    }
    out.push(b'}');
}

/// Names a JSON value's type for error messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are `repr(x)` from CPython 3.11.
        let cases = [
            (5.177308999975594, "5.177308999975594"),
            (5.0, "5.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.28, "0.28"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (999999999999999.9, "999999999999999.9"),
            (1234.5, "1234.5"),
            (1e22, "1e+22"),
            (-80.25, "-80.25"),
            (1e-310, "1e-310"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float_repr(value), expected, "repr of {value:e}");
        }
    }

    #[test]
    fn dumps_matches_python_formatting() {
        let out = python_value(&json!({"a": [1, 2.5, null, true], "b": "é\u{1F600}\"\\\n\u{7f}", "c": {}}));
        // json.dumps({"a": [1, 2.5, None, True], "b": "é😀\"\\\n\x7f", "c": {}})
        assert_eq!(out, r#"{"a": [1, 2.5, null, true], "b": "\u00e9\ud83d\ude00\"\\\n\u007f", "c": {}}"#);
    }

    #[test]
    fn python_float_coercion() {
        assert_eq!(python_float(&json!(null)), None);
        assert_eq!(python_float(&json!(5)), Some(5.0));
        assert_eq!(python_float(&json!(5.25)), Some(5.25));
        assert_eq!(python_float(&json!(true)), Some(1.0));
        assert_eq!(python_float(&json!(" 12.5 ")), Some(12.5));
        assert_eq!(python_float(&json!("1_000")), Some(1000.0));
        assert_eq!(python_float(&json!("1__0")), None);
        assert_eq!(python_float(&json!("_1")), None);
        assert_eq!(python_float(&json!("abc")), None);
        assert_eq!(python_float(&json!("")), None);
        assert_eq!(python_float(&json!("--1")), None);
        assert_eq!(python_float(&json!("Infinity")), Some(f64::INFINITY));
        assert_eq!(python_float(&json!("-inf")), Some(f64::NEG_INFINITY));
        assert_eq!(python_float(&json!("nan")), None);
        assert_eq!(python_float(&json!("1e3")), Some(1000.0));
        assert_eq!(python_float(&json!([1])), None);
        assert_eq!(python_float(&json!({"x": 1})), None);
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let mut out = Vec::new();
        write_canonical(&mut out, &json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": "é"}}));
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":{"c":"é","z":[1,{"x":3,"y":2}]},"b":1}"#);
    }
}
