//! The filter inside real Envoy: what reaches the upstream, what is denied
//! with which status and body, and how bad configuration is refused.

use std::time::{SystemTime, UNIX_EPOCH};

use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_e2e::envoy::{decision_counter, Envoy, EnvoyOptions};
use jitgate_e2e::http::{get_with_grant, request, send_raw};
use jitgate_e2e::upstream::Upstream;

const K1: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";
const K2: &str = "nHq6SY5Wn3UwzrlAcsFzq-0vAZ3uHFHVU13ZQvQAlIU";
const K3: &str = "n3uHFHVU13ZQvQAlIUnHq6SY5Wn3UwzrlAcsFzq-0vA";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn config(extra: &str) -> String {
    format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}","k2":"{K2}"}},"resources":[{{"id":"payments-api","hosts":["*"],"path_prefix":"/v1"}}],"request_access_url":"http://127.0.0.1:8080/v1/requests"{extra}}}"#
    )
}

fn claims() -> GrantClaims {
    let t = now();
    GrantClaims {
        iss: "jit-control".into(),
        sub: "alice@example.com".into(),
        aud: "payments-api".into(),
        jti: "g-e2e-1".into(),
        iat: t - 5,
        nbf: t - 5,
        exp: t + 600,
        scope: vec![
            ScopeRule::new(&["GET", "HEAD"], &["/v1/invoices/*", "/v1/reports/**"]),
            ScopeRule::new(&["POST"], &["/v1/refunds"]),
        ],
        src: None,
        req: Some("r-e2e-1".into()),
        cnf: None,
    }
}

fn token_with(kid: &str, secret: &str, edit: impl FnOnce(&mut GrantClaims)) -> String {
    let mut c = claims();
    edit(&mut c);
    mint(&c, &SigningKey::from_base64url(kid, secret).unwrap()).unwrap()
}

fn token(edit: impl FnOnce(&mut GrantClaims)) -> String {
    token_with("k1", K1, edit)
}

fn start(extra: &str) -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let envoy = Envoy::start(EnvoyOptions::new(config(extra), upstream.port));
    (envoy, upstream)
}

/// Re-signs a token's header and claims as given (for hostile headers).
fn forge(header: &str, claims_json: &str, secret: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!("{}.{}", b64.encode(header), b64.encode(claims_json));
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&b64.decode(secret).unwrap()).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64.encode(mac.finalize().into_bytes()))
}

#[test]
fn valid_grant_reaches_upstream_with_identity_headers_and_without_the_grant() {
    let (envoy, upstream) = start("");
    let t = token(|_| {});
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/INV-9?expand=lines",
        &[
            ("x-jit-grant", t.as_bytes()),
            ("x-jit-subject", b"mallory@example.com"),
            ("x-jit-grant-id", b"g-forged"),
            ("x-jit-whatever", b"1"),
        ],
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let seen = upstream.last().expect("upstream saw the request");
    assert_eq!(seen.path, "/v1/invoices/INV-9?expand=lines");
    assert_eq!(seen.header("x-jit-subject").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("x-jit-grant-id").as_deref(), Some("g-e2e-1"));
    assert_eq!(seen.header("x-jit-request-id").as_deref(), Some("r-e2e-1"));
    assert!(
        seen.all("x-jit-grant").is_empty(),
        "grant header must not reach the upstream"
    );
    assert!(
        seen.all("x-jit-whatever").is_empty(),
        "incoming x-jit-* headers are removed"
    );
    assert_eq!(envoy.wait_for_counter(&decision_counter("allowed"), 1), 1);
    assert_eq!(
        envoy.wait_for_counter("wasmcustom.jitgate.resource.payments-api.allowed", 1),
        1
    );
}

/// Name, path, headers, expected status and code.
type Case = (&'static str, String, Vec<(&'static str, Vec<u8>)>, u16, &'static str);

