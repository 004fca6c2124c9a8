//! The API's contract at its edges: authentication before any body is
//! read, every error a problem document with a stable code that names the
//! field, and unauthenticated calls that cannot grow the audit log.

mod common;

use common::{Backend, TestApp};
use serde_json::{json, Value};

const CALLBACK_SECRET: &str = "callback-secret-0123456789";

async fn app() -> TestApp {
    common::spawn_app_with(Backend::Sqlite, |config| {
        let at = config.find("[grants]").unwrap();
        let integrations = format!("[integrations]\ncallback_secret = {{ value = \"{CALLBACK_SECRET}\" }}\n\n");
        format!("{}{integrations}{}", &config[..at], &config[at..])
    })
    .await
    .unwrap()
}

/// Sends a raw request; returns status, content type, headers and body.
async fn send(req: reqwest::RequestBuilder) -> (u16, String, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        ct,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_unauthenticated_decision_batch_is_401_whatever_its_body() {
    let app = app().await;
    for (content_type, body) in [
        ("application/json", "garbage{".to_owned()),
        ("text/plain", "x".repeat(100_000)),
        ("application/json", json!({"proxy": "p", "events": []}).to_string()),
    ] {
        let req = app
            .http
            .post(format!("{}/v1/audit/events", app.base))
            .header("content-type", content_type)
            .body(body);
        let (status, ct, _, problem) = send(req).await;
        assert_eq!((status, ct.as_str()), (401, "application/problem+json"), "{problem}");
        assert_eq!(problem["code"], "ingest_key_invalid");
    }
    app.finish().await;
}

#[tokio::test]
async fn an_unsigned_callback_is_refused_before_its_body_is_read() {
    let app = app().await;
    // Larger than max_body_bytes: reading it first would answer 413.
    let req = app
        .http
        .post(format!("{}/v1/integrations/callback", app.base))
        .header("content-type", "application/json")
        .body("x".repeat(200_000));
    let (status, _, _, problem) = send(req).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("callback_signature_invalid"))
    );
    app.finish().await;
}

