//! The one door from the console to the workflow: every console action
//! calls the same functions the API handlers call, so the server enforces
//! every rule (self-approval, who may see what, scope, duration) exactly
//! as for the API (the `workflow` layer). Kept as thin pass-throughs in one
//! place, so that a change of the workflow's interface is met here alone.

use crate::audit::{self, Record, Verification};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::grants::{Revocation, Revoke, TokenResponse};
use crate::requests::{AccessRequest, Decision, Extension, ListQuery, NewRequest};
use crate::store::counts::{Of, StoredCount};
use crate::App;

/// Where a console action came from, in the audit trail's `channel`.
pub const CHANNEL: &str = "console";

/// Creates an access request.
pub async fn create(app: &App, p: &Principal, input: NewRequest) -> Result<AccessRequest, ApiError> {
    crate::workflow::create(app, p, input).await
}

/// The requests the caller may see, filtered.
pub async fn list(app: &App, p: &Principal, q: &ListQuery) -> Result<Vec<AccessRequest>, ApiError> {
    crate::workflow::list(app, p, q).await
}

/// The requests with these ids that the caller may see, in that order
/// (others are left out, as the API's list does); read in one query per
/// table.
pub async fn visible(app: &App, p: &Principal, ids: &[String]) -> Result<Vec<AccessRequest>, ApiError> {
    crate::workflow::some(app, p, ids).await
}

/// One request, if the caller may see it.
pub async fn get(app: &App, p: &Principal, id: &str) -> Result<AccessRequest, ApiError> {
    crate::workflow::get(app, p, id).await
}

/// An approver's vote.
pub async fn vote(
    app: &App,
    p: &Principal,
    id: &str,
    approve: bool,
    comment: Option<String>,
) -> Result<AccessRequest, ApiError> {
    crate::workflow::vote(app, p, id, approve, comment, CHANNEL).await
}

/// The requester withdraws a pending request.
pub async fn cancel(app: &App, p: &Principal, id: &str) -> Result<AccessRequest, ApiError> {
    crate::workflow::cancel(app, p, id).await
}

/// The requester asks for more time on an active grant.
pub async fn extend(app: &App, p: &Principal, id: &str, input: Extension) -> Result<AccessRequest, ApiError> {
    crate::workflow::extend(app, p, id, input).await
}

/// A break-glass access reviewed after the fact.
pub async fn review(app: &App, p: &Principal, id: &str, comment: Option<String>) -> Result<AccessRequest, ApiError> {
    crate::workflow::review(app, p, id, Decision { comment }).await
}

/// Revokes a grant.
pub async fn revoke(app: &App, p: &Principal, grant_id: &str, reason: String) -> Result<Revocation, ApiError> {
    crate::workflow::revoke(app, p, grant_id, Revoke { reason }).await
}

/// The grant token of the caller's own approved request (audited).
pub async fn fetch_token(app: &App, p: &Principal, request_id: &str) -> Result<TokenResponse, ApiError> {
    crate::workflow::fetch_token(app, p, request_id).await
}

/// Audit records (auditors only, as for the API).
pub async fn audit(app: &App, p: &Principal, q: &audit::Query) -> Result<Vec<Record>, ApiError> {
    crate::policy::may_read_audit(app.auth.is_auditor(p))?;
    Ok(audit::query(&app.db, q).await?)
}

/// The allowed requests the proxies counted under a request's grants
/// (auditors only): the first 1000.
pub async fn counted(app: &App, p: &Principal, request_id: &str) -> Result<Vec<StoredCount>, ApiError> {
    crate::policy::may_read_audit(app.auth.is_auditor(p))?;
    Ok(audit::counted(&app.db, Of::Request(request_id), 0, 1000).await?)
}

/// The chain's verification from where the last intact check ended
/// (auditors only).
pub async fn verify(app: &App, p: &Principal) -> Result<Verification, ApiError> {
    crate::policy::may_read_audit(app.auth.is_auditor(p))?;
    let key = app.cfg.audit.signer.as_ref().map(|s| s.verifier());
    Ok(audit::verify(&app.db, audit::Scope::Incremental, key.as_ref(), app.clock.now_ms()).await?)
}

/// What the overview page draws, over a period.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Period start (ms).
    pub since_ms: i64,
    /// Requests per UTC day (days since the epoch) and state.
    pub per_day: Vec<(i64, crate::states::RequestState, i64)>,
    /// Requests per resource, most first.
    pub by_resource: Vec<(String, i64)>,
    /// Usage, denials and approval times ([`crate::insight::report`]).
    pub insights: crate::insight::report::Insights,
}

/// The overview since `since_ms` (auditors and admins only, as the audit
/// log and `GET /v1/insights`).
pub async fn overview(app: &App, p: &Principal, since_ms: i64) -> Result<Overview, ApiError> {
    crate::policy::may_read_audit(app.auth.is_auditor(p))?;
    let insights = crate::insight::report::report(&app.db, since_ms / 1000, &app.cfg.resources).await?;
    Ok(Overview {
        since_ms,
        per_day: crate::store::requests::per_day_and_state_since(&app.db.read, since_ms).await?,
        by_resource: crate::store::requests::count_by_resource_since(&app.db.read, since_ms).await?,
        insights,
    })
}
