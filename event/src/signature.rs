//! Whose event is it: the gateway signs the `source` it publishes, the projector checks.
//!
//! Anyone allowed to publish on the stream's subjects can set the `Dora-Source` header,
//! so the header alone proves nothing. The gateway adds `Dora-Source-Signature`: the
//! HMAC-SHA256, in lower-case hex, of the event id and the source under a key it shares
//! with the projector (`DORA_SOURCE_KEY`). The projector keeps a claimed source only
//! when the signature checks under one of its keys; otherwise the event is stored as
//! published straight to NATS.
//!
//! The key is optional (the contract does not list it): a process without one holds no
//! [`Sources`] (`Option::None`). A gateway without a key publishes the claim unsigned;
//! a projector without one keeps every claim as made, unverified. Each says so once
//! at start, since anyone who can publish to the stream can then claim a token's name.
//!
//! The MAC covers the id, so a signature copied from one event names no other: the
//! copy would carry the same id, and the log keeps the first event with an id.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header the gateway sets beside [`crate::SOURCE_HEADER`].
pub const SIGNATURE_HEADER: &str = "Dora-Source-Signature";

/// Shortest key accepted: 32 characters of a random hex or base64 string hold well over
/// the 128 bits a MAC key needs.
pub const MIN_KEY_LEN: usize = 32;

/// What the MAC starts with, so a signature made here is worth nothing anywhere else
/// that might one day share the key.
const DOMAIN: &[u8] = b"dora-source-v1";

type HmacSha256 = Hmac<Sha256>;

/// The keys of `DORA_SOURCE_KEY`, comma-separated: the first signs, any of them
/// verifies, so a key can be rotated without refusing events in flight. Each is held
/// as a keyed MAC, ready to clone. `Debug` shows how many there are, never a key.
#[derive(Clone)]
pub struct Sources {
    keys: Vec<HmacSha256>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sources({} key(s), ***)", self.keys.len())
    }
}

/// What a message's source headers prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The signature checks: the source is the one the gateway named.
    Signed,
    /// No signature header.
    Unsigned,
    /// A signature that no key made for this id and source (or not hex at all).
    WrongSignature,
}

