//! The benchmark's client of the control API: async `reqwest` over
//! keep-alive HTTP/1.1 connections, with the bearer tokens of the test
//! users minted once per run.

use serde_json::{json, Value};

use jitgate_e2e::control::{Control, INGEST_KEY};

/// The requester of every access request.
pub const REQUESTER: &str = "alice";
/// The approver of every access request.
pub const APPROVER: &str = "bob";
/// The auditor who verifies the chain.
pub const AUDITOR: &str = "ada";

/// A failed call: what was called and what came back.
pub type CallError = String;

/// Bearer tokens (valid for an hour) and the base URL of one control
/// service.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `Bearer <token>` of the requester.
    pub requester: String,
    /// `Bearer <token>` of the approver.
    pub approver: String,
    /// `Bearer <token>` of the auditor.
    pub auditor: String,
    /// `Bearer <ingest key>`.
    pub ingest: String,
}

impl Target {
    /// The target for a running control service.
    pub fn of(control: &Control) -> Target {
        Target {
            base: format!("http://127.0.0.1:{}", control.port),
            requester: format!("Bearer {}", control.token(REQUESTER)),
            approver: format!("Bearer {}", control.token(APPROVER)),
            auditor: format!("Bearer {}", control.token(AUDITOR)),
            ingest: format!("Bearer {INGEST_KEY}"),
        }
    }
}

/// One client: its own keep-alive connection pool.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4)
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

/// The body of every access request: read access to invoices for ten
/// minutes (not auto-approved: `alice` is not in `sre`).
pub fn new_request_body() -> Vec<u8> {
    json!({
        "resource": "payments-api",
        "scope": [{"methods": ["GET", "HEAD"], "paths": ["/v1/invoices/*"]}],
        "duration_seconds": 600,
        "reason": "control benchmark"
    })
    .to_string()
    .into_bytes()
}

/// Sends a request and returns the JSON body if the status is `want`.
pub async fn send(request: reqwest::RequestBuilder, want: u16, what: &str) -> Result<Value, CallError> {
    let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("{what}: body: {e}"))?;
    if status != want {
        return Err(format!(
            "{what}: status {status} (expected {want}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{what}: body is not JSON: {e}"))
}

/// `POST /v1/requests` as the requester; returns the request id.
pub async fn create_request(http: &reqwest::Client, t: &Target, body: &[u8]) -> Result<String, CallError> {
    let r = http
        .post(format!("{}/v1/requests", t.base))
        .header("authorization", &t.requester)
        .header("content-type", "application/json")
        .body(body.to_vec());
    let v = send(r, 201, "POST /v1/requests").await?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("POST /v1/requests: no id in {v}"))
}

/// `POST /v1/requests/{id}/approve` as the approver; checks the request is
/// now approved.
pub async fn approve(http: &reqwest::Client, t: &Target, id: &str) -> Result<(), CallError> {
    let r = http
        .post(format!("{}/v1/requests/{id}/approve", t.base))
        .header("authorization", &t.approver)
        .header("content-type", "application/json")
        .body(r#"{"comment":"ok"}"#);
    let v = send(r, 200, "POST /v1/requests/{id}/approve").await?;
    if v["state"] != "approved" {
        return Err(format!("approve: the request is {} after approval", v["state"]));
    }
    Ok(())
}

/// `GET /v1/requests/{id}/grant` as the requester: (grant id, token).
pub async fn fetch_grant(http: &reqwest::Client, t: &Target, id: &str) -> Result<(String, String), CallError> {
    let r = http
        .get(format!("{}/v1/requests/{id}/grant", t.base))
        .header("authorization", &t.requester);
    let v = send(r, 200, "GET /v1/requests/{id}/grant").await?;
    match (v["grant_id"].as_str(), v["token"].as_str()) {
        (Some(g), Some(token)) => Ok((g.to_owned(), token.to_owned())),
        _ => Err(format!("GET /v1/requests/{id}/grant: no grant in {v}")),
    }
}

/// `POST /v1/grants/{id}/revoke` as the approver.
pub async fn revoke(http: &reqwest::Client, t: &Target, grant_id: &str) -> Result<(), CallError> {
    let r = http
        .post(format!("{}/v1/grants/{grant_id}/revoke", t.base))
        .header("authorization", &t.approver)
        .header("content-type", "application/json")
        .body(r#"{"reason":"control benchmark"}"#);
    send(r, 200, "POST /v1/grants/{id}/revoke").await.map(|_| ())
}

/// `GET /v1/audit/verify` as the auditor: (intact, records checked).
pub async fn verify(http: &reqwest::Client, t: &Target) -> Result<(bool, i64), CallError> {
    let r = http
        .get(format!("{}/v1/audit/verify", t.base))
        .header("authorization", &t.auditor);
    let v = send(r, 200, "GET /v1/audit/verify").await?;
    Ok((v["ok"] == true, v["records"].as_i64().unwrap_or(-1)))
}
