//! The HTTP API: routes, authentication, body limits, and the audit of
//! refused calls. Handlers are thin; the work is in the domain modules.

pub mod auth_failures;
mod extract;
mod handlers;
mod integrations;
mod openapi;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use self::auth_failures::Failure;
pub use self::extract::{decode_object, decode_query, ApiJson, ApiPath, ApiQuery, Caller, OptionalJson};
pub use self::openapi::{document, ApiDoc, Problem};
use crate::audit::{self, Entry};
use crate::error::{ApiError, ErrorCode};
use crate::App;

/// The shared state.
pub type AppState = Arc<App>;

/// Largest decision batch a proxy may post.
pub const MAX_INGEST_BODY: usize = 8 * 1024 * 1024;

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
        .layer(DefaultBodyLimit::max(app.cfg.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), authenticate));
    // The ingest key is checked in a route layer, before any handler (and
    // so before any extractor) reads the body.
    let proxy_api = Router::new()
        .route("/v1/revocations", get(proxy::revocations))
        .route("/v1/proxy/grants", get(proxy::grant_set))
        .route("/v1/audit/events", post(proxy::ingest))
        .layer(DefaultBodyLimit::max(MAX_INGEST_BODY))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), require_ingest_key));
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
        .route("/openapi.json", get(handlers::openapi))
        .fallback(|| async { ApiError::NotFound("not_found", "no such endpoint".into()) })
        .layer(middleware::from_fn(problem_for_bare_errors))
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

/// Turns the bodiless errors axum's router answers by itself (405 for a
/// method a route does not serve) into problem documents, keeping their
/// headers (`Allow`).
async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut problem = ApiError::MethodNotAllowed.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        problem.headers_mut().insert(header::ALLOW, allow.clone());
    }
    problem
}

/// The caller's address, as the transport saw it.
fn source_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Counts a failed authentication (metrics at once; the audit log through
/// the per-source aggregation) and answers it.
fn refuse_unauthenticated(app: &App, req: &Request, channel: &'static str, e: ApiError) -> Response {
    app.metrics.auth_failures.inc();
    let failure = Failure {
        source: &source_of(req),
        reason: e.code(),
        channel,
        method: req.method().as_str(),
        path: req.uri().path(),
    };
    app.auth_failures.record(failure, app.clock.now_ms());
    e.into_response()
}

/// Authenticates every user-facing call before its body is read, and
/// audits refusals: failed authentication (aggregated, see
/// [`auth_failures`]), and calls refused with a 4xx (which change nothing
/// else: their transaction never commits).
async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = match app.auth.authenticate(header) {
        Ok(p) => p,
        Err(e) => return refuse_unauthenticated(&app, &req, "api", e),
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
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

/// Whether the headers carry the ingest key (constant-time comparison,
/// length aside).
fn ingest_key_ok(app: &App, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = app.cfg.ingest_key.as_bytes();
    presented.len() == expected.len() && presented.bytes().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Authenticates proxies by the ingest key, before the body is read.
async fn require_ingest_key(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if ingest_key_ok(&app, req.headers()) {
        return next.run(req).await;
    }
    let e = ApiError::Unauthenticated("ingest_key_invalid", "send Authorization: Bearer <ingest key>".into());
    refuse_unauthenticated(&app, &req, "proxy", e)
}
