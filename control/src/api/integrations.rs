//! Approvals from where people work: Slack's interactive buttons and a
//! generic signed callback for other chat or ticket tools. Both verify a
//! signature over the raw body with a 5-minute replay window, refuse a
//! signature seen before, map the sender to a configured jitgate identity,
//! and then vote exactly as the API does (same policy, same checks). Every
//! refusal is audited with its channel.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::signature::{self, Refusal};

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused(code: &'static str, message: &str) -> ApiError {
    ApiError::Unauthenticated(code, message.to_owned())
}

/// Counts a call whose signature does not hold (anyone can send those)
/// and audits it through the per-source aggregation of failed
/// authentication, like the API's and the proxies': one record per source
/// and reason per window, never one per call.
fn refuse_unsigned(app: &AppState, caller: &Caller, channel: &'static str, code: &'static str) {
    app.metrics.auth_failures.inc();
    let failure = super::auth_failures::Failure {
        source: &caller.source,
        reason: code,
        channel,
        method: "POST",
        path: &caller.path,
    };
    app.auth_failures.record(failure, app.clock.now_ms());
}

/// Who called, as known before the body is read.
struct Caller {
    source: String,
    path: String,
}

impl Caller {
    fn of(req: &Request) -> Caller {
        Caller {
            source: super::source_of(req),
            path: req.uri().path().to_owned(),
        }
    }
}

async fn audit_refusal(app: &AppState, channel: &str, actor: &str, code: &str, request_id: Option<&str>) {
    let e = Entry {
        actor: actor.to_owned(),
        action: "integration.refused".into(),
        request_id: request_id.map(str::to_owned),
        channel: Some(channel.to_owned()),
        details: json!({"code": code}),
        ..Entry::default()
    };
    if let Err(err) = audit::append_alone(&app.db, app.clock.now_ms(), &[e]).await {
        tracing::error!(error = %err, "could not audit a refused integration call");
    }
}

/// What can be checked of a signature before the body is read: a
/// timestamp that parses and is inside the replay window. Anything else
/// is refused without reading (let alone buffering) the body.
fn fresh(timestamp: Option<i64>, now_s: i64) -> Result<(), Refusal> {
    let t = timestamp.ok_or(Refusal::Malformed)?;
    if (now_s - t).abs() > signature::REPLAY_WINDOW_S {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// The raw body (within the router's body limit), once the cheap checks
/// passed.
async fn raw_body(req: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("body_unreadable", rejection.body_text())
        }
    })
}

