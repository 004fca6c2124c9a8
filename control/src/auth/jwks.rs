//! The signing keys of one trusted issuer: a JWKS file (air-gapped installs)
//! or the issuer's `jwks_uri` (named by OpenID discovery or configured),
//! fetched and cached.
//!
//! The cache follows the key set's `Cache-Control: max-age`, clamped to a
//! floor (an IdP saying `no-cache` must not make every call a fetch) and a
//! ceiling (rotation is seen within it). A token naming a `kid` the cache
//! lacks triggers a refetch, at most one per `refetch_interval`, so a flood
//! of made-up kids costs the IdP one fetch per interval. When the IdP cannot
//! be reached the cached keys keep serving; only keys never seen are refused.
//!
//! Every key is pinned to one algorithm: its `alg`, or, for a fetched key
//! without one (Entra ID publishes none), the single algorithm of its type
//! (RSA: RS256, EC P-256: ES256, OKP Ed25519: EdDSA). A token is verified
//! only with a key whose pinned algorithm is the token's.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct PinnedKey {
    /// Key id.
    pub kid: String,
    /// The algorithm it is pinned to.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The algorithm a JWK may verify, or `None` when it is not accepted.
/// `strict`: the JWK must name its `alg` (files); otherwise the key type's
/// single accepted algorithm stands in for a missing one (fetched sets).
pub fn pinned_alg(jwk: &Jwk, strict: bool) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        // Symmetric (`oct`) keys and other curves never verify anything:
        // a published symmetric key would let anyone mint tokens.
        _ => return None,
    };
    let named = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(_) => return None,
        None if strict => return None,
        None => None,
    };
    // A key's `alg` must agree with its type (an RSA key claiming ES256 is
    // a broken or hostile set).
    match named {
        Some(alg) if alg != by_type => None,
        _ => Some(by_type),
    }
}

/// The accepted keys of a set (signature keys with a kid and an accepted
/// algorithm; the rest is skipped).
pub fn pinned_keys(set: &JwkSet, strict: bool) -> Vec<PinnedKey> {
    set.keys
        .iter()
        .filter(|k| {
            !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let alg = pinned_alg(jwk, strict)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(PinnedKey { kid, alg, key })
        })
        .collect()
}

/// How long fetched key sets are kept and how often they may be refetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Shortest time a set is kept, whatever `Cache-Control` says.
    pub floor: Duration,
    /// Longest time a set is kept before it is refetched.
    pub ceiling: Duration,
    /// Least time between two fetches (unknown kids included).
    pub refetch_interval: Duration,
    /// Time limit of one fetch.
    pub timeout: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            floor: Duration::from_secs(60),
            ceiling: Duration::from_secs(24 * 3600),
            refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// How long a key set fetched with this `Cache-Control` stays fresh: its
/// `max-age` clamped to the floor and ceiling; the floor when it has none
/// or forbids caching.
pub fn freshness(cache_control: Option<&str>, policy: &CachePolicy) -> Duration {
    let max_age = cache_control.and_then(|v| {
        v.split(',').map(str::trim).find_map(|d| {
            let (name, value) = d.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
    });
    max_age
        .map_or(policy.floor, Duration::from_secs)
        .clamp(policy.floor, policy.ceiling)
}

/// Whether a fetch may start now, given when the last one started.
pub fn may_fetch(last_attempt: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last_attempt.is_none_or(|t| now.saturating_duration_since(t) >= interval)
}

/// Why no key verifies a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The (current) key set has no key with that kid for that algorithm.
    #[error("the issuer's key set has no {alg:?} key {kid:?}")]
    Unknown {
        /// The token's kid.
        kid: String,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// The kid is not cached and the key set was fetched too recently to
    /// ask again.
    #[error("key {kid:?} is not in the cached key set, which is refetched at most every {interval_s} s")]
    Throttled {
        /// The token's kid.
        kid: String,
        /// The refetch interval, seconds.
        interval_s: u64,
    },
    /// The kid is not cached and the issuer's keys could not be fetched.
    #[error("key {kid:?} is not cached and the identity provider's key set could not be fetched: {cause}")]
    Unavailable {
        /// The token's kid.
        kid: String,
        /// What went wrong.
        cause: String,
    },
}

impl KeyError {
    /// The stable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Unknown { .. } => "auth_unsupported_key",
            KeyError::Throttled { .. } => "auth_unknown_key_throttled",
            KeyError::Unavailable { .. } => "auth_keys_unavailable",
        }
    }
}

fn find(keys: &[PinnedKey], kid: &str, alg: Algorithm) -> Option<DecodingKey> {
    keys.iter()
        .find(|k| k.kid == kid && k.alg == alg)
        .map(|k| k.key.clone())
}

/// Where an issuer's keys come from.
pub enum KeySource {
    /// A fixed set (JWKS file).
    Fixed(Vec<PinnedKey>),
    /// Fetched from the issuer and cached.
    Remote(Box<RemoteKeys>),
}

impl KeySource {
    /// The key that verifies a token naming `kid` and `alg`.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        match self {
            KeySource::Fixed(keys) => find(keys, kid, alg).ok_or_else(|| KeyError::Unknown {
                kid: kid.to_owned(),
                alg,
            }),
            KeySource::Remote(remote) => remote.key(kid, alg).await,
        }
    }
}

/// Where the `jwks_uri` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// `{issuer}/.well-known/openid-configuration` names it.
    Discovery,
    /// Configured.
    Uri(String),
}

