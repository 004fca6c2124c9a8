//! Handlers for people: requests, votes, grants, audit, health.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, ApiPath, ApiQuery, AppState, Caller, OptionalJson, Problem};
use crate::audit;
use crate::error::ApiError;
use crate::grants::{Revocation, Revoke, TokenResponse};
use crate::requests::{AccessRequest, Decision, Extension, ListQuery, NewRequest};
use crate::{policy, workflow};

/// What the body of `approve`, `deny` and `review` may be.
const DECISION_BODY: &str = "Optional: no body, `null`, or an object. A missing, `null`, empty or blank \
    `comment` means no comment; any other comment must be at most 2000 bytes without control characters \
    other than newline and tab (else 422 `comment_invalid`).";

/// `{id}` of the operations on one access request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct RequestId {
    /// The access request's id (`req_...`).
    id: String,
}

/// `{id}` of the operations on one grant.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct GrantId {
    /// The grant's id (`g_...`, the token's `jti`; `grant_id` of the token response).
    id: String,
}

/// The comment of an approve, deny or review body: no body, `null`, no
/// `comment`, `null` and an empty or blank comment all mean "no comment"
/// (the document says so).
fn comment_of(d: Option<Decision>) -> Option<String> {
    d.and_then(|d| d.comment).filter(|c| !c.trim().is_empty())
}

/// A query parameter out of its declared range.
fn out_of_range(field: &str, message: &str) -> ApiError {
    ApiError::Field {
        code: "invalid_query",
        field: field.into(),
        message: message.into(),
    }
}

/// The paging of the audit reads: `limit` 1 to 1000, `after` (a seq) 0 or
/// more, held to what the document declares rather than clamped.
pub(super) fn audit_paging(limit: Option<i64>, after: Option<i64>) -> Result<(), ApiError> {
    if limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(out_of_range("limit", "must be 1 to 1000"));
    }
    if after.is_some_and(|a| a < 0) {
        return Err(out_of_range("after", "must be 0 or more"));
    }
    Ok(())
}

/// The audit filters, held to what the document declares instead of being
/// clamped silently.
fn audit_filters(q: audit::Query) -> Result<audit::Query, ApiError> {
    audit_paging(q.limit, q.after)?;
    if q.from_ms.is_some_and(|t| t < 0) {
        return Err(out_of_range(
            "from_ms",
            "must be 0 or more (milliseconds since the epoch)",
        ));
    }
    if q.until_ms.is_some_and(|t| t < 0) {
        return Err(out_of_range(
            "until_ms",
            "must be 0 or more (milliseconds since the epoch)",
        ));
    }
    Ok(q)
}

/// Ask for access.
#[utoipa::path(post, path = "/v1/requests", operation_id = "create_request", tag = "requests",
    security(("bearer" = [])), request_body = NewRequest,
    responses(
        (status = 201, description = "Created (approved at once by an auto-approve rule or break-glass, else pending)", body = AccessRequest),
        (status = 403, description = "Not a requester of the resource, or not allowed break-glass (`not_a_requester`, `break_glass_not_allowed`)", body = Problem),
        (status = 409, description = "A device-bound grant was asked for (`cnf_x5t_s256`) but some proxy seen for the resource in the last 60 s does not check it (grant spec below 1.1, or a poller that did not say), or none was seen (`device_binding_unavailable`); nothing is stored", body = Problem),
        (status = 422, description = "Breaks a rule: unknown resource, scope not requestable, duration out of range, text invalid, or the resource requires device binding and none was asked for (`unknown_resource`, `scope_invalid`, `scope_not_allowed`, `duration_out_of_range`, `reason_invalid`, `ticket_invalid`, `source_cidrs_invalid`, `device_binding_required`)", body = Problem)))]
pub async fn create_request(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiJson(input): ApiJson<NewRequest>,
) -> Result<(StatusCode, Json<AccessRequest>), ApiError> {
    Ok((StatusCode::CREATED, Json(workflow::create(&app, &p, input).await?)))
}

/// The requests the caller may see.
#[utoipa::path(get, path = "/v1/requests", operation_id = "list_requests", tag = "requests",
    security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "The requests the caller may see, newest first (at most 200)", body = [AccessRequest])))]
pub async fn list_requests(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<AccessRequest>>, ApiError> {
    Ok(Json(workflow::list(&app, &p, &q).await?))
}

/// One request.
#[utoipa::path(get, path = "/v1/requests/{id}", operation_id = "get_request", tag = "requests",
    security(("bearer" = [])), params(RequestId),
    responses((status = 200, description = "The request, with the preview of what its scope allows", body = super::preview::RequestDetail)))]
