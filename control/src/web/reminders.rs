//! Reminders: a request still pending after `console.remind_after_seconds`
//! is shown highlighted in the inbox, and its approvers are sent one
//! `request.reminder` notification through the outbox (so it is delivered,
//! retried and recorded like every other notification). The request row is
//! claimed with a conditional update, so on several replicas each request
//! is reminded once.

use serde_json::json;
use sqlx::Row;

use crate::notify::{Event, RequestFacts};
use crate::store::requests;
use crate::{notify, App};

/// Queues the reminders that are due; returns how many.
pub async fn sweep(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let due_before = now - (app.cfg.console.remind_after_seconds as i64) * 1000;
    let mut tx = app.db.pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE access_requests SET reminded_at = $1 \
         WHERE state = 'pending' AND reminded_at IS NULL AND created_at <= $2 AND pending_until > $1 RETURNING id",
    )
    .bind(now)
    .bind(due_before)
    .fetch_all(&mut *tx)
    .await?;
    for r in &claimed {
        let id: String = r.try_get("id")?;
        if let Some(row) = requests::load(&mut tx, &id).await? {
            let waiting = (now - row.created_at) / 1000;
            let event = Event {
                kind: "request.reminder",
                request: RequestFacts {
                    id: row.id,
                    resource: row.resource,
                    requester: row.requester,
                    scope: row.scope,
                    duration_seconds: row.duration_seconds,
                    reason: row.reason,
                    ticket: row.ticket,
                    break_glass: row.break_glass,
                },
                details: json!({"pending_seconds": waiting}),
            };
            notify::enqueue(app, &mut tx, &event, now).await?;
        }
    }
    tx.commit().await?;
    Ok(claimed.len())
}
