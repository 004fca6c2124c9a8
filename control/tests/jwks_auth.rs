//! Production authentication: ES256 tokens verified against a JWKS file,
//! with the algorithm pinned per key.

use control::auth::Authenticator;
use control::config::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn config() -> Config {
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jwks.json");
    let text = include_str!("../examples/jitgate.toml").replace(
        "hs256_secret = { value = \"dev-only-hs256-secret-change-me-0123456789\" }",
        &format!("jwks_file = {jwks:?}"),
    );
    Config::parse(&text).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn es256(claims: serde_json::Value, kid: &str) -> String {
    let key = EncodingKey::from_ec_pem(include_bytes!("data/es256-test-key.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn claims() -> serde_json::Value {
    json!({"iss": "https://idp.example.test", "aud": "jitgate", "sub": "alice", "email": "alice@example.com",
           "groups": ["dev"], "iat": now(), "nbf": now(), "exp": now() + 300})
}

#[tokio::test]
async fn es256_tokens_from_the_jwks_authenticate() {
    let auth = Authenticator::new(&config().auth).unwrap();
    let p = auth
        .authenticate(Some(&format!("Bearer {}", es256(claims(), "idp-es256-1"))))
        .await
        .unwrap();
    assert_eq!(p.id, "alice");
    assert!(p.groups.contains("dev"));
}

#[tokio::test]
async fn wrong_kid_issuer_audience_or_expiry_are_refused_with_their_codes() {
    let auth = Authenticator::new(&config().auth).unwrap();
    let auth = &auth;
    let code = |t: String| async move {
        auth.authenticate(Some(&format!("Bearer {t}")))
            .await
            .unwrap_err()
            .code()
    };
    assert_eq!(code(es256(claims(), "other-kid")).await, "auth_unsupported_key");
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    assert_eq!(code(es256(c, "idp-es256-1")).await, "auth_wrong_issuer");
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(code(es256(c, "idp-es256-1")).await, "auth_wrong_audience");
    let mut c = claims();
    c["exp"] = json!(now() - 60);
    assert_eq!(code(es256(c, "idp-es256-1")).await, "auth_expired");
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    assert_eq!(code(es256(c, "idp-es256-1")).await, "auth_not_yet_valid");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(code(es256(c, "idp-es256-1")).await, "auth_missing_claim");
}

#[tokio::test]
async fn an_hs256_token_is_refused_when_only_public_keys_are_configured() {
    // Algorithm confusion: an attacker signs HS256 with the public key's
    // bytes as the secret. No HS256 key is configured, so nothing verifies.
    let auth = Authenticator::new(&config().auth).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("idp-es256-1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(include_bytes!("data/jwks.json")),
    )
    .unwrap();
    assert_eq!(
        auth.authenticate(Some(&format!("Bearer {forged}")))
            .await
            .unwrap_err()
            .code(),
        "auth_unsupported_key"
    );
    // alg "none" is not even a JWT to the library.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.";
    assert!(auth.authenticate(Some(&format!("Bearer {none}"))).await.is_err());
}

#[test]
fn jwks_keys_must_pin_their_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let mut jwks: serde_json::Value = serde_json::from_str(include_str!("data/jwks.json")).unwrap();
    jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let text = include_str!("../examples/jitgate.toml").replace(
        "hs256_secret = { value = \"dev-only-hs256-secret-change-me-0123456789\" }",
        &format!("jwks_file = {:?}", path.display().to_string()),
    );
    assert_eq!(Config::parse(&text).unwrap_err().field, "auth.jwks_file.keys[0].alg");
}