#[test]
fn every_reachable_outcome_gives_its_status_and_body_and_never_reaches_upstream() {
    let (envoy, upstream) = start(r#","identity":{"source":"header","name":"x-user"}"#);
    let good = token(|_| {});
    let alg_none = forge(
        r#"{"alg":"none","typ":"jit-grant+jwt","kid":"k1"}"#,
        &String::from_utf8(base64_claims(&good)).unwrap(),
        K1,
    );
    let cases: Vec<Case> = vec![
        // Envoy resolves `..;x` and `%2e%2e` itself; `..%3b` survives its
        // normalization and would be `..;` to a servlet upstream.
        (
            "encoded dot-dot with params",
            "/v1/invoices/..%3bx/admin".into(),
            vec![],
            400,
            "path_rejected",
        ),
        ("no grant", "/v1/invoices/1".into(), vec![], 401, "grant_missing"),
        (
            "garbage",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", b"abc".to_vec())],
            401,
            "grant_malformed",
        ),
        (
            "alg none",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", alg_none.into_bytes())],
            401,
            "grant_unsupported",
        ),
        (
            "unknown kid",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", token_with("k9", K1, |_| {}).into_bytes())],
            401,
            "grant_unknown_key",
        ),
        (
            "other key",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", token_with("k1", K3, |_| {}).into_bytes())],
            401,
            "grant_bad_signature",
        ),
        (
            "wrong issuer",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", token(|c| c.iss = "evil".into()).into_bytes())],
            401,
            "grant_wrong_issuer",
        ),
        (
            "not yet valid",
            "/v1/invoices/1".into(),
            vec![(
                "x-jit-grant",
                token(|c| {
                    c.nbf = now() + 300;
                    c.iat = now();
                    c.exp = now() + 900;
                })
                .into_bytes(),
            )],
            401,
            "grant_not_yet_valid",
        ),
        (
            "expired",
            "/v1/invoices/1".into(),
            vec![(
                "x-jit-grant",
                token(|c| {
                    c.iat = now() - 900;
                    c.nbf = c.iat;
                    c.exp = now() - 60;
                })
                .into_bytes(),
            )],
            401,
            "grant_expired",
        ),
        (
            "ttl too long",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", token(|c| c.exp = c.iat + 50_000).into_bytes())],
            401,
            "grant_ttl_too_long",
        ),
        (
            "wrong audience",
            "/v1/invoices/1".into(),
            vec![("x-jit-grant", token(|c| c.aud = "hr-api".into()).into_bytes())],
            403,
            "grant_wrong_audience",
        ),
        (
            "source outside",
            "/v1/invoices/1".into(),
            vec![
                (
                    "x-jit-grant",
                    token(|c| c.src = Some(vec!["10.0.0.0/8".into()])).into_bytes(),
                ),
                ("x-user", b"alice@example.com".to_vec()),
            ],
            403,
            "source_not_allowed",
        ),
        (
            "identity differs",
            "/v1/invoices/1".into(),
            vec![
                ("x-jit-grant", good.clone().into_bytes()),
                ("x-user", b"bob@example.com".to_vec()),
            ],
            403,
            "identity_mismatch",
        ),
        (
            "out of scope",
            "/v1/refunds/1".into(),
            vec![
                ("x-jit-grant", good.clone().into_bytes()),
                ("x-user", b"alice@example.com".to_vec()),
            ],
            403,
            "request_out_of_scope",
        ),
        (
            "DELETE not granted",
            "/v1/invoices/1".into(),
            vec![
                ("x-jit-grant", good.clone().into_bytes()),
                ("x-user", b"alice@example.com".to_vec()),
            ],
            403,
            "request_out_of_scope",
        ),
        (
            "no resource",
            "/admin".into(),
            vec![("x-jit-grant", good.clone().into_bytes())],
            403,
            "no_resource",
        ),
    ];
    let before = envoy.decision_counts();
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    for (i, (name, path, headers, status, code)) in cases.iter().enumerate() {
        *expected.entry((*code).to_owned()).or_default() += 1;
        let method = if *name == "DELETE not granted" { "DELETE" } else { "GET" };
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let r = request(envoy.port, method, path, &headers);
        assert_eq!(
            r.status,
            *status,
            "case {i} {name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let body = r.json();
        assert_eq!(body["error"], *code, "case {name}");
        assert!(body["message"].as_str().is_some_and(|m| m.len() > 10), "case {name}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "case {name}");
        assert_eq!(r.header("content-type"), Some("application/json"), "case {name}");
        if *status == 401 {
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer realm=\"jitgate\"")),
                "case {name}"
            );
        }
        if *code != "no_resource" {
            assert_eq!(body["resource"], "payments-api", "case {name}");
            assert_eq!(
                body["request_access"], "http://127.0.0.1:8080/v1/requests",
                "case {name}"
            );
        } else {
            assert!(body["resource"].is_null());
        }
    }
    // Each request counted once, under its own code.
    assert_eq!(envoy.decisions_since(&before, cases.len() as u64), expected);
    assert_eq!(upstream.count(), 0, "no denied request may reach the upstream");
    // The allowed case, for contrast, with the same identity header.
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", good.as_bytes()), ("x-user", b"alice@example.com")],
    );
    assert_eq!(r.status, 200);
}

