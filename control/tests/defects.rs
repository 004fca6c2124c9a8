//! Regression tests for defects a review found (issue 12), on SQLite and
//! PostgreSQL: stored rows that do not decode fail closed, `extend` is one
//! transaction, a token fetch checks and reads in one transaction, the
//! audit export is streamed.

mod common;

use common::{Backend, TestApp};
use serde_json::{json, Value};
use sqlx::Row;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn exec(app: &TestApp, sql: &str, bind: &str) {
    sqlx::query(sql)
        .bind(bind.to_owned())
        .execute(&app.app.db.pool)
        .await
        .unwrap();
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let row = sqlx::query(sql).fetch_one(&app.app.db.pool).await.unwrap();
    row.try_get::<i64, _>(0).unwrap()
}

/// A request limited to one address block.
async fn limited_request(app: &TestApp) -> String {
    let (status, body) = app
        .post(
            "/v1/requests",
            "alice",
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
                   "duration_seconds": 600, "reason": "INC-42", "source_cidrs": ["10.0.0.0/8"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    id(&body)
}

async fn undecodable_source_cidrs_fail_closed_instead_of_minting_an_unrestricted_grant(app: &TestApp) {
    let r = limited_request(app).await;
    exec(
        app,
        "UPDATE access_requests SET source_cidrs = '10.0.0.0/8' WHERE id = $1",
        &r,
    )
    .await;
    let (status, body) = app.post(&format!("/v1/requests/{r}/approve"), "bob", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (500, Some("internal_error")), "{body}");
    assert_eq!(app.count("grants").await, 0, "no grant without its source restriction");
    let (status, _) = app.get(&format!("/v1/requests/{r}"), "alice").await;
    assert_eq!(status, 500);
}

async fn undecodable_scope_fails_closed_instead_of_reading_as_empty(app: &TestApp) {
    let r = limited_request(app).await;
    exec(app, "UPDATE access_requests SET scope = '{not json' WHERE id = $1", &r).await;
    let (status, body) = app.get(&format!("/v1/requests/{r}"), "alice").await;
    assert_eq!((status, body["code"].as_str()), (500, Some("internal_error")), "{body}");
    let (status, _) = app.post(&format!("/v1/requests/{r}/approve"), "bob", json!({})).await;
    assert_eq!(status, 500);
    assert_eq!(app.count("grants").await, 0);
}

/// Makes the audit append of an extension fail inside the database.
async fn fail_extension_audit(app: &TestApp) {
    match app.backend {
        Backend::Sqlite => {
            sqlx::query(
                "CREATE TRIGGER fail_extension BEFORE INSERT ON audit_log \
                 WHEN NEW.action = 'request.extension_requested' BEGIN SELECT RAISE(ABORT, 'injected'); END",
            )
            .execute(&app.app.db.pool)
            .await
            .unwrap();
        }
        Backend::Postgres => {
            sqlx::query(
                "CREATE FUNCTION fail_extension() RETURNS trigger AS $$ BEGIN \
                 IF NEW.action = 'request.extension_requested' THEN RAISE EXCEPTION 'injected'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .execute(&app.app.db.pool)
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER fail_extension BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION fail_extension()",
            )
            .execute(&app.app.db.pool)
            .await
            .unwrap();
        }
    }
}

async fn a_failed_extension_leaves_no_new_request_and_one_active_grant(app: &TestApp) {
    // sam's read access is approved at once by the auto-approve rule, and
    // so would be its extension.
    let (status, req) = app
        .post(
            "/v1/requests",
            "sam",
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
                   "duration_seconds": 600, "reason": "INC-42"}),
        )
        .await;
    assert_eq!((status, req["state"].as_str()), (201, Some("approved")), "{req}");
    fail_extension_audit(app).await;
    let (status, body) = app
        .post(
            &format!("/v1/requests/{}/extend", id(&req)),
            "sam",
            json!({"duration_seconds": 600, "reason": "still on it"}),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        app.count("access_requests").await,
        1,
        "the extension is rolled back whole"
    );
    assert_eq!(
        scalar(app, "SELECT COUNT(*) FROM grants WHERE revoked_at IS NULL").await,
        1,
        "never two active grants"
    );
}

async fn a_token_is_never_handed_out_after_its_grant_was_revoked(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let (status, approved) = app.post(&format!("/v1/requests/{r}/approve"), "bob", json!({})).await;
    assert_eq!(status, 200, "{approved}");
    let grant = approved["grant"]["id"].as_str().unwrap().to_owned();
    // On SQLite the pool has one connection: holding it queues the fetch
    // first and the revocation second, so a fetch that checked the state
    // and read the token in two steps lets the revocation in between.
    let held = app.app.db.pool.acquire().await.unwrap();
    let fetch = {
        let (http, url, token) = (
            app.http.clone(),
            format!("{}/v1/requests/{r}/grant", app.base),
            app.token("alice"),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let revoke = {
        let (http, url, token) = (
            app.http.clone(),
            format!("{}/v1/grants/{grant}/revoke", app.base),
            app.token("bob"),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"reason": "incident over"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(held);
    let (fetched, revoked) = (fetch.await.unwrap(), revoke.await.unwrap());
    assert_eq!(revoked, 200);
    let seq_of = |action: &'static str| {
        let pool = app.app.db.pool.clone();
        async move {
            sqlx::query("SELECT seq FROM audit_log WHERE action = $1")
                .bind(action)
                .fetch_optional(&pool)
                .await
                .unwrap()
                .map(|row| row.try_get::<i64, _>("seq").unwrap())
        }
    };
    let revoked_at = seq_of("grant.revoked").await.unwrap();
    match fetched {
        200 => {
            let fetched_at = seq_of("grant.token_fetched").await.unwrap();
            assert!(
                fetched_at < revoked_at,
                "token fetched (audit seq {fetched_at}) after its revocation (seq {revoked_at})"
            );
        }
        409 => assert_eq!(seq_of("grant.token_fetched").await, None),
        other => panic!("fetch answered {other}"),
    }
}

async fn the_audit_export_is_streamed_not_built_in_memory(app: &TestApp) {
    for _ in 0..3 {
        app.request_access("alice", "payments-api", 600).await;
    }
    let resp = app
        .http
        .get(format!("{}/v1/audit/export", app.base))
        .bearer_auth(app.token("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A body built in memory is sent with its length; a stream is chunked.
    assert_eq!(
        resp.content_length(),
        None,
        "the export is sent with a length: built in memory"
    );
    assert_eq!(resp.headers().get("content-type").unwrap(), "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let seqs: Vec<i64> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(seqs.len() as i64, app.count("audit_log").await);
}

on_both!(
    undecodable_source_cidrs_fail_closed_instead_of_minting_an_unrestricted_grant,
    undecodable_scope_fails_closed_instead_of_reading_as_empty,
    a_failed_extension_leaves_no_new_request_and_one_active_grant,
    a_token_is_never_handed_out_after_its_grant_was_revoked,
    the_audit_export_is_streamed_not_built_in_memory,
);
