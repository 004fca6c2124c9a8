//! What an outside attack run found on the control service (issue 13):
//! look-alike identities approving their own request, refusals missing
//! from a request's trail, and text that can deceive an approver. Over
//! HTTP, on SQLite and PostgreSQL.

mod common;

use common::{spawn_app_with, Backend, TestApp};
use control::signature::hex_hmac;
use serde_json::{json, Value};
use sqlx::Row;

const CALLBACK_SECRET: &str = "callback-secret-0123456789";
const SLACK_SECRET: &str = "slack-signing-secret-0123456789";

/// The development configuration with signed callbacks, Slack and a chat
/// mapping for bob, and `edit` applied.
async fn app(backend: Backend, edit: impl FnOnce(String) -> String) -> Option<TestApp> {
    spawn_app_with(backend, |c| {
        edit(format!(
            "{c}\n[integrations]\ncallback_secret = {{ value = \"{CALLBACK_SECRET}\" }}\n\
             slack_signing_secret = {{ value = \"{SLACK_SECRET}\" }}\n\n\
             [[integrations.users]]\nchat_id = \"UBOB\"\nuser = \"bob\"\ngroups = [\"payments-approvers\"]\n"
        ))
    })
    .await
}

/// A bearer token with any user claim, email and groups.
fn token(app: &TestApp, user: &str, email: Option<&str>, groups: &[&str]) -> String {
    control::auth::dev_token(&app.cfg.auth, user, email, groups, 3600, common::now_s()).unwrap()
}

async fn call_as(app: &TestApp, bearer: &str, path: &str, body: Value) -> (u16, Value) {
    app.post_as(bearer, path, body).await
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn trail(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, records) = app.get(&format!("/v1/audit?{query}&limit=1000"), "ada").await;
    assert_eq!(status, 200, "{records}");
    records.as_array().unwrap().clone()
}

