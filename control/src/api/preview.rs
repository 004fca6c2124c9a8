//! Scope previews over HTTP: `GET /v1/requests/{id}` carries the preview of
//! its scope (`preview`), and `POST /v1/preview` previews a scope before
//! anything is created (`jitgate request ... --dry-run`). The computation
//! is [`crate::preview`]; this module only fetches the resource's document
//! and shapes the answer.

use axum::extract::State;
use axum::Json;
use grant::scope::ScopeRule;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, AppState, Caller, Problem};
use crate::config::Config;
use crate::error::ApiError;
use crate::policy;
use crate::preview::Preview;
use crate::requests::{AccessRequest, Rule};

/// An access request with the preview of its scope.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestDetail {
    /// The request.
    #[serde(flatten)]
    pub request: AccessRequest,
    /// What its scope allows in the resource's API, when the resource names
    /// an OpenAPI document (`null` otherwise).
    pub preview: Option<Preview>,
}

/// A request with its preview.
pub fn detail(cfg: &Config, request: AccessRequest) -> RequestDetail {
    let scope: Vec<ScopeRule> = request.scope.iter().cloned().map(ScopeRule::from).collect();
    let preview = cfg.resource(&request.resource).and_then(|r| r.preview(&scope));
    RequestDetail { request, preview }
}

/// `POST /v1/preview`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuestion {
    /// The resource id.
    pub resource: String,
    /// The scope that would be requested.
    #[schema(min_items = 1, max_items = 32)]
    pub scope: Vec<Rule>,
}

/// What a scope would allow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScopePreview {
    /// The resource id.
    pub resource: String,
    /// The preview; `null` when the resource names no OpenAPI document.
    pub preview: Option<Preview>,
}

/// Preview what a scope would allow, creating nothing (a requester of the
/// resource; the same checks as a request).
#[utoipa::path(post, path = "/v1/preview", operation_id = "preview_scope", tag = "requests",
    security(("bearer" = [])), request_body = ScopeQuestion,
    responses(
        (status = 200, description = "What the scope would allow in the resource's API", body = ScopePreview),
        (status = 403, description = "Not a requester of the resource (`not_a_requester`)", body = Problem),
        (status = 422, description = "Unknown resource, or a scope that could not be requested (`unknown_resource`, `scope_invalid`, `scope_not_allowed`)", body = Problem)))]
pub async fn preview_scope(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiJson(input): ApiJson<ScopeQuestion>,
) -> Result<Json<ScopePreview>, ApiError> {
    let resource = policy::resource(&app.cfg, &input.resource)?;
    policy::may_request(resource, &p)?;
    let scope: Vec<ScopeRule> = input.scope.iter().cloned().map(ScopeRule::from).collect();
    policy::requested_scope(resource, &scope)?;
    Ok(Json(ScopePreview {
        resource: resource.id.clone(),
        preview: resource.preview(&scope),
    }))
}
