//! `GET /v1/insights` from real requests, approvals and ingested proxy
//! decisions, on SQLite and PostgreSQL: who asks often but rarely uses
//! what they get, and how long approvers take per resource (p50, p90;
//! auto-approved requests left out).

mod common;

use common::TestApp;
use serde_json::{json, Value};

/// Alice's request, approved by Bob `wait_s` seconds later; its grant id.
async fn approved_after(app: &TestApp, wait_s: i64) -> String {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap();
    app.clock.advance(wait_s);
    let (status, body) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(status, 200, "{body}");
    body["grant"]["id"].as_str().unwrap().to_owned()
}

async fn used(app: &TestApp, grant: &str, subject: &str) {
    let event = json!({"time_ms": 1, "outcome": "allowed", "resource": "payments-api", "grant_id": grant,
        "subject": subject, "method": "GET", "path": "/v1/invoices/7", "status": 200});
    let resp = app
        .http
        .post(format!("{}/v1/audit/events", app.base))
        .bearer_auth("dev-ingest-key-0123456789")
        .json(&json!({"proxy": "envoy-1", "events": [event]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

async fn requesters_who_rarely_use_grants_and_approval_times_are_reported(app: &TestApp) {
    let first = approved_after(app, 60).await;
    approved_after(app, 600).await;
    approved_after(app, 120).await;
    used(app, &first, "alice").await;
    // Sam's read-only request is auto-approved: not an approver's time.
    let auto = app.request_access("sam", "payments-api", 900).await;
    assert_eq!(auto["state"], "approved", "{auto}");
    let (_, sams) = app
        .get(&format!("/v1/requests/{}", auto["id"].as_str().unwrap()), "sam")
        .await;
    used(app, sams["grant"]["id"].as_str().unwrap(), "sam").await;

    let (status, report) = app.get("/v1/insights?since_s=0", "ada").await;
    assert_eq!(status, 200, "{report}");
    let people: Vec<(String, i64, i64, i64, bool)> = report["requesters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["requester"].as_str().unwrap().to_owned(),
                r["requests"].as_i64().unwrap(),
                r["grants"].as_i64().unwrap(),
                r["used_grants"].as_i64().unwrap(),
                r["rarely_uses"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        people,
        vec![("alice".into(), 3, 3, 1, true), ("sam".into(), 1, 1, 1, false)],
        "{report}"
    );
    assert!(report["requesters"][0]["derived_from"]
        .as_str()
        .unwrap()
        .contains("1 of the grants used"));
    assert_eq!(
        report["approval_times"],
        json!([{"resource": "payments-api", "approver_groups": ["payments-approvers"],
                "approved": 3, "p50_seconds": 120, "p90_seconds": 600}]),
        "{report}"
    );
    // Only admins and auditors read it.
    let (status, body): (u16, Value) = app.get("/v1/insights", "alice").await;
    assert_eq!(status, 403, "{body}");
}

on_both!(requesters_who_rarely_use_grants_and_approval_times_are_reported);
