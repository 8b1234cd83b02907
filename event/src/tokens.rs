//! Named secrets (`name=secret` pairs, comma-separated): the gateway's ingest tokens and
//! the API's read tokens. Secrets are held as digests, compared in constant time, and
//! never shown.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest secret accepted: a guessable token would make every number forgeable.
pub const MIN_SECRET_LEN: usize = 16;

/// Named tokens, held as SHA-256 digests of their secrets so every
/// comparison is between two 32-byte values: comparing the raw bytes would end early on
/// a length mismatch and tell a caller how long the secrets are. `Debug` shows the
/// names only.
#[derive(Clone)]
pub struct Tokens(Vec<(String, [u8; 32])>);

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}=***")))
            .finish()
    }
}

impl Tokens {
    /// Parses `name=secret,name2=secret2`.
    pub fn parse(value: &str) -> Result<Tokens, String> {
        let mut tokens: Vec<(String, [u8; 32])> = Vec::new();
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, secret)) = pair.split_once('=') else {
                return Err("expected name=secret pairs separated by commas".to_owned());
            };
            let name = name.trim();
            let name_ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !name_ok {
                return Err(format!(
                    "token name `{name}` must be 1-64 characters of A-Z a-z 0-9 _ - ."
                ));
            }
            if name == crate::NATS_SOURCE {
                return Err(
                    "the token name `nats` is reserved for events published straight to NATS"
                        .to_owned(),
                );
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "the secret of token `{name}` is shorter than {MIN_SECRET_LEN} characters"
                ));
            }
            if tokens.iter().any(|(n, _)| n == name) {
                return Err(format!("token name `{name}` appears twice"));
            }
            if tokens.iter().any(|(_, s)| *s == digest(secret.as_bytes())) {
                return Err(format!("token `{name}` reuses another token's secret"));
            }
            tokens.push((name.to_owned(), digest(secret.as_bytes())));
        }
        if tokens.is_empty() {
            return Err("at least one name=secret token is required".to_owned());
        }
        Ok(Tokens(tokens))
    }

    /// The name of the token whose secret is `presented`. Every digest is compared,
    /// in constant time, whichever matches.
    pub fn lookup(&self, presented: &[u8]) -> Option<&str> {
        let presented = digest(presented);
        let mut found = None;
        for (name, secret) in &self.0 {
            if bool::from(secret.ct_eq(&presented)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_match() {
        let t = Tokens::parse("ci=aaaaaaaaaaaaaaaa, pager=bbbbbbbbbbbbbbbb").unwrap();
        assert_eq!(t.lookup(b"bbbbbbbbbbbbbbbb"), Some("pager"));
        assert_eq!(t.lookup(b"aaaaaaaaaaaaaaaa"), Some("ci"));
        assert_eq!(t.lookup(b"aaaaaaaaaaaaaaa"), None);
        assert_eq!(t.lookup(b""), None);
        assert!(
            !format!("{t:?}").contains("aaaa"),
            "Debug leaks a secret: {t:?}"
        );
    }

    #[test]
    fn bad_token_settings_are_refused() {
        for bad in [
            "",
            "ci",
            "ci=short",
            "nats=aaaaaaaaaaaaaaaa",
            "a b=aaaaaaaaaaaaaaaa",
            "ci=aaaaaaaaaaaaaaaa,ci=bbbbbbbbbbbbbbbb",
            "ci=aaaaaaaaaaaaaaaa,cd=aaaaaaaaaaaaaaaa",
        ] {
            assert!(Tokens::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
