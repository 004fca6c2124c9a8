//! The OpenAPI document, derived from the handlers' annotations and the
//! types they take and return (utoipa), then completed by rules that hold
//! for every operation, so they are stated once instead of on each handler:
//!
//! - the security schemes (people's bearer JWTs, the proxies' ingest key,
//!   the Slack and callback signatures);
//! - the errors every operation can answer given its shape (401 when it
//!   is authenticated, 400/413/415 when it takes a JSON body, 400 when it
//!   takes a query string, 404 when its path names an id, 503 when it
//!   needs the database), all as `application/problem+json`;
//! - the links between operations (a created request's id feeds its
//!   approval, its grant, ...), which is what lets a stateful tester or a
//!   client generator walk the workflow;
//! - and, as served by a running service, the values its configuration
//!   allows (resource ids, the range of durations).

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::{audit_proofs, counts, handlers, insights, integrations, preview, proxy};
use crate::config::Config;

/// The annotated operations and schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jitgate control API",
        description = "Just-in-time access requests, approvals, grants, revocation and audit. \
            People authenticate with a bearer JWT from the identity provider (`bearer`), \
            proxies with the ingest key (`ingest_key`). Every error is an RFC 9457 problem \
            document (`application/problem+json`) with a stable `code`; errors about one \
            field of the body or query string name it in `errors`."
    ),
    paths(
        handlers::create_request,
        handlers::list_requests,
        handlers::get_request,
        preview::preview_scope,
        insights::insights,
        handlers::approve,
        handlers::deny,
        handlers::cancel,
        handlers::extend,
        handlers::review,
        handlers::fetch_grant,
        handlers::deliveries,
        handlers::revoke_grant,
        handlers::audit_query,
        handlers::audit_verify,
        handlers::audit_export,
        counts::decision_counts,
        audit_proofs::inclusion,
        audit_proofs::consistency,
        proxy::revocations,
        proxy::grant_set,
        proxy::ingest,
        integrations::slack_actions,
        integrations::callback,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        handlers::openapi,
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "requests", description = "Access requests and their workflow"),
        (name = "grants", description = "Grant tokens and revocation"),
        (name = "audit", description = "The audit log: hash-chained, a Merkle tree under signed checkpoints, with inclusion and consistency proofs"),
        (name = "proxies", description = "What proxies sync and report (ingest key)"),
        (name = "integrations", description = "Approvals from chat and ticket tools (signed)"),
        (name = "service", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// An RFC 9457 problem document: the shape of every error.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// A URI naming the problem type (`https://jitgate.dev/problems/<code>`).
    r#type: String,
    /// Short summary (the HTTP reason phrase).
    title: String,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// Stable machine-readable code (`self_approval`, `invalid_body`...).
    code: String,
    /// What went wrong, for people.
    detail: String,
    /// For errors about one field of the body or query string: which.
    errors: Option<Vec<FieldError>>,
}

/// One field that is not as it should be.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FieldError {
    /// Its path (`duration_seconds`, `scope[0].methods`, `limit`).
    field: String,
    /// What is wrong (`expected an integer`).
    detail: String,
}

/// The document, with the configuration's values when one is given (as
/// `GET /openapi.json` serves it).
pub fn document(cfg: Option<&Config>) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_security_schemes(&mut doc);
    add_errors(&mut doc);
    add_links(&mut doc);
    if let Some(cfg) = cfg {
        add_configured_values(&mut doc, cfg);
    }
    doc
}

fn add_security_schemes(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A person's token from the identity provider (development: `jitgate dev-token`)."},
        "ingest_key": {"type": "http", "scheme": "bearer",
                       "description": "The proxies' ingest key (`ingest_key` in the service configuration)."},
        "slack_signature": {"type": "apiKey", "in": "header", "name": "x-slack-signature",
                            "description": "Slack's v0 request signature, with x-slack-request-timestamp."},
        "callback_signature": {"type": "apiKey", "in": "header", "name": "x-jitgate-signature",
                               "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256(callback_secret, \"<t>.<body>\")>`."},
    });
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn problem_content() -> Value {
    json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}})
}