pub async fn get_request(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<super::preview::RequestDetail>, ApiError> {
    let request = workflow::get(&app, &p, &id).await?;
    Ok(Json(super::preview::detail(&app.cfg, request)))
}

/// Approve (an approver of the resource, not the requester).
#[utoipa::path(post, path = "/v1/requests/{id}/approve", operation_id = "approve_request", tag = "requests",
    security(("bearer" = [])), params(RequestId), request_body(content = Option<Decision>, description = DECISION_BODY),
    responses(
        (status = 200, description = "The request after the vote (approved once enough approvals are in); repeating a vote changes nothing", body = AccessRequest),
        (status = 403, description = "The requester, or not an approver (`self_approval`, `not_an_approver`)", body = Problem),
        (status = 409, description = "No longer pending, or already voted the other way, or the approval would mint a device-bound grant while a proxy of the resource does not check it (`request_resolved`, `request_timed_out`, `already_voted`, `device_binding_unavailable`: the vote is not stored)", body = Problem),
        (status = 422, description = "The comment is invalid (`comment_invalid`)", body = Problem)))]
pub async fn approve(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(d): OptionalJson<Decision>,
) -> Result<Json<AccessRequest>, ApiError> {
    Ok(Json(workflow::vote(&app, &p, &id, true, comment_of(d), "api").await?))
}

/// Deny (one deny ends the request).
#[utoipa::path(post, path = "/v1/requests/{id}/deny", operation_id = "deny_request", tag = "requests",
    security(("bearer" = [])), params(RequestId), request_body(content = Option<Decision>, description = DECISION_BODY),
    responses(
        (status = 200, description = "The request, denied; repeating the vote changes nothing", body = AccessRequest),
        (status = 403, description = "The requester, or not an approver (`self_approval`, `not_an_approver`)", body = Problem),
        (status = 409, description = "No longer pending, or already voted the other way (`request_resolved`, `request_timed_out`, `already_voted`)", body = Problem),
        (status = 422, description = "The comment is invalid (`comment_invalid`)", body = Problem)))]
pub async fn deny(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(d): OptionalJson<Decision>,
) -> Result<Json<AccessRequest>, ApiError> {
    Ok(Json(workflow::vote(&app, &p, &id, false, comment_of(d), "api").await?))
}

/// Withdraw a pending request (requester only).
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", operation_id = "cancel_request", tag = "requests",
    security(("bearer" = [])), params(RequestId),
    responses(
        (status = 200, description = "The request, cancelled", body = AccessRequest),
        (status = 403, description = "Not the requester (`not_the_requester`)", body = Problem),
        (status = 409, description = "Not pending (`request_not_pending`)", body = Problem)))]
pub async fn cancel(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AccessRequest>, ApiError> {
    Ok(Json(workflow::cancel(&app, &p, &id).await?))
}

/// Ask to extend an active grant (a new request through the same policy).
#[utoipa::path(post, path = "/v1/requests/{id}/extend", operation_id = "extend_request", tag = "requests",
    security(("bearer" = [])), params(RequestId), request_body = Extension,
    responses(
        (status = 201, description = "The new request (its grant replaces and revokes the old one on approval)", body = AccessRequest),
        (status = 403, description = "Not the requester (`not_the_requester`)", body = Problem),
        (status = 409, description = "The grant is not active (`grant_not_active`)", body = Problem),
        (status = 422, description = "Breaks a rule (`duration_out_of_range`, `reason_invalid`)", body = Problem)))]
pub async fn extend(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<Extension>,
) -> Result<(StatusCode, Json<AccessRequest>), ApiError> {
    Ok((StatusCode::CREATED, Json(workflow::extend(&app, &p, &id, input).await?)))
}

/// Review a break-glass access after the fact.
#[utoipa::path(post, path = "/v1/requests/{id}/review", operation_id = "review_request", tag = "requests",
    security(("bearer" = [])), params(RequestId), request_body(content = Option<Decision>, description = DECISION_BODY),
    responses(
        (status = 200, description = "The request, reviewed", body = AccessRequest),
        (status = 403, description = "The requester, or not an approver (`self_approval`, `not_an_approver`)", body = Problem),
        (status = 409, description = "Not awaiting review (`review_not_pending`)", body = Problem),
        (status = 422, description = "The comment is invalid (`comment_invalid`)", body = Problem)))]
pub async fn review(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(d): OptionalJson<Decision>,
) -> Result<Json<AccessRequest>, ApiError> {
    let d = Decision { comment: comment_of(d) };
    Ok(Json(workflow::review(&app, &p, &id, d).await?))
}

/// The grant token (requester only, while active).
#[utoipa::path(get, path = "/v1/requests/{id}/grant", operation_id = "fetch_grant", tag = "grants",
    security(("bearer" = [])), params(RequestId),
    responses(
        (status = 200, description = "The grant token (audited)", body = TokenResponse),
        (status = 403, description = "Not the requester (`not_the_requester`)", body = Problem),
        (status = 409, description = "No active grant (`grant_not_active`)", body = Problem)))]
