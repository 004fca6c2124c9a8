//! The scope preview through the API: `POST /v1/preview` (what
//! `jitgate request --dry-run` shows), `GET /v1/requests/{id}`'s `preview`,
//! the webhook and Slack payloads queued for a new request, and the
//! configuration error that names the field; and the per-grant usage kept
//! from ingested proxy decisions (`grant_usage`).

mod common;

use common::{spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};
use sqlx::Row;

fn document() -> String {
    format!("{}/tests/data/openapi/payments.yaml", env!("CARGO_MANIFEST_DIR"))
}

/// payments-api names its OpenAPI document; a webhook and a Slack target
/// take every event (their URL answers nothing: only the queued payloads
/// are read).
fn with_document(config: String) -> String {
    let head = "[[notify.targets]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\
                secret = { value = \"webhook-secret-0123456789\" }\n\n\
                [[notify.targets]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"http://127.0.0.1:9/chat\"\n\n";
    let at = config.find("[grants]").unwrap();
    let config = format!("{}{head}{}", &config[..at], &config[at..]);
    config.replacen(
        "approvals_required = 1\n",
        &format!("approvals_required = 1\nopenapi = {:?}\n", document()),
        1,
    )
}

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, with_document).await
}

fn covered(preview: &Value) -> Vec<String> {
    preview["covered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["method"], c["template"], c["coverage"]).replace('"', ""))
        .collect()
}

async fn scenario(app: &TestApp) {
    // Dry run: what the scope would allow, nothing created.
    let ask = json!({"resource": "payments-api", "scope": [{"methods": ["GET", "HEAD"], "paths": ["/v1/invoices/*", "/v1/reports/**"]}]});
    let (status, body) = app.post("/v1/preview", "alice", ask).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], "payments-api");
    let preview = &body["preview"];
    assert_eq!(
        covered(preview),
        vec!["GET /v1/invoices/{id} all", "GET /v1/reports/{year} all"]
    );
    assert_eq!(preview["total_operations"], 7);
    assert_eq!(preview["not_covered"].as_array().unwrap().len(), 5);
    assert_eq!(
        preview["findings"],
        json!([{"rule": 0, "path": "/v1/reports/**", "kind": "whole_prefix", "prefix": "/v1/reports", "operations": 1}])
    );
    assert_eq!(app.count("access_requests").await, 0);

    // The same checks as a request, with the same codes.
    for (user, ask, status, code) in [
        (
            "bob",
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}]}),
            403,
            "not_a_requester",
        ),
        (
            "alice",
            json!({"resource": "nope", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}]}),
            422,
            "unknown_resource",
        ),
        (
            "alice",
            json!({"resource": "payments-api", "scope": [{"methods": ["DELETE"], "paths": ["/v1/invoices/*"]}]}),
            422,
            "scope_not_allowed",
        ),
        (
            "alice",
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["v1"]}]}),
            422,
            "scope_invalid",
        ),
    ] {
        let (got, body) = app.post("/v1/preview", user, ask).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    }
    let (status, body) = app
        .call(reqwest::Method::POST, "/v1/preview", None, Some(json!({})))
        .await;
    assert_eq!(status, 401, "{body}");

    // A resource without a document: requestable, nothing to preview.
    let (status, body) = app
        .post(
            "/v1/preview",
            "alice",
            json!({"resource": "hr-api", "scope": [{"methods": ["GET"], "paths": ["/v1/employees/*"]}]}),
        )
        .await;
    assert_eq!((status, &body["preview"]), (200, &Value::Null), "{body}");

    // The request carries its preview, and so do the messages about it.
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap();
    let (status, shown) = app.get(&format!("/v1/requests/{id}"), "bob").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["id"], *id);
    assert_eq!(covered(&shown["preview"]), vec!["GET /v1/invoices/{id} all"]);
    let hr = app.request_access("alice", "hr-api", 600).await;
    let (_, shown) = app
        .get(&format!("/v1/requests/{}", hr["id"].as_str().unwrap()), "alice")
        .await;
    assert_eq!(shown["preview"], Value::Null);

    let payload = |target: &'static str| async move {
        let row = sqlx::query(
            "SELECT payload FROM outbox WHERE target = $1 AND event = 'request.created' AND request_id = $2",
        )
        .bind(target)
        .bind(id.to_owned())
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap();
        serde_json::from_str::<Value>(&row.try_get::<String, _>("payload").unwrap()).unwrap()
    };
    let hook = payload("hook").await;
    assert_eq!(hook["preview"], shown_preview(app, id).await);
    let chat = payload("chat").await;
    let text = chat["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(text.starts_with("*What this allows:*\n```Payments API 1.0: 1 of 7 operations allowed\n  + GET /v1/invoices/{id} [getInvoice] One invoice\n"), "{text}");
    assert_eq!(chat["blocks"][3]["type"], "actions");
}

async fn shown_preview(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/requests/{id}"), "alice").await.1["preview"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preview_on_sqlite() {
    let app = app(Backend::Sqlite).await.unwrap();
    scenario(&app).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preview_on_postgres() {
    if let Some(app) = app(Backend::Postgres).await {
        scenario(&app).await;
        app.finish().await;
    }
}

/// Decisions reported by a proxy are counted per grant and documented
/// operation, in the ingest's transaction, adding up across batches.
async fn usage_scenario(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let g = body["grant"]["id"].as_str().unwrap().to_owned();
    let event = |t: i64, method: &str, path: &str, outcome: &str, status: u16| {
        json!({"time_ms": t, "outcome": outcome, "resource": "payments-api", "grant_id": g, "subject": "alice",
               "method": method, "path": path, "status": status})
    };
    for events in [
        vec![
            event(20, "GET", "/v1/invoices/7", "allowed", 200),
            event(10, "GET", "/v1/invoices/8?x=1", "allowed", 200),
        ],
        vec![
            event(30, "GET", "/v1/invoices/9", "allowed", 200),
            event(25, "DELETE", "/v1/invoices/9", "scope_denied", 403),
            event(26, "GET", "/v1/undocumented", "scope_denied", 403),
            json!({"time_ms": 27, "outcome": "grant_missing", "resource": "payments-api", "method": "GET", "path": "/v1/x", "status": 401}),
        ],
    ] {
        let resp = app
            .http
            .post(format!("{}/v1/audit/events", app.base))
            .bearer_auth("dev-ingest-key-0123456789")
            .json(&json!({"proxy": "envoy-1", "events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    }
    let rows = sqlx::query(
        "SELECT method, operation, outcome, calls, first_at, last_at FROM grant_usage WHERE grant_id = $1          ORDER BY method, operation, outcome",
    )
    .bind(g.clone())
    .fetch_all(&app.app.db.pool)
    .await
    .unwrap();
    let rows: Vec<(String, String, String, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("method").unwrap(),
                r.try_get("operation").unwrap(),
                r.try_get("outcome").unwrap(),
                r.try_get("calls").unwrap(),
                r.try_get("first_at").unwrap(),
                r.try_get("last_at").unwrap(),
            )
        })
        .collect();
    let row =
        |m: &str, o: &str, out: &str, n: i64, f: i64, l: i64| (m.to_owned(), o.to_owned(), out.to_owned(), n, f, l);
    assert_eq!(
        rows,
        vec![
            row("DELETE", "/v1/invoices/{id}", "scope_denied", 1, 25, 25),
            row("GET", "/v1/invoices/{id}", "allowed", 3, 10, 30),
            row("GET", "/v1/undocumented", "scope_denied", 1, 26, 26),
        ]
    );
    assert_eq!(
        app.count("grant_usage").await,
        3,
        "decisions without a grant are not usage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_on_sqlite() {
    let app = app(Backend::Sqlite).await.unwrap();
    usage_scenario(&app).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_on_postgres() {
    if let Some(app) = app(Backend::Postgres).await {
        usage_scenario(&app).await;
        app.finish().await;
    }
}

#[test]
fn a_bad_document_is_refused_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "openapi: 2.0\n").unwrap();
    for (path, needle) in [
        (
            bad.display().to_string(),
            "field `openapi` must name version 3.0.x or 3.1.x",
        ),
        ("/nonexistent/api.yaml".to_owned(), "cannot read /nonexistent/api.yaml"),
    ] {
        let text = common::DEV_CONFIG.replacen(
            "approvals_required = 1\n",
            &format!("approvals_required = 1\nopenapi = {path:?}\n"),
            1,
        );
        let e = control::config::Config::parse(&text).unwrap_err();
        assert_eq!(e.field, "resources[0].openapi");
        assert!(e.message.contains(needle), "{}", e.message);
    }
}
