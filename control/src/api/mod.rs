//! The HTTP API: routes, authentication, body limits, and the audit of
//! refused calls. Handlers are thin; the work is in the domain modules.

mod audit_proofs;
pub mod auth_failures;
mod counts;
mod export;
mod extract;
mod handlers;
mod insights;
mod integrations;
mod openapi;
pub mod preview;
pub mod problem;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use subtle::ConstantTimeEq;

use self::auth_failures::Failure;
pub use self::extract::{decode_object, decode_query, ApiJson, ApiPath, ApiQuery, Caller, OptionalJson};
pub use self::openapi::{document, ApiDoc, Problem};
use crate::audit::{self, Entry};
use crate::error::ApiError;
use crate::App;
use problem::ErrorCode;

/// The shared state.
pub type AppState = Arc<App>;

/// Largest decision batch a proxy may post.
pub const MAX_INGEST_BODY: usize = 8 * 1024 * 1024;

/// The router.
pub fn router(app: AppState, pages: Router<AppState>) -> Router {
    let user_api = Router::new()
        .route(
            "/v1/requests",
            post(handlers::create_request).get(handlers::list_requests),
        )
        .route("/v1/requests/{id}", get(handlers::get_request))
        .route("/v1/preview", post(preview::preview_scope))
        .route("/v1/insights", get(insights::insights))
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
        .route("/v1/audit/counts", get(counts::decision_counts))
        .route("/v1/audit/{seq}/proof", get(audit_proofs::inclusion))
        .route("/v1/audit/consistency", get(audit_proofs::consistency))
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
        .merge(pages)
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
pub(super) fn source_of(req: &Request) -> String {
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
    let principal = match app.auth.authenticate(header).await {
        Ok(p) => p,
        Err(e) => return refuse_unauthenticated(&app, &req, "api", e),
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    req.extensions_mut().insert(principal.clone());
    let response = next.run(req).await;
    if response.status().is_client_error() {
        let concerns = matched.as_deref().and_then(|m| concerns(m, &path));
        let refusal = Refusal::of(&response, principal.id.clone(), "api.refused", "api", method, path);
        audit_refusal(&app, refusal, concerns).await;
    }
    response
}

/// Whether the headers carry the ingest key (`subtle`'s constant-time
/// comparison; only the length can differ observably).
fn ingest_key_ok(app: &App, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    presented.as_bytes().ct_eq(app.cfg.ingest_key.as_bytes()).into()
}

/// Authenticates proxies by the ingest key before the body is read (a
/// failure is counted and aggregated, see [`auth_failures`]: anyone can
/// send those), and audits what is refused after that.
async fn require_ingest_key(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !ingest_key_ok(&app, req.headers()) {
        let e = ApiError::Unauthenticated("ingest_key_invalid", "send Authorization: Bearer <ingest key>".into());
        return refuse_unauthenticated(&app, &req, "proxy", e);
    }
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let response = next.run(req).await;
    if response.status().is_client_error() {
        let refusal = Refusal::of(&response, "proxy".into(), "proxy.refused", "proxy", method, path);
        audit_refusal(&app, refusal, None).await;
    }
    response
}

/// A call refused to an authenticated caller, as the audit records it.
struct Refusal {
    actor: String,
    action: &'static str,
    channel: &'static str,
    code: &'static str,
    status: u16,
    method: String,
    path: String,
}

impl Refusal {
    fn of(
        response: &Response,
        actor: String,
        action: &'static str,
        channel: &'static str,
        method: String,
        path: String,
    ) -> Refusal {
        Refusal {
            actor,
            action,
            channel,
            code: response.extensions().get::<ErrorCode>().map_or("unknown", |c| c.0),
            status: response.status().as_u16(),
            method,
            path,
        }
    }
}

/// What a call's path names: an access request or a grant.
#[derive(Debug, PartialEq, Eq)]
enum Concerns {
    Request(String),
    Grant(String),
}

/// The access request or grant a route concerns, from its template
/// (`/v1/requests/{id}/approve`) and the actual path. Ids longer than any
/// the service issues are not linked.
fn concerns(matched: &str, path: &str) -> Option<Concerns> {
    let mut template = matched.split('/');
    let mut actual = path.split('/');
    let mut previous = "";
    loop {
        let (t, a) = (template.next()?, actual.next()?);
        if t == "{id}" {
            if a.is_empty() || a.len() > 128 {
                return None;
            }
            return match previous {
                "requests" => Some(Concerns::Request(a.to_owned())),
                "grants" => Some(Concerns::Grant(a.to_owned())),
                _ => None,
            };
        }
        previous = t;
    }
}

/// Audits a refused call, linked to the request or grant it concerns (a
/// grant's request is looked up), so that a request's trail shows every
/// attempt on it.
async fn audit_refusal(app: &App, refusal: Refusal, concerns: Option<Concerns>) {
    let (request_id, grant_id) = match concerns {
        None => (None, None),
        Some(Concerns::Request(id)) => (Some(id), None),
        Some(Concerns::Grant(id)) => {
            let request = crate::grants::request_of(app, &id).await.unwrap_or_default();
            (request, Some(id))
        }
    };
    let entry = Entry {
        actor: refusal.actor,
        action: refusal.action.into(),
        request_id,
        grant_id,
        channel: Some(refusal.channel.into()),
        details: json!({"code": refusal.code, "status": refusal.status, "method": refusal.method, "path": refusal.path}),
        ..Entry::default()
    };
    if let Err(db) = audit::append_alone(&app.db, app.clock.now_ms(), &[entry]).await {
        tracing::error!(error = %db, "could not audit a refused call");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_linked_to_the_request_or_grant_their_path_names() {
        assert_eq!(
            concerns("/v1/requests/{id}/approve", "/v1/requests/req_1/approve"),
            Some(Concerns::Request("req_1".into()))
        );
        assert_eq!(
            concerns("/v1/requests/{id}", "/v1/requests/req_2"),
            Some(Concerns::Request("req_2".into()))
        );
        assert_eq!(
            concerns("/v1/grants/{id}/revoke", "/v1/grants/g_1/revoke"),
            Some(Concerns::Grant("g_1".into()))
        );
        assert_eq!(concerns("/v1/requests", "/v1/requests"), None);
        let long = format!("/v1/requests/{}/approve", "x".repeat(200));
        assert_eq!(concerns("/v1/requests/{id}/approve", &long), None);
    }
}
