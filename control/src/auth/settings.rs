//! The `[auth]` settings this module adds to the configuration, validated
//! into typed values with errors naming the field: discovery or a
//! `jwks_uri` for the people's issuer, the key cache's bounds, group
//! mapping, and `[[auth.workload]]` issuers (Kubernetes service accounts,
//! CI systems), each with its own audience, claims and allowed groups.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::jwks::{pinned_alg, CachePolicy, JwksLocation};
use super::mapping::GroupMapping;
use crate::error::ConfigError;

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// `[auth.jwks_cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwksCache {
    min_seconds: Option<u64>,
    max_seconds: Option<u64>,
    refetch_interval_seconds: Option<u64>,
    timeout_seconds: Option<u64>,
}

/// `[[auth.workload]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloadIssuer {
    name: String,
    issuer: String,
    audience: String,
    #[serde(default)]
    discovery: bool,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    #[serde(default = "default_sub")]
    user_claim: String,
    #[serde(default = "default_groups")]
    groups_claim: String,
    group_prefix: Option<String>,
    #[serde(default)]
    group_rename: BTreeMap<String, String>,
    #[serde(default)]
    allowed_groups: Vec<String>,
}

fn default_sub() -> String {
    "sub".into()
}
fn default_groups() -> String {
    "groups".into()
}

/// Where an issuer's keys are configured to come from.
#[derive(Debug, Clone)]
pub enum KeysFrom {
    /// A JWKS file read at start.
    File(jsonwebtoken::jwk::JwkSet),
    /// Fetched (discovery or a configured `jwks_uri`).
    Remote(JwksLocation),
}

/// A workload-identity issuer.
#[derive(Debug, Clone)]
pub struct WorkloadIssuer {
    /// Its name: callers' ids are `workload:<name>:<subject>`.
    pub name: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Its keys.
    pub keys: KeysFrom,
    /// Claim with the workload's subject.
    pub user_claim: String,
    /// Its groups, limited to the allowed ones.
    pub groups: GroupMapping,
}

/// The OpenID Connect part of `[auth]`.
#[derive(Debug, Clone, Default)]
pub struct OidcSettings {
    /// Where the people's issuer's keys are fetched from (`None`: only the
    /// JWKS file or the development secret).
    pub location: Option<JwksLocation>,
    /// Key cache bounds (every fetched set).
    pub cache: CachePolicy,
    /// Prefix and renaming of the people's groups.
    pub group_prefix: Option<String>,
    /// IdP group → jitgate group.
    pub group_rename: BTreeMap<String, String>,
    /// Workload issuers.
    pub workloads: Vec<WorkloadIssuer>,
}

/// Reads a JWKS file whose keys each name their kid and algorithm.
pub fn load_jwks_file(field: &str, path: &Path) -> Result<jsonwebtoken::jwk::JwkSet, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).map_err(|e| err(field, e.to_string()))?;
    for (i, key) in set.keys.iter().enumerate() {
        if key.common.key_id.is_none() {
            return Err(err(format!("{field}.keys[{i}].kid"), "every key needs a kid"));
        }
        if pinned_alg(key, true).is_none() {
            return Err(err(
                format!("{field}.keys[{i}].alg"),
                "pin the algorithm per key: RS256 (RSA), ES256 (EC P-256) or EdDSA (Ed25519)",
            ));
        }
    }
    Ok(set)
}

fn location(field: &str, discovery: bool, jwks_uri: Option<String>) -> Result<Option<JwksLocation>, ConfigError> {
    match (discovery, jwks_uri) {
        (true, Some(_)) => Err(err(field, "set discovery = true or jwks_uri, not both")),
        (true, None) => Ok(Some(JwksLocation::Discovery)),
        (false, Some(uri)) if uri.starts_with("https://") || uri.starts_with("http://") => {
            Ok(Some(JwksLocation::Uri(uri)))
        }
        (false, Some(_)) => Err(err(format!("{field}.jwks_uri"), "must be an http(s) URL")),
        (false, None) => Ok(None),
    }
}

