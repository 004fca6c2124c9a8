//! The HTTP API: routes, authentication, body limits, and the audit of
//! refused calls. Handlers are thin; the work is in the domain modules.

mod audit_proofs;
mod handlers;
mod integrations;
mod proxy;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::OpenApi;

use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::App;

/// The shared state.
pub type AppState = Arc<App>;

/// Largest decision batch a proxy may post.
pub const MAX_INGEST_BODY: usize = 8 * 1024 * 1024;

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jitgate control API",
        description = "Just-in-time access requests, approvals, grants, revocation and audit."
    ),
    paths(
        handlers::create_request,
        handlers::list_requests,
        handlers::get_request,
        handlers::approve,
        handlers::deny,
        handlers::cancel,
        handlers::extend,
        handlers::review,
        handlers::fetch_grant,
        handlers::revoke_grant,
        handlers::audit_query,
        handlers::audit_verify,
        handlers::audit_export,
        audit_proofs::inclusion,
        audit_proofs::consistency,
        proxy::revocations,
        proxy::grant_set,
        proxy::ingest,
        handlers::healthz,
        handlers::readyz,
    ),
    components(schemas(
        crate::requests::NewRequest,
        crate::requests::AccessRequest,
        crate::requests::Rule,
        crate::requests::Vote,
        crate::requests::Decision,
        crate::requests::Extension,
        crate::grants::GrantView,
        crate::grants::TokenResponse,
        crate::grants::Revoke,
        crate::grants::RevocationList,
        crate::grants::Revoked,
        crate::grants::GrantSet,
        crate::audit::Record,
        crate::audit::Verification,
        crate::audit::BrokenLink,
        audit_proofs::InclusionProof,
        audit_proofs::ConsistencyProof,
        proxy::IngestBatch,
        proxy::ProxyEvent,
        proxy::IngestResult,
        Problem,
    ))
)]
pub struct ApiDoc;

/// An RFC 9457 problem document (the shape of every error).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// A URI naming the problem type.
    r#type: String,
    /// Short summary.
    title: String,
    /// HTTP status.
    status: u16,
    /// Stable machine-readable code.
    code: String,
    /// What went wrong.
    detail: String,
}

/// The router.
pub fn router(app: AppState) -> Router {
    let user_api = Router::new()
        .route(
            "/v1/requests",
            post(handlers::create_request).get(handlers::list_requests),
        )
        .route("/v1/requests/{id}", get(handlers::get_request))
        .route("/v1/requests/{id}/approve", post(handlers::approve))
        .route("/v1/requests/{id}/deny", post(handlers::deny))
        .route("/v1/requests/{id}/cancel", post(handlers::cancel))
        .route("/v1/requests/{id}/extend", post(handlers::extend))
        .route("/v1/requests/{id}/review", post(handlers::review))
        .route("/v1/requests/{id}/grant", get(handlers::fetch_grant))
        .route("/v1/requests/{id}/deliveries", get(handlers::deliveries))
        .route("/v1/grants/{id}/revoke", post(handlers::revoke_grant))
        .route("/v1/audit", get(handlers::audit_query))
        .route("/v1/audit/verify", get(handlers::audit_verify))
        .route("/v1/audit/export", get(handlers::audit_export))
        .route("/v1/audit/{seq}/proof", get(audit_proofs::inclusion))
        .route("/v1/audit/consistency", get(audit_proofs::consistency))
        .layer(DefaultBodyLimit::max(app.cfg.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), authenticate));
    let proxy_api = Router::new()
        .route("/v1/revocations", get(proxy::revocations))
        .route("/v1/proxy/grants", get(proxy::grant_set))
        .route("/v1/audit/events", post(proxy::ingest))
        .layer(DefaultBodyLimit::max(MAX_INGEST_BODY));
    let integrations = Router::new()
        .route("/v1/integrations/slack/actions", post(integrations::slack_actions))
        .route("/v1/integrations/callback", post(integrations::callback))
        .layer(DefaultBodyLimit::max(app.cfg.max_body_bytes));
    Router::new()
        .merge(user_api)
        .merge(proxy_api)
        .merge(integrations)
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(|| async { axum::Json(ApiDoc::openapi()) }))
        .fallback(|| async { ApiError::NotFound("not_found", "no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(Arc::clone(&app), count_statuses))
        .with_state(app)
}

async fn count_statuses(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status().is_client_error() {
        app.metrics.client_errors.inc();
    } else if response.status().is_server_error() {
        app.metrics.server_errors.inc();
    }
    response
}

/// Authenticates every user-facing call, and audits refusals: failed
/// authentication, and calls refused with a 4xx (which change nothing
/// else: their transaction never commits).
async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = match app.auth.authenticate(header) {
        Ok(p) => p,
        Err(e) => {
            app.metrics.auth_failures.inc();
            let entry = Entry {
                actor: "anonymous".into(),
                action: "auth.failed".into(),
                channel: Some("api".into()),
                details: json!({"code": e.code(), "method": method, "path": path}),
                ..Entry::default()
            };
            if let Err(db) = audit::append_alone(&app.db, app.clock.now_ms(), &[entry]).await {
                return ApiError::db(db).into_response();
            }
            return e.into_response();
        }
    };
    req.extensions_mut().insert(principal.clone());
    let response = next.run(req).await;
    if response.status().is_client_error() {
        let code = response.extensions().get::<ErrorCode>().map_or("unknown", |c| c.0);
        let entry = Entry {
            actor: principal.id.clone(),
            action: "api.refused".into(),
            channel: Some("api".into()),
            details: json!({"code": code, "status": response.status().as_u16(), "method": method, "path": path}),
            ..Entry::default()
        };
        if let Err(db) = audit::append_alone(&app.db, app.clock.now_ms(), &[entry]).await {
            tracing::error!(error = %db, "could not audit a refused call");
        }
    }
    response
}

/// The caller, as authenticated by the middleware.
pub struct Caller(pub Principal);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthenticated("auth_missing", "send Authorization: Bearer <token>".into()))
    }
}

/// A JSON body whose failures are problem documents with stable codes.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("body_unreadable", rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            let code = if e.is_syntax() || e.is_eof() {
                "invalid_json"
            } else {
                "invalid_body"
            };
            ApiError::BadRequest(code, e.to_string())
        })
    }
}

/// An optional JSON body (empty is fine), for endpoints whose body is
/// optional (`approve`, `cancel`).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l != "0")
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        if !has_body {
            return Ok(OptionalJson(None));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|j| OptionalJson(Some(j.0)))
    }
}
