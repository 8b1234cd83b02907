//! Proof of origin for the tools that sign their deliveries: the HMAC-SHA256 of the
//! raw body under a shared secret (GitHub's `X-Hub-Signature-256`, PagerDuty's
//! `X-PagerDuty-Signature`). Several secrets may be configured so one can be rotated
//! without refusing deliveries signed with the other.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted: a guessable one would let anyone forge deploys.
pub const MIN_SECRET_LEN: usize = 16;

/// The secrets of one route, each held as a keyed MAC. `Debug` shows how many, never
/// one of them.
#[derive(Clone)]
pub struct Secrets(Vec<HmacSha256>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} secret(s), ***)", self.0.len())
    }
}

impl Secrets {
    /// Parses a comma-separated list; each secret at least [`MIN_SECRET_LEN`]
    /// characters. A message names a secret by its place in the list, never its value.
    pub fn parse(value: &str) -> Result<Secrets, String> {
        let mut seen: Vec<&str> = Vec::new();
        for (n, secret) in value.split(',').map(str::trim).enumerate() {
            let place = n + 1;
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(format!(
                    "secret {place} of the list is shorter than {MIN_SECRET_LEN} characters"
                ));
            }
            if seen.contains(&secret) {
                return Err(format!("secret {place} of the list repeats an earlier one"));
            }
            seen.push(secret);
        }
        let macs = seen
            .into_iter()
            .map(|s| {
                // HMAC takes a key of any length; this cannot fail.
                HmacSha256::new_from_slice(s.as_bytes()).map_err(|_| "unusable secret".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Secrets(macs))
    }

    /// Whether any of `signatures` (lower- or upper-case hex) is the HMAC of `body`
    /// under any of the secrets. Each comparison is in constant time (the hmac crate's
    /// `verify_slice`), and every pair is tried whichever matches.
    pub fn verify<'s>(&self, body: &[u8], signatures: impl IntoIterator<Item = &'s str>) -> bool {
        let presented: Vec<Vec<u8>> = signatures
            .into_iter()
            .filter_map(|s| hex::decode(s.trim()).ok())
            .collect();
        let mut valid = false;
        for key in &self.0 {
            let mut mac = key.clone();
            mac.update(body);
            for signature in &presented {
                valid |= mac.clone().verify_slice(signature).is_ok();
            }
        }
        valid
    }

    /// The signature of `body` under the first secret, lower-case hex: for tests and
    /// for the README's try-it lines.
    pub fn sign(&self, body: &[u8]) -> String {
        let Some(key) = self.0.first() else {
            return String::new();
        };
        let mut mac = key.clone();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's own test vector, from "Validating webhook deliveries" (docs.github.com).
    #[test]
    fn githubs_test_vector() {
        let secrets = Secrets::parse("It's a Secret to Everybody").unwrap();
        let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(secrets.sign(b"Hello, World!"), expected);
        assert!(secrets.verify(b"Hello, World!", [expected]));
        assert!(secrets.verify(b"Hello, World!", [expected.to_uppercase().as_str()]));
        assert!(!secrets.verify(b"Hello, World?", [expected]));
        assert!(!secrets.verify(b"Hello, World!", [&expected[..62]]));
        assert!(!secrets.verify(b"Hello, World!", ["not hex"]));
        assert!(!secrets.verify(b"Hello, World!", [""]));
        assert!(!secrets.verify(b"Hello, World!", std::iter::empty()));
    }

    #[test]
    fn any_secret_and_any_signature_may_match() {
        let old = Secrets::parse("old-secret-0123456789").unwrap();
        let new = Secrets::parse("new-secret-0123456789").unwrap();
        let both = Secrets::parse("new-secret-0123456789, old-secret-0123456789").unwrap();
        let by_old = old.sign(b"{}");
        let by_new = new.sign(b"{}");
        assert!(both.verify(b"{}", [by_old.as_str()]));
        assert!(both.verify(b"{}", [by_new.as_str()]));
        assert!(
            both.verify(b"{}", ["00", by_old.as_str()]),
            "the second signature counts"
        );
        assert!(!new.verify(b"{}", [by_old.as_str()]));
    }

    #[test]
    fn bad_secret_lists_are_refused_without_their_value() {
        for (bad, why) in [
            ("", "secret 1 of the list is shorter than 16"),
            ("sh0rt", "secret 1 of the list is shorter than 16"),
            ("long-enough-secret-1,", "secret 2 of the list is shorter"),
            (
                "long-enough-secret-1,long-enough-secret-1",
                "secret 2 of the list repeats",
            ),
        ] {
            let err = Secrets::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains("sh0rt") && !err.contains("enough"), "{err}");
        }
        assert!(Secrets::parse(&"k".repeat(MIN_SECRET_LEN)).is_ok());
        let s = Secrets::parse("long-enough-secret-1,long-enough-secret-2").unwrap();
        assert_eq!(format!("{s:?}"), "Secrets(2 secret(s), ***)");
    }
}
