//! The audit log's Merkle tree as the service stores it, on SQLite and
//! PostgreSQL: after appends of every batch size, the root read from stored
//! nodes is the RFC 9162 root of the records' leaves recomputed from their
//! rows, every proof read from stored nodes verifies, and a log that
//! predates the tree gets one at start.

mod common;

use control::audit::merkle;
use control::audit::{self, Entry};
use control::store;
use serde_json::json;
use sqlx::Row;

use common::TestApp;

fn entry(i: usize) -> Entry {
    Entry {
        actor: format!("user{i}"),
        action: "proxy.allow".into(),
        resource: Some("payments-api".into()),
        request_id: None,
        grant_id: None,
        channel: Some("proxy".into()),
        details: json!({"i": i}),
    }
}

/// Every record's leaf, recomputed from the rows.
async fn leaves(app: &TestApp) -> Vec<merkle::Hash> {
    let rows = store::audit::range(&app.app.db.pool, 1, i64::MAX, i64::MAX)
        .await
        .unwrap();
    rows.iter().map(audit::leaf_of_row).collect()
}

fn root_of(leaves: &[merkle::Hash]) -> merkle::Hash {
    let mut appender = merkle::Appender::new(0, Vec::new()).unwrap();
    leaves.iter().for_each(|l| appender.push(*l, &mut Vec::new()));
    appender.root()
}

async fn stored_roots_and_proofs_match_the_records_after_every_batch_size(app: &TestApp) {
    let db = &app.app.db;
    let already = leaves(app).await.len();
    let mut n = 0;
    for batch in [1usize, 2, 3, 1, 7, 16, 1, 450, 5] {
        let entries: Vec<Entry> = (n..n + batch).map(entry).collect();
        audit::append_alone(db, 1_700_000_000_000, &entries).await.unwrap();
        n += batch;
        let leaves = leaves(app).await;
        assert_eq!(leaves.len(), already + n);
        let size = leaves.len() as u64;
        let root = control::audit::tree::root(db, size).await.unwrap();
        assert_eq!(root, root_of(&leaves), "root at size {size}");
    }
    let leaves = leaves(app).await;
    let size = leaves.len() as u64;
    let root = root_of(&leaves);
    for seq in [1, 2, size / 2, size - 1, size] {
        let proof = control::audit::tree::inclusion_proof(db, seq, size).await.unwrap();
        assert!(merkle::verify_inclusion(
            seq - 1,
            size,
            &leaves[seq as usize - 1],
            &proof,
            &root
        ));
    }
    for old in [1, 3, 4, size / 3, size - 1] {
        let proof = control::audit::tree::consistency_proof(db, old, size).await.unwrap();
        let old_root = root_of(&leaves[..old as usize]);
        assert!(
            merkle::verify_consistency(old, size, &old_root, &root, &proof),
            "{old} -> {size}"
        );
    }
    // Appends are serialized by the head lock: one leaf per record, no gaps.
    let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_tree WHERE level = 0")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64, _>("n").unwrap() as u64, size);
}

on_both!(stored_roots_and_proofs_match_the_records_after_every_batch_size);

#[tokio::test]
async fn a_log_written_before_the_tree_gets_one_at_start() {
    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let db = &app.app.db;
    let entries: Vec<Entry> = (0..37).map(entry).collect();
    audit::append_alone(db, 1_700_000_000_000, &entries).await.unwrap();
    // As a log from before migration 0004: no tree at all.
    sqlx::query("DROP TRIGGER audit_tree_no_delete")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_tree").execute(&db.pool).await.unwrap();
    assert!(control::audit::tree::root(db, 37).await.is_err());
    assert_eq!(control::audit::tree::catch_up(db).await.unwrap(), 37);
    let leaves = leaves(&app).await;
    assert_eq!(control::audit::tree::root(db, 37).await.unwrap(), root_of(&leaves));
    audit::append_alone(db, 1_700_000_000_000, &[entry(99)]).await.unwrap();
    let leaves = self::leaves(&app).await;
    assert_eq!(control::audit::tree::root(db, 38).await.unwrap(), root_of(&leaves));
    app.finish().await;
}

/// Two replicas (two connection pools) on one PostgreSQL appending at once:
/// the head lock serializes them, so the tree has one leaf per record, in
/// seq order, and its root is the records' root: it never forks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_appending_at_once_never_fork_the_tree() {
    let Some(app) = common::spawn_app(common::Backend::Postgres).await else {
        return;
    };
    let replica = control::store::Db::connect(&app.cfg.database_url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let db = if i % 2 == 0 {
            app.app.db.clone()
        } else {
            replica.clone()
        };
        tasks.push(tokio::spawn(async move {
            let entries: Vec<Entry> = (0..1 + i % 4).map(|k| entry(i * 10 + k)).collect();
            audit::append_alone(&db, 1_700_000_000_000, &entries).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let leaves = leaves(&app).await;
    let size = leaves.len() as u64;
    assert_eq!(
        control::audit::tree::root(&app.app.db, size).await.unwrap(),
        root_of(&leaves)
    );
    let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_tree WHERE level = 0")
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64, _>("n").unwrap() as u64, size);
    replica.pool.close().await;
    app.finish().await;
}
