//! The refresh token that replaces a spent one, derived rather than drawn at random, so that a
//! refresh retried within `REFRESH_REUSE_INTERVAL_SECS` can answer the same token again while
//! the database keeps only its hash.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::config::JwtSecret;

type HmacSha256 = Hmac<Sha256>;

/// What the successor keys are derived for (domain separation from the JWT signatures).
const PURPOSE: &[u8] = b"storefront refresh-token successor v1";

/// Derives a spent refresh token's successor: `HMAC-SHA256(key, spent ‖ 0 ‖ successor id)`,
/// base64url (256 bits, as a random refresh token).
///
/// The key is derived from `JWT_SECRET` (and, to verify only, from each of
/// `JWT_PREVIOUS_SECRETS`, so a rotation does not break a retry in flight). Computing a
/// successor takes the spent token, which only its holder has (the database keeps its hash),
/// the successor's row id, which only the database has, and the key, which only the server has.
#[derive(Clone)]
pub struct SuccessorKeys {
    /// The current key first, then the previous ones.
    keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for SuccessorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuccessorKeys(***)")
    }
}

impl SuccessorKeys {
    /// Keys for the current secret and the previous ones.
    pub fn new<'a>(
        current: &'a JwtSecret,
        previous: impl IntoIterator<Item = &'a JwtSecret>,
    ) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|secret| mac(secret.as_bytes(), &[PURPOSE]))
            .collect();
        Self { keys }
    }

    /// The successor of `spent`, stored under `successor_id`, with the current key.
    pub fn successor(&self, spent: &str, successor_id: Uuid) -> String {
        derive(&self.keys[0], spent, successor_id)
    }

    /// The successor of `spent` under each key, the current one first: the one whose hash was
    /// stored is the one to answer again.
    pub fn candidates(&self, spent: &str, successor_id: Uuid) -> impl Iterator<Item = String> {
        self.keys
            .iter()
            .map(move |key| derive(key, spent, successor_id))
    }
}

fn derive(key: &[u8; 32], spent: &str, successor_id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, &[spent.as_bytes(), &[0], successor_id.as_bytes()]))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> JwtSecret {
        JwtSecret::new(text.as_bytes()).unwrap()
    }

    #[test]
    fn successors_are_deterministic_and_depend_on_token_id_and_key() {
        let (old, new) = (
            secret("an old secret of at least thirty-two bytes"),
            secret("a new secret of at least thirty-two bytes!"),
        );
        let keys = SuccessorKeys::new(&new, [&old]);
        let id = Uuid::now_v7();
        let first = keys.successor("spent", id);
        assert_eq!(first, keys.successor("spent", id));
        assert_eq!(first.len(), 43, "256 bits, base64url");
        assert_ne!(first, keys.successor("spent2", id));
        assert_ne!(first, keys.successor("spent", Uuid::now_v7()));
        let before_rotation = SuccessorKeys::new(&old, []).successor("spent", id);
        assert_ne!(first, before_rotation);
        let candidates: Vec<String> = keys.candidates("spent", id).collect();
        assert_eq!(candidates, [first, before_rotation]);
    }
}
