//! Grants bound to a client certificate (spec 1.1 `cnf`, RFC 8705) through
//! real Envoy with an mTLS listener: the filter reads the connection's
//! peer-certificate digest from Envoy and allows a bound grant only from
//! the certificate it names. Bound grants hand-minted here, and minted by
//! the real control service (which refuses to mint one while a proxy of
//! grant spec 1.0 is seen for the resource).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{Envoy, EnvoyOptions, ListenerTls};
use jitgate_e2e::tls::{get_invoice_over_tls, CertFiles, TestPki};
use jitgate_e2e::upstream::Upstream;
use serde_json::json;

const K1: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

fn grant(jti: &str, cnf: Option<[u8; 32]>) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    mint(
        &GrantClaims {
            iss: "jit-control".into(),
            sub: "alice".into(),
            aud: "payments-api".into(),
            jti: jti.into(),
            iat: t,
            nbf: t,
            exp: t + 600,
            scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
            src: None,
            req: None,
            cnf,
        },
        &SigningKey::from_base64url("k1", K1).unwrap(),
    )
    .unwrap()
}

fn call(envoy: &Envoy, ca: &Path, client: Option<&CertFiles>, token: &str) -> (u16, String) {
    get_invoice_over_tls(envoy, ca, client, token)
}

#[test]
fn a_bound_grant_passes_only_with_its_client_certificate() {
    let dir = std::env::temp_dir().join(format!("jitgate-mtls-{}", std::process::id()));
    let pki = TestPki::generate(&dir, &["alice-laptop", "mallory-laptop"]);
    let (alice, mallory) = (&pki.clients[0], &pki.clients[1]);
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","hosts":["api.local"],"path_prefix":"/v1"}}]}}"#
    );
    let envoy = Envoy::start(EnvoyOptions {
        listener_tls: Some(ListenerTls {
            cert: pki.server.cert.clone(),
            key: pki.server.key.clone(),
            ca: pki.ca.clone(),
        }),
        ..EnvoyOptions::new(config, upstream.port)
    });
    let bound = grant("g-bound", Some(alice.sha256));
    let unbound = grant("g-unbound", None);

    let (status, body) = call(&envoy, &pki.ca, Some(alice), &bound);
    assert_eq!(status, 200, "the bound certificate: {body}");
    let seen = upstream.last().expect("the allowed request reached the upstream");
    assert_eq!(seen.header("x-jit-subject").as_deref(), Some("alice"));
    assert_eq!(seen.header("x-jit-grant-id").as_deref(), Some("g-bound"));
    assert_eq!(seen.header("x-jit-grant"), None, "the grant never reaches the upstream");

    let before = upstream.count();
    for (who, client) in [("another certificate", Some(mallory)), ("no certificate", None)] {
        let (status, body) = call(&envoy, &pki.ca, client, &bound);
        assert_eq!(status, 403, "{who}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "device_mismatch", "{who}");
    }
    assert_eq!(
        upstream.count(),
        before,
        "a refused bound grant never reaches the upstream"
    );

    // An unbound grant is not tied to any certificate.
    assert_eq!(call(&envoy, &pki.ca, Some(mallory), &unbound).0, 200);
    assert_eq!(call(&envoy, &pki.ca, None, &unbound).0, 200);
    assert!(!envoy.log().contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn mtls_envoy(pki: &TestPki, upstream: &Upstream, keys: &str) -> Envoy {
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{{keys}}},"resources":[{{"id":"payments-api","hosts":["api.local"],"path_prefix":"/v1"}}]}}"#
    );
    Envoy::start(EnvoyOptions {
        listener_tls: Some(ListenerTls {
            cert: pki.server.cert.clone(),
            key: pki.server.key.clone(),
            ca: pki.ca.clone(),
        }),
        ..EnvoyOptions::new(config, upstream.port)
    })
}

/// A device-bound request for alice's read access, as `jitgate request
/// --bind-cert` sends it.
fn ask_bound(control: &Control, x5t: &str) -> jitgate_e2e::http::Response {
    control.as_user(
        "alice",
        "POST",
        "/v1/requests",
        Some(
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
                    "duration_seconds": 600, "reason": "e2e device binding", "cnf_x5t_s256": x5t}),
        ),
    )
}

#[test]
fn a_control_minted_bound_grant_passes_only_with_its_certificate_and_is_not_minted_beside_an_old_proxy() {
    let dir = std::env::temp_dir().join(format!("jitgate-mtls-control-{}", std::process::id()));
    let pki = TestPki::generate(&dir, &["alice-laptop", "mallory-laptop"]);
    let (alice, mallory) = (&pki.clients[0], &pki.clients[1]);
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(alice.sha256);
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    // The mTLS proxy is configured statically (no control link, so its
    // own polls do not stand in for the report below): the sync call
    // reports what it implements, grant spec 1.1, for payments-api.
    let envoy = mtls_envoy(
        &pki,
        &upstream,
        &format!(r#""k1":"{K1}","k2":"nHq6SY5Wn3UwzrlAcsFzq-0vAZ3uHFHVU13ZQvQAlIU""#),
    );
    assert_eq!(control.sync_as_proxy("edge-mtls", "1.1", "payments-api"), 200);

    let r = ask_bound(&control, &x5t);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let a = control.as_user("bob", "POST", &format!("/v1/requests/{id}/approve"), Some(json!({})));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let t = control
        .as_user("alice", "GET", &format!("/v1/requests/{id}/grant"), None)
        .json();
    let (grant_id, token) = (t["grant_id"].as_str().unwrap(), t["token"].as_str().unwrap());
    let issued = control
        .audit_for(&id)
        .into_iter()
        .find(|e| e["action"] == "grant.issued")
        .expect("grant.issued audited");
    assert_eq!(
        issued["details"]["device_binding"]["cnf"]["x5t#S256"],
        x5t.as_str(),
        "{issued}"
    );
    assert_eq!(issued["details"]["device_binding"]["decision"], "bound");

    let (status, body) = call(&envoy, &pki.ca, Some(alice), token);
    assert_eq!(status, 200, "the bound certificate: {body}");
    assert_eq!(
        upstream.last().unwrap().header("x-jit-grant-id").as_deref(),
        Some(grant_id)
    );
    let before = upstream.count();
    for (who, client) in [("another certificate", Some(mallory)), ("no certificate", None)] {
        let (status, body) = call(&envoy, &pki.ca, client, token);
        assert_eq!(status, 403, "{who}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "device_mismatch", "{who}");
    }
    assert_eq!(upstream.count(), before, "refused calls never reach the upstream");

    // An old proxy (grant spec 1.0) now serves payments-api: the control
    // service refuses to mint another bound grant, and stores nothing.
    assert_eq!(control.sync_as_proxy("edge-old", "1.0", "payments-api"), 200);
    let r = ask_bound(&control, &x5t);
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], "device_binding_unavailable");
    let mine = control.as_user("alice", "GET", "/v1/requests?mine=true", None).json();
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    let _ = std::fs::remove_dir_all(&dir);
}
