//! Reading a request body as one event or an array of them, stopping at the first
//! element past the limit: a 2 MiB body of `[{},{},...]` would otherwise build some
//! 700,000 objects before the length check could refuse it. Keys given twice are
//! refused (see [`dora_event::json`]), and the 400 names the key and the element.

use std::cell::RefCell;
use std::fmt;

use dora_event::json::StrictSeed;
use serde::de::DeserializeSeed;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What a request body held.
#[derive(Debug, PartialEq)]
pub enum Body {
    /// A single event object (or any non-array value, for validation to refuse).
    One(Value),
    /// An array of at most the limit's elements.
    Many(Vec<Value>),
}

/// Why a body could not be read.
#[derive(Debug, PartialEq)]
pub enum BodyError {
    /// Not JSON.
    Json(String),
    /// An array with no element, or more than the limit.
    Count(String),
    /// An event object that names `key` twice; `index` is its place in an array.
    DuplicateKey {
        /// The element, for an array.
        index: Option<usize>,
        /// The key given twice.
        key: String,
        /// serde_json's message, with the position.
        message: String,
    },
}

/// Parses `body`, holding at most `max` array elements.
pub fn parse(body: &[u8], max: usize) -> Result<Body, BodyError> {
    let duplicate = RefCell::new(None);
    let index = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let visitor = BodyVisitor {
        max,
        duplicate: &duplicate,
        index: &index,
    };
    let parsed = de.deserialize_any(visitor).and_then(|b| {
        de.end()?;
        Ok(b)
    });
    parsed.map_err(|e| {
        let text = e.to_string();
        if let Some(key) = duplicate.take() {
            return BodyError::DuplicateKey {
                index: index.take(),
                key,
                message: text,
            };
        }
        match text.strip_prefix(COUNT_TAG) {
            // serde_json appends " at line L column C"; the count message stands alone.
            Some(rest) => {
                BodyError::Count(rest.split(" at line ").next().unwrap_or(rest).to_owned())
            }
            None => BodyError::Json(text),
        }
    })
}

/// Marks the element-count error inside serde's error type.
const COUNT_TAG: &str = "dora-count: ";

struct BodyVisitor<'a> {
    max: usize,
    /// Where [`StrictSeed`] leaves a key an event gives twice.
    duplicate: &'a RefCell<Option<String>>,
    /// The element being read when that happened.
    index: &'a RefCell<Option<usize>>,
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an event object or an array of 1 to {} events", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        loop {
            *self.index.borrow_mut() = Some(items.len());
            let Some(item) = seq.next_element_seed(StrictSeed::new(self.duplicate))? else {
                break;
            };
            if items.len() == self.max {
                return Err(de::Error::custom(format!(
                    "{COUNT_TAG}an array must hold 1 to {} events; got more",
                    self.max
                )));
            }
            items.push(item);
        }
        if items.is_empty() {
            return Err(de::Error::custom(format!(
                "{COUNT_TAG}an array must hold 1 to {} events; got 0",
                self.max
            )));
        }
        Ok(Body::Many(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body, A::Error> {
        StrictSeed::new(self.duplicate)
            .deserialize(de::value::MapAccessDeserializer::new(map))
            .map(Body::One)
    }

    // Any other JSON value is one (invalid) event: validation names the problem.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Body, E> {
        Ok(Body::One(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Body, E> {
        Ok(Body::One(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Body, E> {
        Ok(Body::One(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Body, E> {
        Ok(Body::One(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Body, E> {
        Ok(Body::One(Value::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Body, E> {
        Ok(Body::One(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_many_and_the_limits() {
        assert_eq!(parse(br#"{"a":1}"#, 3), Ok(Body::One(json!({"a": 1}))));
        assert_eq!(
            parse(b"[{},{}]", 3),
            Ok(Body::Many(vec![json!({}), json!({})]))
        );
        assert_eq!(parse(b"7", 3), Ok(Body::One(json!(7))));
        assert!(matches!(parse(b"[]", 3), Err(BodyError::Count(m)) if m.contains("got 0")));
        assert!(
            matches!(parse(b"[{},{},{},{}]", 3), Err(BodyError::Count(m)) if m.contains("1 to 3"))
        );
        assert!(matches!(parse(b"{} x", 3), Err(BodyError::Json(_))));
        assert!(matches!(parse(b"[{}", 3), Err(BodyError::Json(_))));
    }

    #[test]
    fn a_key_given_twice_is_named_with_its_element() {
        let one = br#"{"kind":"deploy","succeeded":false,"succeeded":true}"#;
        assert!(matches!(parse(one, 3),
            Err(BodyError::DuplicateKey { index: None, key, .. }) if key == "succeeded"));
        let many = br#"[{"a":1},{"kind":"deploy","kind":"rollback"}]"#;
        assert!(matches!(parse(many, 3),
            Err(BodyError::DuplicateKey { index: Some(1), key, .. }) if key == "kind"));
        // A duplicate inside a field's value is not an event field: plain invalid JSON.
        assert!(
            matches!(parse(br#"[{"id":{"x":1,"x":2}}]"#, 3), Err(BodyError::Json(m)) if m.contains("`x`"))
        );
    }

    #[test]
    fn reading_stops_at_the_first_element_past_the_limit() {
        // A well-formed prefix followed by garbage: if the reader went on past element
        // 4 it would report a JSON error instead of the count.
        let body = b"[{},{},{},{}, this is not json";
        assert!(matches!(parse(body, 3), Err(BodyError::Count(_))));
    }
}
