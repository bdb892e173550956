//! [`Value`]: a decoded payload of any shape, as the Python reference sees it.
//!
//! A payload decodes to `None`, `bool`, `int`, `float`, `str`, `bytes`, `list` or `dict` in
//! Python; [`Value`] has one variant for each. It keeps object key order (like a Python
//! `dict`), holds non-finite floats (Python peers send `NaN` and `Infinity`), and converts into
//! any `serde::Deserialize` type, so typed decoding and dynamic inspection share one path.

use std::fmt;

use bytes::Bytes;
use indexmap::IndexMap;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON object with its keys in insertion order.
pub(crate) type Map = IndexMap<String, Value>;

/// A decoded payload: JSON, text or raw bytes.
///
/// ```
/// use kinopio::Value;
/// let v = kinopio::decode_value(br#"{"x": 1, "ok": true}"#);
/// assert_eq!(v["x"], Value::from(1));
/// assert_eq!(kinopio::decode_value(b"hello"), Value::from("hello"));
/// assert_eq!(kinopio::decode_value(b""), Value::Null);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// An empty payload, or JSON `null`.
    #[default]
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// A JSON integer that fits in `i64`.
    Int(i64),
    /// A JSON integer above `i64::MAX` that fits in `u64`.
    UInt(u64),
    /// A JSON number with a fraction or exponent (or an integer too large for `u64`), or one
    /// of Python's `NaN`, `Infinity`, `-Infinity`.
    Float(f64),
    /// A JSON string, or a payload that is UTF-8 text but not JSON.
    String(String),
    /// A payload that is not UTF-8.
    Bytes(Bytes),
    /// A JSON array.
    Array(Vec<Value>),
    /// A JSON object, keys in order of appearance (a repeated key keeps its first position and
    /// its last value, as in Python).
    Object(Map),
}

static NULL: Value = Value::Null;

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// The number as `f64`, for any numeric variant.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The object, if this is a [`Value::Object`].
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The array, if this is a [`Value::Array`].
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Looks up a key of an object; `None` for other variants or a missing key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(key))
    }

    /// Converts into any deserialisable type.
    ///
    /// ```
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Point { x: i32, y: i32 }
    /// let v = kinopio::decode_value(br#"{"x": 1, "y": 2}"#);
    /// assert_eq!(v.deserialize_into::<Point>().unwrap(), Point { x: 1, y: 2 });
    /// ```
    pub fn deserialize_into<T: de::DeserializeOwned>(self) -> Result<T, ValueError> {
        T::deserialize(self)
    }

    /// The Python type name of this value (`NoneType`, `int`, `str`, `bytes`, ...), for
    /// messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "list",
            Value::Object(_) => "dict",
        }
    }
}

