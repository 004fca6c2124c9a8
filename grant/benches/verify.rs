//! Native cost of deciding one request with a realistic grant (about 400
//! bytes): `cargo bench -p jitgate-grant`.

use criterion::{criterion_group, criterion_main, Criterion};
use grant::{decide, mint, GrantClaims, Identity, KeySet, NoRevocations, Request, ScopeRule, SigningKey, Verifier};
use std::hint::black_box;

fn token() -> (String, Verifier) {
    let key = SigningKey::new("k1", &[7; 32]).unwrap();
    let claims = GrantClaims {
        iss: "jit-control".into(),
        sub: "alice@example.com".into(),
        aud: "payments-api".into(),
        jti: "01J9Z8K3QW5T7Y2X4V6B8N0M1P".into(),
        iat: 1_780_000_000,
        nbf: 1_780_000_000,
        exp: 1_780_003_600,
        scope: vec![
            ScopeRule::new(&["GET", "HEAD"], &["/v1/invoices/*", "/v1/reports/**"]),
            ScopeRule::new(&["POST"], &["/v1/refunds"]),
        ],
        src: None,
        req: Some("01J9Z8JZ4F2W6M8Q0R3T5V7X9A".into()),
    };
    let token = mint(&claims, &key).unwrap();
    let mut keys = KeySet::new();
    keys.add(key).unwrap();
    (token, Verifier::new("jit-control", keys))
}

fn bench(c: &mut Criterion) {
    let (token, verifier) = token();
    eprintln!("grant length: {} bytes", token.len());
    let request = Request {
        method: b"GET",
        path: b"/v1/invoices/INV-9?expand=lines",
        resource: "payments-api",
        source: None,
        identity: Identity::NotConfigured,
    };
    c.bench_function("decide_allowed_400b_grant", |b| {
        b.iter(|| {
            decide(
                &verifier,
                Some(black_box(token.as_bytes())),
                black_box(&request),
                1_780_000_100,
                &NoRevocations,
            )
        })
    });
    c.bench_function("verify_only", |b| {
        b.iter(|| verifier.verify(black_box(token.as_bytes()), 1_780_000_100))
    });
    let mut bad = token.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] ^= 1;
    c.bench_function("decide_bad_signature", |b| {
        b.iter(|| {
            decide(
                &verifier,
                Some(black_box(&bad[..])),
                black_box(&request),
                1_780_000_100,
                &NoRevocations,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
