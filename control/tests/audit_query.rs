//! `GET /v1/audit` filtered by time on SQLite and PostgreSQL: `from_ms`
//! (inclusive) and `until_ms` (exclusive) pick a period, combine with the
//! other filters and with paging, and a negative time is refused naming
//! the field.

mod common;

use common::TestApp;
use control::clock::Clock;

async fn seqs(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, body) = app.get(&format!("/v1/audit?{query}"), "ada").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect()
}

async fn records_are_filtered_by_time(app: &TestApp) {
    app.request_access("alice", "payments-api", 600).await;
    let early = seqs(app, "").await;
    app.clock.advance(3600);
    let later_ms = app.clock.now_ms();
    app.request_access("eve", "payments-api", 600).await;
    let all = seqs(app, "").await;
    assert!(all.len() > early.len());
    let late: Vec<i64> = all.iter().copied().filter(|s| !early.contains(s)).collect();
    assert_eq!(seqs(app, &format!("from_ms={later_ms}")).await, late);
    assert_eq!(seqs(app, &format!("until_ms={later_ms}")).await, early);
    assert_eq!(
        seqs(app, &format!("from_ms={later_ms}&actor=eve&action=request.created"))
            .await
            .len(),
        1
    );
    assert_eq!(
        seqs(app, &format!("from_ms={later_ms}&limit=1")).await,
        late[..1].to_vec(),
        "paging keeps the period"
    );
    assert!(seqs(app, &format!("from_ms={later_ms}&until_ms={later_ms}"))
        .await
        .is_empty());
    for field in ["from_ms", "until_ms"] {
        let (status, body) = app.get(&format!("/v1/audit?{field}=-1"), "ada").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
}

on_both!(records_are_filtered_by_time);
