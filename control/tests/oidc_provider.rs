//! Sign-in against a real OpenID provider (npm `oidc-provider`, see
//! `tests/idp/`): discovery, key rotation while the service runs, the
//! provider going down, a flood of made-up key ids, algorithm confusion,
//! wrong audience, issuer and expiry, and workload issuers.

mod common;
#[path = "idp/harness.rs"]
mod idp;

use std::time::Duration;

use control::auth::Authenticator;
use control::config::Config;
use idp::{config_text, Idp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

async fn authenticator(text: &str) -> Authenticator {
    let cfg = Config::parse(text).expect("config");
    let auth = Authenticator::new(&cfg.auth).expect("authenticator");
    auth.warm_up().await;
    auth
}

async fn code_of(auth: &Authenticator, token: &str) -> (String, String) {
    let e = auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap_err();
    (e.code().to_owned(), e.to_string())
}

fn id_token(tokens: &Value) -> String {
    tokens["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id token: {tokens}"))
        .to_owned()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn the_provider_is_discovered_and_its_id_tokens_authenticate_people_with_their_groups() {
    let Some(people) = Idp::start("people", &[]).await else {
        return;
    };
    let auth = authenticator(&config_text(&people, None, "jitgate-cli")).await;
    assert_eq!(
        people.stats().await,
        (1, 1),
        "one discovery, one key set fetch at start"
    );
    let token = id_token(&people.id_token("carol", None, None).await);
    let p = auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap();
    assert_eq!(p.id, "carol");
    assert_eq!(p.email.as_deref(), Some("carol@example.com"));
    assert_eq!(p.groups, ["dev".to_owned(), "oncall".to_owned()].into());
    assert_eq!(p.context.issuer, people.issuer);
    assert_eq!(p.context.acr.as_deref(), Some("pwd"));
    assert_eq!(p.context.amr, vec!["pwd".to_owned()]);
    assert!(p.context.auth_time.is_some());
    // Cached: a second call fetches nothing.
    auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap();
    assert_eq!(people.stats().await, (1, 1));
}

/// A provider, an authenticator trusting it, and an ID token of alice's.
async fn alice_signed_in() -> Option<(Idp, Authenticator, String)> {
    let people = Idp::start("people", &[]).await?;
    let auth = authenticator(&config_text(&people, None, "jitgate-cli")).await;
    let token = id_token(&people.id_token("alice", None, None).await);
    Some((people, auth, token))
}

#[tokio::test]
async fn a_rotated_key_is_accepted_without_restart_and_a_retired_one_is_refused() {
    let Some((people, auth, old)) = alice_signed_in().await else {
        return;
    };
    auth.authenticate(Some(&format!("Bearer {old}"))).await.unwrap();

    let new_kid = people.rotate().await;
    let new = id_token(&people.id_token("alice", None, None).await);
    assert_eq!(kid_of(&new), new_kid);
    assert_ne!(kid_of(&old), new_kid);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the refetch interval
    let p = auth.authenticate(Some(&format!("Bearer {new}"))).await.unwrap();
    assert_eq!(p.id, "alice");
    // Both keys are published: the old token still verifies.
    auth.authenticate(Some(&format!("Bearer {old}"))).await.unwrap();

    people.retire().await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // past the cache's ceiling
    assert_eq!(code_of(&auth, &old).await.0, "auth_unsupported_key");
    auth.authenticate(Some(&format!("Bearer {new}"))).await.unwrap();
}

#[tokio::test]
async fn while_the_provider_is_down_cached_keys_serve_and_a_new_kid_is_refused_clearly() {
    let Some((mut people, auth, known)) = alice_signed_in().await else {
        return;
    };
    auth.authenticate(Some(&format!("Bearer {known}"))).await.unwrap();
    people.rotate().await;
    let unseen = id_token(&people.id_token("alice", None, None).await);
    people.stop().await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // the cache is stale now
    let p = auth.authenticate(Some(&format!("Bearer {known}"))).await.unwrap();
    assert_eq!(p.id, "alice");
    let (code, message) = code_of(&auth, &unseen).await;
    assert_eq!(code, "auth_keys_unavailable");
    assert!(
        message.contains(&kid_of(&unseen)) && message.contains("could not be fetched"),
        "{message}"
    );
}

#[tokio::test]
async fn a_flood_of_made_up_kids_costs_the_provider_at_most_one_fetch_per_interval() {
    let Some(people) = Idp::start("people", &[]).await else {
        return;
    };
    // A 30 s interval, so that a slow machine cannot stretch the flood
    // over two intervals: the fetch at start is the interval's one.
    let text = config_text(&people, None, "jitgate-cli")
        .replace("refetch_interval_seconds = 1", "refetch_interval_seconds = 30")
        .replace("max_seconds = 2", "max_seconds = 60");
    let auth = authenticator(&text).await;
    let real = id_token(&people.id_token("alice", None, None).await);
    let (jwks_before, _) = people.stats().await;
    let key = EncodingKey::from_secret(b"whatever");
    let mut codes = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..300 {
        // Signature bytes do not matter: the kid is looked up first.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(format!("made-up-{i}"));
        let forged = jsonwebtoken::encode(&header, &json!({"iss": people.issuer}), &key).unwrap();
        let mut parts: Vec<&str> = forged.split('.').collect();
        let rs256 = base64_header(&format!("made-up-{i}"));
        parts[0] = &rs256;
        let (code, _) = code_of(&auth, &parts.join(".")).await;
        *codes.entry(code).or_default() += 1;
    }
    let (jwks_after, _) = people.stats().await;
    assert_eq!(jwks_after, jwks_before, "the flood fetched the key set");
    let throttled = std::collections::BTreeMap::from([("auth_unknown_key_throttled".to_owned(), 300)]);
    assert_eq!(codes, throttled);
    // Real callers are not affected.
    auth.authenticate(Some(&format!("Bearer {real}"))).await.unwrap();
}

fn base64_header(kid: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string())
}

