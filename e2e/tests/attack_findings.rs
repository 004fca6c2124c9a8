//! The attack catalogue, continued: the cases an outside attack run found
//! (issue 13), one named test each, through real Envoy and the real control
//! service. Each ends in its documented, safe outcome.

use std::time::{SystemTime, UNIX_EPOCH};

use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::{get_with_grant, send_raw, Response};
use jitgate_e2e::upstream::Upstream;

const K1: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn grant_for(sub: &str) -> String {
    let t = now();
    mint(
        &GrantClaims {
            iss: "jit-control".into(),
            sub: sub.into(),
            aud: "payments-api".into(),
            jti: "g-finding".into(),
            iat: t,
            nbf: t,
            exp: t + 600,
            scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
            src: None,
            req: Some("r-finding".into()),
        },
        &SigningKey::from_base64url("k1", K1).unwrap(),
    )
    .unwrap()
}

/// Envoy protecting `payments.example` only, letting other hosts through
/// (`unmatched: allow`), with no control link.
fn shared_listener() -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","hosts":["payments.example"],"path_prefix":"/"}}],"unmatched":"allow"}}"#
    );
    let envoy = Envoy::start(EnvoyOptions::new(config, upstream.port));
    (envoy, upstream)
}

/// A GET whose host header lines are given as they are.
fn get_with_host_lines(envoy: &Envoy, host_lines: &str) -> Response {
    let raw = format!("GET /v1/invoices/7 HTTP/1.1\r\n{host_lines}connection: close\r\n\r\n");
    send_raw(envoy.port, raw.as_bytes())
}

fn assert_authority_rejected(host_lines: &str) {
    let (envoy, upstream) = shared_listener();
    let sane = get_with_host_lines(&envoy, "host: other.example\r\n");
    assert_eq!(sane.status, 200, "an unprotected host passes (unmatched: allow)");
    let before = upstream.count();
    let r = get_with_host_lines(&envoy, host_lines);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "authority_rejected"),
        "{host_lines:?}"
    );
    assert_eq!(upstream.count(), before, "the upstream never sees it");
    assert!(envoy.decisions("authority_rejected") >= 1);
}

#[test]
fn host_with_two_trailing_dots_is_rejected_not_let_through() {
    assert_authority_rejected("host: payments.example..\r\n");
}

#[test]
fn host_with_userinfo_is_rejected_not_let_through() {
    assert_authority_rejected("host: alice@payments.example\r\n");
}

#[test]
fn host_with_two_ports_is_rejected_not_let_through() {
    assert_authority_rejected("host: payments.example:443:443\r\n");
}

#[test]
fn two_host_headers_are_rejected_not_let_through() {
    // Envoy joins them into `payments.example,hr.example`.
    assert_authority_rejected("host: payments.example\r\nhost: hr.example\r\n");
}

#[test]
fn c1_controls_and_edge_spaces_in_the_subject_are_percent_encoded_upstream() {
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}]}}"#
    );
    let envoy = Envoy::start(EnvoyOptions::new(config, upstream.port));
    let token = grant_for(" alice\u{85}x-evil: 1 ");
    let r = get_with_grant(envoy.port, "/v1/invoices/7", &token);
    assert_eq!(r.status, 200);
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header_bytes("x-jit-subject"),
        Some(&b"%20alice%C2%85x-evil: 1%20"[..])
    );
}
