//! Grants bound to a client certificate (spec 1.1 `cnf`, RFC 8705) through
//! real Envoy with an mTLS listener: the filter reads the connection's
//! peer-certificate digest from Envoy and allows a bound grant only from
//! the certificate it names.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_e2e::envoy::{Envoy, EnvoyOptions, ListenerTls};
use jitgate_e2e::tls::{get_invoice_over_tls, CertFiles, TestPki};
use jitgate_e2e::upstream::Upstream;

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
