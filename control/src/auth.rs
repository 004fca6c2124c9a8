//! Who is calling: bearer JWTs from the organisation's identity provider.
//!
//! The algorithm is pinned per key (HS256 for the development secret, the
//! JWKS entry's own `alg` for production keys), and `iss`, `aud`, `exp` and
//! `nbf` are validated explicitly with a small leeway: the library's
//! defaults would require only `exp` and allow a minute of skew.

use std::collections::BTreeSet;

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::config::AuthConfig;
use crate::error::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable user id.
    pub id: String,
    /// Email, when the token carries one.
    pub email: Option<String>,
    /// Groups.
    pub groups: BTreeSet<String>,
}

impl Principal {
    /// Whether the caller is in any of these groups.
    pub fn in_any(&self, groups: &BTreeSet<String>) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// Verifies bearer tokens.
pub struct Authenticator {
    cfg: AuthConfig,
    hs256: Option<DecodingKey>,
    keys: Vec<(String, Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

fn unauthenticated(code: &'static str, message: &str) -> ApiError {
    ApiError::Unauthenticated(code, message.to_owned())
}

impl Authenticator {
    /// Prepares the keys.
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, jsonwebtoken::errors::Error> {
        let hs256 = cfg.hs256_secret.as_deref().map(DecodingKey::from_secret);
        let mut keys = Vec::new();
        for jwk in cfg.jwks.iter().flat_map(|s| s.keys.iter()) {
            let alg = match jwk.common.key_algorithm {
                Some(jsonwebtoken::jwk::KeyAlgorithm::RS256) => Algorithm::RS256,
                Some(jsonwebtoken::jwk::KeyAlgorithm::ES256) => Algorithm::ES256,
                _ => continue,
            };
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            keys.push((kid, alg, DecodingKey::from_jwk(jwk)?));
        }
        Ok(Authenticator {
            cfg: cfg.clone(),
            hs256,
            keys,
        })
    }

    /// Authenticates an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("auth_missing", "send Authorization: Bearer <token>"))?;
        if token.len() > 16 * 1024 {
            return Err(unauthenticated("auth_malformed", "the bearer token is too long"));
        }
        let header =
            decode_header(token).map_err(|_| unauthenticated("auth_malformed", "the bearer token is not a JWT"))?;
        let (alg, key) = match header.alg {
            Algorithm::HS256 => (Algorithm::HS256, self.hs256.as_ref()),
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let kid = header.kid.as_deref().unwrap_or_default();
                // The key's pinned algorithm must be the token's: an RS256
                // key never verifies an HS256 token (or the reverse).
                let key = self
                    .keys
                    .iter()
                    .find(|(k, a, _)| k == kid && *a == alg)
                    .map(|(_, _, key)| key);
                (alg, key)
            }
            _ => (header.alg, None),
        };
        let key =
            key.ok_or_else(|| unauthenticated("auth_unsupported_key", "the token's algorithm or key is not accepted"))?;
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.cfg.issuer]);
        validation.set_audience(&[&self.cfg.audience]);
        validation.leeway = self.cfg.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Value>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthenticated("auth_expired", "the bearer token has expired"),
                ErrorKind::ImmatureSignature => {
                    unauthenticated("auth_not_yet_valid", "the bearer token is not valid yet")
                }
                ErrorKind::InvalidAudience => {
                    unauthenticated("auth_wrong_audience", "the bearer token is for another audience")
                }
                ErrorKind::InvalidIssuer => {
                    unauthenticated("auth_wrong_issuer", "the bearer token comes from another issuer")
                }
                ErrorKind::InvalidSignature => {
                    unauthenticated("auth_bad_signature", "the bearer token's signature does not match")
                }
                ErrorKind::MissingRequiredClaim(_) => {
                    unauthenticated("auth_missing_claim", "the bearer token lacks exp, iss or aud")
                }
                _ => unauthenticated("auth_malformed", "the bearer token is not valid"),
            }
        })?;
        let claims = data.claims;
        let id = claims
            .get(&self.cfg.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| unauthenticated("auth_missing_claim", "the bearer token has no user id"))?;
        // Stored and compared in canonical form, so look-alikes of one
        // user (`Alice`, `alice`) are one user where they should be.
        let id = crate::identity::canonical_user(id, self.cfg.user_match);
        let email = claims
            .get(&self.cfg.email_claim)
            .and_then(Value::as_str)
            .map(crate::identity::canonical_email);
        let groups = match claims.get(&self.cfg.groups_claim) {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => BTreeSet::new(),
        };
        Ok(Principal { id, email, groups })
    }

    /// Whether the caller administers jitgate.
    pub fn is_admin(&self, p: &Principal) -> bool {
        p.in_any(&self.cfg.admin_groups)
    }

    /// Whether the caller may read the audit log.
    pub fn is_auditor(&self, p: &Principal) -> bool {
        p.in_any(&self.cfg.auditor_groups) || self.is_admin(p)
    }
}

/// Mints a development HS256 token for `jitgate dev-token` and tests.
pub fn dev_token(
    cfg: &AuthConfig,
    sub: &str,
    email: Option<&str>,
    groups: &[&str],
    ttl_seconds: i64,
    now_s: i64,
) -> Option<String> {
    let secret = cfg.hs256_secret.as_deref()?;
    let mut claims = serde_json::json!({
        "iss": cfg.issuer,
        "aud": cfg.audience,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + ttl_seconds,
    });
    claims[&cfg.user_claim] = Value::from(sub);
    claims[&cfg.groups_claim] = Value::from(groups.to_vec());
    if let Some(e) = email {
        claims[&cfg.email_claim] = Value::from(e);
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .ok()
}
