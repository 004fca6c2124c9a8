//! Decision batches are written exactly once, on SQLite and PostgreSQL: a
//! batch sent again (its acknowledgement lost, or a retry racing the first
//! delivery) is acknowledged as a duplicate and writes no audit record and
//! no usage; the next batch of the reporter, and a restarted reporter (a
//! new instance), are written; a malformed batch id is refused. Requests
//! a proxy counted (`counts`) are one record each, linked to their grant
//! and request, and counted in the grant's usage under their scope rule.

mod common;

use common::TestApp;
use serde_json::{json, Value};

async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    app.post_as("dev-ingest-key-0123456789", "/v1/audit/events", body).await
}

/// A batch of `calls` allowed decisions under `grant`.
fn batch(instance: &str, seq: i64, grant: &str, calls: usize) -> Value {
    let event = json!({"time_ms": 1, "outcome": "allowed", "resource": "payments-api", "grant_id": grant,
        "subject": "alice", "method": "GET", "path": "/v1/invoices/7", "status": 200});
    json!({"proxy": "envoy-1", "batch": {"instance": instance, "seq": seq}, "events": vec![event; calls]})
}

/// Allowed calls counted in the usage behind the insights.
async fn calls(app: &TestApp) -> i64 {
    let (_, body) = app.get("/v1/insights?since_s=0", "ada").await;
    body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["used"].as_array().cloned().unwrap_or_default())
        .map(|u| u["calls"].as_i64().unwrap())
        .sum()
}

async fn a_batch_sent_again_is_written_once(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap();
    let (_, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    let grant = approved["grant"]["id"].as_str().unwrap().to_owned();

    let (status, first) = post(app, batch("a1", 1, &grant, 3)).await;
    assert_eq!(
        (status, first["accepted"].as_i64(), first["duplicate"].as_bool()),
        (202, Some(3), Some(false))
    );
    let records = app.count("audit_log").await;
    // The same batch again (its acknowledgement was lost): acknowledged, not written.
    let (status, again) = post(app, batch("a1", 1, &grant, 3)).await;
    assert_eq!(
        (status, again["accepted"].as_i64(), again["duplicate"].as_bool()),
        (202, Some(0), Some(true))
    );
    assert_eq!(app.count("audit_log").await, records);
    assert_eq!(calls(app).await, 3);

    // The reporter's next batch is written; an older one is a repeat.
    let (_, next) = post(app, batch("a1", 2, &grant, 2)).await;
    assert_eq!(next["accepted"], 2);
    let (_, old) = post(app, batch("a1", 1, &grant, 3)).await;
    assert_eq!(old["duplicate"], true);
    // A restarted worker is a new instance, counting from 1 again.
    let (_, restarted) = post(app, batch("b2", 1, &grant, 1)).await;
    assert_eq!(restarted["accepted"], 1);
    assert_eq!(calls(app).await, 6);
    assert_eq!(app.count("audit_log").await, records + 3);
    let (_, verify) = app.get("/v1/audit/verify", "ada").await;
    assert_eq!(verify["ok"], true, "{verify}");
}

async fn racing_deliveries_of_one_batch_write_it_once(app: &TestApp) {
    let before = app.count("audit_log").await;
    let body = json!({"proxy": "envoy-2", "batch": {"instance": "race", "seq": 1},
        "events": [{"time_ms": 1, "outcome": "grant_missing", "resource": "payments-api", "method": "GET",
                    "path": "/v1/invoices/7", "status": 401}]});
    let deliveries = (0..8).map(|_| post(app, body.clone()));
    let answers = futures_util::future::join_all(deliveries).await;
    assert!(answers.iter().all(|(s, _)| *s == 202), "{answers:?}");
    let written = answers.iter().filter(|(_, a)| a["duplicate"] == false).count();
    assert_eq!(written, 1, "{answers:?}");
    assert_eq!(app.count("audit_log").await, before + 1);
}

async fn a_malformed_batch_id_is_refused_and_batches_without_one_are_written(app: &TestApp) {
    for bad in [
        json!({"instance": "", "seq": 1}),
        json!({"instance": "a b", "seq": 1}),
        json!({"instance": "a", "seq": 0}),
    ] {
        let (status, body) = post(app, json!({"proxy": "p", "batch": bad, "events": []})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("batch_invalid")),
            "{bad}: {body}"
        );
    }
    // Older proxies send no id: every delivery is written, as before.
    let event = json!({"time_ms": 1, "outcome": "grant_missing", "method": "GET", "path": "/", "status": 401});
    for _ in 0..2 {
        let (status, body) = post(app, json!({"proxy": "old", "events": [event]})).await;
        assert_eq!((status, body["accepted"].as_i64()), (202, Some(1)));
    }
}