fn cache_policy(raw: RawJwksCache) -> Result<CachePolicy, ConfigError> {
    let d = CachePolicy::default();
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    let policy = CachePolicy {
        floor: secs(raw.min_seconds, d.floor),
        ceiling: secs(raw.max_seconds, d.ceiling),
        refetch_interval: secs(raw.refetch_interval_seconds, d.refetch_interval),
        timeout: secs(raw.timeout_seconds, d.timeout),
    };
    if policy.floor > policy.ceiling {
        return Err(err("auth.jwks_cache.min_seconds", "must not exceed max_seconds"));
    }
    if policy.refetch_interval < Duration::from_secs(1) {
        return Err(err(
            "auth.jwks_cache.refetch_interval_seconds",
            "at least 1: it is what keeps a flood of unknown kids off the identity provider",
        ));
    }
    if !(1..=60).contains(&policy.timeout.as_secs()) {
        return Err(err("auth.jwks_cache.timeout_seconds", "1 to 60"));
    }
    Ok(policy)
}

/// The raw fields of `[auth]` this module validates.
pub struct RawOidc {
    /// `discovery`.
    pub discovery: bool,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// `[auth.jwks_cache]`.
    pub jwks_cache: RawJwksCache,
    /// `group_prefix`.
    pub group_prefix: Option<String>,
    /// `group_rename`.
    pub group_rename: BTreeMap<String, String>,
    /// `[[auth.workload]]`.
    pub workload: Vec<RawWorkloadIssuer>,
}

impl RawOidc {
    /// Validates; `people_issuer` is `[auth].issuer` (workload issuers must differ).
    pub fn validate(self, people_issuer: &str) -> Result<OidcSettings, ConfigError> {
        let mut seen_issuers = BTreeSet::from([people_issuer.to_owned()]);
        let mut workloads = Vec::new();
        for (i, w) in self.workload.into_iter().enumerate() {
            let f = |name: &str| format!("auth.workload[{i}].{name}");
            let name_ok = !w.name.is_empty()
                && w.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                return Err(err(f("name"), "letters, digits, - and _ only"));
            }
            if w.issuer.is_empty() || !seen_issuers.insert(w.issuer.clone()) {
                return Err(err(
                    f("issuer"),
                    "must be set and differ from every other trusted issuer",
                ));
            }
            if w.audience.is_empty() {
                return Err(err(f("audience"), "must not be empty"));
            }
            if w.allowed_groups.is_empty() || w.allowed_groups.iter().any(|g| g.trim().is_empty()) {
                return Err(err(
                    f("allowed_groups"),
                    "list the groups this issuer may place callers in",
                ));
            }
            let keys = match (
                location(&format!("auth.workload[{i}]"), w.discovery, w.jwks_uri)?,
                w.jwks_file,
            ) {
                (Some(_), Some(_)) => return Err(err(f("jwks_file"), "use a key file or fetched keys, not both")),
                (Some(loc), None) => KeysFrom::Remote(loc),
                (None, Some(path)) => KeysFrom::File(load_jwks_file(&f("jwks_file"), &path)?),
                (None, None) => return Err(err(f("discovery"), "set discovery = true, jwks_uri or jwks_file")),
            };
            workloads.push(WorkloadIssuer {
                name: w.name,
                issuer: w.issuer,
                audience: w.audience,
                keys,
                user_claim: w.user_claim,
                groups: GroupMapping {
                    claim: w.groups_claim,
                    prefix: w.group_prefix,
                    rename: w.group_rename,
                    allowed: Some(w.allowed_groups.into_iter().collect()),
                },
            });
        }
        Ok(OidcSettings {
            location: location("auth", self.discovery, self.jwks_uri)?,
            cache: cache_policy(self.jwks_cache)?,
            group_prefix: self.group_prefix,
            group_rename: self.group_rename,
            workloads,
        })
    }
}

/// How API callers' bearer JWTs are verified.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Allowed clock skew, seconds (kept small on purpose).
    pub leeway_seconds: u64,
    /// Claim with the user id.
    pub user_claim: String,
    /// Claim with the email.
    pub email_claim: String,
    /// How user ids are compared (and stored).
    pub user_match: crate::identity::UserMatch,
    /// Claim with the groups.
    pub groups_claim: String,
    /// HS256 secret (development).
    pub hs256_secret: Option<Vec<u8>>,
    /// JWKS document (production: RS256/ES256 public keys).
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
    /// Groups whose members may revoke anything and read every request.
    pub admin_groups: BTreeSet<String>,
    /// Groups whose members may read the audit log.
    pub auditor_groups: BTreeSet<String>,
    /// OpenID Connect: discovery, key cache, group mapping, workload issuers.
    pub oidc: OidcSettings,
}
