//! Two replicas of the service on one PostgreSQL: racing approvals sent to
//! both still give exactly one grant, and the audit chain never forks.

mod common;

use std::sync::Arc;

use common::{spawn_app, Backend};

#[tokio::test]
async fn approvals_racing_across_two_replicas_give_one_grant_and_one_chain() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    // A second replica: another App on the same database, on its own port.
    let replica = control::App::new(app.cfg.clone(), Arc::new(app.clock.clone()))
        .await
        .expect("replica starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let replica_base = format!("http://{}", listener.local_addr().expect("addr"));
    let served = Arc::clone(&replica);
    let server = tokio::spawn(async move {
        let _ = control::serve(served, listener).await;
    });

    for _ in 0..3 {
        let req = app.request_access("alice", "payments-api", 600).await;
        let r = req["id"].as_str().unwrap().to_owned();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let base = if i % 2 == 0 {
                app.base.clone()
            } else {
                replica_base.clone()
            };
            let token = app.token(if i % 4 < 2 { "bob" } else { "carol" });
            let http = app.http.clone();
            let url = format!("{base}/v1/requests/{r}/approve");
            tasks.push(tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    }
    assert_eq!(app.count("grants").await, 3, "exactly one grant per request");
    let (status, body) = app.get("/v1/audit/verify", "ada").await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true, "the chain forked or broke: {body}");

    server.abort();
    replica.db.pool.close().await;
    app.finish().await;
}