async fn counted_requests_are_one_batch_record_and_rows_linked_to_their_grant_written_once(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    let grant = approved["grant"]["id"].as_str().unwrap().to_owned();
    let first = json!({"time_ms": 5, "outcome": "allowed", "resource": "payments-api", "grant_id": grant,
        "subject": "alice", "method": "GET", "path": "/v1/invoices/8", "status": 200});
    let mut count = first.clone();
    count["calls"] = json!(41);
    count["first_ms"] = json!(5);
    count["last_ms"] = json!(900);
    count["rule"] = json!(0);
    let mut other = count.clone();
    other["method"] = json!("HEAD");
    other["calls"] = json!(2);
    let body =
        json!({"proxy": "envoy-1", "batch": {"instance": "c1", "seq": 1}, "events": [first], "counts": [count, other]});
    let (status, answer) = post(app, body.clone()).await;
    assert_eq!((status, answer["accepted"].as_i64()), (202, Some(3)), "{answer}");
    let (_, again) = post(app, body).await;
    assert_eq!(again["duplicate"], true);

    // One record holds the batch's counts...
    let (_, records) = app.get("/v1/audit?action=proxy.decisions_counted", "ada").await;
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1, "one record for the batch: {records:?}");
    let record = &records[0];
    assert_eq!(record["details"]["calls"], 43);
    assert_eq!(
        record["details"]["counts"],
        json!([
            [grant, "payments-api", "GET", 0, 200, 41, 5, 900],
            [grant, "payments-api", "HEAD", 0, 200, 2, 5, 900]
        ])
    );
    // ...and the counts are read by request or grant, each naming it.
    let (status, counts) = app.get(&format!("/v1/audit/counts?request_id={id}"), "ada").await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts.as_array().map(Vec::len), Some(2), "{counts}");
    assert_eq!(
        (
            &counts[0]["record"],
            &counts[0]["calls"],
            &counts[0]["grant_id"],
            &counts[0]["last_ms"]
        ),
        (&record["seq"], &json!(41), &json!(grant), &json!(900))
    );
    let (_, by_grant) = app.get(&format!("/v1/audit/counts?grant_id={grant}"), "ada").await;
    assert_eq!(by_grant, counts);
    let (status, refused) = app.get("/v1/audit/counts", "ada").await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("grant_or_request_required")),
        "{refused}"
    );
    let (status, _) = app.get(&format!("/v1/audit/counts?grant_id={grant}"), "alice").await;
    assert_eq!(status, 403);

    // Usage: the recorded request by its path, the counted ones by their rule.
    let (_, report) = app.get("/v1/insights?since_s=0", "ada").await;
    let used = &report["resources"][0]["used"];
    assert_eq!(
        used,
        &json!([{"method": "GET", "operation": "scope rule 1", "calls": 41, "grants": 1},
                {"method": "HEAD", "operation": "scope rule 1", "calls": 2, "grants": 1},
                {"method": "GET", "operation": "/v1/invoices/8", "calls": 1, "grants": 1}]),
        "{report}"
    );
    let (_, verify) = app.get("/v1/audit/verify", "ada").await;
    assert_eq!(verify["ok"], true, "{verify}");
}