#[derive(Default)]
struct Cache {
    jwks_uri: Option<String>,
    keys: Vec<PinnedKey>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// An issuer's key set fetched over HTTP and cached.
pub struct RemoteKeys {
    issuer: String,
    location: JwksLocation,
    policy: CachePolicy,
    http: reqwest::Client,
    // One lock: callers that miss wait for the one fetch in flight rather
    // than each starting their own.
    cache: Mutex<Cache>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

impl RemoteKeys {
    /// Keys of `issuer`, found at `location`, cached under `policy`.
    pub fn new(issuer: &str, location: JwksLocation, policy: CachePolicy) -> Result<RemoteKeys, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(RemoteKeys {
            issuer: issuer.to_owned(),
            location,
            policy,
            http,
            cache: Mutex::new(Cache::default()),
        })
    }

    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<String>), String> {
        let response = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        let cache_control = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        Ok((body.to_vec(), cache_control))
    }

    async fn jwks_uri(&self, cache: &Cache) -> Result<String, String> {
        match (&self.location, &cache.jwks_uri) {
            (JwksLocation::Uri(uri), _) | (JwksLocation::Discovery, Some(uri)) => Ok(uri.clone()),
            (JwksLocation::Discovery, None) => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
                let (body, _) = self.get(&url).await?;
                let doc: Discovery = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
                // OpenID Connect Discovery 1.0, section 4.3: the document's
                // issuer must be the one asked about.
                if doc.issuer != self.issuer {
                    return Err(format!("{url} names issuer {:?}, not {:?}", doc.issuer, self.issuer));
                }
                Ok(doc.jwks_uri)
            }
        }
    }

    async fn fetch(&self, cache: &mut Cache) -> Result<(), String> {
        let uri = self.jwks_uri(cache).await?;
        cache.jwks_uri = Some(uri.clone());
        let (body, cache_control) = self.get(&uri).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("{uri}: {e}"))?;
        cache.keys = pinned_keys(&set, false);
        cache.fresh_until = Some(Instant::now() + freshness(cache_control.as_deref(), &self.policy));
        Ok(())
    }

    /// Fetches the key set now (at start, so that the first callers do not
    /// wait); a failure is logged, and retried when a token needs a key.
    pub async fn warm_up(&self) {
        let mut cache = self.cache.lock().await;
        cache.last_attempt = Some(Instant::now());
        if let Err(e) = self.fetch(&mut cache).await {
            tracing::warn!(issuer = %self.issuer, error = %e, "could not fetch the identity provider's keys");
            cache.last_error = Some(e);
        }
    }

    /// The key for `kid` and `alg`, refetching the set when it is stale or
    /// lacks the kid (at most once per refetch interval).
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let fresh = cache.fresh_until.is_some_and(|t| now < t);
        if let (true, Some(key)) = (fresh, find(&cache.keys, kid, alg)) {
            return Ok(key);
        }
        let fetched = may_fetch(cache.last_attempt, now, self.policy.refetch_interval);
        if fetched {
            cache.last_attempt = Some(now);
            match self.fetch(&mut cache).await {
                Ok(()) => cache.last_error = None,
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "could not refetch the identity provider's keys; serving the cached ones");
                    cache.last_error = Some(e);
                }
            }
        }
        // Stale keys keep serving while the IdP is unreachable.
        if let Some(key) = find(&cache.keys, kid, alg) {
            return Ok(key);
        }
        let kid = kid.to_owned();
        Err(match (&cache.last_error, fetched) {
            (Some(cause), _) => KeyError::Unavailable {
                kid,
                cause: cause.clone(),
            },
            (None, true) => KeyError::Unknown { kid, alg },
            (None, false) => KeyError::Throttled {
                kid,
                interval_s: self.policy.refetch_interval.as_secs(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            floor: Duration::from_secs(60),
            ceiling: Duration::from_secs(3600),
            ..CachePolicy::default()
        }
    }

    #[test]
    fn max_age_is_kept_within_the_floor_and_ceiling() {
        let p = policy();
        assert_eq!(freshness(Some("public, max-age=600"), &p), Duration::from_secs(600));
        assert_eq!(freshness(Some("max-age=5"), &p), Duration::from_secs(60));
        assert_eq!(freshness(Some("max-age=99999999"), &p), Duration::from_secs(3600));
        assert_eq!(freshness(Some("no-store"), &p), Duration::from_secs(60));
        assert_eq!(freshness(Some("max-age=junk"), &p), Duration::from_secs(60));
        assert_eq!(freshness(None, &p), Duration::from_secs(60));
    }

    #[test]
    fn a_fetch_waits_for_the_refetch_interval() {
        let t0 = Instant::now();
        let i = Duration::from_secs(30);
        assert!(may_fetch(None, t0, i));
        assert!(!may_fetch(Some(t0), t0 + Duration::from_secs(29), i));
        assert!(may_fetch(Some(t0), t0 + Duration::from_secs(30), i));
    }

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keys_are_pinned_to_one_algorithm_matching_their_type() {
        let ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e"});
        assert_eq!(pinned_alg(&jwk(ed.clone()), false), Some(Algorithm::EdDSA));
        assert_eq!(pinned_alg(&jwk(ed.clone()), true), None, "files must name alg");
        let mut wrong = ed;
        wrong["alg"] = "RS256".into();
        assert_eq!(pinned_alg(&jwk(wrong), false), None);
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "s"});
        assert_eq!(pinned_alg(&jwk(oct), false), None, "a published secret never verifies");
    }
}
