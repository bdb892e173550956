//! Typed values through serde, to and from protocol-4 JSON ([`Json`]). A value goes through
//! `serde_json::Value` and then the reference's `value_of` rules (§3.2), so a value that a
//! Python peer would refuse is refused here with the same code, before anything is sent.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::{self, Json};

/// `value` as protocol-4 JSON, normalised by `value_of` (keys in UTF-16 order, `-0` → `0`).
///
/// # Errors
/// `INVALID_VALUE` (not representable, non-finite, an integer beyond ±(2^53−1), too deep or
/// too many nodes) or `VALUE_TOO_LARGE` (over 64 KiB encoded).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json, Error> {
    let dynamic = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorCode::InvalidValue).with_detail(format!("cannot serialize the value: {e}")))?;
    Ok(canonical::value_of(&from_serde(&dynamic))?)
}

/// Reads protocol-4 JSON as `T`.
///
/// # Errors
/// `INVALID_VALUE` when the JSON does not have `T`'s shape.
pub(crate) fn from_json<T: DeserializeOwned>(value: &Json) -> Result<T, Error> {
    serde_json::from_value(to_serde(value)).map_err(|e| {
        Error::new(ErrorCode::InvalidValue).with_detail(format!(
            "the value does not have the expected type ({e}); read it as serde_json::Value to see it"
        ))
    })
}

/// `serde_json::Value` → [`Json`] (numbers become `f64`; `value_of` then checks their range).
pub(crate) fn from_serde(value: &serde_json::Value) -> Json {
    match value {
        serde_json::Value::Null => Json::Null,
        serde_json::Value::Bool(b) => Json::Bool(*b),
        serde_json::Value::Number(n) => Json::Number(number_to_f64(n)),
        serde_json::Value::String(s) => Json::String(s.clone()),
        serde_json::Value::Array(a) => Json::Array(a.iter().map(from_serde).collect()),
        serde_json::Value::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), from_serde(v))).collect()),
    }
}

/// A number as `f64`. An integer beyond 2^53 may round, but `value_of` refuses every
/// integer-valued number beyond ±(2^53−1) whatever it rounds to, so no changed value passes.
fn number_to_f64(n: &serde_json::Number) -> f64 {
    if let Some(i) = n.as_i64() {
        i as f64
    } else if let Some(u) = n.as_u64() {
        u as f64
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    }
}

/// [`Json`] → `serde_json::Value`: integer-valued numbers within ±(2^53−1) become integers, so
/// they read as Rust integers.
pub(crate) fn to_serde(value: &Json) -> serde_json::Value {
    match value {
        Json::Null => serde_json::Value::Null,
        Json::Bool(b) => serde_json::Value::Bool(*b),
        Json::Number(n) => {
            if n.fract() == 0.0 && n.abs() <= canonical::MAX_SAFE_INTEGER {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Json::String(s) => serde_json::Value::String(s.clone()),
        Json::Array(a) => serde_json::Value::Array(a.iter().map(to_serde).collect()),
        Json::Object(o) => serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), to_serde(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_round_trip_and_follow_the_value_rules() {
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Battery {
            level: u8,
            volts: f64,
        }
        let json = to_json(&Battery { level: 80, volts: 12.5 }).unwrap();
        assert_eq!(canonical::encode(&json).unwrap(), br#"{"level":80,"volts":12.5}"#);
        assert_eq!(from_json::<Battery>(&json).unwrap(), Battery { level: 80, volts: 12.5 });
        assert_eq!(to_json(&(1u64 << 53)).unwrap_err().kind(), ErrorCode::InvalidValue);
        assert_eq!(from_json::<u8>(&Json::String("x".into())).unwrap_err().kind(), ErrorCode::InvalidValue);
        assert_eq!(to_json(&-0.0).unwrap(), Json::Number(0.0));
    }
}
