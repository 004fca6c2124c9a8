//! `GET /v1/requests` reads a page in a fixed number of queries, not two
//! per row (issue 12). Counted from sqlx's own statement log (one event per
//! statement, target `sqlx::query`), in a test binary of its own so that no
//! other test's statements are counted.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Backend, TestApp};
use tracing_subscriber::layer::SubscriberExt;

static STATEMENTS: AtomicUsize = AtomicUsize::new(0);

struct CountStatements;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

const ROWS: usize = 30;

async fn statements_for_one_page(app: &TestApp) -> usize {
    for _ in 0..ROWS {
        app.request_access("alice", "payments-api", 600).await;
    }
    let before = STATEMENTS.load(Ordering::SeqCst);
    let (status, body) = app.get("/v1/requests?mine=true", "alice").await;
    let after = STATEMENTS.load(Ordering::SeqCst);
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), ROWS);
    after - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_requests_takes_a_fixed_number_of_queries_per_page() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CountStatements)).unwrap();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = common::spawn_app(backend).await else {
            continue;
        };
        let n = statements_for_one_page(&app).await;
        // One query per table the page shows (requests, votes, grants);
        // a background sweep may add a few, never one per row.
        assert!(n <= 10, "{backend:?}: {n} statements for a page of {ROWS} requests");
        app.finish().await;
    }
}
