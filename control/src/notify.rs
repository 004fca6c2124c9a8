//! Notifications: who must hear about what, delivered durably.
//!
//! Events are written to an outbox in the same transaction as the change
//! they announce, one row per interested target. A background sender claims
//! due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never send
//! the same row twice; SQLite has one writer), posts them, and on failure
//! retries with exponential backoff. Each row is independent, so a target
//! that keeps failing holds back nobody else.
//!
//! Webhooks carry `x-jitgate-signature: t=<unix seconds>,v1=<hex>` where
//! `v1 = HMAC-SHA256(secret, "<t>.<body>")`; receivers recompute it, compare
//! in constant time, and refuse timestamps older than 5 minutes and delivery
//! ids (`x-jitgate-delivery`) they have already processed (see
//! [`crate::signature`]).

use std::sync::Arc;
use std::time::Duration;

use grant::scope::ScopeRule;
use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::clock::new_id;
use crate::config::{Target, TargetKind};
use crate::states::OutboxState;
use crate::store::outbox::{self, Claimed, NewDelivery};
use crate::App;

pub use crate::store::outbox::Delivery;

/// Attempts before a delivery is given up (and shown as `failed`).
pub const MAX_ATTEMPTS: i64 = 15;

/// How long a claimed row is reserved for its sender.
const CLAIM_MS: i64 = 30_000;

/// What a notification says about the request it concerns.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// Request id.
    pub id: String,
    /// Resource id.
    pub resource: String,
    /// Who asked.
    pub requester: String,
    /// What.
    pub scope: Vec<ScopeRule>,
    /// For how long.
    pub duration_seconds: i64,
    /// When the window starts (seconds), for a scheduled request.
    pub starts_at: Option<i64>,
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// Break-glass access.
    pub break_glass: bool,
}

/// Something to announce: what happened (`request.created`,
/// `grant.revoked`, ...), about which request, with event details.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event name, as targets subscribe to it.
    pub kind: &'static str,
    /// The request concerned.
    pub request: RequestFacts,
    /// Event details (approver, comment, reason...).
    pub details: Value,
}

/// Queues an event for every interested target, inside the caller's
/// transaction.
pub async fn enqueue(app: &App, conn: &mut AnyConnection, event: &Event, now_ms: i64) -> Result<(), sqlx::Error> {
    for target in app
        .cfg
        .targets
        .iter()
        .filter(|t| t.wants(event.kind, &event.request.resource))
    {
        let delivery = NewDelivery {
            id: new_id("dlv"),
            target: target.name.clone(),
            event: event.kind.to_owned(),
            request_id: Some(event.request.id.clone()),
            payload: payload(app, target, event).to_string(),
        };
        outbox::insert(conn, &delivery, now_ms).await?;
    }
    Ok(())
}

/// Queues a signed audit checkpoint for every webhook target that asked
/// for `audit.checkpoint`, inside the caller's transaction: delivered at
/// least once, signed like every webhook, with the Ed25519-signed note in
/// the body for the receiver to keep as a witness.
pub async fn enqueue_checkpoint(
    app: &App,
    conn: &mut AnyConnection,
    size: u64,
    note: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let payload = json!({
        "event": crate::config::AUDIT_CHECKPOINT_EVENT,
        "checkpoint": {"size": size, "note": note},
    });
    for target in app.cfg.targets.iter().filter(|t| t.wants_checkpoints()) {
        let delivery = NewDelivery {
            id: new_id("dlv"),
            target: target.name.clone(),
            event: crate::config::AUDIT_CHECKPOINT_EVENT.to_owned(),
            request_id: None,
            payload: payload.to_string(),
        };
        outbox::insert(conn, &delivery, now_ms).await?;
    }
    Ok(())
}

fn scope_json(scope: &[ScopeRule]) -> Value {
    scope
        .iter()
        .map(|r| json!({"methods": r.methods, "paths": r.paths}))
        .collect()
}