/// Records a signature as used; false if it was seen before (a replay).
async fn first_use(app: &AppState, signature: &str) -> Result<bool, ApiError> {
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    sqlx::query("DELETE FROM inbound_signatures WHERE seen_at < $1")
        .bind(now - 2 * signature::REPLAY_WINDOW_S * 1000)
        .execute(&mut *tx)
        .await?;
    let fresh = sqlx::query("INSERT INTO inbound_signatures (signature, seen_at) VALUES ($1, $2)")
        .bind(signature.to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await
        .is_ok();
    if fresh {
        tx.commit().await?;
    }
    Ok(fresh)
}

fn principal_for(app: &AppState, chat_id: &str) -> Option<Principal> {
    app.cfg
        .integrations
        .users
        .iter()
        .find(|u| u.chat_id == chat_id)
        .map(|u| Principal {
            id: u.user.clone(),
            email: u.email.clone(),
            groups: u.groups.clone(),
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Slack interactivity: the Approve / Deny buttons of a request message.
#[utoipa::path(post, path = "/v1/integrations/slack/actions", operation_id = "slack_actions", tag = "integrations",
    security(("slack_signature" = [])),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Slack's interactive payload (`payload=<JSON>`)"),
    responses(
        (status = 200, description = "The vote was recorded; `text` says the outcome", body = Object),
        (status = 400, description = "No interactive payload, or an unknown action (`slack_payload_invalid`, `slack_action_unknown`)", body = super::Problem),
        (status = 401, description = "The signature is missing, wrong or outside the 5-minute window (`slack_timestamp_invalid`, `slack_signature_invalid`, `slack_replay_window`)", body = super::Problem),
        (status = 403, description = "The Slack user is not mapped, or the vote is refused by policy (`chat_user_unknown`, `self_approval`...)", body = super::Problem),
        (status = 404, description = "Slack is not configured, or no such request (`not_found`, `request_not_found`)", body = super::Problem),
        (status = 409, description = "Replayed, or the request is resolved (`slack_replayed`, `request_resolved`...)", body = super::Problem),
        (status = 413, description = "The body is too large (`payload_too_large`)", body = super::Problem)))]
pub async fn slack_actions(State(app): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let Some(secret) = app.cfg.integrations.slack_signing_secret.clone() else {
        return Err(ApiError::NotFound("not_found", "Slack is not configured".into()));
    };
    let caller = Caller::of(&req);
    let headers = req.headers().clone();
    let ts = header(&headers, "x-slack-request-timestamp").unwrap_or_default();
    let sig = header(&headers, "x-slack-signature").unwrap_or_default();
    let checked = match fresh(ts.parse().ok(), app.clock.now_s()) {
        Ok(()) if sig.starts_with("v0=") => {
            let body = raw_body(req).await?;
            signature::verify_slack_v0(&secret, ts, &body, sig, app.clock.now_s()).map(|()| body)
        }
        Ok(()) => Err(Refusal::Malformed),
        Err(refusal) => Err(refusal),
    };
    let body = match checked {
        Ok(body) => body,
        Err(refusal) => {
            let code = match refusal {
                Refusal::Malformed => "slack_timestamp_invalid",
                Refusal::Stale => "slack_replay_window",
                Refusal::Mismatch => "slack_signature_invalid",
            };
            refuse_unsigned(&app, &caller, "slack", code);
            return Err(refused(code, "the Slack signature is missing, wrong or too old"));
        }
    };
    if !first_use(&app, sig).await? {
        audit_refusal(&app, "slack", "anonymous", "slack_replayed", None).await;
        return Err(ApiError::Conflict(
            "slack_replayed",
            "this Slack request was already processed".into(),
        ));
    }
    // From here on the call is signed by Slack: every refusal is audited.
    let text = std::str::from_utf8(&body).unwrap_or_default();
    let Some(payload) = text
        .split('&')
        .find_map(|kv| kv.strip_prefix("payload="))
        .map(percent_decode)
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
    else {
        audit_refusal(&app, "slack", "slack", "slack_payload_invalid", None).await;
        return Err(ApiError::BadRequest(
            "slack_payload_invalid",
            "no interactive payload".into(),
        ));
    };
    let slack_user = payload["user"]["id"].as_str().unwrap_or_default().to_owned();
    let action = &payload["actions"][0];
    let request_id = action["value"].as_str().unwrap_or_default().to_owned();
    let approve = match action["action_id"].as_str() {
        Some("jitgate_approve") => true,
        Some("jitgate_deny") => false,
        _ => {
            let linked = Some(request_id.as_str()).filter(|r| !r.is_empty());
            audit_refusal(
                &app,
                "slack",
                &format!("slack:{slack_user}"),
                "slack_action_unknown",
                linked,
            )
            .await;
            return Err(ApiError::BadRequest("slack_action_unknown", "unknown action".into()));
        }
    };
    let Some(p) = principal_for(&app, &slack_user) else {
        audit_refusal(
            &app,
            "slack",
            &format!("slack:{slack_user}"),
            "chat_user_unknown",
            Some(&request_id),
        )
        .await;
        return Err(ApiError::Forbidden(
            "chat_user_unknown",
            "this Slack user is not mapped to a jitgate identity".into(),
        ));
    };
    let result = crate::workflow::vote(&app, &p, &request_id, approve, None, "slack").await;
    let outcome = match &result {
        Ok(r) => format!(
            "{} by {} ({})",
            if approve { "Approved" } else { "Denied" },
            p.id,
            r.state
        ),
        Err(e) => {
            audit_refusal(&app, "slack", &p.id, e.code(), Some(&request_id)).await;
            format!("Refused: {e}")
        }
    };
    // Update the message through Slack's response_url, off the request.
    if let Some(url) = payload["response_url"].as_str().filter(|u| u.starts_with("http")) {
        let url = url.to_owned();
        let message = json!({"replace_original": result.is_ok(), "response_type": "ephemeral", "text": outcome});
        tokio::spawn(async move {
            let _ = reqwest::Client::new().post(url).json(&message).send().await;
        });
    }
    result.map(|r| Json(json!({"text": outcome, "request": r})))
}

/// A decision from another chat or ticket tool.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// The access request.
    pub request_id: String,
    /// `approve` or `deny`.
    #[schema(value_type = crate::states::VoteDecision)]
    pub decision: String,
    /// The tool's id of the person deciding (mapped in `integrations.users`).
    pub actor: String,
    /// A comment.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// Generic signed callback: `x-jitgate-signature: t=<unix s>,v1=<hex>` with
/// `v1 = HMAC-SHA256(callback_secret, "<t>.<raw body>")`, the same scheme as
/// outgoing webhooks; 5-minute window; each signature accepted once.
#[utoipa::path(post, path = "/v1/integrations/callback", operation_id = "signed_callback", tag = "integrations",
    security(("callback_signature" = [])), request_body = Callback,
    responses(
        (status = 200, description = "The vote was recorded", body = crate::requests::AccessRequest),
        (status = 401, description = "The signature is missing, wrong or outside the 5-minute window (`callback_signature_invalid`)", body = super::Problem),
        (status = 403, description = "The actor is not mapped, or the vote is refused by policy (`chat_user_unknown`, `self_approval`...)", body = super::Problem),
        (status = 404, description = "Callbacks are not configured, or no such request (`not_found`, `request_not_found`)", body = super::Problem),
        (status = 409, description = "Replayed, or the request is resolved (`callback_replayed`, `request_resolved`...)", body = super::Problem),
        (status = 422, description = "The decision or comment is invalid (`decision_invalid`, `comment_invalid`)", body = super::Problem)))]
