//! The `access_requests` table: its row, and the SQL that reads and writes
//! it. A stored value that does not decode (scope, source blocks, a state)
//! makes the read fail; it is never replaced by a default.

use grant::scope::ScopeRule;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{one, undecodable};
use crate::states::{RequestState, ReviewState};

/// A request row.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// Id.
    pub id: String,
    /// Resource.
    pub resource: String,
    /// Requester.
    pub requester: String,
    /// The requester's email when the request was made.
    pub requester_email: Option<String>,
    /// What is asked for.
    pub scope: Vec<ScopeRule>,
    /// Duration.
    pub duration_seconds: i64,
    /// Reason.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// Sources.
    pub source_cidrs: Option<Vec<String>>,
    /// The certificate thumbprint its grant is bound to.
    pub cnf_x5t_s256: Option<String>,
    /// When the grant's window starts (seconds), for a scheduled request.
    pub starts_at_s: Option<i64>,
    /// The requester's groups when the request was made (`None` on rows
    /// stored before they were recorded).
    pub requester_groups: Option<Vec<String>>,
    /// Stored state.
    pub state: RequestState,
    /// Approvals needed.
    pub approvals_required: i64,
    /// Break-glass flag.
    pub break_glass: bool,
    /// Review state.
    pub review_state: Option<ReviewState>,
    /// Reviewer.
    pub reviewed_by: Option<String>,
    /// Auto rule.
    pub auto_rule: Option<String>,
    /// Extends.
    pub extends_request: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Pending deadline.
    pub pending_until: i64,
    /// Resolved.
    pub resolved_at: Option<i64>,
}

/// A scope rule as stored (JSON).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRule {
    methods: Vec<String>,
    paths: Vec<String>,
}

const COLUMNS: &str = "id, resource, requester, requester_email, scope, duration_seconds, reason, ticket, source_cidrs, cnf_x5t_s256, starts_at_s, requester_groups, state, \
    approvals_required, break_glass, review_state, reviewed_by, auto_rule, extends_request, created_at, pending_until, resolved_at";

fn decode(r: &AnyRow) -> Result<RequestRow, sqlx::Error> {
    let id: String = r.try_get("id")?;
    let scope: String = r.try_get("scope")?;
    let scope: Vec<StoredRule> = serde_json::from_str(&scope).map_err(|e| undecodable("scope", &id, e))?;
    if scope.is_empty() {
        return Err(undecodable("scope", &id, "no rules"));
    }
    let sources: Option<String> = r.try_get("source_cidrs")?;
    let source_cidrs = sources
        .map(|s| serde_json::from_str::<Vec<String>>(&s))
        .transpose()
        .map_err(|e| undecodable("source_cidrs", &id, e))?;
    let groups: Option<String> = r.try_get("requester_groups")?;
    let requester_groups = groups
        .map(|g| serde_json::from_str::<Vec<String>>(&g))
        .transpose()
        .map_err(|e| undecodable("requester_groups", &id, e))?;
    let state: String = r.try_get("state")?;
    let review_state: Option<String> = r.try_get("review_state")?;
    let bg: i64 = r.try_get("break_glass")?;
    Ok(RequestRow {
        resource: r.try_get("resource")?,
        requester: r.try_get("requester")?,
        requester_email: r.try_get("requester_email")?,
        scope: scope
            .into_iter()
            .map(|s| ScopeRule {
                methods: s.methods,
                paths: s.paths,
            })
            .collect(),
        duration_seconds: r.try_get("duration_seconds")?,
        reason: r.try_get("reason")?,
        ticket: r.try_get("ticket")?,
        source_cidrs,
        cnf_x5t_s256: r.try_get("cnf_x5t_s256")?,
        starts_at_s: r.try_get("starts_at_s")?,
        requester_groups,
        state: RequestState::from_db(&state).map_err(|e| undecodable("state", &id, e))?,
        approvals_required: r.try_get("approvals_required")?,
        break_glass: bg != 0,
        review_state: review_state
            .as_deref()
            .map(ReviewState::from_db)
            .transpose()
            .map_err(|e| undecodable("review_state", &id, e))?,
        reviewed_by: r.try_get("reviewed_by")?,
        auto_rule: r.try_get("auto_rule")?,
        extends_request: r.try_get("extends_request")?,
        created_at: r.try_get("created_at")?,
        pending_until: r.try_get("pending_until")?,
        resolved_at: r.try_get("resolved_at")?,
        id,
    })
}

/// Locks a request row for the rest of the transaction and reads it.
pub async fn lock(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    let sql = format!("UPDATE access_requests SET lock_version = lock_version + 1 WHERE id = $1 RETURNING {COLUMNS}");
    one(conn, &sql, id, decode).await
}

