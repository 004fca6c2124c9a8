//! What "acknowledged" means on SQLite: a commit is synced to disk before
//! the service answers (`synchronous = FULL` in WAL mode), so an
//! acknowledged write survives a power loss, not only a killed process
//! (which the end-to-end fault tests cover: `e2e/tests/faults.rs`).

use control::store::Db;

#[tokio::test]
async fn sqlite_syncs_every_commit_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&db.pool).await.unwrap();
    assert_eq!(journal, "wal");
    // 2 is FULL: the WAL is synced at every commit. NORMAL (1) syncs only
    // at checkpoints, and a power loss can undo acknowledged commits.
    let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(&db.pool).await.unwrap();
    assert_eq!(synchronous, 2, "PRAGMA synchronous on the writer connection");
}
