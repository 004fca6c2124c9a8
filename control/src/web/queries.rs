//! The console's own read queries: which request ids a page lists, chosen
//! in SQL (in `store`) with an index and a limit (the workflow's general list reads the
//! newest rows and filters them, which misses old pending requests and is
//! slow with many rows). Each id is then read through the workflow, which
//! checks that the person may see it.

use crate::store;
use crate::App;

/// How many rows a page lists at most.
pub const PAGE: i64 = 200;

/// Requests in one inbox page (each is shown with its full context and
/// history, so a page is kept short).
pub const INBOX_PAGE: i64 = 20;

/// Pending requests still in time, oldest first, from the `offset`th (the
/// inbox).
pub async fn pending(app: &App, now_ms: i64, offset: i64) -> Result<Vec<String>, sqlx::Error> {
    store::requests::pending_in_time(&app.db.read, now_ms, INBOX_PAGE, offset).await
}

/// Requests whose grant is active now, soonest expiry first.
pub async fn active(app: &App, now_ms: i64) -> Result<Vec<String>, sqlx::Error> {
    store::grants::active_requests(&app.db.read, now_ms / 1000, PAGE).await
}

/// A requester's latest requests on a resource, other than `except`.
pub async fn history(
    app: &App,
    requester: &str,
    resource: &str,
    except: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    store::requests::latest_of(&app.db.read, requester, Some(resource), Some(except), limit).await
}

/// A person's latest requests (My requests).
pub async fn mine(app: &App, requester: &str) -> Result<Vec<String>, sqlx::Error> {
    store::requests::latest_of(&app.db.read, requester, None, None, PAGE / 4).await
}