async fn a_stored_count_edited_behind_the_service_breaks_verification_at_its_record(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    let grant = approved["grant"]["id"].as_str().unwrap().to_owned();
    let count = json!({"time_ms": 5, "outcome": "allowed", "resource": "payments-api", "grant_id": grant,
        "method": "GET", "path": "/", "status": 200, "calls": 7, "first_ms": 5, "last_ms": 6, "rule": 0});
    // A batch of more counts than verification reads at once, then one.
    let many: Vec<Value> = (0..12_000)
        .map(|i| {
            let mut c = count.clone();
            c["status"] = json!(200 + i % 300);
            c["rule"] = json!(i / 300);
            c
        })
        .collect();
    let body = json!({"proxy": "p", "batch": {"instance": "t", "seq": 1}, "events": [], "counts": many});
    let (status, answer) = post(app, body).await;
    assert_eq!((status, answer["accepted"].as_i64()), (202, Some(12_000)), "{answer}");
    let body = json!({"proxy": "p", "batch": {"instance": "t", "seq": 2}, "events": [], "counts": [count]});
    let (_, answer) = post(app, body).await;
    let seq = answer["last_seq"].as_i64().unwrap();
    let (_, verified) = app.get("/v1/audit/verify?full=true", "ada").await;
    assert_eq!(verified["ok"], true, "{verified}");

    // The database refuses the edit; someone with its keys drops the guard.
    let edit = "UPDATE decision_counts SET calls = 7000 WHERE calls = 7 AND status = 200 AND rule = 0 \
                AND batch_seq = (SELECT MAX(batch_seq) FROM decision_counts)";
    assert!(
        sqlx::query(edit).execute(&app.app.db.pool).await.is_err(),
        "append-only"
    );
    let drop: &[&str] = match app.backend {
        common::Backend::Sqlite => &["DROP TRIGGER decision_counts_no_update"],
        common::Backend::Postgres => &["DROP TRIGGER decision_counts_no_update ON decision_counts"],
    };
    for statement in drop {
        sqlx::query(statement).execute(&app.app.db.pool).await.unwrap();
    }
    sqlx::query(edit).execute(&app.app.db.pool).await.unwrap();
    let (_, broken) = app.get("/v1/audit/verify?full=true", "ada").await;
    assert_eq!(broken["ok"], false, "{broken}");
    assert_eq!(broken["first_broken"]["seq"], seq, "{broken}");
    assert_eq!(
        broken["first_broken"]["reason"],
        "a stored count differs from its record (edited?)"
    );
}

async fn a_count_stored_under_no_record_breaks_verification(app: &TestApp) {
    app.request_access("alice", "payments-api", 600).await;
    // Inserting is not refused by the guard (appends are how counts are
    // written); verification finds a row that no record holds.
    sqlx::query(
        "INSERT INTO decision_counts (batch_seq, position, grant_id, resource, method, rule, status, calls, first_ms, last_ms) \
         VALUES (0, 0, 'g-forged', 'payments-api', 'GET', 0, 200, 1, 1, 1)",
    )
    .execute(&app.app.db.pool)
    .await
    .unwrap();
    let (_, broken) = app.get("/v1/audit/verify?full=true", "ada").await;
    assert_eq!(broken["ok"], false, "{broken}");
    assert_eq!(broken["first_broken"]["seq"], 1, "{broken}");
    assert_eq!(
        broken["first_broken"]["reason"],
        "counts are stored under no record (added?)"
    );
}

async fn counts_without_a_batch_id_or_of_denials_are_refused(app: &TestApp) {
    let count = json!({"time_ms": 5, "outcome": "allowed", "resource": "payments-api", "grant_id": "g-1",
        "method": "GET", "path": "/", "status": 200, "calls": 2, "first_ms": 5, "last_ms": 6, "rule": 0});
    let (status, body) = post(app, json!({"proxy": "p", "events": [], "counts": [count]})).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("count_invalid")), "{body}");
    let mut denied = count.clone();
    denied["outcome"] = json!("grant_revoked");
    let (status, body) = post(
        app,
        json!({"proxy": "p", "batch": {"instance": "d", "seq": 1}, "events": [], "counts": [denied]}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("count_invalid")), "{body}");
    let mut backwards = count;
    backwards["first_ms"] = json!(7);
    let (status, _) = post(
        app,
        json!({"proxy": "p", "batch": {"instance": "d", "seq": 1}, "events": [], "counts": [backwards]}),
    )
    .await;
    assert_eq!(status, 422);
}

on_both!(
    counted_requests_are_one_batch_record_and_rows_linked_to_their_grant_written_once,
    a_stored_count_edited_behind_the_service_breaks_verification_at_its_record,
    a_count_stored_under_no_record_breaks_verification,
    counts_without_a_batch_id_or_of_denials_are_refused,
    a_batch_sent_again_is_written_once,
    racing_deliveries_of_one_batch_write_it_once,
    a_malformed_batch_id_is_refused_and_batches_without_one_are_written
);