impl std::ops::Index<&str> for Value {
    type Output = Value;
    /// Object lookup that yields [`Value::Null`] for missing keys or non-objects.
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::Index<usize> for Value {
    type Output = Value;
    /// Array lookup that yields [`Value::Null`] when out of range or not an array.
    fn index(&self, i: usize) -> &Value {
        self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(i64::from(v)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Value::UInt(v), Value::Int)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<Bytes> for Value {
    fn from(v: Bytes) -> Self {
        Value::Bytes(v)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}
impl From<Map> for Value {
    fn from(v: Map) -> Self {
        Value::Object(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
        }
    }
}

impl fmt::Display for Value {
    /// Writes the value the way a Python peer would print its JSON: strings and bytes
    /// unquoted at the top level, everything else as Python-formatted JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::String(s) => f.write_str(s),
            Value::Bytes(b) => write!(f, "{}", b.escape_ascii()),
            other => {
                let bytes = crate::wire::json::to_python_json(other).map_err(|_| fmt::Error)?;
                f.write_str(&String::from_utf8_lossy(&bytes))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serialize

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(f) => s.serialize_f64(*f),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for item in a {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialize (from JSON or any other format)

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v)))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::from(v)))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        de::Deserialize::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            out.push(item);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------------------------
// Deserializer: Value -> any T

/// A [`Value`] did not fit the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for Value {
    type Deserializer = Value;
    fn into_deserializer(self) -> Value {
        self
    }
}

impl<'de> Deserializer<'de> for Value {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::UInt(u) => visitor.visit_u64(u),
            Value::Float(f) => visitor.visit_f64(f),
            Value::String(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b.to_vec()),
            Value::Array(a) => {
                let len = a.len();
                let mut seq = de::value::SeqDeserializer::new(a.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                seq.end().map_err(|_| de::Error::invalid_length(len, &"fewer elements"))?;
                Ok(out)
            }
            Value::Object(o) => {
                let mut map = de::value::MapDeserializer::new(o.into_iter());
                let out = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            Value::Object(o) if o.len() == 1 => {
                let Some((variant, value)) = o.into_iter().next() else {
                    return Err(de::Error::custom("empty enum object"));
                };
                visitor.visit_enum(EnumAccess { variant, value })
            }
            other => Err(de::Error::invalid_type(other.unexpected(), &"enum")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::String(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b.to_vec()),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            // Raw bytes into a sequence type (`Vec<u8>`): one element per byte.
            Value::Bytes(b) => {
                let mut seq = de::value::SeqDeserializer::new(b.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_unit(),
            other => Err(de::Error::invalid_type(other.unexpected(), &"null")),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

impl Value {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::UInt(u) => de::Unexpected::Unsigned(*u),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::String(s) => de::Unexpected::Str(s),
            Value::Bytes(b) => de::Unexpected::Bytes(b),
            Value::Array(_) => de::Unexpected::Seq,
            Value::Object(_) => de::Unexpected::Map,
        }
    }
}

struct EnumAccess {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for EnumAccess {
    type Error = ValueError;
    type Variant = VariantAccess;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, VariantAccess), ValueError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, VariantAccess(self.value)))
    }
}

struct VariantAccess(Value);

impl<'de> de::VariantAccess<'de> for VariantAccess {
    type Error = ValueError;
    fn unit_variant(self) -> Result<(), ValueError> {
        match self.0 {
            Value::Null => Ok(()),
            other => Err(de::Error::invalid_type(other.unexpected(), &"unit variant")),
        }
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, ValueError> {
        seed.deserialize(self.0)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, ValueError> {
        self.0.deserialize_any(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.0.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Reading {
        sensor: String,
        level: f64,
        tags: Vec<String>,
        note: Option<String>,
        kind: Kind,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Temp,
        Wind { gust: u32 },
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn round_trips_into_typed_structs() {
        let v = parse(r#"{"sensor":"a","level":1,"tags":["x"],"note":null,"kind":"temp"}"#);
        let r: Reading = v.deserialize_into().unwrap();
        assert_eq!(r.level, 1.0);
        assert_eq!(r.kind, Kind::Temp);
        let v = parse(r#"{"sensor":"a","level":2.5,"tags":[],"kind":{"wind":{"gust":3}}}"#);
        let r: Reading = v.deserialize_into().unwrap();
        assert_eq!(r.kind, Kind::Wind { gust: 3 });
        assert_eq!(r.note, None);
    }

    #[test]
    fn type_mismatch_is_an_error_not_a_panic() {
        let err = parse(r#"{"x": "nope"}"#).deserialize_into::<Vec<u8>>().unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(parse("[1,2,3]").deserialize_into::<(u8, u8)>().is_err());
    }

    #[test]
    fn keeps_key_order_and_last_duplicate_wins() {
        let v = parse(r#"{"b": 1, "a": 2, "b": 3}"#);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(v["b"], Value::Int(3));
    }

    #[test]
    fn numbers_keep_their_kind() {
        assert_eq!(parse("1"), Value::Int(1));
        assert_eq!(parse("-1"), Value::Int(-1));
        assert_eq!(parse("18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(parse("1.5"), Value::Float(1.5));
        assert_eq!(parse("1e3"), Value::Float(1000.0));
    }

    #[test]
    fn indexing_is_total() {
        let v = parse(r#"{"a": [10, 20]}"#);
        assert_eq!(v["a"][1], Value::Int(20));
        assert_eq!(v["missing"][5], Value::Null);
    }
}
