//! The audit tables' rows and SQL: the log (`audit_log`) and its chain
//! head (`audit_head`), the Merkle tree's stored nodes (`audit_tree`), the
//! signed checkpoints (`audit_checkpoints`) and where the last
//! verification ended (`audit_verified`).
//!
//! Nothing here hashes, chains or judges: `crate::audit` computes every
//! hash and decides what is intact, and hands these functions the values
//! to write. Rows are returned as stored (the `details` text unparsed), so
//! that verification hashes exactly the bytes the database holds.

use sqlx::{AnyConnection, Executor, Row};

use crate::store::Db;

/// One record of the log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// Resource.
    pub resource: Option<String>,
    /// Access request.
    pub request_id: Option<String>,
    /// Grant.
    pub grant_id: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Details, as the JSON text stored.
    pub details: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

const SELECT: &str =
    "SELECT seq, at, actor, action, resource, request_id, grant_id, channel, details, prev_hash, hash FROM audit_log";

fn decode(row: &sqlx::any::AnyRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        request_id: row.try_get("request_id")?,
        grant_id: row.try_get("grant_id")?,
        channel: row.try_get("channel")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Reserves `n` seqs by advancing the chain head, which locks its row
/// until the caller's transaction ends (SQLite: the database write lock;
/// PostgreSQL: the row lock), so appends are serialized everywhere.
/// Returns the new head's seq and the hash it held (the last record's).
pub async fn advance_head(conn: &mut AnyConnection, n: i64) -> Result<(i64, String), sqlx::Error> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
    Ok((head.try_get("seq")?, head.try_get("hash")?))
}

/// The chain head: the last seq and its hash (committed records only).
pub async fn head(conn: &mut AnyConnection) -> Result<(i64, String), sqlx::Error> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    Ok((head.try_get("seq")?, head.try_get("hash")?))
}

/// Inserts records. The head's hash follows the last one through the
/// `audit_log_head_follows` trigger (migration 0003), in the insert itself.
pub async fn insert(conn: &mut AnyConnection, rows: &[AuditRow]) -> Result<(), sqlx::Error> {
    const CHUNK: usize = 400;
    let sqlite = conn.backend_name() == "SQLite";
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO audit_log (seq, at, actor, action, resource, request_id, grant_id, channel, details, prev_hash, hash) VALUES {}",
            super::values(sqlite, chunk.len(), 11)
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.seq)
                .bind(r.at)
                .bind(r.actor.clone())
                .bind(r.action.clone())
                .bind(r.resource.clone())
                .bind(r.request_id.clone())
                .bind(r.grant_id.clone())
                .bind(r.channel.clone())
                .bind(r.details.clone())
                .bind(r.prev_hash.clone())
                .bind(r.hash.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records `from..=to` in seq order, at most `limit` of them.
pub async fn range<'c, E>(conn: E, from: i64, to: i64, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(&format!("{SELECT} WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3"))
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(decode)
        .collect()
}

/// Record `seq`, if stored.
pub async fn by_seq<'c, E>(conn: E, seq: i64) -> Result<Option<AuditRow>, sqlx::Error>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(&format!("{SELECT} WHERE seq = $1"))
        .bind(seq)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

/// Filters of [`select`]: each `Some` column must equal its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// `request_id`.
    pub request_id: Option<&'a str>,
    /// `grant_id`.
    pub grant_id: Option<&'a str>,
    /// `resource`.
    pub resource: Option<&'a str>,
    /// `actor`.
    pub actor: Option<&'a str>,
    /// `action`.
    pub action: Option<&'a str>,
    /// Only records with a greater seq.
    pub after: i64,
    /// Only records at or after this time (ms).
    pub from_ms: Option<i64>,
    /// Only records before this time (ms).
    pub until_ms: Option<i64>,
    /// At most this many.
    pub limit: i64,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// The records matching `f`.
pub async fn select(db: &Db, f: &Filter<'_>) -> Result<Vec<AuditRow>, sqlx::Error> {
    let mut sql = format!("{SELECT} WHERE seq > $1");
    let mut times: Vec<i64> = Vec::new();
    for (condition, value) in [("at >=", f.from_ms), ("at <", f.until_ms)] {
        if let Some(v) = value {
            times.push(v);
            sql.push_str(&format!(" AND {condition} ${}", times.len() + 1));
        }
    }
    let mut binds: Vec<&str> = Vec::new();
    for (column, value) in [
        ("request_id", f.request_id),
        ("grant_id", f.grant_id),
        ("resource", f.resource),
        ("actor", f.actor),
        ("action", f.action),
    ] {
        if let Some(v) = value {
            binds.push(v);
            sql.push_str(&format!(" AND {column} = ${}", times.len() + binds.len() + 1));
        }
    }
    let order = if f.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(
        " ORDER BY seq {order} LIMIT ${}",
        times.len() + binds.len() + 2
    ));
    let mut query = sqlx::query(&sql).bind(f.after);
    for t in times {
        query = query.bind(t);
    }
    for b in binds {
        query = query.bind(b.to_owned());
    }
    query
        .bind(f.limit)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(decode)
        .collect()
}