pub async fn fetch_grant(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenResponse>, ApiError> {
    Ok(Json(workflow::fetch_token(&app, &p, &id).await?))
}

/// Notification deliveries about a request (visible to whoever sees it).
#[utoipa::path(get, path = "/v1/requests/{id}/deliveries", operation_id = "list_deliveries", tag = "requests",
    security(("bearer" = [])), params(RequestId),
    responses((status = 200, description = "Notification deliveries about the request", body = [crate::notify::Delivery])))]
pub async fn deliveries(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<crate::notify::Delivery>>, ApiError> {
    workflow::get(&app, &p, &id).await?;
    Ok(Json(crate::notify::deliveries(&app, &id).await?))
}

/// Revoke a grant (approvers of its resource, admins, or its holder).
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", operation_id = "revoke_grant", tag = "grants",
    security(("bearer" = [])), params(GrantId), request_body = Revoke,
    responses(
        (status = 200, description = "The grant, revoked (revoking it again changes nothing: `already_revoked`)", body = Revocation),
        (status = 403, description = "Not an approver of its resource, an admin or its holder (`not_an_approver`)", body = Problem),
        (status = 409, description = "The grant has expired (`grant_expired`)", body = Problem),
        (status = 422, description = "The reason is invalid (`reason_invalid`)", body = Problem)))]
pub async fn revoke_grant(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<Revoke>,
) -> Result<Json<Revocation>, ApiError> {
    Ok(Json(workflow::revoke(&app, &p, &id, input).await?))
}

pub(super) fn auditor(app: &AppState, p: &crate::auth::Principal) -> Result<(), ApiError> {
    policy::may_read_audit(app.auth.is_auditor(p))
}

/// Audit records, filtered.
#[utoipa::path(get, path = "/v1/audit", operation_id = "query_audit", tag = "audit",
    security(("bearer" = [])), params(audit::Query),
    responses(
        (status = 200, description = "Matching records, oldest first", body = [audit::Record]),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem)))]
pub async fn audit_query(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<audit::Query>,
) -> Result<Json<Vec<audit::Record>>, ApiError> {
    auditor(&app, &p)?;
    Ok(Json(audit::query(&app.db, &audit_filters(q)?).await?))
}

/// `?full=true`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Read every record from the first (default: only those after where
    /// the last intact verification ended, whose hash is checked).
    pub full: Option<bool>,
}

/// Checks the hash chain (by default from where the last intact
/// verification ended; `full=true`: from the first record), the chain head
/// and every signed checkpoint in that range, and names the first broken
/// link.
#[utoipa::path(get, path = "/v1/audit/verify", operation_id = "verify_audit", tag = "audit",
    security(("bearer" = [])), params(VerifyQuery),
    responses(
        (status = 200, description = "The result of the check (`ok`, or the first broken link)", body = audit::Verification),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem)))]
pub async fn audit_verify(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Result<Json<audit::Verification>, ApiError> {
    auditor(&app, &p)?;
    let scope = if q.full == Some(true) {
        audit::Scope::Full
    } else {
        audit::Scope::Incremental
    };
    let key = app.cfg.audit.signer.as_ref().map(|s| s.verifier());
    Ok(Json(
        audit::verify(&app.db, scope, key.as_ref(), app.clock.now_ms()).await?,
    ))
}

/// The log as JSON lines.
#[utoipa::path(get, path = "/v1/audit/export", operation_id = "export_audit", tag = "audit",
    security(("bearer" = [])), params(audit::Query),
    responses(
        (status = 200, description = "Matching records as JSON lines (one `Record` per line)", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem)))]
pub async fn audit_export(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<audit::Query>,
) -> Result<axum::response::Response, ApiError> {
    auditor(&app, &p)?;
    let q = audit_filters(q)?;
    Ok(super::export::ndjson(app, q))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "service", security(()),
    responses((status = 200, description = "The process is up", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "service", security(()),
    responses(
        (status = 200, description = "The database answers; the second line says how audit checkpoint publication stands (it never makes this fail)", content_type = "text/plain", body = String),
        (status = 503, description = "The database does not answer (`service_unavailable`)", body = Problem)))]
pub async fn readyz(State(app): State<AppState>) -> Result<String, ApiError> {
    if app.db.ping().await {
        // Audit checkpoint publication is reported, never a reason to stop
        // serving access decisions.
        let checkpoints = app.checkpoints.readiness(app.cfg.audit.signer.is_some());
        Ok(format!("ready\n{checkpoints}\n"))
    } else {
        Err(ApiError::Unavailable(anyhow::anyhow!("database unreachable")))
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "service", security(()),
    responses((status = 200, description = "Counters in the Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

/// This document (with this service's resource ids and duration range).
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(super::document(Some(&app.cfg)))
}
