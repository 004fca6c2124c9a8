//! Handlers for people: requests, votes, grants, audit, health.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiJson, AppState, Caller, OptionalJson};
use crate::audit;
use crate::error::ApiError;
use crate::grants::{self, GrantView, Revoke, TokenResponse};
use crate::requests::{self, AccessRequest, Decision, Extension, ListQuery, NewRequest};

/// Ask for access.
#[utoipa::path(post, path = "/v1/requests", request_body = NewRequest,
    responses((status = 201, body = AccessRequest), (status = 422, body = super::Problem), (status = 403, body = super::Problem)))]
pub async fn create_request(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiJson(input): ApiJson<NewRequest>,
) -> Result<(StatusCode, Json<AccessRequest>), ApiError> {
    Ok((StatusCode::CREATED, Json(requests::create(&app, &p, input).await?)))
}

/// The requests the caller may see.
#[utoipa::path(get, path = "/v1/requests", params(ListQuery), responses((status = 200, body = [AccessRequest])))]
pub async fn list_requests(
    State(app): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AccessRequest>>, ApiError> {
    Ok(Json(requests::list(&app, &p, &q).await?))
}

/// One request.
#[utoipa::path(get, path = "/v1/requests/{id}", responses((status = 200, body = AccessRequest), (status = 404, body = super::Problem)))]
pub async fn get_request(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccessRequest>, ApiError> {
    Ok(Json(requests::get(&app, &p, &id).await?))
}

/// Approve (an approver of the resource, not the requester).
#[utoipa::path(post, path = "/v1/requests/{id}/approve", request_body = Option<Decision>,
    responses((status = 200, body = AccessRequest), (status = 403, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn approve(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    OptionalJson(d): OptionalJson<Decision>,
) -> Result<Json<AccessRequest>, ApiError> {
    let comment = d.and_then(|d| d.comment);
    Ok(Json(requests::vote(&app, &p, &id, true, comment, "api").await?))
}

/// Deny (one deny ends the request).
#[utoipa::path(post, path = "/v1/requests/{id}/deny", request_body = Option<Decision>,
    responses((status = 200, body = AccessRequest), (status = 403, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn deny(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    OptionalJson(d): OptionalJson<Decision>,
) -> Result<Json<AccessRequest>, ApiError> {
    let comment = d.and_then(|d| d.comment);
    Ok(Json(requests::vote(&app, &p, &id, false, comment, "api").await?))
}

/// Withdraw a pending request (requester only).
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", responses((status = 200, body = AccessRequest), (status = 409, body = super::Problem)))]
pub async fn cancel(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccessRequest>, ApiError> {
    Ok(Json(requests::cancel(&app, &p, &id).await?))
}

/// Ask to extend an active grant (a new request through the same policy).
#[utoipa::path(post, path = "/v1/requests/{id}/extend", request_body = Extension,
    responses((status = 201, body = AccessRequest), (status = 409, body = super::Problem)))]
pub async fn extend(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<Extension>,
) -> Result<(StatusCode, Json<AccessRequest>), ApiError> {
    Ok((StatusCode::CREATED, Json(requests::extend(&app, &p, &id, input).await?)))
}

/// Review a break-glass access after the fact.
#[utoipa::path(post, path = "/v1/requests/{id}/review", request_body = Option<Decision>,
    responses((status = 200, body = AccessRequest), (status = 409, body = super::Problem)))]
pub async fn review(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    OptionalJson(d): OptionalJson<Decision>,
) -> Result<Json<AccessRequest>, ApiError> {
    Ok(Json(requests::review(&app, &p, &id, d.unwrap_or_default()).await?))
}

/// The grant token (requester only, while active).
#[utoipa::path(get, path = "/v1/requests/{id}/grant",
    responses((status = 200, body = TokenResponse), (status = 403, body = super::Problem), (status = 409, body = super::Problem)))]
pub async fn fetch_grant(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenResponse>, ApiError> {
    Ok(Json(grants::fetch_token(&app, &p, &id).await?))
}

/// Notification deliveries about a request (visible to whoever sees it).
#[utoipa::path(get, path = "/v1/requests/{id}/deliveries", responses((status = 200, body = [crate::notify::Delivery])))]
pub async fn deliveries(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::notify::Delivery>>, ApiError> {
    requests::get(&app, &p, &id).await?;
    Ok(Json(crate::notify::deliveries(&app, &id).await?))
}

/// Revoke a grant (approvers of its resource, admins, or its holder).
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", request_body = Revoke,
    responses((status = 200, body = GrantView), (status = 404, body = super::Problem)))]
pub async fn revoke_grant(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<Revoke>,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(grants::revoke(&app, &p, &id, input).await?))
}

pub(super) fn auditor(app: &AppState, p: &crate::auth::Principal) -> Result<(), ApiError> {
    if app.auth.is_auditor(p) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "not_an_auditor",
            "reading the audit log needs an auditor or admin group".into(),
        ))
    }
}

/// Audit records, filtered.
#[utoipa::path(get, path = "/v1/audit", params(audit::Query), responses((status = 200, body = [audit::Record])))]
pub async fn audit_query(
    State(app): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<audit::Query>,
) -> Result<Json<Vec<audit::Record>>, ApiError> {
    auditor(&app, &p)?;
    Ok(Json(audit::query(&app.db, &q).await?))
}

/// Checks the whole hash chain and names the first broken link.
#[utoipa::path(get, path = "/v1/audit/verify", responses((status = 200, body = audit::Verification)))]
pub async fn audit_verify(
    State(app): State<AppState>,
    Caller(p): Caller,
) -> Result<Json<audit::Verification>, ApiError> {
    auditor(&app, &p)?;
    Ok(Json(audit::verify(&app.db).await?))
}

/// The log as JSON lines.
#[utoipa::path(get, path = "/v1/audit/export", params(audit::Query), responses((status = 200, content_type = "application/x-ndjson", body = String)))]
pub async fn audit_export(
    State(app): State<AppState>,
    Caller(p): Caller,
    Query(mut q): Query<audit::Query>,
) -> Result<impl IntoResponse, ApiError> {
    auditor(&app, &p)?;
    let mut out = String::new();
    q.limit = Some(1000);
    loop {
        let page = audit::query(&app.db, &q).await?;
        let Some(last) = page.last() else { break };
        q.after = Some(last.seq);
        for r in &page {
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
            out.push('\n');
        }
        if page.len() < 1000 {
            break;
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = String), (status = 503, body = super::Problem)))]
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
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
