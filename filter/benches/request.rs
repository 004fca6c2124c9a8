//! Native cost of the filter's own work on one allowed request, without a
//! host: `cargo bench -p jitgate-filter`. The proxy benchmark
//! (`scripts/bench`) measures the same path inside Envoy, where the calls
//! into the host come on top.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_filter::check::{evaluate, plan, RequestHost};
use jitgate_filter::headers::HeaderMap;
use jitgate_filter::sync::Live;
use std::hint::black_box;
use std::net::IpAddr;

const KEY: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";
const NOW: u64 = 1_780_000_100;

struct NoHost;

impl RequestHost for NoHost {
    fn source_address(&self) -> Option<IpAddr> {
        None
    }
    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        None
    }
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        None
    }
}

fn bench(c: &mut Criterion) {
    let cfg = jitgate_filter::config::parse(
        format!(r#"{{"issuer":"jit-control","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}]}}"#)
            .as_bytes(),
    )
    .unwrap();
    let token = mint(
        &GrantClaims {
            iss: "jit-control".into(),
            sub: "alice@example.com".into(),
            aud: "payments-api".into(),
            jti: "01J9Z8K3QW5T7Y2X4V6B8N0M1P".into(),
            iat: NOW - 100,
            nbf: NOW - 100,
            exp: NOW + 3500,
            scope: vec![ScopeRule::new(&["GET", "HEAD"], &["/v1/invoices/*", "/v1/reports/**"])],
            src: None,
            req: Some("01J9Z8JZ4F2W6M8Q0R3T5V7X9A".into()),
            cnf: None,
        },
        &SigningKey::from_base64url("k1", KEY).unwrap(),
    )
    .unwrap();
    // What Envoy hands over for `wrk -H "x-jit-grant: ..."`.
    let headers = HeaderMap::from_pairs(&[
        (":authority", "127.0.0.1:10000"),
        (":path", "/v1/invoices/INV-1"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-jit-grant", token.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "7c3f5a8e-2d1b-4c6a-9e0f-1a2b3c4d5e6f"),
    ]);
    let live = Live::default();
    c.bench_function("allowed_request_cache_hit", |b| {
        b.iter(|| {
            let eval = evaluate(&cfg, black_box(&headers), &NoHost, NOW * 1000, &live);
            black_box(plan(&cfg, &headers, &eval));
        })
    });
    // A worker that has not seen this grant yet (its empty state is made
    // outside the timing).
    c.bench_function("allowed_request_cache_miss", |b| {
        b.iter_batched(
            Live::default,
            |fresh| {
                let eval = evaluate(&cfg, black_box(&headers), &NoHost, NOW * 1000, &fresh);
                black_box(plan(&cfg, &headers, &eval));
                fresh
            },
            BatchSize::SmallInput,
        )
    });
}

/// The first sync of the largest revocation list a worker keeps, in
/// reverse order (the worst case for a sorted insert per entry).
fn first_sync(c: &mut Criterion) {
    let entries: Vec<(String, u64)> = (0..jitgate_filter::sync::MAX_REVOCATIONS)
        .rev()
        .map(|i| (format!("g-{i:06}"), 9))
        .collect();
    c.bench_function("first_sync_100k", |b| {
        b.iter_batched(
            || entries.clone(),
            |list| {
                let mut set = jitgate_filter::sync::RevocationSet::default();
                set.merge(list).unwrap();
                set
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench, first_sync);
criterion_main!(benches);
