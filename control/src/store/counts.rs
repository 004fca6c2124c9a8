//! The `decision_counts` table: allowed requests the proxies counted, one
//! row per grant, method, scope rule and status of a reporter's interval.
//! Each row belongs to the `proxy.decisions_counted` audit record that
//! holds the same counts (`batch_seq`, `position`); the audit module
//! decides what a record holds and compares the two.

use sqlx::{AnyConnection, AnyPool, Row};

/// One count as stored (and as `GET /v1/audit/counts` shows it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CountRow {
    /// The grant the requests were allowed under.
    pub grant_id: String,
    /// Its resource, as the proxy reported it.
    pub resource: Option<String>,
    /// The request method.
    pub method: String,
    /// The scope rule that allowed them (index in the grant's scope, from 0).
    pub rule: i64,
    /// The status the upstream answered.
    pub status: i64,
    /// How many requests.
    pub calls: i64,
    /// The first one (ms since the epoch).
    pub first_ms: i64,
    /// The last one.
    pub last_ms: i64,
}

/// A stored count with the record that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCount {
    /// The `proxy.decisions_counted` record.
    pub batch_seq: i64,
    /// The count's place in that record's list, from 0.
    pub position: i64,
    /// The count.
    pub count: CountRow,
}

const COLUMNS: &str = "batch_seq, position, grant_id, resource, method, rule, status, calls, first_ms, last_ms";

/// Stores the counts of record `batch_seq`, in order, inside the caller's
/// transaction (the one that appends the record).
pub async fn insert(conn: &mut AnyConnection, batch_seq: i64, rows: &[CountRow]) -> Result<(), sqlx::Error> {
    const CHUNK: usize = 400;
    let sqlite = conn.backend_name() == "SQLite";
    for (c, chunk) in rows.chunks(CHUNK).enumerate() {
        let sql = format!(
            "INSERT INTO decision_counts ({COLUMNS}) VALUES {}",
            super::values(sqlite, chunk.len(), 10)
        );
        let mut q = sqlx::query(&sql);
        for (i, r) in chunk.iter().enumerate() {
            q = q
                .bind(batch_seq)
                .bind((c * CHUNK + i) as i64)
                .bind(r.grant_id.clone())
                .bind(r.resource.clone())
                .bind(r.method.clone())
                .bind(r.rule)
                .bind(r.status)
                .bind(r.calls)
                .bind(r.first_ms)
                .bind(r.last_ms);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn decode(r: &sqlx::any::AnyRow) -> Result<StoredCount, sqlx::Error> {
    Ok(StoredCount {
        batch_seq: r.try_get("batch_seq")?,
        position: r.try_get::<i64, _>("position")?,
        count: CountRow {
            grant_id: r.try_get("grant_id")?,
            resource: r.try_get("resource")?,
            method: r.try_get("method")?,
            rule: r.try_get::<i64, _>("rule")?,
            status: r.try_get::<i64, _>("status")?,
            calls: r.try_get("calls")?,
            first_ms: r.try_get("first_ms")?,
            last_ms: r.try_get("last_ms")?,
        },
    })
}

/// Up to `limit` counts after (`batch_seq`, `position`) = `after`, held by
/// records up to `to`, in record and position order (verification reads
/// them in chunks alongside the records).
pub async fn after(
    conn: &mut AnyConnection,
    after: (i64, i64),
    to: i64,
    limit: i64,
) -> Result<Vec<StoredCount>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM decision_counts \
         WHERE (batch_seq > $1 OR (batch_seq = $1 AND position > $2)) AND batch_seq <= $3 \
         ORDER BY batch_seq, position LIMIT $4"
    ))
    .bind(after.0)
    .bind(after.1)
    .bind(to)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(decode)
    .collect()
}

/// Which grants to read counts of.
#[derive(Debug, Clone, Copy)]
pub enum Of<'a> {
    /// One grant.
    Grant(&'a str),
    /// Every grant of one access request.
    Request(&'a str),
}

/// The counts of a grant or a request's grants recorded after record
/// `after`, oldest first, at most `limit`.
pub async fn select(pool: &AnyPool, of: Of<'_>, after: i64, limit: i64) -> Result<Vec<StoredCount>, sqlx::Error> {
    let (filter, id) = match of {
        Of::Grant(id) => ("grant_id = $1", id),
        Of::Request(id) => ("grant_id IN (SELECT id FROM grants WHERE request_id = $1)", id),
    };
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM decision_counts WHERE {filter} AND batch_seq > $2 \
         ORDER BY batch_seq, position LIMIT $3"
    ))
    .bind(id.to_owned())
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(decode)
    .collect()
}
