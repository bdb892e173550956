//! Typed values through serde, to and from protocol-4 JSON ([`Json`]). A value is serialised
//! straight into [`Json`] (serde_json's data model, non-finite floats refused) and then checked
//! and normalised by the reference's `value_of` rules (§3.2) in place, so a value that a
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
    to_json_encoded(value).map(|(json, _)| json)
}

/// [`to_json`], also returning the normalised value's canonical bytes (encoded once): what a
/// message carries.
///
/// # Errors
/// As [`to_json`].
pub(crate) fn to_json_encoded<T: Serialize + ?Sized>(value: &T) -> Result<(Json, Vec<u8>), Error> {
    let tree = tree::build(value)
        .map_err(|e| Error::new(ErrorCode::InvalidValue).with_detail(format!("cannot serialize the value: {e}")))?;
    Ok(canonical::value_of_owned_encoded(tree, canonical::MAX_VALUE_BYTES)?)
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

    fn serde_bytes_like() -> &'static [u8] {
        &[0, 255]
    }

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
        // The same tree as through serde_json::Value, for serde's whole data model.
        #[derive(Serialize)]
        enum Shape {
            Unit,
            New(u8),
            Tuple(i8, bool),
            Struct { b: Option<char>, a: () },
        }
        #[derive(Serialize)]
        struct Unit;
        let mut keyed = std::collections::BTreeMap::new();
        keyed.insert(10u32, "ten");
        keyed.insert(2u32, "two");
        let samples: Vec<serde_json::Value> = vec![
            serde_json::to_value((Shape::Unit, Shape::New(7), Shape::Tuple(-1, true))).unwrap(),
            serde_json::to_value(Shape::Struct { b: Some('é'), a: () }).unwrap(),
            serde_json::to_value(&keyed).unwrap(),
            serde_json::to_value((Unit, serde_bytes_like(), i64::MIN / 4096, u64::MAX >> 12)).unwrap(),
        ];
        let direct = [
            to_json(&(Shape::Unit, Shape::New(7), Shape::Tuple(-1, true))).unwrap(),
            to_json(&Shape::Struct { b: Some('é'), a: () }).unwrap(),
            to_json(&keyed).unwrap(),
            to_json(&(Unit, serde_bytes_like(), i64::MIN / 4096, u64::MAX >> 12)).unwrap(),
        ];
        for (via_serde, direct) in samples.iter().zip(direct) {
            assert_eq!(canonical::value_of(&from_serde(via_serde)).unwrap(), direct, "{via_serde}");
        }
        assert!(to_json(&std::collections::HashMap::from([((1, 2), 3)])).is_err(), "a tuple key");
        // serde_json would make these `null` silently; they are refused instead.
        assert_eq!(to_json(&f64::NAN).unwrap_err().kind(), ErrorCode::InvalidValue);
        assert_eq!(to_json(&vec![1.0, f64::INFINITY]).unwrap_err().kind(), ErrorCode::InvalidValue);
        assert_eq!(to_json(&Some(f32::NEG_INFINITY)).unwrap_err().kind(), ErrorCode::InvalidValue);
    }
}

/// Serialises a value straight into [`Json`] (one tree, no `serde_json::Value` between), with
/// serde_json's data model (maps with string, integer, bool or char keys; enums externally
/// tagged; bytes as arrays of numbers) — and refusing a non-finite float, which serde_json
/// would turn into `null` silently: a changed value must never go out.
mod tree {
    use indexmap::IndexMap;
    use serde::Serialize;
    use serde::ser::{self, Impossible};

    use crate::wire::p4::canonical::Json;