/// The errors an operation can answer given its shape, each a problem
/// document; errors its annotation declares keep their description.
fn add_errors(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else { continue };
            let authenticated = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())));
            let json_body = op["requestBody"]["content"].get("application/json").is_some();
            let query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let mut add = vec![];
            if json_body {
                add.extend([
                    ("400", "The body is not JSON, not an object, or a field has the wrong type (`invalid_json`, `invalid_body`; `errors` names the field)"),
                    ("413", "The body is larger than this endpoint accepts (`payload_too_large`)"),
                    ("415", "The body is not `application/json` (`unsupported_media_type`)"),
                ]);
            }
            if query {
                add.push((
                    "400",
                    "A query parameter is unknown or has a bad value (`invalid_query`; `errors` names it)",
                ));
            }
            if authenticated {
                add.push((
                    "401",
                    "Missing or invalid credentials (`auth_*`, `ingest_key_invalid`, signature codes)",
                ));
            }
            if path.contains('{') {
                add.push((
                    "400",
                    "A path parameter is not valid UTF-8 (`invalid_path`; `errors` names it)",
                ));
                add.push(("404", "No such thing, or one the caller may not see"));
            }
            if path.starts_with("/v1/") {
                add.push(("503", "The database is unavailable (`service_unavailable`)"));
            }
            let responses = &mut op["responses"];
            for (status, description) in add {
                if responses.get(status).is_none() {
                    responses[status] = json!({"description": description});
                }
            }
            if let Some(responses) = responses.as_object_mut() {
                for (status, response) in responses.iter_mut() {
                    if status.as_str() >= "400" {
                        response["content"] = problem_content();
                    }
                }
            }
        }
    }
}

/// `(from operation, status, link name, to operation, parameter, where)`.
const LINKS: &[(&str, &str, &str, &str, &str)] = &[
    ("create_request", "201", "get_request", "id", "$response.body#/id"),
    ("create_request", "201", "approve_request", "id", "$response.body#/id"),
    ("create_request", "201", "deny_request", "id", "$response.body#/id"),
    ("create_request", "201", "cancel_request", "id", "$response.body#/id"),
    ("create_request", "201", "extend_request", "id", "$response.body#/id"),
    ("create_request", "201", "review_request", "id", "$response.body#/id"),
    ("create_request", "201", "fetch_grant", "id", "$response.body#/id"),
    ("create_request", "201", "list_deliveries", "id", "$response.body#/id"),
    ("extend_request", "201", "get_request", "id", "$response.body#/id"),
    ("extend_request", "201", "approve_request", "id", "$response.body#/id"),
    ("approve_request", "200", "fetch_grant", "id", "$response.body#/id"),
    ("approve_request", "200", "get_request", "id", "$response.body#/id"),
    ("review_request", "200", "get_request", "id", "$response.body#/id"),
    ("fetch_grant", "200", "revoke_grant", "id", "$response.body#/grant_id"),
];

fn add_links(doc: &mut Value) {
    let mut operations: Map<String, Value> = Map::new();
    for (from, status, to, parameter, source) in LINKS {
        let link = json!({"operationId": to, "parameters": {*parameter: source}});
        operations
            .entry(format!("{from} {status}"))
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert((*to).to_owned(), link));
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else { continue };
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                if let Some(links) = operations.get(&format!("{id} {status}")) {
                    response["links"] = links.clone();
                }
            }
        }
    }
}

/// What this service's configuration allows: the integrations it has,
/// the resource ids, and the range of durations (the longest any resource allows; each resource's
/// own maximum is checked on the server, 422 `duration_out_of_range`).
fn add_configured_values(doc: &mut Value, cfg: &Config) {
    let resources: Vec<&str> = cfg.resources.iter().map(|r| r.id.as_str()).collect();
    let longest = cfg.resources.iter().map(|r| r.max_duration_seconds).max().unwrap_or(0);
    // Integrations that are not configured answer 404 to everything.
    if let Some(paths) = doc["paths"].as_object_mut() {
        if cfg.integrations.slack_signing_secret.is_none() {
            paths.remove("/v1/integrations/slack/actions");
        }
        if cfg.integrations.callback_secret.is_none() {
            paths.remove("/v1/integrations/callback");
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    for schema in ["NewRequest", "ScopeQuestion"] {
        schemas[schema]["properties"]["resource"]["enum"] = json!(resources);
    }
    for schema in ["NewRequest", "Extension"] {
        let duration = &mut schemas[schema]["properties"]["duration_seconds"];
        duration["minimum"] = json!(cfg.min_ttl_seconds);
        duration["maximum"] = json!(longest);
    }
}
