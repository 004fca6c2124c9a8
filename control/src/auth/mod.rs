//! Who is calling: bearer JWTs from a trusted issuer.
//!
//! Trusted issuers: the people's identity provider (`[auth]`: discovery,
//! a `jwks_uri`, a JWKS file, or the development HS256 secret) and
//! workload-identity issuers (`[[auth.workload]]`). The token's `iss`
//! picks the issuer; its keys ([`jwks`]) verify the signature, each key
//! pinned to one algorithm; `iss`, `aud`, `exp` and `nbf` are validated
//! explicitly with a small leeway (the library's defaults would require only
//! `exp` and allow a minute of skew). Groups come from the issuer's claim
//! mapping ([`mapping`]); the authentication context (`acr`, `amr`,
//! `auth_time`) is kept for step-up checks ([`stepup`]).

pub mod jwks;
pub mod mapping;
pub mod provider;
pub mod settings;
pub mod stepup;

use std::collections::BTreeSet;

use base64::Engine as _;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use self::jwks::{pinned_keys, KeySource, RemoteKeys};
use self::mapping::{map_groups, GroupMapping};
use self::settings::KeysFrom;
use crate::error::ApiError;
use settings::AuthConfig;

/// How the caller signed in, as the token says (for step-up checks and the
/// audit of approvals).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AuthContext {
    /// The issuer that vouched for the caller.
    pub issuer: String,
    /// Authentication context class (`acr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods (`amr`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// When the caller signed in (`auth_time`, seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable user id (`workload:<issuer name>:<subject>` for workloads).
    pub id: String,
    /// Email, when the token carries one.
    pub email: Option<String>,
    /// Groups.
    pub groups: BTreeSet<String>,
    /// How the caller signed in.
    pub context: AuthContext,
}

impl Principal {
    /// Whether the caller is in any of these groups.
    pub fn in_any(&self, groups: &BTreeSet<String>) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// Prefix of workload callers' ids; people's ids may not start with it.
pub const WORKLOAD_PREFIX: &str = "workload:";

/// Whose tokens an issuer vouches for.
enum Kind {
    People,
    Workload { name: String },
}

/// One trusted issuer.
struct Issuer {
    issuer: String,
    audience: String,
    kind: Kind,
    keys: KeySource,
    user_claim: String,
    groups: GroupMapping,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    cfg: AuthConfig,
    hs256: Option<DecodingKey>,
    issuers: Vec<Issuer>,
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

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A key in a JWKS file could not be used.
    #[error("a key could not be used: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
    /// The HTTP client for fetching keys could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Http(#[from] reqwest::Error),
}

fn key_source(
    issuer: &str,
    file: Option<&jsonwebtoken::jwk::JwkSet>,
    location: Option<&jwks::JwksLocation>,
    cfg: &AuthConfig,
) -> Result<KeySource, SetupError> {
    Ok(match (location, file) {
        (Some(loc), _) => KeySource::Remote(Box::new(RemoteKeys::new(issuer, loc.clone(), cfg.oidc.cache)?)),
        (None, Some(set)) => KeySource::Fixed(pinned_keys(set, true)),
        (None, None) => KeySource::Fixed(Vec::new()),
    })
}

/// The `iss` of a token, read before its signature is checked: it only
/// chooses which issuer's keys and rules apply (which then check it).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

fn claim_error(e: &jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => unauthenticated("auth_expired", "the bearer token has expired"),
        ErrorKind::ImmatureSignature => unauthenticated("auth_not_yet_valid", "the bearer token is not valid yet"),
        ErrorKind::InvalidAudience => {
            unauthenticated("auth_wrong_audience", "the bearer token is for another audience")
        }
        ErrorKind::InvalidIssuer => unauthenticated("auth_wrong_issuer", "the bearer token comes from another issuer"),
        ErrorKind::InvalidSignature => {
            unauthenticated("auth_bad_signature", "the bearer token's signature does not match")
        }
        ErrorKind::MissingRequiredClaim(_) => {
            unauthenticated("auth_missing_claim", "the bearer token lacks exp, iss or aud")
        }
        _ => unauthenticated("auth_malformed", "the bearer token is not valid"),
    }
}

impl Authenticator {
    /// Prepares the issuers and their keys (fetched keys are fetched by
    /// [`Authenticator::warm_up`] and on demand).
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, SetupError> {
        let hs256 = cfg.hs256_secret.as_deref().map(DecodingKey::from_secret);
        let mut issuers = vec![Issuer {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            kind: Kind::People,
            keys: key_source(&cfg.issuer, cfg.jwks.as_ref(), cfg.oidc.location.as_ref(), cfg)?,
            user_claim: cfg.user_claim.clone(),
            groups: GroupMapping {
                claim: cfg.groups_claim.clone(),
                prefix: cfg.oidc.group_prefix.clone(),
                rename: cfg.oidc.group_rename.clone(),
                allowed: None,
            },
        }];
        for w in &cfg.oidc.workloads {
            let (file, location) = match &w.keys {
                KeysFrom::File(set) => (Some(set), None),
                KeysFrom::Remote(loc) => (None, Some(loc)),
            };
            issuers.push(Issuer {
                issuer: w.issuer.clone(),
                audience: w.audience.clone(),
                kind: Kind::Workload { name: w.name.clone() },
                keys: key_source(&w.issuer, file, location, cfg)?,
                user_claim: w.user_claim.clone(),
                groups: w.groups.clone(),
            });
        }
        Ok(Authenticator {
            cfg: cfg.clone(),
            hs256,
            issuers,
        })
    }

