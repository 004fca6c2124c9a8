//! The attack catalogue: hostile requests through real Envoy and the real
//! control service, one line of intent and one assertion each. Every case
//! must end in its documented, safe outcome; nothing hostile reaches the
//! upstream, and the control service writes nothing but audit records.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use hmac::{Hmac, Mac};
use jitgate_e2e::control::{Control, INGEST_KEY};
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::{call, request, send_raw, Response};
use jitgate_e2e::upstream::Upstream;
use serde_json::{json, Value};

const K1: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token with any header and claims text, signed with `secret` under HMAC
/// (whatever the header says).
fn forge(header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(K1).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn claims_json(extra: &str) -> String {
    let t = now();
    format!(
        r#"{{"iss":"jit-control","sub":"alice","aud":"payments-api","jti":"g-atk","iat":{t},"nbf":{t},"exp":{},"scope":[{{"methods":["GET"],"paths":["/v1/invoices/*"]}}]{extra}}}"#,
        t + 600
    )
}

const HEADER: &str = r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1"}"#;

fn valid() -> String {
    let t = now();
    mint(
        &GrantClaims {
            iss: "jit-control".into(),
            sub: "alice".into(),
            aud: "payments-api".into(),
            jti: "g-atk-valid".into(),
            iat: t,
            nbf: t,
            exp: t + 600,
            scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
            src: None,
            req: None,
            cnf: None,
        },
        &SigningKey::from_base64url("k1", K1).unwrap(),
    )
    .unwrap()
}

struct Proxy {
    envoy: Envoy,
    upstream: Upstream,
}

impl Proxy {
    fn get(&self, path: &str, headers: &[(&str, &[u8])]) -> Response {
        request(self.envoy.port, "GET", path, headers)
    }
}

fn proxy() -> Proxy {
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"accept_bearer":true,"resources":[{{"id":"payments-api","hosts":["api.local"],"path_prefix":"/v1"}}],"identity":{{"source":"header","name":"x-authenticated-user"}}}}"#
    );
    let envoy = Envoy::start(EnvoyOptions::new(config, upstream.port));
    Proxy { envoy, upstream }
}

/// One case: intent, and whether it ended as documented (with details).
type Outcome = Result<(), String>;

fn expect(r: &Response, status: u16, code: &str) -> Outcome {
    // The proxy says `error`, the control service's problem documents `code`.
    let got = if r.body.first() == Some(&b'{') {
        let body = r.json();
        body["error"]
            .as_str()
            .or(body["code"].as_str())
            .unwrap_or_default()
            .to_owned()
    } else {
        String::new()
    };
    if r.status == status && (code.is_empty() || got == code) {
        Ok(())
    } else {
        Err(format!("got {} {got:?}, want {status} {code:?}", r.status))
    }
}

fn not_200(r: &Response) -> Outcome {
    if r.status != 200 && r.status != 0 {
        Ok(())
    } else {
        Err(format!("got {}", r.status))
    }
}

