//! `jitgate grant inspect` and `jitgate grant check`: answering "why was
//! this request denied?" offline, with the same code the proxy runs.

use std::collections::{BTreeMap, HashSet};

use grant::{decide, Identity, KeySet, Request, Verifier};
use serde::Deserialize;

/// A file in the spec's vector format.
#[derive(Debug, Deserialize)]
pub struct CaseFile {
    /// Expected issuer.
    pub issuer: String,
    /// Allowed skew.
    #[serde(default = "default_leeway")]
    pub leeway: u64,
    /// Longest lifetime.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u64,
    /// Keys by kid (base64url).
    pub keys: BTreeMap<String, String>,
    /// The cases.
    pub cases: Vec<Case>,
}

fn default_leeway() -> u64 {
    grant::DEFAULT_LEEWAY
}
fn default_max_ttl() -> u64 {
    grant::DEFAULT_MAX_TTL
}

/// One case.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// Name.
    pub name: String,
    /// Token, or none sent.
    pub token: Option<String>,
    /// Verifier's clock (seconds).
    pub now: u64,
    /// The request.
    pub request: CaseRequest,
}

/// A case's request.
#[derive(Debug, Deserialize)]
pub struct CaseRequest {
    /// Method.
    pub method: String,
    /// Path (with query).
    pub path: String,
    /// Routed resource.
    pub resource: String,
    /// Client address.
    #[serde(default)]
    pub source: Option<String>,
    /// Revoked ids.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Identity: absent key = no identity source; null = absent.
    #[serde(default, deserialize_with = "present")]
    pub identity: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Decides every case: one `(name, outcome code)` each.
pub fn check(file: &CaseFile) -> anyhow::Result<Vec<(String, &'static str)>> {
    let mut keys = KeySet::new();
    for (kid, secret) in &file.keys {
        keys.insert_base64url(kid, secret)
            .map_err(|e| anyhow::anyhow!("keys.{kid}: {e}"))?;
    }
    let verifier = Verifier::new(&file.issuer, keys)
        .with_leeway(file.leeway)
        .with_max_ttl(file.max_ttl);
    Ok(file
        .cases
        .iter()
        .map(|c| {
            let revoked: HashSet<String> = c.request.revoked.iter().cloned().collect();
            let identity = match &c.request.identity {
                None => Identity::NotConfigured,
                Some(None) => Identity::Absent,
                Some(Some(id)) => Identity::Value(id.as_bytes()),
            };
            let request = Request {
                method: c.request.method.as_bytes(),
                path: c.request.path.as_bytes(),
                resource: &c.request.resource,
                source: c.request.source.as_deref().and_then(|s| s.parse().ok()),
                identity,
            };
            let outcome = decide(
                &verifier,
                c.token.as_deref().map(str::as_bytes),
                &request,
                c.now,
                &revoked,
            )
            .outcome;
            (c.name.clone(), outcome.code())
        })
        .collect())
}

/// Decodes a token for people, marked as not verified.
pub fn inspect(token: &str) -> anyhow::Result<String> {
    let parts = grant::token::decode_unverified(token).map_err(|o| anyhow::anyhow!("{}: {}", o.code(), o.message()))?;
    let pretty = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| json.to_owned())
    };
    let claims: serde_json::Value = serde_json::from_str(&parts.claims_json).unwrap_or_default();
    let when = |k: &str| {
        claims
            .get(k)
            .and_then(serde_json::Value::as_i64)
            .map(|t| format!("{k}: {t} ({} s from now)", t - now()))
    };
    let mut out = String::from("NOT VERIFIED: decoded only; the signature, issuer and times were not checked.\n\n");
    out.push_str(&format!(
        "header:\n{}\n\nclaims:\n{}\n\n",
        pretty(&parts.header_json),
        pretty(&parts.claims_json)
    ));
    for line in ["iat", "nbf", "exp"].iter().filter_map(|k| when(k)) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("signature: {} bytes\n", parts.signature_len));
    Ok(out)
}

fn now() -> i64 {
    crate::clock::Clock::now_s(&crate::clock::SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_vector_is_decided_as_expected() {
        let text = include_str!("../../../grant/tests/data/grant-vectors.json");
        let file: CaseFile = serde_json::from_str(text).unwrap();
        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        let results = check(&file).unwrap();
        assert_eq!(results.len(), 98);
        for (case, (name, code)) in expected["cases"].as_array().unwrap().iter().zip(results) {
            assert_eq!(case["name"], name.as_str());
            assert_eq!(case["expect"], code, "{name}");
        }
    }

    #[test]
    fn inspect_marks_the_token_unverified() {
        let text = include_str!("../../../grant/tests/data/grant-vectors.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let token = v["cases"][0]["token"].as_str().unwrap();
        let out = inspect(token).unwrap();
        assert!(out.starts_with("NOT VERIFIED"));
        assert!(out.contains("\"sub\": \"alice@example.com\""));
        assert!(inspect("not-a-token").is_err());
    }
}
