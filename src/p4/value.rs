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
    finite::check(value).map_err(|e| Error::new(ErrorCode::InvalidValue).with_detail(e.to_string()))?;
    let dynamic = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorCode::InvalidValue).with_detail(format!("cannot serialize the value: {e}")))?;
    Ok(canonical::value_of(&from_serde(&dynamic))?)
}

/// [`to_json`], also returning the normalised value's canonical bytes (encoded once): what a
/// message carries.
///
/// # Errors
/// As [`to_json`].
pub(crate) fn to_json_encoded<T: Serialize + ?Sized>(value: &T) -> Result<(Json, Vec<u8>), Error> {
    finite::check(value).map_err(|e| Error::new(ErrorCode::InvalidValue).with_detail(e.to_string()))?;
    let dynamic = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorCode::InvalidValue).with_detail(format!("cannot serialize the value: {e}")))?;
    Ok(canonical::value_of_encoded(&from_serde(&dynamic), canonical::MAX_VALUE_BYTES)?)
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
        // serde_json would make these `null` silently; they are refused instead.
        assert_eq!(to_json(&f64::NAN).unwrap_err().kind(), ErrorCode::InvalidValue);
        assert_eq!(to_json(&vec![1.0, f64::INFINITY]).unwrap_err().kind(), ErrorCode::InvalidValue);
        assert_eq!(to_json(&Some(f32::NEG_INFINITY)).unwrap_err().kind(), ErrorCode::InvalidValue);
    }
}

/// Refuses a value holding a non-finite float before serde_json turns it into `null`
/// silently (`serde_json::to_value(f64::NAN)` is `Null`): a changed value must never go out.
mod finite {
    use serde::Serialize;
    use serde::ser;

    /// The error of [`check`]: `Some` text when a non-finite number was found.
    #[derive(Debug)]
    pub(super) struct NonFinite(pub String);

    impl std::fmt::Display for NonFinite {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for NonFinite {}

    impl ser::Error for NonFinite {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            NonFinite(msg.to_string())
        }
    }

    /// Walks `value`; fails on the first NaN or infinity.
    pub(super) fn check<T: Serialize + ?Sized>(value: &T) -> Result<(), NonFinite> {
        value.serialize(Walker)
    }

    struct Walker;

    macro_rules! ok {
        ($($name:ident: $t:ty),*) => {$(
            fn $name(self, _: $t) -> Result<(), NonFinite> { Ok(()) }
        )*};
    }

    fn float(v: f64) -> Result<(), NonFinite> {
        if v.is_finite() { Ok(()) } else { Err(NonFinite(format!("the value holds a non-finite number ({v})"))) }
    }

    impl ser::Serializer for Walker {
        type Ok = ();
        type Error = NonFinite;
        type SerializeSeq = Walker;
        type SerializeTuple = Walker;
        type SerializeTupleStruct = Walker;
        type SerializeTupleVariant = Walker;
        type SerializeMap = Walker;
        type SerializeStruct = Walker;
        type SerializeStructVariant = Walker;

        ok!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
            serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
            serialize_u128: u128, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8]);

        fn serialize_f32(self, v: f32) -> Result<(), NonFinite> {
            float(f64::from(v))
        }
        fn serialize_f64(self, v: f64) -> Result<(), NonFinite> {
            float(v)
        }
        fn serialize_none(self) -> Result<(), NonFinite> {
            Ok(())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), NonFinite> {
            v.serialize(Walker)
        }
        fn serialize_unit(self) -> Result<(), NonFinite> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), NonFinite> {
            Ok(())
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), NonFinite> {
            Ok(())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), NonFinite> {
            v.serialize(Walker)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            v: &T,
        ) -> Result<(), NonFinite> {
            v.serialize(Walker)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
        fn serialize_tuple(self, _: usize) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Walker, NonFinite> {
            Ok(Walker)
        }
    }

    macro_rules! compound {
        ($($tr:ident :: $m:ident),*) => {$(
            impl ser::$tr for Walker {
                type Ok = ();
                type Error = NonFinite;
                fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NonFinite> { v.serialize(Walker) }
                fn end(self) -> Result<(), NonFinite> { Ok(()) }
            }
        )*};
    }
    compound!(
        SerializeSeq::serialize_element,
        SerializeTuple::serialize_element,
        SerializeTupleStruct::serialize_field,
        SerializeTupleVariant::serialize_field
    );

    impl ser::SerializeMap for Walker {
        type Ok = ();
        type Error = NonFinite;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), NonFinite> {
            k.serialize(Walker)
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NonFinite> {
            v.serialize(Walker)
        }
        fn end(self) -> Result<(), NonFinite> {
            Ok(())
        }
    }

    impl ser::SerializeStruct for Walker {
        type Ok = ();
        type Error = NonFinite;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> Result<(), NonFinite> {
            v.serialize(Walker)
        }
        fn end(self) -> Result<(), NonFinite> {
            Ok(())
        }
    }

    impl ser::SerializeStructVariant for Walker {
        type Ok = ();
        type Error = NonFinite;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> Result<(), NonFinite> {
            v.serialize(Walker)
        }
        fn end(self) -> Result<(), NonFinite> {
            Ok(())
        }
    }
}

impl From<&serde_json::Value> for Json {
    /// A dynamic value as protocol-4 JSON. Numbers become `f64`; the value rules are checked
    /// where it is used (a set, a publish), not here.
    fn from(value: &serde_json::Value) -> Self {
        from_serde(value)
    }
}

impl From<&Json> for serde_json::Value {
    /// Protocol-4 JSON as a dynamic value: integer-valued numbers within ±(2^53−1) become
    /// integers.
    fn from(value: &Json) -> Self {
        to_serde(value)
    }
}