fn curl_h2(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        "host: api.local",
    ]);
    for (n, v) in headers {
        cmd.args(["-H", &format!("{n}: {v}")]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = cmd
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn hostile_requests_through_envoy_end_in_their_documented_outcome() {
    let p = proxy();
    let v = valid();
    let alice: &[u8] = b"alice";
    let big_header = "a".repeat(1 << 20);
    let many_grants: Vec<(&str, &[u8])> = (0..50).map(|_| ("x-jit-grant", v.as_bytes())).collect();
    let h2_allowed = curl_h2(
        p.envoy.port,
        "/v1/invoices/1",
        &[("x-jit-grant", &v), ("x-authenticated-user", "alice")],
    );
    let h2_missing = curl_h2(p.envoy.port, "/v1/invoices/1", &[("x-authenticated-user", "alice")]);
    let h2_spoof = curl_h2(
        p.envoy.port,
        "/v1/invoices/1",
        &[
            ("x-jit-grant", &v),
            ("x-authenticated-user", "alice"),
            ("x-jit-subject", "mallory"),
        ],
    );
    let with_id = |path: &str, token: &str| {
        p.get(
            path,
            &[("x-jit-grant", token.as_bytes()), ("x-authenticated-user", alice)],
        )
    };

    let cases: Vec<(&str, Outcome)> = vec![
        ("alg none with an empty signature is unsupported", expect(&with_id("/v1/invoices/1", &format!("{}.{}.", b64(br#"{"alg":"none","typ":"jit-grant+jwt","kid":"k1"}"#), b64(claims_json("").as_bytes()))), 401, "grant_unsupported")),
        ("alg HS512 is unsupported", expect(&with_id("/v1/invoices/1", &forge(r#"{"alg":"HS512","typ":"jit-grant+jwt","kid":"k1"}"#, &claims_json(""))), 401, "grant_unsupported")),
        ("alg RS256 signed with the HMAC key as a 'public key' is unsupported", expect(&with_id("/v1/invoices/1", &forge(r#"{"alg":"RS256","typ":"jit-grant+jwt","kid":"k1"}"#, &claims_json(""))), 401, "grant_unsupported")),
        ("typ JWT (a different token kind) is unsupported", expect(&with_id("/v1/invoices/1", &forge(r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#, &claims_json(""))), 401, "grant_unsupported")),
        ("kid with path traversal selects no key", expect(&with_id("/v1/invoices/1", &forge(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"../../etc/passwd"}"#, &claims_json(""))), 401, "grant_unknown_key")),
        ("kid with SQL selects no key", expect(&with_id("/v1/invoices/1", &forge(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1' OR '1'='1"}"#, &claims_json(""))), 401, "grant_unknown_key")),
        ("a second exp claim is malformed, never last-wins", expect(&with_id("/v1/invoices/1", &forge(HEADER, &claims_json(r#","exp":99999999999"#))), 401, "grant_malformed")),
        ("a second aud claim is malformed", expect(&with_id("/v1/invoices/1", &forge(HEADER, &claims_json(r#","aud":"hr-api""#))), 401, "grant_malformed")),
        ("a duplicate alg in the header is malformed", expect(&with_id("/v1/invoices/1", &forge(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1","alg":"none"}"#, &claims_json(""))), 401, "grant_malformed")),
        ("a huge number is malformed", expect(&with_id("/v1/invoices/1", &forge(HEADER, &claims_json(r#","x":1e999"#))), 401, "grant_malformed")),
        ("exp beyond 2^53 is malformed", expect(&with_id("/v1/invoices/1", &forge(HEADER, &claims_json("").replace(r#""exp":"#, r#""e":0,"exp":9007199254740993,"o":"#))), 401, "grant_malformed")),
        ("nesting 17 deep is malformed", expect(&with_id("/v1/invoices/1", &forge(HEADER, &claims_json(&format!(r#","x":{}{}"#, "[".repeat(16), "]".repeat(16))))), 401, "grant_malformed")),
        ("a 1 MB grant header is refused before the filter", not_200(&p.get("/v1/invoices/1", &[("x-jit-grant", big_header.as_bytes())]))),
        ("fifty grant headers are malformed", expect(&p.get("/v1/invoices/1", &many_grants), 401, "grant_malformed")),
        ("a grant in both the header and Authorization is malformed", expect(&p.get("/v1/invoices/1", &[("x-jit-grant", v.as_bytes()), ("authorization", format!("Bearer {v}").as_bytes()), ("x-authenticated-user", alice)]), 401, "grant_malformed")),
        ("a stripped signature is a bad signature", expect(&with_id("/v1/invoices/1", &format!("{}.", v.rsplit_once('.').unwrap().0)), 401, "grant_bad_signature")),
        ("a truncated signature is a bad signature", expect(&with_id("/v1/invoices/1", &v[..v.len() - 4]), 401, "grant_bad_signature")),
        ("claims swapped under a valid signature are a bad signature", expect(&with_id("/v1/invoices/1", &{ let parts: Vec<&str> = v.split('.').collect(); format!("{}.{}.{}", parts[0], b64(claims_json(r#","x":1"#).as_bytes()), parts[2]) }), 401, "grant_bad_signature")),
        ("%2F in the path is refused by Envoy", expect(&with_id("/v1/invoices%2F1", &v), 400, "")),
        ("%2e%2e is normalized away before the scope check", not_200(&with_id("/v1/invoices/%2e%2e/admin", &v))),
        ("..; is resolved by Envoy before the scope check", not_200(&with_id("/v1/invoices/..;x/admin", &v))),
        ("..%3B survives Envoy and is refused by the filter", expect(&with_id("/v1/invoices/..%3Bx/admin", &v), 400, "path_rejected")),
        ("// is merged and the result checked", not_200(&with_id("/v1//admin", &v))),
        ("a trailing dot segment is not the granted resource", not_200(&with_id("/v1/invoices/1/.", &v))),
        ("a trailing slash is refused", not_200(&with_id("/v1/invoices/1/", &v))),
        ("mixed case does not match a case-sensitive pattern", expect(&with_id("/V1/Invoices/1", &v), 403, "no_resource")),
        ("a unicode look-alike segment does not match", expect(&with_id("/v1/%D1%96nvoices/1", &v), 403, "request_out_of_scope")),
        ("an absolute-form target is checked by its path", expect(&send_raw(p.envoy.port, format!("GET http://api.local/v1/admin HTTP/1.1\r\nhost: api.local\r\nx-jit-grant: {v}\r\nx-authenticated-user: alice\r\nconnection: close\r\n\r\n").as_bytes()), 403, "request_out_of_scope")),
        ("a Host with a port still routes to the resource", expect(&send_raw(p.envoy.port, format!("GET /v1/admin HTTP/1.1\r\nhost: api.local:443\r\nx-jit-grant: {v}\r\nx-authenticated-user: alice\r\nconnection: close\r\n\r\n").as_bytes()), 403, "request_out_of_scope")),
        ("a Host with a trailing dot still routes to the resource", expect(&send_raw(p.envoy.port, format!("GET /v1/admin HTTP/1.1\r\nhost: api.local.\r\nx-jit-grant: {v}\r\nx-authenticated-user: alice\r\nconnection: close\r\n\r\n").as_bytes()), 403, "request_out_of_scope")),
        ("another Host matches no resource and is denied", expect(&send_raw(p.envoy.port, format!("GET /v1/invoices/1 HTTP/1.1\r\nhost: evil.local\r\nx-jit-grant: {v}\r\nconnection: close\r\n\r\n").as_bytes()), 403, "no_resource")),
        ("a spoofed identity header that differs from sub is refused", expect(&p.get("/v1/invoices/1", &[("x-jit-grant", v.as_bytes()), ("x-authenticated-user", b"mallory")]), 403, "identity_mismatch")),
        ("two identity headers count as no identity", expect(&p.get("/v1/invoices/1", &[("x-jit-grant", v.as_bytes()), ("x-authenticated-user", alice), ("x-authenticated-user", alice)]), 403, "identity_mismatch")),
        ("an underscore header posing as x-jit-subject is rejected", expect(&p.get("/v1/invoices/1", &[("x-jit-grant", v.as_bytes()), ("x-authenticated-user", alice), ("x_jit_subject", b"mallory")]), 400, "")),
        ("HTTP/2: a valid grant is allowed", if h2_allowed.0 == 200 { Ok(()) } else { Err(format!("{h2_allowed:?}")) }),
        ("HTTP/2: no grant is denied", if h2_missing.0 == 401 && h2_missing.1.contains("grant_missing") { Ok(()) } else { Err(format!("{h2_missing:?}")) }),
        ("HTTP/2: a spoofed x-jit-subject is replaced", if h2_spoof.0 == 200 { Ok(()) } else { Err(format!("{h2_spoof:?}")) }),
    ];
    // The spoofed subject never reached the upstream under its forged value.
    let spoofed = p
        .upstream
        .requests()
        .iter()
        .any(|s| s.all("x-jit-subject").iter().any(|v| v == "mallory"));
    let allowed = p.upstream.count();
    report(cases, 37);
    assert!(!spoofed, "a spoofed x-jit-subject reached the upstream");
    assert_eq!(allowed, 2, "only the two HTTP/2 allowed requests reached the upstream");
    assert!(!p.envoy.log().contains("panicked"));
}

fn report(cases: Vec<(&str, Outcome)>, at_least: usize) {
    let mut failed = Vec::new();
    for (intent, outcome) in &cases {
        match outcome {
            Ok(()) => println!("ok   - {intent}"),
            Err(e) => {
                println!("FAIL - {intent}: {e}");
                failed.push(*intent);
            }
        }
    }
    assert!(cases.len() >= at_least);
    assert!(
        failed.is_empty(),
        "{} of {} attack cases failed: {failed:?}",
        failed.len(),
        cases.len()
    );
}

#[test]
fn hostile_calls_to_the_control_service_end_in_their_documented_outcome() {
    let control = Control::start(|c| c);
    let (approved_id, _, _) = control.approved_grant(
        "alice",
        "bob",
        json!([{"methods": ["GET"], "paths": ["/v1/invoices/*"]}]),
        600,
    );
    let pending = |who: &str| -> String {
        let r = control.as_user(
            who,
            "POST",
            "/v1/requests",
            Some(json!({"resource": "payments-api",
            "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": "x"})),
        );
        r.json()["id"].as_str().unwrap_or_default().to_owned()
    };
    let cancelled = pending("alice");
    control.as_user("alice", "POST", &format!("/v1/requests/{cancelled}/cancel"), None);
    let denied = pending("alice");
    control.as_user("bob", "POST", &format!("/v1/requests/{denied}/deny"), Some(json!({})));
    let own = pending("alice");
    let counts = |c: &Control| -> (usize, usize) {
        let list = c.as_user("ada", "GET", "/v1/requests", None).json();
        let requests = list.as_array().map_or(0, Vec::len);
        let audit = c.as_user("ada", "GET", "/v1/audit?limit=1000", None).json();
        (requests, audit.as_array().map_or(0, Vec::len))
    };
    let before = counts(&control);
    let raw = |auth: &str, body: &str| {
        call(
            control.port,
            "POST",
            "/v1/requests",
            &[("authorization", auth.to_owned())],
            Some(&serde_json::from_str::<Value>(body).unwrap_or(Value::String(body.into()))),
        )
    };
    let bearer = |user: &str| format!("Bearer {}", control.token(user));
    let sql = "'; DROP TABLE access_requests; --";
    let sql_body = json!({"resource": sql, "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": sql, "ticket": sql});
    let sql_scope = json!({"resource": "payments-api", "scope": [{"methods": [sql], "paths": [sql]}], "duration_seconds": 600, "reason": "x"});
    let none_token = format!("Bearer {}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(br#"{"sub":"ada","groups":["jit-admins"],"iss":"https://idp.example.test","aud":"jitgate","exp":9999999999}"#));
    let cases: Vec<(&str, Outcome)> = vec![
        ("self-approval is refused", expect(&control.as_user("alice", "POST", &format!("/v1/requests/{own}/approve"), None), 403, "self_approval")),
        ("approving outside your groups reveals nothing", expect(&control.as_user("eve", "POST", &format!("/v1/requests/{own}/approve"), None), 404, "request_not_found")),
        ("approving a cancelled request is a conflict", expect(&control.as_user("bob", "POST", &format!("/v1/requests/{cancelled}/approve"), None), 409, "request_resolved")),
        ("approving a denied request is a conflict", expect(&control.as_user("carol", "POST", &format!("/v1/requests/{denied}/approve"), None), 409, "request_resolved")),
        ("fetching another person's token is refused", expect(&control.as_user("bob", "GET", &format!("/v1/requests/{approved_id}/grant"), None), 403, "not_the_requester")),
        ("a stranger cannot see another's request", expect(&control.as_user("eve", "GET", &format!("/v1/requests/{approved_id}"), None), 404, "request_not_found")),
        ("probing made-up ids reveals nothing", expect(&control.as_user("eve", "GET", "/v1/requests/req_0123456789abcdef0123", None), 404, "request_not_found")),
        ("a JWT from another issuer is refused", expect(&raw(&format!("Bearer {}", { let mut a = control_auth(&control); a.issuer = "https://evil".into(); dev(&a) }), "{}"), 401, "auth_wrong_issuer")),
        ("a JWT for another audience is refused", expect(&raw(&format!("Bearer {}", { let mut a = control_auth(&control); a.audience = "other".into(); dev(&a) }), "{}"), 401, "auth_wrong_audience")),
        ("an expired JWT is refused", expect(&raw(&format!("Bearer {}", control::auth::dev_token(&control_auth(&control), "alice", None, &["dev"], 60, now() as i64 - 7200).unwrap()), "{}"), 401, "auth_expired")),
        ("a JWT with alg none is refused", expect(&raw(&none_token, "{}"), 401, "")),
        ("a JWT signed with another secret is refused", expect(&raw(&format!("Bearer {}", { let mut a = control_auth(&control); a.hs256_secret = Some(b"another-secret-of-at-least-32-bytes!!".to_vec()); dev(&a) }), "{}"), 401, "auth_bad_signature")),
        ("malformed JSON is a 400", expect(&send_raw(control.port, format!("POST /v1/requests HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 6\r\nconnection: close\r\n\r\n{{\"reso", bearer("alice")).as_bytes()), 400, "invalid_json")),
        ("an oversized body is a 413", expect(&raw(&bearer("alice"), &json!({"reason": "x".repeat(100_000)}).to_string()), 413, "payload_too_large")),
        ("SQL in resource, reason and ticket is just text", expect(&call(control.port, "POST", "/v1/requests", &[("authorization", bearer("alice"))], Some(&sql_body)), 422, "unknown_resource")),
        ("SQL in methods and paths is an invalid scope", expect(&call(control.port, "POST", "/v1/requests", &[("authorization", bearer("alice"))], Some(&sql_scope)), 422, "scope_invalid")),
        ("SQL in a request id is not found", expect(&control.as_user("bob", "POST", "/v1/requests/'%20OR%201=1--/approve", None), 404, "")),
        ("a wrong ingest key cannot read revocations", expect(&call(control.port, "GET", "/v1/revocations", &[("authorization", "Bearer not-the-ingest-key".into())], None), 401, "ingest_key_invalid")),
        ("a wrong ingest key cannot write decisions", expect(&call(control.port, "POST", "/v1/audit/events", &[("authorization", "Bearer not-the-ingest-key".into())], Some(&json!({"proxy": "x", "events": []}))), 401, "ingest_key_invalid")),
        ("a user token is not an ingest key", expect(&call(control.port, "GET", "/v1/proxy/grants", &[("authorization", bearer("ada"))], None), 401, "ingest_key_invalid")),
    ];
    let after = counts(&control);
    report(cases, 20);
    assert_eq!(before.0, after.0, "no request was created by a hostile call");
    assert!(after.1 > before.1, "refusals were audited");
    let verify = control.as_user("ada", "GET", "/v1/audit/verify", None).json();
    assert_eq!(verify["ok"], true);
    let _ = INGEST_KEY;
}

fn control_auth(c: &Control) -> control::config::AuthConfig {
    let text = std::fs::read_to_string(jitgate_e2e::workspace_root().join("control/examples/jitgate.toml")).unwrap();
    let _ = c;
    control::config::Config::parse(&text).unwrap().auth
}

fn dev(a: &control::config::AuthConfig) -> String {
    control::auth::dev_token(a, "alice", None, &["dev"], 600, now() as i64).unwrap()
}