/// Reads a request row.
pub async fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM access_requests WHERE id = $1");
    one(conn, &sql, id, decode).await
}

/// Stores a new request.
pub async fn insert(conn: &mut AnyConnection, row: &RequestRow) -> Result<(), sqlx::Error> {
    let scope: Vec<StoredRule> = row
        .scope
        .iter()
        .map(|r| StoredRule {
            methods: r.methods.clone(),
            paths: r.paths.clone(),
        })
        .collect();
    let encode = |e: serde_json::Error| sqlx::Error::Encode(Box::new(e));
    sqlx::query(
        "INSERT INTO access_requests (id, resource, requester, requester_email, scope, duration_seconds, reason, ticket, \
         source_cidrs, state, approvals_required, break_glass, review_state, auto_rule, extends_request, created_at, \
         updated_at, pending_until, cnf_x5t_s256, starts_at_s, requester_groups) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
    )
    .bind(row.id.clone())
    .bind(row.resource.clone())
    .bind(row.requester.clone())
    .bind(row.requester_email.clone())
    .bind(serde_json::to_string(&scope).map_err(encode)?)
    .bind(row.duration_seconds)
    .bind(row.reason.clone())
    .bind(row.ticket.clone())
    .bind(row.source_cidrs.as_ref().map(serde_json::to_string).transpose().map_err(encode)?)
    .bind(row.state.as_str())
    .bind(row.approvals_required)
    .bind(i64::from(row.break_glass))
    .bind(row.review_state.map(ReviewState::as_str))
    .bind(row.auto_rule.clone())
    .bind(row.extends_request.clone())
    .bind(row.created_at)
    .bind(row.created_at)
    .bind(row.pending_until)
    .bind(row.cnf_x5t_s256.clone())
    .bind(row.starts_at_s)
    .bind(row.requester_groups.as_ref().map(serde_json::to_string).transpose().map_err(encode)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves a pending request to `to` (resolved now); false if it was no
/// longer pending.
pub async fn resolve(conn: &mut AnyConnection, id: &str, to: RequestState, now_ms: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE access_requests SET state = $1, resolved_at = $2, updated_at = $2 WHERE id = $3 AND state = $4",
    )
    .bind(to.as_str())
    .bind(now_ms)
    .bind(id.to_owned())
    .bind(RequestState::Pending.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets the stored state (its grant was revoked).
pub async fn set_state(conn: &mut AnyConnection, id: &str, to: RequestState, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE access_requests SET state = $1, updated_at = $2 WHERE id = $3")
        .bind(to.as_str())
        .bind(now_ms)
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records the review of a break-glass access.
pub async fn set_reviewed(conn: &mut AnyConnection, id: &str, by: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE access_requests SET review_state = $1, reviewed_by = $2, reviewed_at = $3, updated_at = $3 WHERE id = $4")
        .bind(ReviewState::Reviewed.as_str())
        .bind(by.to_owned())
        .bind(now_ms)
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ids of pending requests whose deadline passed (at most `limit`).
pub async fn pending_past(conn: &mut AnyConnection, now_ms: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT id FROM access_requests WHERE state = $1 AND pending_until < $2 LIMIT $3")
        .bind(RequestState::Pending.as_str())
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
}

/// What a page of requests is filtered by in SQL.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this resource.
    pub resource: Option<String>,
    /// Only this requester.
    pub requester: Option<String>,
    /// Only break-glass requests awaiting review.
    pub awaiting_review: bool,
    /// At most this many rows.
    pub limit: i64,
}

/// Requests matching the filter, newest first, in one query.
pub async fn page(conn: &mut AnyConnection, f: &Filter) -> Result<Vec<RequestRow>, sqlx::Error> {
    let mut sql = format!("SELECT {COLUMNS} FROM access_requests WHERE 1 = 1");
    let mut binds = Vec::new();
    if let Some(r) = &f.resource {
        binds.push(r.clone());
        sql.push_str(&format!(" AND resource = ${}", binds.len()));
    }
    if let Some(r) = &f.requester {
        binds.push(r.clone());
        sql.push_str(&format!(" AND requester = ${}", binds.len()));
    }
    if f.awaiting_review {
        binds.push(ReviewState::Pending.as_str().to_owned());
        sql.push_str(&format!(" AND break_glass = 1 AND review_state = ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY created_at DESC LIMIT {}", f.limit.max(0)));
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = query.bind(b);
    }
    query.fetch_all(&mut *conn).await?.iter().map(decode).collect()
}

/// Locks a request row for the rest of the transaction without reading it
/// (false if there is none): orders changes to its grant.
pub async fn lock_only(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE access_requests SET lock_version = lock_version + 1 WHERE id = $1")
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Ids of pending requests still in time, oldest first: `limit` of them
/// from the `offset`th (the approver inbox).
pub async fn pending_in_time(pool: &AnyPool, now_ms: i64, limit: i64, offset: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT id FROM access_requests WHERE state = $1 AND pending_until > $2 ORDER BY created_at, id LIMIT $3 OFFSET $4",
    )
    .bind(RequestState::Pending.as_str())
    .bind(now_ms)
    .bind(limit)
    .bind(offset.max(0))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect()
}

/// Ids of a requester's latest requests, newest first; only on `resource`
/// and other than `except` when given.
pub async fn latest_of(
    pool: &AnyPool,
    requester: &str,
    resource: Option<&str>,
    except: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut sql = String::from("SELECT id FROM access_requests WHERE requester = $1");
    let mut binds = vec![requester];
    if let Some(resource) = resource {
        binds.push(resource);
        sql.push_str(&format!(" AND resource = ${}", binds.len()));
    }
    if let Some(except) = except {
        binds.push(except);
        sql.push_str(&format!(" AND id <> ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY created_at DESC LIMIT ${}", binds.len() + 1));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b.to_owned());
    }
    q.bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
}

/// Claims the pending requests created at or before `created_before` and
/// not reminded of yet (still in time at `now_ms`): marks them reminded
/// and returns their ids. The conditional update makes each request
/// claimed once, whichever replica runs it.
pub async fn claim_reminders(
    conn: &mut AnyConnection,
    now_ms: i64,
    created_before: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "UPDATE access_requests SET reminded_at = $1 \
         WHERE state = $2 AND reminded_at IS NULL AND created_at <= $3 AND pending_until > $1 RETURNING id",
    )
    .bind(now_ms)
    .bind(RequestState::Pending.as_str())
    .bind(created_before)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect()
}

/// How many requests each requester made at or after `since_ms`.
pub async fn count_by_requester_since(pool: &AnyPool, since_ms: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT requester, COUNT(*) AS n FROM access_requests WHERE created_at >= $1 GROUP BY requester ORDER BY requester",
    )
    .bind(since_ms)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("requester")?, r.try_get("n")?)))
    .collect()
}