#[tokio::test]
async fn a_bad_query_value_is_a_problem_naming_the_parameter() {
    let app = app().await;
    for (path, field) in [
        ("/v1/audit?limit=abc", "limit"),
        ("/v1/audit?limit=0", "limit"),
        ("/v1/audit?after=-1", "after"),
        ("/v1/requests?state=bogus", "state"),
        ("/v1/requests?mine=perhaps", "mine"),
        ("/v1/requests?stat=pending", "stat"),
    ] {
        let req = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(app.token("ada"));
        let (status, ct, _, problem) = send(req).await;
        assert_eq!(
            (status, ct.as_str()),
            (400, "application/problem+json"),
            "{path}: {problem}"
        );
        assert_eq!(problem["code"], "invalid_query", "{path}");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_known_state_filters_the_list() {
    let app = app().await;
    app.request_access("alice", "payments-api", 600).await;
    let (status, pending) = app.get("/v1/requests?state=pending", "alice").await;
    assert_eq!((status, pending.as_array().map(Vec::len)), (200, Some(1)));
    let (status, denied) = app.get("/v1/requests?state=denied", "alice").await;
    assert_eq!((status, denied.as_array().map(Vec::len)), (200, Some(0)));
    app.finish().await;
}

#[tokio::test]
async fn a_method_an_endpoint_does_not_serve_gets_a_problem_and_allow() {
    let app = app().await;
    let req = app
        .http
        .delete(format!("{}/v1/requests", app.base))
        .bearer_auth(app.token("alice"));
    let (status, ct, headers, problem) = send(req).await;
    assert_eq!((status, ct.as_str()), (405, "application/problem+json"));
    assert_eq!(problem["code"], "method_not_allowed");
    let allow = headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    app.finish().await;
}

#[tokio::test]
async fn a_type_error_in_a_body_names_the_field() {
    let app = app().await;
    let (status, problem) = app
        .post(
            "/v1/requests",
            "alice",
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
                   "duration_seconds": "600", "reason": "INC-1"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_body")),
        "{problem}"
    );
    assert_eq!(
        problem["errors"],
        json!([{"field": "duration_seconds", "detail": "expected an integer"}])
    );
    assert_eq!(problem["detail"], "duration_seconds: expected an integer");
    let (status, problem) = app
        .post(
            "/v1/requests",
            "alice",
            json!({"resource": "payments-api", "scope": [{"methods": "GET", "paths": ["/v1/invoices/*"]}],
                   "duration_seconds": 600, "reason": "INC-1"}),
        )
        .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (400, Some("scope[0].methods"))
    );
    app.finish().await;
}

#[tokio::test]
async fn a_json_array_is_not_taken_for_the_object() {
    let app = app().await;
    let (status, problem) = app
        .post(
            "/v1/requests",
            "alice",
            json!(["payments-api", [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], 600, "INC-1", null, null, false]),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_body")),
        "{problem}"
    );
    assert_eq!(app.count("access_requests").await, 0);
    app.finish().await;
}

#[tokio::test]
async fn unauthenticated_calls_are_counted_each_but_audited_once_per_source_and_reason() {
    let app = app().await;
    let before = app.count("audit_log").await;
    for _ in 0..40 {
        let (status, _) = app.call(reqwest::Method::GET, "/v1/requests", None, None).await;
        assert_eq!(status, 401);
    }
    for _ in 0..10 {
        let (status, _) = app.call(reqwest::Method::GET, "/v1/revocations", None, None).await;
        assert_eq!(status, 401);
    }
    // An unsigned callback is as anonymous as a missing login.
    for _ in 0..5 {
        let req = app
            .http
            .post(format!("{}/v1/integrations/callback", app.base))
            .header("content-type", "application/json")
            .body("{}");
        assert_eq!(send(req).await.0, 401);
    }
    assert_eq!(
        app.count("audit_log").await,
        before,
        "nothing written on the request path"
    );
    assert_eq!(app.app.metrics.auth_failures.get(), 55, "every failure counted");
    // The window closes; the sweeper (here called directly) writes one
    // record per source and reason, with the count.
    app.clock.advance(control::api::auth_failures::WINDOW_MS / 1000);
    assert_eq!(control::api::auth_failures::flush(&app.app, false).await.unwrap(), 3);
    let (_, records) = app.get("/v1/audit?action=auth.failed", "ada").await;
    let mut counts: Vec<(Value, Value)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["details"]["code"].clone(), r["details"]["count"].clone()))
        .collect();
    counts.sort_by_key(|(code, _)| code.to_string());
    assert_eq!(
        counts,
        vec![
            (json!("auth_missing"), json!(40)),
            (json!("callback_signature_invalid"), json!(5)),
            (json!("ingest_key_invalid"), json!(10))
        ]
    );
    assert_eq!(records[0]["details"]["source"], "127.0.0.1");
    app.finish().await;
}

#[tokio::test]
async fn a_null_or_empty_decision_body_means_no_comment() {
    let app = app().await;
    let first = app.request_access("alice", "hr-api", 600).await;
    let id = first["id"].as_str().unwrap().to_owned();
    // `null` as the whole body, and an empty comment: both "no comment".
    let req = app
        .http
        .post(format!("{}/v1/requests/{id}/approve", app.base))
        .bearer_auth(app.token("dave"))
        .header("content-type", "application/json")
        .body("null");
    let (status, _, _, body) = send(req).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(&format!("/v1/requests/{id}/approve"), "erin", json!({"comment": "  "}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "approved");
    let comments: Vec<&Value> = body["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["comment"])
        .collect();
    assert_eq!(comments, [&Value::Null, &Value::Null]);
    // A comment that is there must still be valid text.
    let second = app.request_access("alice", "payments-api", 600).await;
    let (status, body) = app
        .post(
            &format!("/v1/requests/{}/deny", second["id"].as_str().unwrap()),
            "bob",
            json!({"comment": "x".repeat(2001)}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("comment_invalid")));
    app.finish().await;
}

#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_is_a_problem_naming_it() {
    let app = app().await;
    for path in ["/v1/requests/%FF", "/v1/requests/%FF/grant", "/v1/grants/%C3%28/revoke"] {
        let method = if path.ends_with("revoke") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let req = app
            .http
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(app.token("bob"))
            .json(&json!({"reason": "x"}));
        let (status, ct, _, problem) = send(req).await;
        assert_eq!(
            (status, ct.as_str()),
            (400, "application/problem+json"),
            "{path}: {problem}"
        );
        assert_eq!(problem["code"], "invalid_path");
        assert_eq!(problem["errors"][0]["field"], "id", "{path}");
    }
    app.finish().await;
}
