//! Reminders: a request still pending after `console.remind_after_seconds`
//! is shown highlighted in the inbox, and its approvers are sent one
//! `request.reminder` notification through the outbox (so it is delivered,
//! retried and recorded like every other notification). The request row is
//! claimed with a conditional update, so on several replicas each request
//! is reminded once.

use serde_json::json;

use crate::notify::Event;
use crate::store::requests;
use crate::{notify, App};

/// Queues the reminders that are due; returns how many.
pub async fn sweep(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let due_before = now - (app.cfg.console.remind_after_seconds as i64) * 1000;
    let mut tx = app.db.pool.begin().await?;
    let claimed = requests::claim_reminders(&mut tx, now, due_before).await?;
    for id in &claimed {
        if let Some(row) = requests::load(&mut tx, id).await? {
            let waiting = (now - row.created_at) / 1000;
            let event = Event {
                kind: "request.reminder",
                request: crate::workflow::facts(&row),
                details: json!({"pending_seconds": waiting}),
            };
            notify::enqueue(app, &mut tx, &event, now).await?;
        }
    }
    tx.commit().await?;
    Ok(claimed.len())
}
