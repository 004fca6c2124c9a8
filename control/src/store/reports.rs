//! The `report_cursors` table: per proxy reporter (`proxy`, `instance`),
//! the last decision batch written, so that a batch sent again after a
//! lost acknowledgement is written once.

use sqlx::{AnyConnection, AnyPool};

/// How long a reporter that sent nothing is remembered: a batch resent
/// after this long would be written again. Reporters retry every 30 s at
/// most, so only one cut off from the service for 30 days could.
pub const RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Records batch `seq` of a reporter inside the caller's transaction; false
/// if that batch (or a later one) was already written. A reporter forms a
/// batch only after the previous one was acknowledged, so anything at or
/// below the last written `seq` is a repeat. The conditional upsert locks
/// the reporter's row: two deliveries of one batch racing on PostgreSQL
/// wait for each other and the second finds it written.
pub async fn claim(
    conn: &mut AnyConnection,
    proxy: &str,
    instance: &str,
    seq: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO report_cursors (proxy, instance, last_seq, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (proxy, instance) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at \
         WHERE report_cursors.last_seq < excluded.last_seq",
    )
    .bind(proxy.to_owned())
    .bind(instance.to_owned())
    .bind(seq)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets reporters that wrote nothing since `before_ms` (a proxy worker
/// that restarted reports under a new instance); returns how many.
pub async fn prune(pool: &AnyPool, before_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM report_cursors WHERE updated_at < $1")
        .bind(before_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