    /// Why a value could not become [`Json`].
    #[derive(Debug)]
    pub(super) struct Refused(pub String);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl ser::Error for Refused {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Refused(msg.to_string())
        }
    }

    /// `value` as [`Json`].
    pub(super) fn build<T: Serialize + ?Sized>(value: &T) -> Result<Json, Refused> {
        value.serialize(Tree)
    }

    fn number(v: f64) -> Result<Json, Refused> {
        if v.is_finite() {
            Ok(Json::Number(v))
        } else {
            Err(Refused(format!("the value holds a non-finite number ({v})")))
        }
    }

    struct Tree;

    /// Integers that fit an `f64` exactly.
    macro_rules! exact {
        ($($name:ident: $t:ty),*) => {$(
            fn $name(self, v: $t) -> Result<Json, Refused> {
                Ok(Json::Number(f64::from(v)))
            }
        )*};
    }
    /// An array (or a tuple) being built; `Some(tag)` wraps it as `{tag: [...]}`.
    pub(super) struct Seq(Vec<Json>, Option<&'static str>);

    /// An object being built; `Some(tag)` wraps it as `{tag: {...}}`.
    pub(super) struct Map(IndexMap<String, Json>, Option<String>, Option<&'static str>);

    fn tagged(tag: Option<&'static str>, value: Json) -> Json {
        match tag {
            None => value,
            Some(tag) => Json::Object(IndexMap::from([(tag.to_owned(), value)])),
        }
    }

    impl ser::Serializer for Tree {
        type Ok = Json;
        type Error = Refused;
        type SerializeSeq = Seq;
        type SerializeTuple = Seq;
        type SerializeTupleStruct = Seq;
        type SerializeTupleVariant = Seq;
        type SerializeMap = Map;
        type SerializeStruct = Map;
        type SerializeStructVariant = Map;

        fn serialize_bool(self, v: bool) -> Result<Json, Refused> {
            Ok(Json::Bool(v))
        }
        exact!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_u8: u8,
            serialize_u16: u16, serialize_u32: u32);
        // Beyond 2^53 these round, but `value_of` then refuses every integer-valued number
        // beyond ±(2^53−1) whatever it rounded to, so no changed value passes.
        fn serialize_i64(self, v: i64) -> Result<Json, Refused> {
            Ok(Json::Number(v as f64))
        }
        fn serialize_i128(self, v: i128) -> Result<Json, Refused> {
            Ok(Json::Number(v as f64))
        }
        fn serialize_u64(self, v: u64) -> Result<Json, Refused> {
            Ok(Json::Number(v as f64))
        }
        fn serialize_u128(self, v: u128) -> Result<Json, Refused> {
            Ok(Json::Number(v as f64))
        }
        fn serialize_f32(self, v: f32) -> Result<Json, Refused> {
            number(f64::from(v))
        }
        fn serialize_f64(self, v: f64) -> Result<Json, Refused> {
            number(v)
        }
        fn serialize_char(self, v: char) -> Result<Json, Refused> {
            Ok(Json::String(v.to_string()))
        }
        fn serialize_str(self, v: &str) -> Result<Json, Refused> {
            Ok(Json::String(v.to_owned()))
        }
        fn serialize_bytes(self, v: &[u8]) -> Result<Json, Refused> {
            Ok(Json::Array(v.iter().map(|b| Json::Number(f64::from(*b))).collect()))
        }
        fn serialize_none(self) -> Result<Json, Refused> {
            Ok(Json::Null)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Json, Refused> {
            v.serialize(Tree)
        }
        fn serialize_unit(self) -> Result<Json, Refused> {
            Ok(Json::Null)
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<Json, Refused> {
            Ok(Json::Null)
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Json, Refused> {
            Ok(Json::String(variant.to_owned()))
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<Json, Refused> {
            v.serialize(Tree)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            v: &T,
        ) -> Result<Json, Refused> {
            Ok(tagged(Some(variant), v.serialize(Tree)?))
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Refused> {
            Ok(Seq(Vec::with_capacity(len.unwrap_or(0).min(4096)), None))
        }
        fn serialize_tuple(self, len: usize) -> Result<Seq, Refused> {
            self.serialize_seq(Some(len))
        }
        fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, Refused> {
            self.serialize_seq(Some(len))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<Seq, Refused> {
            Ok(Seq(Vec::with_capacity(len.min(4096)), Some(variant)))
        }
        fn serialize_map(self, len: Option<usize>) -> Result<Map, Refused> {
            Ok(Map(IndexMap::with_capacity(len.unwrap_or(0).min(4096)), None, None))
        }
        fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map, Refused> {
            self.serialize_map(Some(len))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<Map, Refused> {
            Ok(Map(IndexMap::with_capacity(len.min(4096)), None, Some(variant)))
        }
    }

    macro_rules! seq {
        ($($tr:ident :: $m:ident),*) => {$(
            impl ser::$tr for Seq {
                type Ok = Json;
                type Error = Refused;
                fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
                    self.0.push(v.serialize(Tree)?);
                    Ok(())
                }
                fn end(self) -> Result<Json, Refused> {
                    Ok(tagged(self.1, Json::Array(self.0)))
                }
            }
        )*};
    }
    seq!(
        SerializeSeq::serialize_element,
        SerializeTuple::serialize_element,
        SerializeTupleStruct::serialize_field,
        SerializeTupleVariant::serialize_field
    );

    impl ser::SerializeMap for Map {
        type Ok = Json;
        type Error = Refused;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Refused> {
            self.1 = Some(k.serialize(Key)?);
            Ok(())
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            let key = self.1.take().ok_or_else(|| Refused("a map value without a key".into()))?;
            self.0.insert(key, v.serialize(Tree)?);
            Ok(())
        }
        fn end(self) -> Result<Json, Refused> {
            Ok(tagged(self.2, Json::Object(self.0)))
        }
    }

    impl ser::SerializeStruct for Map {
        type Ok = Json;
        type Error = Refused;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> Result<(), Refused> {
            self.0.insert(k.to_owned(), v.serialize(Tree)?);
            Ok(())
        }
        fn end(self) -> Result<Json, Refused> {
            Ok(tagged(self.2, Json::Object(self.0)))
        }
    }

    impl ser::SerializeStructVariant for Map {
        type Ok = Json;
        type Error = Refused;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> Result<(), Refused> {
            self.0.insert(k.to_owned(), v.serialize(Tree)?);
            Ok(())
        }
        fn end(self) -> Result<Json, Refused> {
            Ok(tagged(self.2, Json::Object(self.0)))
        }
    }

    /// Map keys: strings, and what serde_json also writes as strings (integers, bools, chars).
    struct Key;

    macro_rules! as_text {
        ($($name:ident: $t:ty),*) => {$(
            fn $name(self, v: $t) -> Result<String, Refused> {
                Ok(v.to_string())
            }
        )*};
    }

    fn key_refused() -> Refused {
        Refused("a map key must be a string (or an integer, bool or char)".into())
    }

    impl ser::Serializer for Key {
        type Ok = String;
        type Error = Refused;
        type SerializeSeq = Impossible<String, Refused>;
        type SerializeTuple = Impossible<String, Refused>;
        type SerializeTupleStruct = Impossible<String, Refused>;
        type SerializeTupleVariant = Impossible<String, Refused>;
        type SerializeMap = Impossible<String, Refused>;
        type SerializeStruct = Impossible<String, Refused>;
        type SerializeStructVariant = Impossible<String, Refused>;

        // Written as strings, as serde_json writes these keys.
        as_text!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);
        fn serialize_f32(self, _: f32) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_f64(self, _: f64) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_char(self, v: char) -> Result<String, Refused> {
            Ok(v.to_string())
        }
        fn serialize_str(self, v: &str) -> Result<String, Refused> {
            Ok(v.to_owned())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_none(self) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_unit(self) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<String, Refused> {
            Ok(variant.to_owned())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<String, Refused> {
            v.serialize(Key)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<String, Refused> {
            Err(key_refused())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Refused> {
            Err(key_refused())
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Refused> {
            Err(key_refused())
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Refused> {
            Err(key_refused())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Refused> {
            Err(key_refused())
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Refused> {
            Err(key_refused())
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Refused> {
            Err(key_refused())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Refused> {
            Err(key_refused())
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