#[tokio::test]
async fn algorithm_confusion_and_alg_none_are_refused() {
    let Some((people, auth, real)) = alice_signed_in().await else {
        return;
    };
    let claims: Value = {
        use base64::Engine as _;
        let payload = real.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    // HS256 with the provider's RSA public key (PEM, as published) as the
    // secret, naming the RSA key's kid.
    let (kid, pem) = people.rsa_public_pem().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let mut forged_claims = claims.clone();
    forged_claims["groups"] = json!(["jit-admins"]);
    let forged = jsonwebtoken::encode(&header, &forged_claims, &EncodingKey::from_secret(&pem)).unwrap();
    assert_eq!(code_of(&auth, &forged).await.0, "auth_unsupported_key");
    // The same with the key's kid and alg RS256 but an HMAC signature.
    let parts: Vec<&str> = forged.split('.').collect();
    let relabelled = format!("{}.{}.{}", base64_header(&kid), parts[1], parts[2]);
    assert_eq!(code_of(&auth, &relabelled).await.0, "auth_bad_signature");
    // alg "none" with the real claims.
    use base64::Engine as _;
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        real.split('.').nth(1).unwrap()
    );
    assert_eq!(code_of(&auth, &none).await.0, "auth_malformed");
}

#[tokio::test]
async fn tokens_for_another_audience_from_another_issuer_or_expired_are_refused() {
    let Some(people) = Idp::start("people", &["--id-token-ttl", "1"]).await else {
        return;
    };
    let Some(stranger) = Idp::start("people", &[]).await else {
        return;
    };
    let token = id_token(&people.id_token("alice", None, None).await);
    let other_audience = authenticator(&config_text(&people, None, "jitgate-console")).await;
    assert_eq!(code_of(&other_audience, &token).await.0, "auth_wrong_audience");
    let auth = authenticator(&config_text(&people, None, "jitgate-cli")).await;
    let foreign = id_token(&stranger.id_token("alice", None, None).await);
    assert_eq!(code_of(&auth, &foreign).await.0, "auth_wrong_issuer");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(code_of(&auth, &token).await.0, "auth_expired");
}

