//! The OpenAPI document as the service serves it: complete (every route),
//! callable (parameters where they belong), honest about errors and
//! security, constrained, and linked. Schemathesis and a generated client
//! check it against the running service (`scripts/contract-check`); these
//! tests say what the document must hold.

mod common;

use std::collections::BTreeSet;

use common::{Backend, TestApp};
use serde_json::Value;

async fn app_and_document() -> (TestApp, Value) {
    let app = common::spawn_app_with(Backend::Sqlite, |config| {
        let at = config.find("[grants]").unwrap();
        let integrations = "[integrations]\nslack_signing_secret = { value = \"slack-secret-0123456789\" }\n\
             callback_secret = { value = \"callback-secret-0123456789\" }\n\n";
        format!("{}{integrations}{}", &config[..at], &config[at..])
    })
    .await
    .unwrap();
    let (status, doc) = app.call(reqwest::Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    (app, doc)
}

/// `(method, path, operation)` for every operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

#[tokio::test]
async fn every_route_of_the_service_is_in_the_document() {
    let (app, doc) = app_and_document().await;
    let documented: BTreeSet<String> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    let routes = [
        "POST /v1/requests",
        "GET /v1/requests",
        "GET /v1/requests/{id}",
        "POST /v1/preview",
        "GET /v1/insights",
        "POST /v1/requests/{id}/approve",
        "POST /v1/requests/{id}/deny",
        "POST /v1/requests/{id}/cancel",
        "POST /v1/requests/{id}/extend",
        "POST /v1/requests/{id}/review",
        "GET /v1/requests/{id}/grant",
        "GET /v1/requests/{id}/deliveries",
        "POST /v1/grants/{id}/revoke",
        "GET /v1/revocations",
        "GET /v1/proxy/grants",
        "POST /v1/audit/events",
        "GET /v1/audit",
        "GET /v1/audit/verify",
        "GET /v1/audit/export",
        "GET /v1/audit/counts",
        "GET /v1/audit/{seq}/proof",
        "GET /v1/audit/consistency",
        "POST /v1/integrations/slack/actions",
        "POST /v1/integrations/callback",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ];
    let expected: BTreeSet<String> = routes.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(documented, expected);
    app.finish().await;
}

#[tokio::test]
async fn path_parameters_are_declared_and_query_parameters_are_in_the_query() {
    let (app, doc) = app_and_document().await;
    for (method, path, op) in operations(&doc) {
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
        for p in params.iter().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{method} {path}");
        }
    }
    let list = &doc["paths"]["/v1/requests"]["get"]["parameters"];
    let state = list.as_array().unwrap().iter().find(|p| p["name"] == "state").unwrap();
    assert_eq!(state["in"], "query");
    assert_ne!(state["required"], true);
    let states = &doc["components"]["schemas"]["RequestState"]["enum"];
    assert_eq!(
        states,
        &serde_json::json!([
            "pending",
            "approved",
            "expired",
            "revoked",
            "denied",
            "cancelled",
            "timed_out"
        ])
    );
    app.finish().await;
}

