//! Native cost of verifying a grant and deciding one request with it:
//! `cargo bench -p jitgate-grant`.
//!
//! Two grants: one of exactly 400 bytes (one scope rule, the size the
//! performance target is stated for) and a larger realistic one (two rules,
//! the access-request id), so the cost per byte shows as well.

use criterion::{criterion_group, criterion_main, Criterion};
use grant::{
    decide, mint, GrantClaims, Identity, KeySet, KnownPeer, NoRevocations, Request, ScopeRule, SigningKey, Verifier,
};
use std::hint::black_box;

const NOW: u64 = 1_780_000_100;

fn claims(sub: String, scope: Vec<ScopeRule>, req: Option<String>) -> GrantClaims {
    GrantClaims {
        iss: "jit-control".into(),
        sub,
        aud: "payments-api".into(),
        jti: "01J9Z8K3QW5T7Y2X4V6B8N0M1P".into(),
        iat: 1_780_000_000,
        nbf: 1_780_000_000,
        exp: 1_780_003_600,
        scope,
        src: None,
        req,
        cnf: None,
    }
}

fn verifier(key: &SigningKey) -> Verifier {
    let mut keys = KeySet::new();
    keys.add(key.clone()).unwrap();
    Verifier::new("jit-control", keys)
}

/// A one-rule grant whose subject is padded until the token is 400 bytes.
fn grant_400(key: &SigningKey) -> String {
    (0..64)
        .map(|pad| {
            let sub = format!("alice{}@example.com", "x".repeat(pad));
            let rule = vec![ScopeRule::new(&["GET", "HEAD"], &["/v1/invoices/*"])];
            mint(&claims(sub, rule, None), key).unwrap()
        })
        .find(|t| t.len() >= 400)
        .unwrap()
}

/// Two rules and the access-request id, as the demo's approvals mint them.
fn grant_realistic(key: &SigningKey) -> String {
    let scope = vec![
        ScopeRule::new(&["GET", "HEAD"], &["/v1/invoices/*", "/v1/reports/**"]),
        ScopeRule::new(&["POST"], &["/v1/refunds"]),
    ];
    let req = Some("01J9Z8JZ4F2W6M8Q0R3T5V7X9A".into());
    mint(&claims("alice@example.com".into(), scope, req), key).unwrap()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::new("k1", &[7; 32]).unwrap();
    let verifier = verifier(&key);
    let request = Request {
        method: b"GET",
        path: b"/v1/invoices/INV-9?expand=lines",
        resource: "payments-api",
        identity: Identity::NotConfigured,
        peer: &KnownPeer::default(),
    };
    for (name, token) in [("400b", grant_400(&key)), ("realistic", grant_realistic(&key))] {
        eprintln!("grant {name}: {} bytes", token.len());
        assert!(verifier.verify(token.as_bytes(), NOW).is_ok());
        c.bench_function(&format!("verify_{name}"), |b| {
            b.iter(|| verifier.verify(black_box(token.as_bytes()), NOW))
        });
        c.bench_function(&format!("decide_allowed_{name}"), |b| {
            b.iter(|| {
                decide(
                    &verifier,
                    Some(black_box(token.as_bytes())),
                    black_box(&request),
                    NOW,
                    &NoRevocations,
                )
            })
        });
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        c.bench_function(&format!("decide_bad_signature_{name}"), |b| {
            b.iter(|| {
                decide(
                    &verifier,
                    Some(black_box(&bad[..])),
                    black_box(&request),
                    NOW,
                    &NoRevocations,
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
