//! Signing keys and the verifier's key set.
//!
//! Each key's HMAC state is computed once, when the key is loaded; signing
//! and verifying clone that keyed state instead of re-keying per call.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::token::BASE64URL;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted: HS256 needs at least 256 bits of key.
pub const MIN_SECRET_LEN: usize = 32;

/// Longest key id (spec: 1 to 64 characters).
pub const MAX_KID_LEN: usize = 64;

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The kid is empty, too long, or has characters outside `A-Za-z0-9._-`.
    #[error("key id {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidKid(String),
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("secret of key {kid:?} is {len} bytes; at least 32 are required")]
    SecretTooShort {
        /// The key id.
        kid: String,
        /// The secret's length in bytes.
        len: usize,
    },
    /// The secret is not base64url (without padding).
    #[error("secret of key {0:?} is not base64url")]
    NotBase64url(String),
    /// The same kid appears twice.
    #[error("key id {0:?} is listed twice")]
    DuplicateKid(String),
}

impl KeyError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::InvalidKid(_) => "key_invalid_kid",
            KeyError::SecretTooShort { .. } => "key_secret_too_short",
            KeyError::NotBase64url(_) => "key_not_base64url",
            KeyError::DuplicateKid(_) => "key_duplicate_kid",
        }
    }
}

/// Whether `kid` has the form the spec allows.
pub fn is_valid_kid(kid: &[u8]) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One HMAC-SHA256 key with its id, ready to sign or verify.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    mac: HmacSha256,
}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from raw secret bytes.
    pub fn new(kid: &str, secret: &[u8]) -> Result<Self, KeyError> {
        if !is_valid_kid(kid.as_bytes()) {
            return Err(KeyError::InvalidKid(kid.to_owned()));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::SecretTooShort {
                kid: kid.to_owned(),
                len: secret.len(),
            });
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::InvalidKid(kid.to_owned()))?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            mac,
        })
    }

    /// A key from a base64url secret (padding tolerated, as admins paste it).
    pub fn from_base64url(kid: &str, secret: &str) -> Result<Self, KeyError> {
        use base64::Engine;
        let trimmed = secret.trim().trim_end_matches('=');
        let bytes = BASE64URL
            .decode(trimmed)
            .map_err(|_| KeyError::NotBase64url(kid.to_owned()))?;
        Self::new(kid, &bytes)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A fresh MAC state keyed with this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

/// The keys a verifier accepts, by kid. Several at once allow rotation.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

impl KeySet {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; a kid may appear once.
    pub fn add(&mut self, key: SigningKey) -> Result<(), KeyError> {
        if self.keys.iter().any(|k| k.kid == key.kid) {
            return Err(KeyError::DuplicateKid(key.kid));
        }
        self.keys.push(key);
        Ok(())
    }

    /// Adds a key from raw secret bytes.
    pub fn insert(&mut self, kid: &str, secret: &[u8]) -> Result<(), KeyError> {
        self.add(SigningKey::new(kid, secret)?)
    }

    /// Adds a key from a base64url secret.
    pub fn insert_base64url(&mut self, kid: &str, secret: &str) -> Result<(), KeyError> {
        self.add(SigningKey::from_base64url(kid, secret)?)
    }

    /// The key with this id.
    pub fn get(&self, kid: &[u8]) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid.as_bytes() == kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, in insertion order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_syntax_is_enforced() {
        assert!(is_valid_kid(b"k1"));
        assert!(is_valid_kid(b"2026-11.prod_a"));
        assert!(!is_valid_kid(b""));
        assert!(!is_valid_kid(b"../etc/passwd"));
        assert!(!is_valid_kid(b"k1' OR 1=1"));
        assert!(!is_valid_kid(&[b'a'; 65]));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            SigningKey::new("k", &[0; 31]),
            Err(KeyError::SecretTooShort { len: 31, .. })
        ));
        assert!(SigningKey::new("k", &[0; 32]).is_ok());
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let mut set = KeySet::new();
        set.insert("k1", &[1; 32]).unwrap();
        assert_eq!(set.insert("k1", &[2; 32]), Err(KeyError::DuplicateKid("k1".into())));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let k = SigningKey::new("k1", &[7; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "SigningKey { kid: \"k1\", .. }");
    }
}