#[tokio::test]
async fn people_and_proxies_authenticate_with_the_declared_schemes() {
    let (app, doc) = app_and_document().await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["ingest_key"]["scheme"], "bearer");
    for (method, path, op) in operations(&doc) {
        let scheme = op["security"][0].as_object().and_then(|s| s.keys().next().cloned());
        let expected = match path.as_str() {
            "/v1/revocations" | "/v1/proxy/grants" | "/v1/audit/events" => Some("ingest_key"),
            "/v1/integrations/slack/actions" => Some("slack_signature"),
            "/v1/integrations/callback" => Some("callback_signature"),
            p if p.starts_with("/v1/") => Some("bearer"),
            _ => None,
        };
        assert_eq!(scheme.as_deref(), expected, "{method} {path}");
        if expected.is_some() {
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn every_error_is_a_problem_document_and_the_body_errors_are_declared() {
    let (app, doc) = app_and_document().await;
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        for (status, response) in responses {
            if status.as_str() >= "400" {
                let types: Vec<&String> = response["content"].as_object().unwrap().keys().collect();
                assert_eq!(types, ["application/problem+json"], "{method} {path} {status}");
            }
        }
        if op["requestBody"]["content"]["application/json"].is_object() {
            for status in ["400", "413", "415"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
        }
        if path.contains('{') {
            assert!(responses.contains_key("404"), "{method} {path}: 404");
        }
    }
    let create = &doc["paths"]["/v1/requests"]["post"]["responses"];
    for status in ["201", "400", "401", "403", "413", "415", "422"] {
        assert!(create[status].is_object(), "create: {status}");
    }
    let approve = &doc["paths"]["/v1/requests/{id}/approve"]["post"]["responses"];
    for status in ["403", "404", "409", "422"] {
        assert!(approve[status].is_object(), "approve: {status}");
    }
    // Device binding's problems are declared where they can happen.
    let said = |r: &Value| r["description"].as_str().unwrap_or_default().to_owned();
    assert!(said(&create["409"]).contains("device_binding_unavailable"));
    assert!(said(&create["422"]).contains("device_binding_required"));
    assert!(said(&approve["409"]).contains("device_binding_unavailable"));
    app.finish().await;
}

#[tokio::test]
async fn device_binding_is_in_the_document() {
    let (app, doc) = app_and_document().await;
    let x5t = &doc["components"]["schemas"]["NewRequest"]["properties"]["cnf_x5t_s256"];
    assert_eq!(
        (&x5t["minLength"], &x5t["maxLength"]),
        (&43.into(), &43.into()),
        "{x5t}"
    );
    // The last character's class is exactly what the server decodes (a
    // schema-valid thumbprint the server refused was a Schemathesis find).
    assert_eq!(
        x5t["pattern"],
        format!("^[A-Za-z0-9_-]{{42}}[{}]$", control::policy::THUMBPRINT_LAST).as_str()
    );
    assert!(doc["components"]["schemas"]["AccessRequest"]["properties"]["cnf_x5t_s256"].is_object());
    // Both sync calls declare the headers that name the poller.
    for path in ["/v1/revocations", "/v1/proxy/grants"] {
        let headers: Vec<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            ["x-jitgate-proxy", "x-jitgate-grant-spec", "x-jitgate-resources"],
            "{path}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn bodies_carry_their_constraints_and_the_configured_values() {
    let (app, doc) = app_and_document().await;
    let new = &doc["components"]["schemas"]["NewRequest"];
    assert_eq!(new["additionalProperties"], false);
    assert_eq!(
        new["properties"]["resource"]["enum"],
        serde_json::json!(["payments-api", "hr-api"])
    );
    assert_eq!(new["properties"]["reason"]["maxLength"], 2000);
    assert_eq!(new["properties"]["reason"]["minLength"], 1);
    assert_eq!(new["properties"]["scope"]["maxItems"], 32);
    assert_eq!(new["properties"]["duration_seconds"]["minimum"], 60);
    assert_eq!(new["properties"]["duration_seconds"]["maximum"], 28800);
    let audit = doc["paths"]["/v1/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    let limit = audit.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&1.into(), &1000.into())
    );
    let approve = &doc["paths"]["/v1/requests/{id}/approve"]["post"]["requestBody"];
    assert_ne!(approve["required"], true, "the decision body is optional");
    assert!(approve["description"].as_str().unwrap().contains("empty or blank"));
    app.finish().await;
}

#[tokio::test]
async fn links_lead_from_a_new_request_through_its_workflow() {
    let (app, doc) = app_and_document().await;
    let ids: BTreeSet<String> = operations(&doc)
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    let created = &doc["paths"]["/v1/requests"]["post"]["responses"]["201"]["links"];
    for to in [
        "get_request",
        "approve_request",
        "deny_request",
        "cancel_request",
        "fetch_grant",
    ] {
        assert_eq!(created[to]["operationId"], to);
        assert_eq!(created[to]["parameters"]["id"], "$response.body#/id");
    }
    let grant = &doc["paths"]["/v1/requests/{id}/grant"]["get"]["responses"]["200"]["links"];
    assert_eq!(grant["revoke_grant"]["parameters"]["id"], "$response.body#/grant_id");
    for (_, _, op) in operations(&doc) {
        for response in op["responses"].as_object().unwrap().values() {
            for link in response["links"].as_object().into_iter().flat_map(|l| l.values()) {
                assert!(ids.contains(link["operationId"].as_str().unwrap()), "{link}");
            }
        }
    }
    app.finish().await;
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_reference_resolves() {
    let (app, doc) = app_and_document().await;
    let mut all = vec![];
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} is not defined");
    }
    app.finish().await;
}

#[tokio::test]
async fn integrations_that_are_not_configured_are_not_offered() {
    let app = common::spawn_app(Backend::Sqlite).await.unwrap();
    let (_, doc) = app.call(reqwest::Method::GET, "/openapi.json", None, None).await;
    assert!(doc["paths"]["/v1/integrations/callback"].is_null());
    assert!(doc["paths"]["/v1/requests"].is_object());
    app.finish().await;
}