/// For requests made at or after `since_ms` that approvers approved (not
/// an auto-approve rule, not break-glass): the resource and how long the
/// approval took, in milliseconds.
pub async fn approval_waits_since(pool: &AnyPool, since_ms: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT resource, resolved_at - created_at AS waited FROM access_requests \
         WHERE created_at >= $1 AND resolved_at IS NOT NULL AND state IN ($2, $3, $4) \
         AND auto_rule IS NULL AND break_glass = 0",
    )
    .bind(since_ms)
    .bind(RequestState::Approved.as_str())
    .bind(RequestState::Expired.as_str())
    .bind(RequestState::Revoked.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("resource")?, r.try_get("waited")?)))
    .collect()
}

/// Requests made at or after `since_ms`, per UTC day (days since the
/// epoch) and state, oldest day first.
pub async fn per_day_and_state_since(
    pool: &AnyPool,
    since_ms: i64,
) -> Result<Vec<(i64, RequestState, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT created_at / 86400000 AS day, state, COUNT(*) AS n FROM access_requests WHERE created_at >= $1 \
         GROUP BY created_at / 86400000, state ORDER BY day, state",
    )
    .bind(since_ms)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let day: i64 = r.try_get("day")?;
        let state: String = r.try_get("state")?;
        let state = RequestState::from_db(&state).map_err(|e| undecodable("state", &format!("day {day}"), e))?;
        Ok((day, state, r.try_get("n")?))
    })
    .collect()
}

/// How many requests each resource received at or after `since_ms`, most
/// first.
pub async fn count_by_resource_since(pool: &AnyPool, since_ms: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT resource, COUNT(*) AS n FROM access_requests WHERE created_at >= $1 GROUP BY resource \
         ORDER BY n DESC, resource",
    )
    .bind(since_ms)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("resource")?, r.try_get("n")?)))
    .collect()
}

/// The requests with these ids (those that exist), in no particular order.
pub async fn by_ids(conn: &mut AnyConnection, ids: &[String]) -> Result<Vec<RequestRow>, sqlx::Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT {COLUMNS} FROM access_requests WHERE id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.push(decode(&row)?);
        }
    }
    Ok(out)
}
