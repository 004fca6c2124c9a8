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

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::clock::new_id;
use crate::config::{Target, TargetKind};
use crate::requests::RequestRow;
use crate::store::Backend;
use crate::App;

/// Attempts before a delivery is given up (and shown as `failed`).
pub const MAX_ATTEMPTS: i64 = 15;

/// How long a claimed row is reserved for its sender.
const CLAIM_MS: i64 = 30_000;

/// Queues `event` about a request for every interested target, inside the
/// caller's transaction.
pub async fn enqueue(
    app: &App,
    conn: &mut AnyConnection,
    event: &str,
    row: &RequestRow,
    extra: Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    for target in app.cfg.targets.iter().filter(|t| t.wants(event, &row.resource)) {
        let payload = payload(app, target, event, row, &extra);
        sqlx::query(
            "INSERT INTO outbox (id, target, event, request_id, payload, state, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
        )
        .bind(new_id("dlv"))
        .bind(target.name.clone())
        .bind(event.to_owned())
        .bind(row.id.clone())
        .bind(payload.to_string())
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
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
        sqlx::query(
            "INSERT INTO outbox (id, target, event, request_id, payload, state, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, NULL, $4, 'pending', $5, $5)",
        )
        .bind(new_id("dlv"))
        .bind(target.name.clone())
        .bind(crate::config::AUDIT_CHECKPOINT_EVENT)
        .bind(payload.to_string())
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn payload(app: &App, target: &Target, event: &str, row: &RequestRow, extra: &Value) -> Value {
    let approvers: Vec<&String> = app
        .cfg
        .resource(&row.resource)
        .map(|r| r.approvers.iter().collect())
        .unwrap_or_default();
    let preview = crate::preview::for_resource(
        &app.cfg,
        &row.resource,
        row.scope.iter().cloned().map(grant::ScopeRule::from),
    );
    let base = json!({
        "event": event,
        "request": {
            "id": row.id, "resource": row.resource, "requester": row.requester, "scope": row.scope,
            "duration_seconds": row.duration_seconds, "reason": row.reason, "ticket": row.ticket,
            "break_glass": row.break_glass,
        },
        "approver_groups": approvers,
        "details": extra,
        "preview": preview,
    });
    // Text stored before bidi controls were refused is shown escaped.
    crate::text::shown_json(match target.kind {
        TargetKind::Webhook => base,
        TargetKind::Slack => with_preview(slack_message(event, row, extra), event, preview.as_ref()),
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
pub fn slack_message(event: &str, row: &RequestRow, extra: &Value) -> Value {
    let scope: Vec<String> = row
        .scope
        .iter()
        .map(|r| format!("{} {}", r.methods.join(","), r.paths.join(" ")))
        .collect();
    let minutes = row.duration_seconds / 60;
    let title = match event {
        "request.created" if row.break_glass => format!(
            ":rotating_light: Break-glass access by {} to {}",
            row.requester, row.resource
        ),
        "request.created" => format!("Access request from {} to {}", row.requester, row.resource),
        "request.approved" => format!(":white_check_mark: Approved: {} → {}", row.requester, row.resource),
        "request.denied" => format!(":no_entry: Denied: {} → {}", row.requester, row.resource),
        "grant.revoked" => format!(":octagonal_sign: Revoked: {} → {}", row.requester, row.resource),
        "grant.expiring_soon" => format!(":hourglass: Expiring soon: {} → {}", row.requester, row.resource),
        _ => format!("{event}: {} → {}", row.requester, row.resource),
    };
    let fields = format!(
        "*Requester:* {}\n*Resource:* {}\n*Scope:* {}\n*Duration:* {} min\n*Reason:* {}\n*Ticket:* {}",
        row.requester,
        row.resource,
        scope.join("; "),
        minutes,
        row.reason,
        row.ticket.as_deref().unwrap_or("-"),
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fields}}),
    ];
    if event == "request.created" && !row.break_glass {
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

/// One claimed delivery.
struct Due {
    id: String,
    target: String,
    event: String,
    payload: String,
    attempts: i64,
}

/// Claims due rows for this sender. On PostgreSQL `FOR UPDATE SKIP LOCKED`
/// lets replicas claim disjoint rows; the claim (`claimed_until`) also
/// survives this transaction so a slow delivery is not picked up twice.
async fn claim(app: &App, now_ms: i64, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    let select = match app.db.backend {
        Backend::Postgres => {
            "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 AND claimed_until < $1 \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        }
        Backend::Sqlite => {
            "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 AND claimed_until < $1 \
             ORDER BY next_attempt_at LIMIT $2"
        }
    };
    let mut tx = app.db.pool.begin().await?;
    let ids: Vec<String> = sqlx::query(select)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .filter_map(|r| r.try_get("id").ok())
        .collect();
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        let row = sqlx::query(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id = $2 \
             RETURNING id, target, event, payload, attempts",
        )
        .bind(now_ms + CLAIM_MS)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        due.push(Due {
            id: row.try_get("id")?,
            target: row.try_get("target")?,
            event: row.try_get("event")?,
            payload: row.try_get("payload")?,
            attempts: row.try_get("attempts")?,
        });
    }
    tx.commit().await?;
    Ok(due)
}

/// Backoff after `attempts` failures: 1 s doubling, at most 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    (1000i64 << attempts.clamp(0, 9) as u32).min(300_000)
}

async fn deliver(app: &App, http: &reqwest::Client, d: &Due) -> Result<(), String> {
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
    let due = claim(app, now, 50).await?;
    let mut ok = 0;
    let mut failed = 0;
    for d in due {
        let result = deliver(app, http, &d).await;
        let now = app.clock.now_ms();
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE outbox SET state = 'delivered', delivered_at = $1, last_error = NULL WHERE id = $2",
                )
                .bind(now)
                .bind(d.id.clone())
                .execute(&app.db.pool)
                .await?;
                app.metrics.notifications_delivered.inc();
                ok += 1;
            }
            Err(e) => {
                let state = if d.attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "pending"
                };
                sqlx::query("UPDATE outbox SET state = $1, next_attempt_at = $2, claimed_until = 0, last_error = $3 WHERE id = $4")
                    .bind(state)
                    .bind(now + backoff_ms(d.attempts))
                    .bind(e)
                    .bind(d.id.clone())
                    .execute(&app.db.pool)
                    .await?;
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

/// Delivery state for the API.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Delivery id (the idempotency key receivers see).
    pub id: String,
    /// Target name.
    pub target: String,
    /// Event.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Delivered at (ms).
    pub delivered_at: Option<i64>,
}

/// Deliveries about a request.
pub async fn deliveries(app: &App, request_id: &str) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, target, event, state, attempts, last_error, delivered_at FROM outbox WHERE request_id = $1 ORDER BY created_at, id",
    )
    .bind(request_id.to_owned())
    .fetch_all(&app.db.read)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                target: r.try_get("target")?,
                event: r.try_get("event")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                delivered_at: r.try_get("delivered_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 2000);
        assert_eq!(backoff_ms(2), 4000);
        assert_eq!(backoff_ms(30), 300_000);
    }
}