fn payload(app: &App, target: &Target, event: &Event) -> Value {
    let row = &event.request;
    let approvers: Vec<&String> = app
        .cfg
        .resource(&row.resource)
        .map(|r| r.approvers.iter().collect())
        .unwrap_or_default();
    let preview = app.cfg.resource(&row.resource).and_then(|r| r.preview(&row.scope));
    let base = json!({
        "event": event.kind,
        "request": {
            "id": row.id, "resource": row.resource, "requester": row.requester, "scope": scope_json(&row.scope),
            "duration_seconds": row.duration_seconds, "starts_at": row.starts_at, "reason": row.reason,
            "ticket": row.ticket, "break_glass": row.break_glass,
        },
        "approver_groups": approvers,
        "details": event.details,
        "preview": preview,
    });
    // Text stored before bidi controls were refused is shown escaped.
    crate::text::shown_json(match target.kind {
        TargetKind::Webhook => base,
        TargetKind::Slack => with_preview(slack_message(event), event.kind, preview.as_ref()),
    })
}

/// Adds what the scope would allow to a Slack message about a new request,
/// where an approver decides (Slack limits a section to 3,000 characters:
/// 20 short lines fit).
fn with_preview(mut message: Value, event: &str, preview: Option<&crate::preview::Preview>) -> Value {
    let (Some(p), "request.created", Some(blocks)) = (preview, event, message["blocks"].as_array_mut()) else {
        return message;
    };
    let lines: String = crate::preview::render_short(p, 20)
        .join("\n")
        .chars()
        .take(2900)
        .collect();
    let text = format!("*What this allows:*\n```{lines}```");
    blocks.insert(2, json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    message
}

/// A Slack-compatible message: who, what, for how long and why, with
/// Approve / Deny buttons while the request is pending.
pub fn slack_message(event: &Event) -> Value {
    let (row, extra) = (&event.request, &event.details);
    let scope: Vec<String> = row
        .scope
        .iter()
        .map(|r| format!("{} {}", r.methods.join(","), r.paths.join(" ")))
        .collect();
    let minutes = row.duration_seconds / 60;
    let title = match event.kind {
        "request.created" if row.break_glass => format!(
            ":rotating_light: Break-glass access by {} to {}",
            row.requester, row.resource
        ),
        "request.created" => format!("Access request from {} to {}", row.requester, row.resource),
        "request.reminder" => format!(":bell: Still waiting: {} → {}", row.requester, row.resource),
        "request.approved" => format!(":white_check_mark: Approved: {} → {}", row.requester, row.resource),
        "request.denied" => format!(":no_entry: Denied: {} → {}", row.requester, row.resource),
        "grant.revoked" => format!(":octagonal_sign: Revoked: {} → {}", row.requester, row.resource),
        "grant.expiring_soon" => format!(":hourglass: Expiring soon: {} → {}", row.requester, row.resource),
        other => format!("{other}: {} → {}", row.requester, row.resource),
    };
    // Slack shows the start in the reader's time zone; the fallback is UTC.
    let start = row.starts_at.map_or_else(
        || "on approval".to_owned(),
        |at| {
            format!(
                "<!date^{at}^{{date_short_pretty}} {{time}}|{}>",
                crate::clock::rfc3339(at)
            )
        },
    );
    let fields = format!(
        "*Requester:* {}\n*Resource:* {}\n*Scope:* {}\n*Duration:* {} min\n*Starts:* {}\n*Reason:* {}\n*Ticket:* {}",
        row.requester,
        row.resource,
        scope.join("; "),
        minutes,
        start,
        row.reason,
        row.ticket.as_deref().unwrap_or("-"),
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fields}}),
    ];
    if matches!(event.kind, "request.created" | "request.reminder") && !row.break_glass {
        blocks.push(
            json!({"type": "actions", "block_id": format!("jitgate:{}", row.id), "elements": [
                {"type": "button", "action_id": "jitgate_approve", "style": "primary", "value": row.id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": "jitgate_deny", "style": "danger", "value": row.id,
                 "text": {"type": "plain_text", "text": "Deny"}},
            ]}),
        );
    }
    if let Some(c) = extra.get("comment").and_then(Value::as_str) {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("_{c}_")}]}));
    }
    json!({"text": title, "blocks": blocks})
}