pub async fn callback(State(app): State<AppState>, req: Request) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(secret) = app.cfg.integrations.callback_secret.clone() else {
        return Err(ApiError::NotFound(
            "not_found",
            "signed callbacks are not configured".into(),
        ));
    };
    let caller = Caller::of(&req);
    let header_value = header(req.headers(), "x-jitgate-signature")
        .unwrap_or_default()
        .to_owned();
    let now_s = app.clock.now_s();
    let checked = match fresh(signature::parse_webhook_header(&header_value).map(|(t, _)| t), now_s) {
        Ok(()) => {
            let body = raw_body(req).await?;
            signature::verify_webhook(&secret, &header_value, &body, now_s).map(|v1| (v1.to_owned(), body))
        }
        Err(refusal) => Err(refusal),
    };
    let (v1, body) = match checked {
        Ok(checked) => checked,
        Err(_) => {
            refuse_unsigned(&app, &caller, "callback", "callback_signature_invalid");
            return Err(refused(
                "callback_signature_invalid",
                "the signature is missing, wrong or too old",
            ));
        }
    };
    if !first_use(&app, &v1).await? {
        audit_refusal(&app, "callback", "anonymous", "callback_replayed", None).await;
        return Err(ApiError::Conflict(
            "callback_replayed",
            "this callback was already processed".into(),
        ));
    }
    // From here on the call is signed: every refusal is audited.
    let cb: Callback = match super::decode_object(&body) {
        Ok(cb) => cb,
        Err(e) => {
            audit_refusal(&app, "callback", "callback", e.code(), None).await;
            return Err(e);
        }
    };
    let approve = match cb.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            let actor = format!("callback:{}", cb.actor);
            audit_refusal(&app, "callback", &actor, "decision_invalid", Some(&cb.request_id)).await;
            return Err(ApiError::Invalid(
                "decision_invalid",
                "decision is approve or deny".into(),
            ));
        }
    };
    let Some(p) = principal_for(&app, &cb.actor) else {
        audit_refusal(
            &app,
            "callback",
            &format!("callback:{}", cb.actor),
            "chat_user_unknown",
            Some(&cb.request_id),
        )
        .await;
        return Err(ApiError::Forbidden(
            "chat_user_unknown",
            "this actor is not mapped to a jitgate identity".into(),
        ));
    };
    match crate::workflow::vote(&app, &p, &cb.request_id, approve, cb.comment, "callback").await {
        Ok(r) => Ok((StatusCode::OK, Json(serde_json::to_value(r).unwrap_or_default()))),
        Err(e) => {
            audit_refusal(&app, "callback", &p.id, e.code(), Some(&cb.request_id)).await;
            Err(e)
        }
    }
}
