//! The attack catalogue: hostile requests through real Envoy and the real
//! control service, one named case each (the machinery is
//! `jitgate_e2e::catalogue`). Each case pins its exact outcome: through the
//! proxy, the status and code (or that Envoy answered before the filter),
//! what the filter decided and what reached the upstream (nothing on a
//! deny, exactly the identity headers on an allow); at the control
//! service, the status, the problem code and exactly the audit records the
//! call wrote.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use hmac::{Hmac, Mac};
use jitgate_e2e::catalogue::{case, run, ControlExpect, ControlTarget, Proxy, ProxyExpect};
use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::{call, get_h2, request, send_raw, Response};
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

fn proxy() -> Proxy {
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"accept_bearer":true,"resources":[{{"id":"payments-api","hosts":["api.local"],"path_prefix":"/v1"}}],"identity":{{"source":"header","name":"x-authenticated-user"}}}}"#
    );
    // One worker (the default): the catalogue's marker relies on it.
    let envoy = Envoy::start(EnvoyOptions::new(config, upstream.port));
    Proxy {
        envoy,
        upstream,
        marker: Box::new(|envoy: &Envoy| request(envoy.port, "GET", "/catalogue-marker", &[])),
        marker_code: "no_resource",
    }
}

/// A raw HTTP/1.1 GET with this Host and target, the valid grant and (if
/// given) an identity.
fn raw_get(port: u16, target: &str, host: &str, grant: &str, identity: Option<&str>) -> Response {
    let identity = identity
        .map(|who| format!("x-authenticated-user: {who}\r\n"))
        .unwrap_or_default();
    send_raw(
        port,
        format!("GET {target} HTTP/1.1\r\nhost: {host}\r\nx-jit-grant: {grant}\r\n{identity}connection: close\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn hostile_requests_through_envoy_end_in_their_documented_outcome() {
    use ProxyExpect::{Allowed, Envoy as EnvoyAnswers};
    let p = proxy();
    let port = p.envoy.port;
    let v = valid();
    let alice: &[u8] = b"alice";
    let with_id = |path: &str, token: &str| {
        request(
            port,
            "GET",
            path,
            &[("x-jit-grant", token.as_bytes()), ("x-authenticated-user", alice)],
        )
    };
    let forged = |header: &str, claims: &str| with_id("/v1/invoices/1", &forge(header, claims));
    let denied = ProxyExpect::denied;
    let alice_allowed = || {
        Allowed(vec![
            ("x-jit-subject", "alice".into()),
            ("x-jit-grant-id", "g-atk-valid".into()),
        ])
    };

    let cases = vec![
        case(
            "alg none with an empty signature is unsupported",
            denied(401, "grant_unsupported"),
            || {
                with_id(
                    "/v1/invoices/1",
                    &format!(
                        "{}.{}.",
                        b64(br#"{"alg":"none","typ":"jit-grant+jwt","kid":"k1"}"#),
                        b64(claims_json("").as_bytes())
                    ),
                )
            },
        ),
        case("alg HS512 is unsupported", denied(401, "grant_unsupported"), || {
            forged(r#"{"alg":"HS512","typ":"jit-grant+jwt","kid":"k1"}"#, &claims_json(""))
        }),
        case(
            "alg RS256 signed with the HMAC key as a 'public key' is unsupported",
            denied(401, "grant_unsupported"),
            || forged(r#"{"alg":"RS256","typ":"jit-grant+jwt","kid":"k1"}"#, &claims_json("")),
        ),
        case(
            "typ JWT (a different token kind) is unsupported",
            denied(401, "grant_unsupported"),
            || forged(r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#, &claims_json("")),
        ),
        case(
            "kid with path traversal selects no key",
            denied(401, "grant_unknown_key"),
            || {
                forged(
                    r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"../../etc/passwd"}"#,
                    &claims_json(""),
                )
            },
        ),
        case("kid with SQL selects no key", denied(401, "grant_unknown_key"), || {
            forged(
                r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1' OR '1'='1"}"#,
                &claims_json(""),
            )
        }),
        case(
            "a second exp claim is malformed, never last-wins",
            denied(401, "grant_malformed"),
            || forged(HEADER, &claims_json(r#","exp":99999999999"#)),
        ),
        case(
            "a second aud claim is malformed",
            denied(401, "grant_malformed"),
            || forged(HEADER, &claims_json(r#","aud":"hr-api""#)),
        ),
        case(
            "a duplicate alg in the header is malformed",
            denied(401, "grant_malformed"),
            || {
                forged(
                    r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1","alg":"none"}"#,
                    &claims_json(""),
                )
            },
        ),
        case("a huge number is malformed", denied(401, "grant_malformed"), || {
            forged(HEADER, &claims_json(r#","x":1e999"#))
        }),
        case("exp beyond 2^53 is malformed", denied(401, "grant_malformed"), || {
            forged(
                HEADER,
                &claims_json("").replace(r#""exp":"#, r#""e":0,"exp":9007199254740993,"o":"#),
            )
        }),
        case("nesting 17 deep is malformed", denied(401, "grant_malformed"), || {
            forged(
                HEADER,
                &claims_json(&format!(r#","x":{}{}"#, "[".repeat(16), "]".repeat(16))),
            )
        }),
        case(
            "a 1 MB grant header is refused by Envoy before the filter",
            EnvoyAnswers(431, "Request Header Fields Too Large"),
            || {
                request(
                    port,
                    "GET",
                    "/v1/invoices/1",
                    &[("x-jit-grant", "a".repeat(1 << 20).as_bytes())],
                )
            },
        ),
        case(
            "fifty grant headers are malformed",
            denied(401, "grant_malformed"),
            || {
                let many: Vec<(&str, &[u8])> = (0..50).map(|_| ("x-jit-grant", v.as_bytes())).collect();
                request(port, "GET", "/v1/invoices/1", &many)
            },
        ),
        case(
            "a grant in both the header and Authorization is malformed",
            denied(401, "grant_malformed"),
            || {
                let bearer = format!("Bearer {v}");
                request(
                    port,
                    "GET",
                    "/v1/invoices/1",
                    &[
                        ("x-jit-grant", v.as_bytes()),
                        ("authorization", bearer.as_bytes()),
                        ("x-authenticated-user", alice),
                    ],
                )
            },
        ),
        case(
            "a stripped signature is a bad signature",
            denied(401, "grant_bad_signature"),
            || with_id("/v1/invoices/1", &format!("{}.", v.rsplit_once('.').unwrap().0)),
        ),
        case(
            "a truncated signature is a bad signature",
            denied(401, "grant_bad_signature"),
            // 40 of 43 characters: whole groups, so the text is canonical
            // base64url (other cuts may leave unused bits set: malformed).
            || with_id("/v1/invoices/1", &v[..v.len() - 3]),
        ),
        case(
            "claims swapped under a valid signature are a bad signature",
            denied(401, "grant_bad_signature"),
            || {
                let parts: Vec<&str> = v.split('.').collect();
                let swapped = format!("{}.{}.{}", parts[0], b64(claims_json(r#","x":1"#).as_bytes()), parts[2]);
                with_id("/v1/invoices/1", &swapped)
            },
        ),
        case("%2F in the path is refused by Envoy", EnvoyAnswers(400, ""), || {
            with_id("/v1/invoices%2F1", &v)
        }),
        case(
            "%2e%2e is normalized away before the scope check",
            denied(403, "request_out_of_scope"),
            || with_id("/v1/invoices/%2e%2e/admin", &v),
        ),
        case(
            "..; is resolved by Envoy before the scope check",
            denied(403, "request_out_of_scope"),
            || with_id("/v1/invoices/..;x/admin", &v),
        ),
        case(
            "..%3B survives Envoy and is refused by the filter",
            denied(400, "path_rejected"),
            || with_id("/v1/invoices/..%3Bx/admin", &v),
        ),
        case(
            "// is merged and the result checked",
            denied(403, "request_out_of_scope"),
            || with_id("/v1//admin", &v),
        ),
        // Whether Envoy leaves `1/.` or turns it into `1/` (an empty last
        // segment), the filter refuses a path it cannot match safely.
        case(
            "a trailing dot segment is refused by the filter",
            denied(400, "path_rejected"),
            || with_id("/v1/invoices/1/.", &v),
        ),
        case(
            "a trailing slash is refused by the filter",
            denied(400, "path_rejected"),
            || with_id("/v1/invoices/1/", &v),
        ),
        case(
            "mixed case does not match a case-sensitive pattern",
            denied(403, "no_resource"),
            || with_id("/V1/Invoices/1", &v),
        ),
        case(
            "a unicode look-alike segment does not match",
            denied(403, "request_out_of_scope"),
            || with_id("/v1/%D1%96nvoices/1", &v),
        ),
        case(
            "an absolute-form target is checked by its path",
            denied(403, "request_out_of_scope"),
            || raw_get(port, "http://api.local/v1/admin", "api.local", &v, Some("alice")),
        ),
        case(
            "a Host with a port still routes to the resource",
            denied(403, "request_out_of_scope"),
            || raw_get(port, "/v1/admin", "api.local:443", &v, Some("alice")),
        ),
        case(
            "a Host with a trailing dot still routes to the resource",
            denied(403, "request_out_of_scope"),
            || raw_get(port, "/v1/admin", "api.local.", &v, Some("alice")),
        ),
        case(
            "another Host matches no resource and is denied",
            denied(403, "no_resource"),
            || raw_get(port, "/v1/invoices/1", "evil.local", &v, None),
        ),
        case(
            "a spoofed identity header that differs from sub is refused",
            denied(403, "identity_mismatch"),
            || {
                request(
                    port,
                    "GET",
                    "/v1/invoices/1",
                    &[("x-jit-grant", v.as_bytes()), ("x-authenticated-user", b"mallory")],
                )
            },
        ),
        case(
            "two identity headers count as no identity",
            denied(403, "identity_mismatch"),
            || {
                request(
                    port,
                    "GET",
                    "/v1/invoices/1",
                    &[
                        ("x-jit-grant", v.as_bytes()),
                        ("x-authenticated-user", alice),
                        ("x-authenticated-user", alice),
                    ],
                )
            },
        ),
        case(
            "an underscore header posing as x-jit-subject is refused by Envoy",
            EnvoyAnswers(400, "Bad Request"),
            || {
                request(
                    port,
                    "GET",
                    "/v1/invoices/1",
                    &[
                        ("x-jit-grant", v.as_bytes()),
                        ("x-authenticated-user", alice),
                        ("x_jit_subject", b"mallory"),
                    ],
                )
            },
        ),
        case("HTTP/2: a valid grant is allowed", alice_allowed(), || {
            get_h2(
                port,
                "/v1/invoices/1",
                &[("x-jit-grant", &v), ("x-authenticated-user", "alice")],
            )
        }),
        case("HTTP/2: no grant is denied", denied(401, "grant_missing"), || {
            get_h2(port, "/v1/invoices/1", &[("x-authenticated-user", "alice")])
        }),
        case(
            "HTTP/2: a spoofed x-jit-subject is replaced by the grant's subject",
            alice_allowed(),
            || {
                get_h2(
                    port,
                    "/v1/invoices/1",
                    &[
                        ("x-jit-grant", &v),
                        ("x-authenticated-user", "alice"),
                        ("x-jit-subject", "mallory"),
                    ],
                )
            },
        ),
    ];
    run(cases, |c| p.judge(c)).assert_passed(37);
    assert!(!p.envoy.log().contains("panicked"));
}

#[test]
fn hostile_calls_to_the_control_service_end_in_their_documented_outcome() {
    let control = Control::start(|c| c);
    let target = ControlTarget {
        control: &control,
        auditor: "ada",
    };
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
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_str().unwrap_or_default().to_owned()
    };
    let cancelled = pending("alice");
    let r = control.as_user("alice", "POST", &format!("/v1/requests/{cancelled}/cancel"), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let denied = pending("alice");
    let r = control.as_user("bob", "POST", &format!("/v1/requests/{denied}/deny"), Some(json!({})));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let own = pending("alice");
    let requests = || {
        let list = control.as_user("ada", "GET", "/v1/requests", None).json();
        list.as_array().map_or(0, Vec::len)
    };
    let requests_before = requests();

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
    let jwt = |edit: fn(&mut control::config::AuthConfig)| {
        let mut auth = control_auth();
        edit(&mut auth);
        format!("Bearer {}", dev(&auth))
    };
    let sql = "'; DROP TABLE access_requests; --";
    let refused = ControlExpect::refused;
    // A refused call by an authenticated user writes its record with the
    // refusal. A failed authentication writes none at the call: it is
    // counted at once and audited as one `auth.failed` record per source
    // and reason per window (control/tests: unauthenticated calls are
    // counted each but audited once), so anonymous callers cannot grow
    // the log.
    let api = |who: &'static str, code: &'static str| vec![("api.refused", who, Some(code))];
    let auth = |_code: &'static str| Vec::new();
    let approve =
        |who: &'static str, id: &str| control.as_user(who, "POST", &format!("/v1/requests/{id}/approve"), None);

    let cases = vec![
        case(
            "self-approval is refused",
            refused(403, "self_approval", api("alice", "self_approval")),
            || approve("alice", &own),
        ),
        case(
            "approving outside your groups reveals nothing",
            refused(404, "request_not_found", api("eve", "request_not_found")),
            || approve("eve", &own),
        ),
        case(
            "approving a cancelled request is a conflict",
            refused(409, "request_resolved", api("bob", "request_resolved")),
            || approve("bob", &cancelled),
        ),
        case(
            "approving a denied request is a conflict",
            refused(409, "request_resolved", api("carol", "request_resolved")),
            || approve("carol", &denied),
        ),
        case(
            "fetching another person's token is refused",
            refused(403, "not_the_requester", api("bob", "not_the_requester")),
            || control.as_user("bob", "GET", &format!("/v1/requests/{approved_id}/grant"), None),
        ),
        case(
            "a stranger cannot see another's request",
            refused(404, "request_not_found", api("eve", "request_not_found")),
            || control.as_user("eve", "GET", &format!("/v1/requests/{approved_id}"), None),
        ),
        case(
            "probing made-up ids reveals nothing",
            refused(404, "request_not_found", api("eve", "request_not_found")),
            || control.as_user("eve", "GET", "/v1/requests/req_0123456789abcdef0123", None),
        ),
        case(
            "a JWT from another issuer is refused",
            refused(401, "auth_wrong_issuer", auth("auth_wrong_issuer")),
            || raw(&jwt(|a| a.issuer = "https://evil".into()), "{}"),
        ),
        case(
            "a JWT for another audience is refused",
            refused(401, "auth_wrong_audience", auth("auth_wrong_audience")),
            || raw(&jwt(|a| a.audience = "other".into()), "{}"),
        ),
        case(
            "an expired JWT is refused",
            refused(401, "auth_expired", auth("auth_expired")),
            || {
                let expired =
                    control::auth::dev_token(&control_auth(), "alice", None, &["dev"], 60, now() as i64 - 7200);
                raw(&format!("Bearer {}", expired.unwrap()), "{}")
            },
        ),
        // Its signature part is empty: not even a JWT to the service.
        case(
            "a JWT with alg none is refused",
            refused(401, "auth_malformed", auth("auth_malformed")),
            || {
                let none = format!(
                "Bearer {}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(br#"{"sub":"ada","groups":["jit-admins"],"iss":"https://idp.example.test","aud":"jitgate","exp":9999999999}"#)
            );
                raw(&none, "{}")
            },
        ),
        case(
            "a JWT signed with another secret is refused",
            refused(401, "auth_bad_signature", auth("auth_bad_signature")),
            || {
                raw(
                    &jwt(|a| a.hs256_secret = Some(b"another-secret-of-at-least-32-bytes!!".to_vec())),
                    "{}",
                )
            },
        ),
        case(
            "malformed JSON is a 400",
            refused(400, "invalid_json", api("alice", "invalid_json")),
            || {
                send_raw(
                control.port,
                format!(
                    "POST /v1/requests HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 6\r\nconnection: close\r\n\r\n{{\"reso",
                    bearer("alice")
                )
                .as_bytes(),
            )
            },
        ),
        case(
            "an oversized body is a 413",
            refused(413, "payload_too_large", api("alice", "payload_too_large")),
            || raw(&bearer("alice"), &json!({"reason": "x".repeat(100_000)}).to_string()),
        ),
        case(
            "SQL in resource, reason and ticket is just text",
            refused(422, "unknown_resource", api("alice", "unknown_resource")),
            || {
                let body = json!({"resource": sql, "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": sql, "ticket": sql});
                call(
                    control.port,
                    "POST",
                    "/v1/requests",
                    &[("authorization", bearer("alice"))],
                    Some(&body),
                )
            },
        ),
        case(
            "SQL in methods and paths is an invalid scope",
            refused(422, "scope_invalid", api("alice", "scope_invalid")),
            || {
                let body = json!({"resource": "payments-api", "scope": [{"methods": [sql], "paths": [sql]}], "duration_seconds": 600, "reason": "x"});
                call(
                    control.port,
                    "POST",
                    "/v1/requests",
                    &[("authorization", bearer("alice"))],
                    Some(&body),
                )
            },
        ),
        case(
            "SQL in a request id is not found",
            refused(404, "request_not_found", api("bob", "request_not_found")),
            || control.as_user("bob", "POST", "/v1/requests/'%20OR%201=1--/approve", None),
        ),
        case(
            "a wrong ingest key cannot read revocations",
            refused(401, "ingest_key_invalid", vec![]),
            || {
                call(
                    control.port,
                    "GET",
                    "/v1/revocations",
                    &[("authorization", "Bearer not-the-ingest-key".into())],
                    None,
                )
            },
        ),
        case(
            "a wrong ingest key cannot write decisions",
            refused(401, "ingest_key_invalid", vec![]),
            || {
                call(
                    control.port,
                    "POST",
                    "/v1/audit/events",
                    &[("authorization", "Bearer not-the-ingest-key".into())],
                    Some(&json!({"proxy": "x", "events": []})),
                )
            },
        ),
        case(
            "a user token is not an ingest key",
            refused(401, "ingest_key_invalid", vec![]),
            || {
                call(
                    control.port,
                    "GET",
                    "/v1/proxy/grants",
                    &[("authorization", bearer("ada"))],
                    None,
                )
            },
        ),
    ];
    run(cases, |c| target.judge(c)).assert_passed(20);
    assert_eq!(requests(), requests_before, "no request was created by a hostile call");
    let verify = control.as_user("ada", "GET", "/v1/audit/verify", None).json();
    assert_eq!(verify["ok"], true, "{verify}");
}

fn control_auth() -> control::config::AuthConfig {
    let text = std::fs::read_to_string(jitgate_e2e::workspace_root().join("control/examples/jitgate.toml")).unwrap();
    control::config::Config::parse(&text).unwrap().auth
}

fn dev(a: &control::config::AuthConfig) -> String {
    control::auth::dev_token(a, "alice", None, &["dev"], 600, now() as i64).unwrap()
}
