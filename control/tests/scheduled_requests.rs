//! Scheduled requests (`starts_at`), on SQLite and PostgreSQL: approved
//! ahead of their start, their grant's window opens at the start (`nbf`,
//! and `iat`, so every proxy's lifetime bound holds) and runs the
//! requested duration from it; what is refused (a start in the past, too
//! far ahead, break-glass, an extension before the window opens) stores
//! nothing; the requester's groups are recorded for approvers.

mod common;

use common::TestApp;
use control::clock::Clock;
use grant::Outcome;
use serde_json::{json, Value};

/// A read request by Alice for `seconds`, starting at `starts_at`.
fn scheduled(starts_at: Value, seconds: u64) -> Value {
    json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
           "duration_seconds": seconds, "starts_at": starts_at, "reason": "month-end close", "ticket": "CHG-9"})
}

async fn token_of(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/requests/{id}/grant"), "alice").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn a_request_approved_ahead_gets_a_grant_that_opens_at_its_start(app: &TestApp) {
    let now = app.clock.now_s();
    let start = now + 3 * 3600;
    let (status, created) = app.post("/v1/requests", "alice", scheduled(json!(start), 1800)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["starts_at"], start);
    assert_eq!(created["state"], "pending");
    assert_eq!(created["requester_groups"], json!(["dev"]), "{created}");
    // Approvers have the pending timeout from the start, within the window.
    assert_eq!(created["pending_until"], (start + 1800 - 60) * 1000);
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    let approved_by = app.clock.now_s();
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "approved");
    let g = &approved["grant"];
    // Signed at approval (a loaded machine may cross a second boundary
    // between reading `now` and approving).
    let issued = g["issued_at"].as_i64().unwrap_or_default();
    assert!((now..=approved_by).contains(&issued), "{g}");
    assert_eq!(
        (g["not_before"].as_i64(), g["expires_at"].as_i64()),
        (Some(start), Some(start + 1800))
    );

    // The token can be fetched ahead; proxies refuse it until the start.
    let t = token_of(app, &id).await;
    assert_eq!(t["not_before"], start);
    let token = t["token"].as_str().unwrap();
    let verifier = grant::Verifier::new("jit-control", app.cfg.keys.clone());
    let at = |s: i64| verifier.verify(token.as_bytes(), s as u64).map(|_| ());
    assert_eq!(at(now), Err(Outcome::GrantNotYetValid));
    assert_eq!(
        at(start - 31),
        Err(Outcome::GrantNotYetValid),
        "30 s of leeway, no more"
    );
    assert_eq!(at(start), Ok(()));
    assert_eq!(at(start + 1799), Ok(()));
    let claims = verifier.verify(token.as_bytes(), start as u64).unwrap();
    assert_eq!(
        (claims.iat(), claims.nbf(), claims.exp()),
        (start as u64, start as u64, (start + 1800) as u64)
    );

    // The audit log says when it was scheduled for and when it opens.
    let (_, audit) = app.get(&format!("/v1/audit?request_id={id}"), "ada").await;
    let records = audit.as_array().unwrap();
    let created = records.iter().find(|r| r["action"] == "request.created").unwrap();
    assert_eq!(created["details"]["starts_at"], start);
    assert_eq!(created["details"]["requester_groups"], json!(["dev"]));
    let issued = records.iter().find(|r| r["action"] == "grant.issued").unwrap();
    assert_eq!(issued["details"]["not_before"], start);
}

async fn a_request_approved_after_its_start_keeps_its_scheduled_end(app: &TestApp) {
    let start = app.clock.now_s() + 600;
    let (_, created) = app.post("/v1/requests", "alice", scheduled(json!(start), 1800)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.clock.advance(600 + 300);
    let approving = app.clock.now_s();
    let (status, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(status, 200, "{approved}");
    let approved_by = app.clock.now_s();
    let g = &approved["grant"];
    let opens = g["not_before"].as_i64().unwrap_or_default();
    assert!((approving..=approved_by).contains(&opens), "opens at approval: {g}");
    assert_eq!(g["expires_at"].as_i64(), Some(start + 1800));
}

async fn a_scheduled_request_nobody_decides_times_out_before_its_window_is_spent(app: &TestApp) {
    let start = app.clock.now_s() + 60;
    let (_, created) = app.post("/v1/requests", "alice", scheduled(json!(start), 600)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // 60 s to the start, then until a minimum-length grant (60 s) is left.
    app.clock.advance(60 + 600 - 60 + 1);
    let (_, body) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    assert_eq!(body["state"], "timed_out", "{body}");
    let (status, body) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("request_timed_out")),
        "{body}"
    );
}

async fn a_start_that_is_past_too_far_ahead_or_break_glass_is_refused_and_stores_nothing(app: &TestApp) {
    let before = app.count("access_requests").await;
    let now = app.clock.now_s();
    for (starts_at, why) in [
        (json!(now - 10), "in the past"),
        (json!(now), "now"),
        (json!(now + 30 * 86_400 + 60), "beyond grants.max_start_ahead_seconds"),
    ] {
        let (status, body) = app.post("/v1/requests", "alice", scheduled(starts_at, 600)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("starts_at_invalid")),
            "{why}: {body}"
        );
        assert!(body["detail"].as_str().unwrap().starts_with("starts_at:"), "{body}");
    }
    // Oscar may break the glass, but not for later.
    let mut bg = scheduled(json!(now + 600), 600);
    bg["break_glass"] = json!(true);
    let (status, body) = app.post("/v1/requests", "oscar", bg).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("starts_at_invalid")),
        "{body}"
    );
    // Not an integer: the field is named.
    let (status, body) = app
        .post("/v1/requests", "alice", scheduled(json!(now as f64 + 600.5), 600))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "starts_at", "{body}");
    let (status, body) = app
        .post("/v1/requests", "alice", scheduled(json!("tomorrow"), 600))
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("starts_at")),
        "{body}"
    );
    assert_eq!(app.count("access_requests").await, before);
}

async fn a_grant_is_extended_only_once_its_window_has_opened(app: &TestApp) {
    let start = app.clock.now_s() + 3600;
    let (_, created) = app.post("/v1/requests", "alice", scheduled(json!(start), 1800)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    let more = json!({"duration_seconds": 3600, "reason": "close takes longer"});
    let (status, body) = app
        .post(&format!("/v1/requests/{id}/extend"), "alice", more.clone())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("grant_not_started")),
        "{body}"
    );
    app.clock.advance(3600 + 60);
    let (status, body) = app.post(&format!("/v1/requests/{id}/extend"), "alice", more).await;
    assert_eq!(status, 201, "{body}");
}

async fn an_unscheduled_request_says_so_and_opens_at_approval(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    assert_eq!(created["starts_at"], Value::Null);
    let id = created["id"].as_str().unwrap();
    let (_, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(approved["grant"]["not_before"], approved["grant"]["issued_at"]);
}

on_both!(a_request_approved_ahead_gets_a_grant_that_opens_at_its_start);
on_both!(a_request_approved_after_its_start_keeps_its_scheduled_end);
on_both!(a_scheduled_request_nobody_decides_times_out_before_its_window_is_spent);
on_both!(a_start_that_is_past_too_far_ahead_or_break_glass_is_refused_and_stores_nothing);
on_both!(a_grant_is_extended_only_once_its_window_has_opened);
on_both!(an_unscheduled_request_says_so_and_opens_at_approval);
