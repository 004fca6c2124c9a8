//! Every case of the spec's test vectors (`tests/data/grant-vectors.json`,
//! copied from `shared/spec`), decided natively.

use std::collections::HashSet;

use grant::{decide, Identity, KeySet, Outcome, Request, Verifier};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    issuer: String,
    leeway: u64,
    max_ttl: u64,
    keys: std::collections::BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    token: Option<String>,
    now: u64,
    request: CaseRequest,
    expect: String,
}

#[derive(Deserialize)]
struct CaseRequest {
    method: String,
    path: String,
    resource: String,
    source: Option<String>,
    #[serde(default)]
    revoked: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    identity: Option<Option<String>>,
}

/// Distinguishes a missing `identity` key (no source configured) from
/// `"identity": null` (configured, absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn load() -> Vectors {
    let text = include_str!("data/grant-vectors.json");
    serde_json::from_str(text).expect("vectors parse")
}

#[test]
fn every_spec_vector_gives_its_expected_outcome() {
    let v = load();
    let mut keys = KeySet::new();
    for (kid, secret) in &v.keys {
        keys.insert_base64url(kid, secret).unwrap();
    }
    let verifier = Verifier::new(&v.issuer, keys)
        .with_leeway(v.leeway)
        .with_max_ttl(v.max_ttl);
    let mut failures = Vec::new();
    for case in &v.cases {
        let revoked: HashSet<String> = case.request.revoked.iter().cloned().collect();
        let identity = match &case.request.identity {
            None => Identity::NotConfigured,
            Some(None) => Identity::Absent,
            Some(Some(id)) => Identity::Value(id.as_bytes()),
        };
        let request = Request {
            method: case.request.method.as_bytes(),
            path: case.request.path.as_bytes(),
            resource: &case.request.resource,
            source: case.request.source.as_deref().and_then(|s| s.parse().ok()),
            identity,
        };
        let decision = decide(
            &verifier,
            case.token.as_deref().map(str::as_bytes),
            &request,
            case.now,
            &revoked,
        );
        assert!(
            Outcome::from_code(&case.expect).is_some(),
            "unknown code {}",
            case.expect
        );
        if decision.outcome.code() != case.expect {
            failures.push(format!("{}: got {}, want {}", case.name, decision.outcome, case.expect));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        v.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn vectors_cover_every_outcome_code() {
    let v = load();
    let seen: HashSet<&str> = v.cases.iter().map(|c| c.expect.as_str()).collect();
    for o in Outcome::ALL {
        assert!(seen.contains(o.code()), "no vector for {}", o.code());
    }
}