impl Sources {
    /// Parses `DORA_SOURCE_KEY`: keys separated by commas, each at least
    /// [`MIN_KEY_LEN`] characters, surrounding spaces ignored. A message names the key
    /// by its place in the list, never by its value.
    pub fn parse(value: &str) -> Result<Sources, String> {
        let mut raw: Vec<&str> = Vec::new();
        for (n, key) in value.split(',').map(str::trim).enumerate() {
            let place = n + 1;
            if key.is_empty() {
                // A stray comma, or nothing at all: which one, the message says. An
                // empty value is refused rather than read as "no key": a secret that
                // came out empty must not quietly turn the check off.
                if value.trim().is_empty() {
                    return Err(
                        "empty: give a key, or leave the setting out to keep sources unverified"
                            .to_owned(),
                    );
                }
                return Err(format!("key {place} of the list is empty"));
            }
            if key.chars().count() < MIN_KEY_LEN {
                return Err(format!(
                    "key {place} of the list is shorter than {MIN_KEY_LEN} characters"
                ));
            }
            if raw.contains(&key) {
                return Err(format!("key {place} of the list repeats an earlier one"));
            }
            raw.push(key);
        }
        let keys = raw
            .into_iter()
            .map(|key| {
                // HMAC takes a key of any length; this cannot fail.
                HmacSha256::new_from_slice(key.as_bytes())
                    .map_err(|_| "a key HMAC cannot use".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sources { keys })
    }

    /// The signature of `source` for the event `id`, under the first key: lower-case
    /// hex of 32 bytes.
    pub fn sign(&self, id: &str, source: &str) -> String {
        // `parse` refuses an empty list.
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut mac = key.clone();
        feed(&mut mac, id, source);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` is what one of the keys makes of `id` and `source`. Each
    /// comparison is in constant time (the hmac crate's `verify_slice`), and every key
    /// is tried whichever matches.
    pub fn verify(&self, id: &str, source: &str, signature: Option<&str>) -> Verdict {
        let Some(signature) = signature else {
            return Verdict::Unsigned;
        };
        let Ok(presented) = hex::decode(signature.trim()) else {
            return Verdict::WrongSignature;
        };
        let mut signed = false;
        for key in &self.keys {
            let mut mac = key.clone();
            feed(&mut mac, id, source);
            signed |= mac.verify_slice(&presented).is_ok();
        }
        if signed {
            Verdict::Signed
        } else {
            Verdict::WrongSignature
        }
    }
}

/// The signed bytes: the domain, then the id and the source, each preceded by its
/// length as 8 big-endian bytes, so no two (id, source) pairs give the same input
/// (`("ab", "c")` and `("a", "bc")` differ).
fn feed(mac: &mut HmacSha256, id: &str, source: &str) {
    mac.update(DOMAIN);
    for part in [id, source] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-key-0123456789abcdef0123456789";
    const NEW: &str = "new-key-0123456789abcdef0123456789";

    fn sources(value: &str) -> Sources {
        Sources::parse(value).unwrap()
    }

    #[test]
    fn a_signature_checks_only_for_its_id_its_source_and_a_listed_key() {
        let s = sources(NEW);
        let sig = s.sign("d-1", "ci");
        assert_eq!(sig.len(), 64);
        assert_eq!(s.verify("d-1", "ci", Some(&sig)), Verdict::Signed);
        assert_eq!(
            s.verify("d-1", "ci", Some(&sig.to_uppercase())),
            Verdict::Signed
        );
        assert_eq!(s.verify("d-2", "ci", Some(&sig)), Verdict::WrongSignature);
        assert_eq!(
            s.verify("d-1", "pager", Some(&sig)),
            Verdict::WrongSignature
        );
        assert_eq!(s.verify("d-1", "ci", None), Verdict::Unsigned);
        assert_eq!(s.verify("d-1", "ci", Some("zz")), Verdict::WrongSignature);
        assert_eq!(s.verify("d-1", "ci", Some("")), Verdict::WrongSignature);
        assert_eq!(
            s.verify("d-1", "ci", Some(&sig[..62])),
            Verdict::WrongSignature
        );
        let other = sources(OLD);
        assert_eq!(
            other.verify("d-1", "ci", Some(&sig)),
            Verdict::WrongSignature
        );
    }

    #[test]
    fn the_encoding_keeps_id_and_source_apart() {
        let s = sources(NEW);
        assert_ne!(s.sign("ab", "c"), s.sign("a", "bc"));
        assert_ne!(s.sign("a,b", ""), s.sign("a", "b"));
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let rotated = sources(&format!("{NEW}, {OLD}"));
        let by_old = sources(OLD).sign("d-1", "ci");
        let by_new = sources(NEW).sign("d-1", "ci");
        assert_eq!(rotated.sign("d-1", "ci"), by_new);
        assert_eq!(rotated.verify("d-1", "ci", Some(&by_old)), Verdict::Signed);
        assert_eq!(rotated.verify("d-1", "ci", Some(&by_new)), Verdict::Signed);
    }

    #[test]
    fn bad_keys_are_refused_without_their_value() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty: give a key"),
            ("   ".to_owned(), "empty: give a key"),
            ("sh0rt".to_owned(), "key 1 of the list is shorter than 32"),
            (format!("{NEW},sh0rt"), "key 2 of the list is shorter"),
            (format!("{NEW},"), "key 2 of the list is empty"),
            (format!("{NEW},{NEW}"), "key 2 of the list repeats"),
        ];
        for (bad, why) in &cases {
            let err = Sources::parse(bad).unwrap_err();
            let why = *why;
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains("sh0rt") && !err.contains("key-0123"), "{err}");
        }
        // MIN_KEY_LEN characters exactly is enough; one fewer is not.
        assert!(Sources::parse(&"k".repeat(MIN_KEY_LEN)).is_ok());
        let err = Sources::parse(&"k".repeat(MIN_KEY_LEN - 1)).unwrap_err();
        assert!(err.contains("shorter than 32"), "{err}");
        let s = sources(&format!("{NEW},{OLD}"));
        let debug = format!("{s:?}");
        assert_eq!(
            debug, "Sources(2 key(s), ***)",
            "Debug leaks a key or says nothing"
        );
    }
}
