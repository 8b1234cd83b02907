//! The `Idempotency-Key` header (CONTRACT.md section 2): a retried request without event
//! ids must be the same events, not new ones.
//!
//! An element that carries no `id` gets one derived from the token's name, the key and
//! its index in the request, so the same request sent again by the same sender yields
//! the same ids, and JetStream and the store keep one copy. The token name is part of
//! it so two senders that happen to pick the same key do not overwrite each other.

use axum::http::HeaderMap;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The header's name.
pub const HEADER: &str = "idempotency-key";

/// Namespace of the derived ids (UUIDv5): fixed forever, or retries across an upgrade
/// would become new events.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d0f_3c5e_8a41_4b7e_9c1d_2f5a_7e3b_9d10);

/// The request's key, checked: 1-128 characters of the event `id` charset.
pub fn key(headers: &HeaderMap) -> Result<Option<String>> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::BadRequest(
            "`Idempotency-Key` is given more than once".to_owned(),
        ));
    }
    let key = value.to_str().unwrap_or("");
    let ok = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(Some(key.to_owned()))
    } else {
        Err(Error::BadRequest(
            "`Idempotency-Key` must be 1-128 characters of A-Z a-z 0-9 . _ : -".to_owned(),
        ))
    }
}

/// The id of element `index` of a request under `key` from token `token`.
pub fn derived_id(token: &str, key: &str, index: usize) -> String {
    // NUL cannot occur in a token name or a key, so the parts cannot run together.
    Uuid::new_v5(&NAMESPACE, format!("{token}\0{key}\0{index}").as_bytes()).to_string()
}

/// Gives element `index` its derived id if it has none. An element that is not an
/// object is left for validation to refuse.
pub fn assign(item: &mut Value, token: &str, key: &str, index: usize) {
    if let Value::Object(obj) = item {
        obj.entry("id")
            .or_insert_with(|| Value::String(derived_id(token, key, index)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_request_gets_the_same_ids_and_another_sender_other_ones() {
        let fill = |token: &str| {
            let mut items = [
                json!({"kind": "deploy"}),
                json!({"kind": "deploy", "id": "mine"}),
            ];
            for (i, item) in items.iter_mut().enumerate() {
                assign(item, token, "run-7", i);
            }
            items
        };
        let (a, b, c) = (fill("ci"), fill("ci"), fill("pager"));
        assert_eq!(a, b);
        assert_eq!(a[1]["id"], "mine", "an id the sender gave is kept");
        assert_ne!(a[0]["id"], c[0]["id"], "the token is part of the id");
        assert_ne!(derived_id("ci", "k", 0), derived_id("ci", "k", 1));
        assert_ne!(derived_id("ci", "k", 0), derived_id("ci", "k2", 0));
    }

    #[test]
    fn a_bad_key_is_named() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, "has space".parse().unwrap());
        assert!(key(&headers)
            .unwrap_err()
            .to_string()
            .contains("Idempotency-Key"));
        headers.insert(HEADER, "ok-key:1".parse().unwrap());
        assert_eq!(key(&headers).unwrap().as_deref(), Some("ok-key:1"));
        assert_eq!(key(&HeaderMap::new()).unwrap(), None);
    }
}