fn refusal_codes(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["action"].as_str().is_some_and(|a| a.ends_with(".refused")))
        .map(|r| {
            format!(
                "{}:{}",
                r["channel"].as_str().unwrap_or("-"),
                r["details"]["code"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

// --- look-alike identities -------------------------------------------------

async fn usernames_differing_in_case_or_width_are_one_person(app: &TestApp) {
    // user_claim = preferred_username: compared case- and NFKC-folded.
    let alice = token(app, "alice", Some("alice@example.com"), &["dev"]);
    let (status, req) = call_as(
        app,
        &alice,
        "/v1/requests",
        json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
               "duration_seconds": 600, "reason": "INC-1"}),
    )
    .await;
    assert_eq!(status, 201, "{req}");
    let r = id(&req);
    for look_alike in [
        "Alice",
        "ALICE",
        "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
        "A\u{ff2c}ice",
    ] {
        // Another email, and in the approver group: only the user id links them.
        let t = token(
            app,
            look_alike,
            Some("someone.else@example.com"),
            &["payments-approvers"],
        );
        let (status, body) = call_as(app, &t, &format!("/v1/requests/{r}/approve"), json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("self_approval")),
            "{look_alike:?}: {body}"
        );
    }
    assert_eq!(app.count("votes").await, 0);
    // The canonical form is what is stored and shown.
    let shouty = token(app, "BOB", Some("Bob@Example.com"), &["payments-approvers"]);
    let (status, body) = call_as(app, &shouty, &format!("/v1/requests/{r}/approve"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["votes"][0]["approver"], "bob");
    assert_eq!(body["requester"], "alice");
}

async fn an_approver_sharing_the_requesters_email_is_refused(app: &TestApp) {
    // user_claim = sub (opaque, compared exactly): a different sub with the
    // requester's email, in another case or with a +tag, is still her.
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    for email in [
        "alice@example.com",
        "Alice@EXAMPLE.com",
        "alice+jit@example.com",
        "\u{ff41}lice@example.com",
    ] {
        let t = token(app, "user-7f3a", Some(email), &["payments-approvers"]);
        let (status, body) = call_as(app, &t, &format!("/v1/requests/{r}/approve"), json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("self_approval")),
            "{email}: {body}"
        );
    }
    // An opaque sub differing only in case is another user, but here the
    // email gives her away too.
    let t = token(app, "Alice", Some("alice@example.com"), &["payments-approvers"]);
    let (status, body) = call_as(app, &t, &format!("/v1/requests/{r}/approve"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("self_approval")), "{body}");
    // Someone else entirely may approve.
    let (status, body) = app.post(&format!("/v1/requests/{r}/approve"), "bob", json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
}

// --- refusals in the trail ---------------------------------------------------

async fn a_refused_self_approval_is_in_the_requests_trail(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let (status, _) = app.post(&format!("/v1/requests/{r}/approve"), "alice", json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = app.post(&format!("/v1/requests/{r}/cancel"), "bob", json!({})).await;
    assert_eq!(status, 403);
    let records = trail(app, &format!("request_id={r}")).await;
    assert_eq!(
        refusal_codes(&records),
        ["api:self_approval", "api:not_the_requester"],
        "{records:?}"
    );
    assert!(records.iter().all(|x| x["request_id"] == r.as_str()));
}

async fn a_refused_revocation_is_in_the_grants_and_requests_trail(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let (_, body) = app.post(&format!("/v1/requests/{r}/approve"), "bob", json!({})).await;
    let g = body["grant"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(&format!("/v1/grants/{g}/revoke"), "dave", json!({"reason": "mischief"}))
        .await;
    assert!(status == 403 || status == 404, "{status}");
    let by_grant = trail(app, &format!("grant_id={g}")).await;
    assert_eq!(refusal_codes(&by_grant).len(), 1, "{by_grant:?}");
    let by_request = trail(app, &format!("request_id={r}")).await;
    assert_eq!(refusal_codes(&by_request).len(), 1, "{by_request:?}");
}

fn signed_callback(body: &str) -> String {
    let ts = common::now_s();
    format!(
        "t={ts},v1={}",
        hex_hmac(
            CALLBACK_SECRET.as_bytes(),
            &[ts.to_string().as_bytes(), b".", body.as_bytes()]
        )
    )
}

async fn post_callback(app: &TestApp, body: &str) -> u16 {
    app.http
        .post(format!("{}/v1/integrations/callback", app.base))
        .header("x-jitgate-signature", signed_callback(body))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn every_refused_signed_callback_is_audited_with_its_request(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let invalid = json!({"request_id": r, "decision": "maybe", "actor": "UBOB"}).to_string();
    assert_eq!(post_callback(app, &invalid).await, 422);
    let not_a_callback = json!({"request_id": r, "decision": "approve"}).to_string();
    assert_eq!(post_callback(app, &not_a_callback).await, 400);
    let records = trail(app, &format!("request_id={r}")).await;
    assert_eq!(refusal_codes(&records), ["callback:decision_invalid"], "{records:?}");
    let all = trail(app, "action=integration.refused").await;
    assert!(
        refusal_codes(&all).contains(&"callback:invalid_body".to_owned()),
        "{all:?}"
    );
}

async fn a_signed_slack_call_that_is_refused_is_audited(app: &TestApp) {
    let ts = common::now_s();
    let body = "payload=%7B%22nonsense%22%3Atrue%7D";
    let sig = format!(
        "v0={}",
        hex_hmac(
            SLACK_SECRET.as_bytes(),
            &[b"v0:", ts.to_string().as_bytes(), b":", body.as_bytes()]
        )
    );
    let status = app
        .http
        .post(format!("{}/v1/integrations/slack/actions", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 400);
    let all = trail(app, "action=integration.refused").await;
    assert_eq!(refusal_codes(&all), ["slack:slack_action_unknown"], "{all:?}");
}

async fn a_proxy_batch_refused_after_authentication_is_audited_but_a_bad_key_adds_no_record(app: &TestApp) {
    let post = |key: &'static str, body: Value| {
        app.http
            .post(format!("{}/v1/audit/events", app.base))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let before = app.count("audit_log").await;
    let bad_key = post("not-the-ingest-key-000", json!({"proxy": "p", "events": []}))
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 401);
    assert_eq!(
        app.count("audit_log").await,
        before,
        "unauthenticated calls add no per-call record"
    );
    let too_long = "x".repeat(200);
    let refused = post("dev-ingest-key-0123456789", json!({"proxy": too_long, "events": []}))
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let all = trail(app, "action=proxy.refused").await;
    assert_eq!(refusal_codes(&all), ["proxy:event_invalid"], "{all:?}");
}

// --- deceptive text ----------------------------------------------------------

async fn bidi_controls_and_invisible_characters_are_refused_naming_the_field(app: &TestApp) {
    let ask = |reason: &str, ticket: &str| {
        json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
               "duration_seconds": 600, "reason": reason, "ticket": ticket})
    };
    for (reason, ticket, code, field) in [
        ("refund \u{202E}7-CNI", "INC-7", "reason_invalid", "reason"),
        ("refund INC-7", "INC\u{2066}-7\u{2069}", "ticket_invalid", "ticket"),
        ("zero\u{200B}width", "INC-7", "reason_invalid", "reason"),
        ("mark\u{200F}", "INC-7", "reason_invalid", "reason"),
        ("arabic mark \u{061C}", "INC-7", "reason_invalid", "reason"),
    ] {
        let (status, body) = app.post("/v1/requests", "alice", ask(reason, ticket)).await;
        assert_eq!((status, body["code"].as_str()), (422, Some(code)), "{reason:?}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.starts_with(field) && detail.contains("U+"), "{detail}");
    }
    let req = app.request_access("alice", "payments-api", 600).await;
    let (status, body) = app
        .post(
            &format!("/v1/requests/{}/approve", id(&req)),
            "bob",
            json!({"comment": "ok \u{202E}"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("comment_invalid")),
        "{body}"
    );
    assert_eq!(app.count("access_requests").await, 1);
}

async fn text_stored_before_the_rule_is_escaped_in_notifications(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    // As if stored by an earlier version that did not refuse it.
    sqlx::query("UPDATE access_requests SET reason = $1 WHERE id = $2")
        .bind("refund \u{202E}7-CNI")
        .bind(r.clone())
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    let (status, _) = app.post(&format!("/v1/requests/{r}/approve"), "bob", json!({})).await;
    assert_eq!(status, 200);
    let rows = sqlx::query("SELECT target, payload FROM outbox WHERE request_id = $1 AND event = 'request.approved'")
        .bind(r.clone())
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "webhook and slack");
    for row in rows {
        let payload: String = row.try_get("payload").unwrap();
        let decoded: Value = serde_json::from_str(&payload).unwrap();
        let text = decoded.to_string();
        assert!(!text.contains('\u{202E}'), "{text}");
        assert!(text.contains("refund <U+202E>7-CNI"), "{text}");
    }
}

fn with_targets(c: String) -> String {
    format!(
        "{c}\n[[notify.targets]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         secret = {{ value = \"webhook-secret-0123456789\" }}\n\n[[notify.targets]]\nname = \"chat\"\nkind = \"slack\"\n\
         url = \"http://127.0.0.1:9/slack\"\n"
    )
}

macro_rules! on_both_with {
    ($edit:expr => $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = super::app(super::Backend::Sqlite, $edit).await.unwrap();
                super::$name(&app).await;
                app.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(app) = super::app(super::Backend::Postgres, $edit).await {
                    super::$name(&app).await;
                    app.finish().await;
                }
            }
        }
    )*};
}

on_both_with!(|c: String| c.replace("user_claim = \"sub\"", "user_claim = \"preferred_username\"") =>
    usernames_differing_in_case_or_width_are_one_person,
);

on_both_with!(|c: String| c =>
    an_approver_sharing_the_requesters_email_is_refused,
    a_refused_self_approval_is_in_the_requests_trail,
    a_refused_revocation_is_in_the_grants_and_requests_trail,
    every_refused_signed_callback_is_audited_with_its_request,
    a_signed_slack_call_that_is_refused_is_audited,
    a_proxy_batch_refused_after_authentication_is_audited_but_a_bad_key_adds_no_record,
    bidi_controls_and_invisible_characters_are_refused_naming_the_field,
);

on_both_with!(super::with_targets =>
    text_stored_before_the_rule_is_escaped_in_notifications,
);