fn base64_claims(token: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap()
}

#[test]
fn grants_of_old_and_new_key_both_pass_while_both_are_configured() {
    let (envoy, _upstream) = start("");
    let old = token_with("k1", K1, |_| {});
    let new = token_with("k2", K2, |_| {});
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &old).status, 200);
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &new).status, 200);
    // Once k1 is retired, its grants stop working.
    let upstream = Upstream::start();
    let retired = Envoy::start(EnvoyOptions::new(
        format!(
            r#"{{"issuer":"jit-control","keys":{{"k2":"{K2}"}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}]}}"#
        ),
        upstream.port,
    ));
    assert_eq!(
        get_with_grant(retired.port, "/v1/invoices/1", &old).error_code(),
        "grant_unknown_key"
    );
    assert_eq!(get_with_grant(retired.port, "/v1/invoices/1", &new).status, 200);
}

#[test]
fn dry_run_lets_bad_requests_through_but_counts_them() {
    let (envoy, upstream) = start(r#","mode":"dry-run""#);
    let r = request(envoy.port, "GET", "/v1/invoices/1", &[("x-jit-subject", b"mallory")]);
    assert_eq!(r.status, 200);
    let seen = upstream.last().unwrap();
    assert!(
        seen.all("x-jit-subject").is_empty(),
        "spoofed identity is still removed in dry-run"
    );
    assert_eq!(envoy.wait_for_counter(&decision_counter("grant_missing"), 1), 1);
    assert_eq!(envoy.wait_for_counter("wasmcustom.jitgate.dry_run.would_deny", 1), 1);
}

#[test]
fn bad_plugin_configuration_makes_envoy_refuse_the_filter() {
    let upstream = Upstream::start();
    for (config, field) in [
        (config(r#","leeway":3600"#), "leeway"),
        (
            r#"{"issuer":"jit-control","keys":{"k1":"c2hvcnQ"},"resources":[{"id":"a"}]}"#.to_owned(),
            "keys.k1",
        ),
        (config(r#","mode":"permissive""#), "mode"),
        ("not json".to_owned(), "(root)"),
    ] {
        let err = match Envoy::try_start(EnvoyOptions::new(config, upstream.port)) {
            Ok(envoy) => panic!("Envoy started with a bad configuration:\n{}", envoy.log()),
            Err(log) => log,
        };
        let line = format!("jitgate: invalid plugin configuration: field `{field}`");
        assert!(err.contains(&line), "log should name the field {field}:\n{err}");
    }
    assert_eq!(upstream.count(), 0);
}

#[test]
fn two_grants_are_malformed_never_first_one_wins() {
    let (envoy, upstream) = start(r#","accept_bearer":true"#);
    let t = token(|_| {});
    let twice = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", t.as_bytes()), ("x-jit-grant", t.as_bytes())],
    );
    assert_eq!((twice.status, twice.error_code().as_str()), (401, "grant_malformed"));
    let bearer = format!("Bearer {t}");
    let both = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", t.as_bytes()), ("authorization", bearer.as_bytes())],
    );
    assert_eq!((both.status, both.error_code().as_str()), (401, "grant_malformed"));
    let only_bearer = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("authorization", bearer.as_bytes())],
    );
    assert_eq!(only_bearer.status, 200);
    let seen = upstream.last().unwrap();
    assert!(
        seen.all("authorization").is_empty(),
        "a grant in Authorization is not forwarded"
    );
    assert_eq!(upstream.count(), 1);
}

#[test]
fn header_values_that_are_not_utf8_are_handled_without_a_panic() {
    let (envoy, upstream) = start("");
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", b"\xff\xfe\xfd.\x80.\x81")],
    );
    assert_eq!((r.status, r.error_code().as_str()), (401, "grant_malformed"));
    let t = token(|_| {});
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", t.as_bytes()), ("x-other", b"caf\xe9")],
    );
    assert_eq!(r.status, 200, "the VM is still alive and allowing");
    assert_eq!(upstream.count(), 1);
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

#[test]
fn proxy_set_headers_are_never_trusted_for_the_path() {
    let (envoy, upstream) = start("");
    let t = token(|_| {});
    let r = request(
        envoy.port,
        "GET",
        "/v1/admin/users",
        &[
            ("x-jit-grant", t.as_bytes()),
            ("x-envoy-original-path", b"/v1/invoices/1"),
        ],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "request_out_of_scope"));
    assert_eq!(upstream.count(), 0);
}