/// A stored node of the Merkle tree: (level, index) and its hash as hex.
pub type TreeNode = ((u32, u64), String);

/// The stored nodes among `ids` (absent ones are left out).
pub async fn tree_nodes(conn: &mut AnyConnection, ids: &[(u32, u64)]) -> Result<Vec<TreeNode>, sqlx::Error> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(200) {
        let mut sql = String::from("SELECT level, idx, hash FROM audit_tree WHERE ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2));
        }
        let mut q = sqlx::query(&sql);
        for (level, index) in chunk {
            q = q.bind(i64::from(*level)).bind(*index as i64);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id = (
                row.try_get::<i64, _>("level")? as u32,
                row.try_get::<i64, _>("idx")? as u64,
            );
            found.push((id, row.try_get("hash")?));
        }
    }
    Ok(found)
}

/// Inserts tree nodes, hashes as hex.
pub async fn insert_tree_nodes(conn: &mut AnyConnection, nodes: &[TreeNode]) -> Result<(), sqlx::Error> {
    let sqlite = conn.backend_name() == "SQLite";
    for chunk in nodes.chunks(300) {
        let sql = format!(
            "INSERT INTO audit_tree (level, idx, hash) VALUES {}",
            super::values(sqlite, chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for ((level, index), hash) in chunk {
            q = q.bind(i64::from(*level)).bind(*index as i64).bind(hash.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The number of leaves stored (from the last leaf node, by primary key).
pub async fn tree_size(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    let row = sqlx::query("SELECT MAX(idx) AS last FROM audit_tree WHERE level = 0")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("last")?.map_or(0, |last| last as u64 + 1))
}

/// The stored leaf hashes (hex) of records `from + 1 ..= to`, in order.
pub async fn tree_leaves(db: &Db, from: u64, to: u64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT idx, hash FROM audit_tree WHERE level = 0 AND idx >= $1 AND idx < $2 ORDER BY idx")
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| r.try_get("hash"))
        .collect()
}

/// A stored signed checkpoint: its size, when it was made, its note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it signs.
    pub size: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The signed note.
    pub note: String,
}

fn decode_checkpoint(row: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, sqlx::Error> {
    Ok(StoredCheckpoint {
        size: row.try_get("size")?,
        at: row.try_get("at")?,
        note: row.try_get("note")?,
    })
}

/// The checkpoint of `size` records, or the largest one with `None`.
pub async fn checkpoint<'c, E>(conn: E, size: Option<i64>) -> Result<Option<StoredCheckpoint>, sqlx::Error>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    match size {
        Some(size) => {
            sqlx::query("SELECT size, at, note FROM audit_checkpoints WHERE size = $1")
                .bind(size)
                .fetch_optional(conn)
                .await
        }
        None => {
            sqlx::query("SELECT size, at, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(conn)
                .await
        }
    }?
    .as_ref()
    .map(decode_checkpoint)
    .transpose()
}

/// The checkpoints of sizes `after + 1 ..= to`, smallest first.
pub async fn checkpoints_between(
    conn: &mut AnyConnection,
    after: i64,
    to: i64,
) -> Result<Vec<StoredCheckpoint>, sqlx::Error> {
    sqlx::query("SELECT size, at, note FROM audit_checkpoints WHERE size > $1 AND size <= $2 ORDER BY size")
        .bind(after)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(decode_checkpoint)
        .collect()
}

/// Stores a checkpoint unless one of that size exists (another replica
/// signed it first); whether this call stored it.
pub async fn insert_checkpoint(
    conn: &mut AnyConnection,
    size: i64,
    root_hex: &str,
    at: i64,
    note: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO audit_checkpoints (size, root, at, note) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING",
    )
    .bind(size)
    .bind(root_hex.to_owned())
    .bind(at)
    .bind(note.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Where the last intact verification ended: its seq and hash.
pub async fn last_verified(conn: &mut AnyConnection) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query("SELECT seq, hash FROM audit_verified ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| Ok((r.try_get("seq")?, r.try_get("hash")?)))
        .transpose()
}

/// Remembers that the log verified up to `seq` (whose hash is `hash`).
pub async fn mark_verified(db: &Db, seq: i64, hash: &str, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_verified (seq, hash, at) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING")
        .bind(seq)
        .bind(hash.to_owned())
        .bind(at)
        .execute(&db.pool)
        .await?;
    Ok(())
}
