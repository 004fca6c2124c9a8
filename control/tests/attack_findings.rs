//! What an outside attack run found on the control service (issue 13):
//! look-alike identities approving their own request, refusals missing
//! from a request's trail, and text that can deceive an approver. Over
//! HTTP, on SQLite and PostgreSQL.

mod common;

use common::{spawn_app_with, Backend, TestApp};
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

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
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

on_both_with!(|c: String| c =>
    bidi_controls_and_invisible_characters_are_refused_naming_the_field,
);

on_both_with!(super::with_targets =>
    text_stored_before_the_rule_is_escaped_in_notifications,
);