    /// Fetches every issuer's keys once (failures are logged; the service
    /// starts anyway and fetches when a token needs a key).
    pub async fn warm_up(&self) {
        for issuer in &self.issuers {
            if let KeySource::Remote(remote) = &issuer.keys {
                remote.warm_up().await;
            }
        }
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("auth_missing", "send Authorization: Bearer <token>"))?;
        Ok(self.verify(token, None).await?.0)
    }

    /// Verifies an ID token the people's provider issued to the web
    /// console's client (`aud` is `client_id`, not the API's audience), for
    /// the console's sign-in; returns the person and the token's claims
    /// (the caller checks its `nonce`). Workload issuers' tokens are refused.
    pub async fn verify_id_token(&self, token: &str, client_id: &str) -> Result<(Principal, Value), ApiError> {
        self.verify(token, Some(client_id)).await
    }

    /// Verifies a token from a trusted issuer, for the issuer's audience or,
    /// with `console_audience`, for the console's client at the people's
    /// issuer only.
    async fn verify(&self, token: &str, console_audience: Option<&str>) -> Result<(Principal, Value), ApiError> {
        if token.len() > 16 * 1024 {
            return Err(unauthenticated("auth_malformed", "the bearer token is too long"));
        }
        let header =
            decode_header(token).map_err(|_| unauthenticated("auth_malformed", "the bearer token is not a JWT"))?;
        let iss = unverified_issuer(token)
            .ok_or_else(|| unauthenticated("auth_missing_claim", "the bearer token lacks exp, iss or aud"))?;
        let issuer = self.issuers.iter().find(|i| i.issuer == iss).ok_or_else(|| {
            unauthenticated(
                "auth_wrong_issuer",
                "the bearer token comes from an issuer that is not trusted",
            )
        })?;
        let audience = match (console_audience, &issuer.kind) {
            (None, _) => issuer.audience.as_str(),
            (Some(client_id), Kind::People) => client_id,
            (Some(_), Kind::Workload { .. }) => {
                return Err(unauthenticated(
                    "auth_wrong_issuer",
                    "people sign in to the console through the people's identity provider",
                ))
            }
        };
        let unsupported = || unauthenticated("auth_unsupported_key", "the token's algorithm or key is not accepted");
        let key = match header.alg {
            // The development secret signs only the people's issuer's tokens.
            Algorithm::HS256 => match (&issuer.kind, &self.hs256) {
                (Kind::People, Some(k)) => k.clone(),
                _ => return Err(unsupported()),
            },
            alg @ (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA) => {
                let kid = header.kid.as_deref().ok_or_else(unsupported)?;
                // The key's pinned algorithm must be the token's: an RS256
                // key never verifies an HS256 token (or the reverse).
                issuer.keys.key(kid, alg).await.map_err(|e| {
                    let message = e.to_string();
                    ApiError::Unauthenticated(e.code(), message)
                })?
            }
            _ => return Err(unsupported()),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = self.cfg.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = decode::<Value>(token, &key, &validation)
            .map_err(|e| claim_error(&e))?
            .claims;
        let subject = claims
            .get(&issuer.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| unauthenticated("auth_missing_claim", "the bearer token has no user id"))?;
        let (id, email) = match &issuer.kind {
            Kind::Workload { name } => (format!("{WORKLOAD_PREFIX}{name}:{subject}"), None),
            Kind::People => {
                // Stored and compared in canonical form, so look-alikes of
                // one user (`Alice`, `alice`) are one user where they should be.
                let id = crate::identity::canonical_user(subject, self.cfg.user_match);
                if id.starts_with(WORKLOAD_PREFIX) {
                    return Err(unauthenticated(
                        "auth_malformed",
                        "people's user ids may not start with workload:",
                    ));
                }
                let email = claims
                    .get(&self.cfg.email_claim)
                    .and_then(Value::as_str)
                    .map(crate::identity::canonical_email);
                (id, email)
            }
        };
        let amr = match claims.get("amr") {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let context = AuthContext {
            issuer: issuer.issuer.clone(),
            acr: claims.get("acr").and_then(Value::as_str).map(str::to_owned),
            amr,
            auth_time: claims.get("auth_time").and_then(Value::as_i64),
        };
        let principal = Principal {
            id,
            email,
            groups: map_groups(&claims, &issuer.groups),
            context,
        };
        Ok((principal, claims))
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
