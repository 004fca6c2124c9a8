//! The console's own read queries: which request ids a page lists, chosen
//! in SQL with an index and a limit (the workflow's general list reads the
//! newest rows and filters them, which misses old pending requests and is
//! slow with many rows). Each id is then read through the workflow, which
//! checks that the person may see it.

use sqlx::Row;

use crate::App;

/// How many rows a page lists at most.
pub const PAGE: i64 = 200;

async fn ids(app: &App, sql: &str, binds: &[&str], now: Option<i64>) -> Result<Vec<String>, sqlx::Error> {
    let mut q = sqlx::query(sql);
    if let Some(n) = now {
        q = q.bind(n);
    }
    for b in binds {
        q = q.bind((*b).to_owned());
    }
    q.fetch_all(&app.db.read)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect()
}

/// Requests in one inbox page (each is shown with its full context and
/// history, so a page is kept short).
pub const INBOX_PAGE: i64 = 20;

/// Pending requests still in time, oldest first, from the `offset`th (the
/// inbox).
pub async fn pending(app: &App, now_ms: i64, offset: i64) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM access_requests WHERE state = 'pending' AND pending_until > $1 ORDER BY created_at, id \
         LIMIT {INBOX_PAGE} OFFSET {}",
        offset.max(0)
    );
    ids(app, &sql, &[], Some(now_ms)).await
}

/// Requests whose grant is active now, soonest expiry first.
pub async fn active(app: &App, now_ms: i64) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT request_id FROM grants WHERE revoked_at IS NULL AND expires_at_s > $1 ORDER BY expires_at_s LIMIT {PAGE}"
    );
    ids(app, &sql, &[], Some(now_ms / 1000)).await
}

/// A requester's latest requests on a resource, other than `except`.
pub async fn history(
    app: &App,
    requester: &str,
    resource: &str,
    except: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM access_requests WHERE requester = $1 AND resource = $2 AND id <> $3 ORDER BY created_at DESC LIMIT {limit}"
    );
    ids(app, &sql, &[requester, resource, except], None).await
}

/// A person's latest requests (My requests).
pub async fn mine(app: &App, requester: &str) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM access_requests WHERE requester = $1 ORDER BY created_at DESC LIMIT {}",
        PAGE / 4
    );
    ids(app, &sql, &[requester], None).await
}
