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

/// The requests with these ids that the caller may see, in the order
/// given (others are left out, as the list leaves them out): one query
/// per table for all of them.
pub async fn some(app: &App, p: &Principal, ids: &[String]) -> Result<Vec<AccessRequest>, ApiError> {
    let mut conn = app.db.pool.acquire().await?;
    let mut rows: std::collections::HashMap<String, _> = request_rows::by_ids(&mut conn, ids)
        .await?
        .into_iter()
        .filter(|r| visible(app, p, r))
        .map(|r| (r.id.clone(), r))
        .collect();
    let found: Vec<String> = ids.iter().filter(|id| rows.contains_key(*id)).cloned().collect();
    let mut votes = vote_rows::for_requests(&mut conn, &found).await?;
    let mut grants = grant_rows::for_requests(&mut conn, &found).await?;
    Ok(found
        .iter()
        .filter_map(|id| {
            let r = rows.remove(id)?;
            let (v, g) = (votes.remove(id).unwrap_or_default(), grants.remove(id));
            Some(assemble(app, r, v, g))
        })
        .collect())
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
