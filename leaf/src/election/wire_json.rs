//! JSON text the way the Python reference writes and reads it: `json.dumps` formatting
//! (`", "` / `": "` separators, ASCII escaping, Python float `repr`), Python's `float()`
//! coercion, and the canonical compact form (sorted keys) that beacon MACs are computed over.

use serde_json::{Map, Number, Value};

/// Appends `value` to `out` formatted like Python's `json.dumps(value)`.
pub(crate) fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map.iter()),
    }
}

/// Appends a JSON object made of `entries` (in the given order), Python-formatted.
pub(crate) fn write_object<'a>(out: &mut String, entries: impl IntoIterator<Item = (&'a String, &'a Value)>) {
    out.push('{');
    for (index, (key, value)) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        write_str(out, key);
        out.push_str(": ");
        write_value(out, value);
    }
    out.push('}');
}

fn write_number(out: &mut String, number: &Number) {
    if let Some(value) = number.as_u64() {
        out.push_str(&value.to_string());
    } else if let Some(value) = number.as_i64() {
        out.push_str(&value.to_string());
    } else if let Some(value) = number.as_f64() {
        out.push_str(&python_float_repr(value));
    } else {
        out.push_str(&number.to_string());
    }
}

/// Appends `text` as a JSON string with Python's `ensure_ascii=True` escaping.
pub(crate) fn write_str(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Formats a float like Python's `repr(float)` (and so `json.dumps`): shortest round-trip
/// digits, fixed notation for decimal exponents in `-4..16` (always with a fractional part,
/// `5.0`), scientific notation otherwise (`1e+16`, `1.5e-07`). Non-finite values use Python's
/// JSON tokens `NaN`, `Infinity`, `-Infinity`.
pub(crate) fn python_float_repr(value: f64) -> String {
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
pub(crate) fn python_float(value: &Value) -> Option<f64> {
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
pub(crate) fn write_canonical(out: &mut Vec<u8>, value: &Value) {
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
pub(crate) fn write_canonical_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
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
pub(crate) fn type_name(value: &Value) -> &'static str {
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
        let mut out = String::new();
        write_value(&mut out, &json!({"a": [1, 2.5, null, true], "b": "é\u{1F600}\"\\\n\u{7f}", "c": {}}));
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
