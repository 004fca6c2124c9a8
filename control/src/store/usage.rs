//! `grant_usage`: per grant, method, operation and outcome, how many
//! proxy decisions and when the first and last were. The insight module
//! decides what is counted under which operation; this writes the sums.

use std::collections::HashSet;

use sqlx::{AnyConnection, AnyPool, Row};

use super::Backend;

/// One usage row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The grant.
    pub grant_id: String,
    /// The resource.
    pub resource: String,
    /// The request method.
    pub method: String,
    /// The operation's template, or the path.
    pub operation: String,
    /// The decision's outcome code (`allowed`, `scope_denied`, ...).
    pub outcome: String,
    /// Decisions counted.
    pub calls: i64,
    /// The first one, in milliseconds since the epoch.
    pub first_at: i64,
    /// The last one.
    pub last_at: i64,
}

/// Adds `rows` to the stored sums (one upsert each), inside the caller's
/// transaction.
pub async fn add(conn: &mut AnyConnection, backend: Backend, rows: &[UsageRow]) -> Result<(), sqlx::Error> {
    let (least, greatest) = match backend {
        Backend::Sqlite => ("MIN", "MAX"),
        Backend::Postgres => ("LEAST", "GREATEST"),
    };
    let sql = format!(
        "INSERT INTO grant_usage (grant_id, resource, method, operation, outcome, calls, first_at, last_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (grant_id, method, operation, outcome) DO UPDATE SET \
         calls = grant_usage.calls + excluded.calls, \
         first_at = {least}(grant_usage.first_at, excluded.first_at), \
         last_at = {greatest}(grant_usage.last_at, excluded.last_at)"
    );
    for r in rows {
        sqlx::query(&sql)
            .bind(r.grant_id.clone())
            .bind(r.resource.clone())
            .bind(r.method.clone())
            .bind(r.operation.clone())
            .bind(r.outcome.clone())
            .bind(r.calls)
            .bind(r.first_at)
            .bind(r.last_at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The usage of grants issued at or after `since_s`.
pub async fn of_grants_issued_since(pool: &AnyPool, since_s: i64) -> Result<Vec<UsageRow>, sqlx::Error> {
    sqlx::query(
        "SELECT u.grant_id, u.resource, u.method, u.operation, u.outcome, u.calls, u.first_at, u.last_at \
         FROM grant_usage u JOIN grants g ON g.id = u.grant_id WHERE g.issued_at_s >= $1",
    )
    .bind(since_s)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(UsageRow {
            grant_id: r.try_get("grant_id")?,
            resource: r.try_get("resource")?,
            method: r.try_get("method")?,
            operation: r.try_get("operation")?,
            outcome: r.try_get("outcome")?,
            calls: r.try_get("calls")?,
            first_at: r.try_get("first_at")?,
            last_at: r.try_get("last_at")?,
        })
    })
    .collect()
}

/// Which of these grants a proxy reported any decision under (every
/// reported decision that names a grant is counted here).
pub async fn reported(pool: &AnyPool, grant_ids: &[String]) -> Result<HashSet<String>, sqlx::Error> {
    let mut out = HashSet::new();
    for chunk in grant_ids.chunks(500) {
        let sql = format!(
            "SELECT DISTINCT grant_id FROM grant_usage WHERE grant_id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.clone());
        }
        for row in q.fetch_all(pool).await? {
            out.insert(row.try_get("grant_id")?);
        }
    }
    Ok(out)
}
