//! Reading requests: one, or a page of those the caller may see (one
//! query per table for the whole page).

use super::{assemble, view, visible};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::requests::{AccessRequest, ListQuery};
use crate::store::grants as grant_rows;
use crate::store::requests::{self as request_rows, Filter};
use crate::store::votes as vote_rows;
use crate::App;

/// Most requests an answer shows.
const PAGE: usize = 200;
/// Most rows read to fill a page (some may be hidden from the caller or
/// in another effective state).
const SCAN: i64 = 500;

/// One request, if the caller may see it.
pub async fn get(app: &App, p: &Principal, id: &str) -> Result<AccessRequest, ApiError> {
    let mut conn = app.db.pool.acquire().await?;
    let row = request_rows::load(&mut conn, id)
        .await?
        .ok_or_else(ApiError::request_not_found)?;
    if !visible(app, p, &row) {
        return Err(ApiError::request_not_found());
    }
    Ok(view(app, &mut conn, row).await?)
}

/// The requests the caller may see, newest first (at most 200).
pub async fn list(app: &App, p: &Principal, q: &ListQuery) -> Result<Vec<AccessRequest>, ApiError> {
    let mut conn = app.db.pool.acquire().await?;
    let filter = Filter {
        resource: q.resource.clone(),
        requester: q.mine.unwrap_or(false).then(|| p.id.clone()),
        awaiting_review: q.awaiting_review.unwrap_or(false),
        limit: SCAN,
    };
    let rows: Vec<_> = request_rows::page(&mut conn, &filter)
        .await?
        .into_iter()
        .filter(|r| visible(app, p, r))
        .collect();
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut votes = vote_rows::for_requests(&mut conn, &ids).await?;
    let mut grants = grant_rows::for_requests(&mut conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let (v, g) = (votes.remove(&r.id).unwrap_or_default(), grants.remove(&r.id));
            assemble(app, r, v, g)
        })
        .filter(|a| q.state.is_none_or(|s| s == a.state))
        .take(PAGE)
        .collect())
}