/// Backoff after `attempts` failures: 1 s doubling, at most 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    (1000i64 << attempts.clamp(0, 9) as u32).min(300_000)
}

async fn deliver(app: &App, http: &reqwest::Client, d: &Claimed) -> Result<(), String> {
    let target = app
        .cfg
        .targets
        .iter()
        .find(|t| t.name == d.target)
        .ok_or("target no longer configured")?;
    let mut req = http
        .post(&target.url)
        .header("content-type", "application/json")
        .header("x-jitgate-delivery", &d.id)
        .header("x-jitgate-event", &d.event)
        .body(d.payload.clone());
    if let Some(secret) = &target.secret {
        req = req.header(
            "x-jitgate-signature",
            crate::signature::sign_webhook(secret, app.clock.now_s(), d.payload.as_bytes()),
        );
    }
    let resp = req.send().await.map_err(|e| format!("send: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("target answered {}", resp.status()))
    }
}

/// Delivers what is due once; returns (delivered, failed).
pub async fn send_due(app: &App, http: &reqwest::Client) -> Result<(usize, usize), sqlx::Error> {
    let now = app.clock.now_ms();
    let due = outbox::claim(&app.db, now, now + CLAIM_MS, 50).await?;
    let mut ok = 0;
    let mut failed = 0;
    for d in due {
        let result = deliver(app, http, &d).await;
        let now = app.clock.now_ms();
        match result {
            Ok(()) => {
                outbox::delivered(&app.db.pool, &d.id, now).await?;
                app.metrics.notifications_delivered.inc();
                ok += 1;
            }
            Err(e) => {
                let state = if d.attempts >= MAX_ATTEMPTS {
                    OutboxState::Failed
                } else {
                    OutboxState::Pending
                };
                outbox::attempt_failed(&app.db.pool, &d.id, state, now + backoff_ms(d.attempts), &e).await?;
                app.metrics.notifications_failed.inc();
                failed += 1;
            }
        }
    }
    Ok((ok, failed))
}

/// The sender loop.
pub async fn run(app: Arc<App>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if app.cfg.targets.is_empty() {
            continue;
        }
        if let Err(e) = send_due(&app, &http).await {
            tracing::warn!(error = %e, "notification sender failed");
        }
    }
}

/// Deliveries about a request.
pub async fn deliveries(app: &App, request_id: &str) -> Result<Vec<Delivery>, sqlx::Error> {
    outbox::for_request(&app.db.read, request_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(starts_at: Option<i64>) -> Event {
        Event {
            kind: "request.created",
            request: RequestFacts {
                id: "req_1".into(),
                resource: "payments-api".into(),
                requester: "alice".into(),
                scope: vec![ScopeRule {
                    methods: vec!["GET".into()],
                    paths: vec!["/v1/invoices/*".into()],
                }],
                duration_seconds: 1800,
                starts_at,
                reason: "month-end close".into(),
                ticket: None,
                break_glass: false,
            },
            details: json!({}),
        }
    }

    #[test]
    fn a_slack_message_says_when_the_window_starts() {
        let text = |e: &Event| {
            slack_message(e)["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(text(&created(None)).contains("*Starts:* on approval"));
        let scheduled = text(&created(Some(1_796_263_200)));
        assert!(
            scheduled.contains("*Starts:* <!date^1796263200^{date_short_pretty} {time}|2026-12-03T02:00:00Z>"),
            "{scheduled}"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 2000);
        assert_eq!(backoff_ms(2), 4000);
        assert_eq!(backoff_ms(30), 300_000);
    }
}