/// A people's provider and a workload ("ci") provider.
async fn people_and_ci() -> Option<(Idp, Idp)> {
    Some((Idp::start("people", &[]).await?, Idp::start("workload", &[]).await?))
}

#[tokio::test]
async fn workload_issuers_place_callers_only_in_their_allowed_groups_es256_and_eddsa() {
    let Some((people, ci)) = people_and_ci().await else {
        return;
    };
    let auth = authenticator(&config_text(&people, Some(&ci), "jitgate-cli")).await;
    let es = ci.workload_token("deploy-bot", "deploy-secret").await;
    assert_eq!(jsonwebtoken::decode_header(&es).unwrap().alg, Algorithm::ES256);
    let p = auth.authenticate(Some(&format!("Bearer {es}"))).await.unwrap();
    assert_eq!(p.id, "workload:ci:deploy-bot");
    assert_eq!(p.groups, ["deployers".to_owned()].into());
    let ed = ci.workload_token("ed-bot", "ed-secret").await;
    assert_eq!(jsonwebtoken::decode_header(&ed).unwrap().alg, Algorithm::EdDSA);
    let p = auth.authenticate(Some(&format!("Bearer {ed}"))).await.unwrap();
    assert_eq!(p.id, "workload:ci:ed-bot");
    // "admins" is in its token, but the issuer may not place callers there.
    assert_eq!(p.groups, ["deployers".to_owned()].into());
    // A workload token is not a person's token, nor the reverse.
    let without_workloads = authenticator(&config_text(&people, None, "jitgate-cli")).await;
    assert_eq!(code_of(&without_workloads, &es).await.0, "auth_wrong_issuer");
}

#[tokio::test]
async fn a_ci_job_receives_a_grant_under_auto_approve_with_its_workload_identity_audited_sqlite() {
    ci_job_is_auto_approved(common::Backend::Sqlite).await;
}

#[tokio::test]
async fn a_ci_job_receives_a_grant_under_auto_approve_with_its_workload_identity_audited_postgres() {
    ci_job_is_auto_approved(common::Backend::Postgres).await;
}

async fn ci_job_is_auto_approved(backend: common::Backend) {
    let Some((people, ci)) = people_and_ci().await else {
        return;
    };
    let text = config_text(&people, Some(&ci), "jitgate-cli");
    let Some(app) = common::spawn_app_with(backend, |db| {
        text.replace(
            "requesters = [\"dev\", \"sre\", \"oncall\"]",
            "requesters = [\"dev\", \"sre\", \"oncall\", \"deployers\"]",
        )
        .replace("groups = [\"sre\"]", "groups = [\"sre\", \"deployers\"]")
        // The fresh database spawn_app chose.
        .replace(
            "database_url = \"sqlite://jitgate.db\"",
            db.lines().find(|l| l.starts_with("database_url")).unwrap_or_default(),
        )
    })
    .await
    else {
        return;
    };
    let token = ci.workload_token("deploy-bot", "deploy-secret").await;
    let r = app
        .http
        .post(format!("{}/v1/requests", app.base))
        .bearer_auth(&token)
        .json(
            &json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
                      "duration_seconds": 600, "reason": "deploy smoke test", "ticket": "CI-7"}),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "approved", "{body}");
    assert_eq!(body["requester"], "workload:ci:deploy-bot", "{body}");
    let actors: Vec<String> = sqlx::query_scalar::<_, String>("SELECT actor FROM audit_log")
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap();
    assert!(actors.iter().any(|a| a == "workload:ci:deploy-bot"), "{actors:?}");
}
