//! Reading event JSON strictly: an object that names a key twice is refused.
//!
//! serde_json keeps the last of two equal keys, so `{"succeeded": false, "succeeded":
//! true}` would silently become a successful deploy: the same ambiguity that the
//! contract's "unknown fields are rejected" guards against. The gateway and the
//! projector both read bodies through [`StrictSeed`], so they refuse the same messages.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::ValidationError;

/// Parses one JSON document, refusing duplicate keys at any depth. A duplicate key of
/// the top-level object is named as the error's field; anything else has no field.
pub fn from_slice(bytes: &[u8]) -> Result<Value, ValidationError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed::new(&duplicate)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        let message = format!("invalid JSON: {e}");
        match duplicate.take() {
            Some(key) => ValidationError {
                field: Some(key),
                message,
            },
            None => ValidationError::whole(message),
        }
    })
}

/// Deserializes one JSON value like `serde_json::Value` does, but fails on a key that
/// appears twice in one object. When that object is the value itself (an event's own
/// fields), the key is left in `duplicate`, so the caller can name it as the field.
#[derive(Debug, Clone, Copy)]
pub struct StrictSeed<'a> {
    duplicate: &'a RefCell<Option<String>>,
    depth: usize,
}

impl<'a> StrictSeed<'a> {
    /// A seed for a top-level value; a duplicate key of that object lands in `duplicate`.
    pub fn new(duplicate: &'a RefCell<Option<String>>) -> StrictSeed<'a> {
        StrictSeed {
            duplicate,
            depth: 0,
        }
    }

    fn nested(self) -> StrictSeed<'a> {
        StrictSeed {
            depth: self.depth + 1,
            ..self
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                let message = format!("duplicate key `{key}`: each key may appear only once");
                if self.depth == 0 {
                    *self.duplicate.borrow_mut() = Some(key);
                }
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self.nested())?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_json_alone_keeps_the_last_of_two_equal_keys() {
        // Why this module exists: plain serde_json turns a failed deploy into a success.
        let body = br#"{"succeeded": false, "succeeded": true}"#;
        let lax: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(lax, json!({"succeeded": true}));
        let err = from_slice(body).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("succeeded"));
        assert!(err.message.contains("duplicate key `succeeded`"), "{err}");
    }

    #[test]
    fn a_nested_duplicate_is_refused_without_naming_a_field() {
        let err = from_slice(br#"{"id": {"a": 1, "a": 2}}"#).unwrap_err();
        assert_eq!(err.field, None);
        assert!(err.message.contains("duplicate key `a`"), "{err}");
        let err = from_slice(br#"[{"a": 1, "a": 2}]"#).unwrap_err();
        assert_eq!(err.field, None);
    }

    #[test]
    fn it_reads_what_serde_json_reads() {
        for text in [
            r#"{"a": [1, -2, 3.5, true, null, "x\u00e9"], "b": {"c": {}}}"#,
            "[]",
            "7",
            r#""\ud83d\ude00""#,
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let lax: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_slice(text.as_bytes()).unwrap(), lax, "{text}");
        }
        for bad in ["", "{", "[1,]", "{} {}", "\"\\ud800\"", "1e400"] {
            assert!(from_slice(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let err = from_slice(deep.as_bytes()).unwrap_err();
        assert!(err.message.contains("recursion limit"), "{err}");
    }
}