#[test]
fn underscore_headers_are_rejected_so_they_cannot_pose_as_jit_headers() {
    let (envoy, upstream) = start("");
    let t = token(|_| {});
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", t.as_bytes()), ("x_jit_subject", b"mallory")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn encoded_slashes_and_dot_segments_never_reach_a_scope_check_unnormalized() {
    let (envoy, upstream) = start("");
    let t = token(|_| {});
    // Envoy refuses %2F itself (path_with_escaped_slashes_action).
    let r = get_with_grant(envoy.port, "/v1/invoices/a%2Fb", &t);
    assert_eq!(r.status, 400);
    // Dot segments are normalized by Envoy before the filter: the filter
    // checks, and the upstream receives, the same normalized path.
    let r = get_with_grant(envoy.port, "/v1/reports/../invoices/7", &t);
    assert_eq!(r.status, 200);
    assert_eq!(upstream.last().unwrap().path, "/v1/invoices/7");
    let r = get_with_grant(envoy.port, "/v1/invoices/../../admin", &t);
    assert_ne!(r.status, 200);
    // An absolute-form target is routed by its path; out of scope here.
    let raw = format!(
        "GET http://api.local/v1/admin HTTP/1.1\r\nhost: api.local\r\nx-jit-grant: {t}\r\nconnection: close\r\n\r\n"
    );
    let r = send_raw(envoy.port, raw.as_bytes());
    assert_eq!(r.status, 403);
    assert_eq!(upstream.count(), 1);
}

/// How long after `exp` a grant in steady use may still pass in this test:
/// generous, for a loaded machine (the tick clock makes it 100 ms by
/// design; that figure is not a test target).
const EXPIRY_BOUND_S: f64 = 10.0;

#[test]
fn a_grant_in_steady_use_is_allowed_until_expiry_and_denied_as_expired_after() {
    // Requests take the clock from the filter's 100 ms tick and a grant
    // used again and again comes from the worker's cache: neither may let
    // it outlive its window, nor end it early.
    let (envoy, upstream) = start(r#","leeway":0"#);
    let exp = now() + 2;
    let t = token(|c| c.exp = exp);
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/7", &t).status, 200);
    let since_exp = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            - exp as f64
    };
    let mut allowed = 1;
    loop {
        let r = get_with_grant(envoy.port, "/v1/invoices/7", &t);
        let late = since_exp();
        if r.status != 200 {
            assert_eq!((r.status, r.error_code().as_str()), (401, "grant_expired"));
            // Taken after the answer: the filter's clock was at or past exp.
            assert!(late >= 0.0, "denied {:.3} s before exp", -late);
            break;
        }
        allowed += 1;
        assert!(late < EXPIRY_BOUND_S, "still allowed {late:.3} s after exp");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        upstream.count(),
        allowed,
        "every allowed request, and only those, reached the upstream"
    );
}
