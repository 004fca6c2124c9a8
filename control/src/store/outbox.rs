//! The `outbox` table: notifications to deliver, claimed by senders
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never claim the
//! same row; SQLite has one writer).

use sqlx::{AnyConnection, AnyPool, Row};

use super::{undecodable, Backend, Db};
use crate::states::OutboxState;

/// A delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Delivery id (the idempotency key receivers see).
    pub id: String,
    /// Target name.
    pub target: String,
    /// Event.
    pub event: String,
    /// The request it is about (none for audit checkpoints).
    pub request_id: Option<String>,
    /// The body to post.
    pub payload: String,
}

/// One claimed delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Delivery id.
    pub id: String,
    /// Target name.
    pub target: String,
    /// Event.
    pub event: String,
    /// The body to post.
    pub payload: String,
    /// Attempts including this one.
    pub attempts: i64,
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
    pub state: OutboxState,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Delivered at (ms).
    pub delivered_at: Option<i64>,
}

/// Queues a delivery, due now.
pub async fn insert(conn: &mut AnyConnection, d: &NewDelivery, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, target, event, request_id, payload, state, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(d.id.clone())
    .bind(d.target.clone())
    .bind(d.event.clone())
    .bind(d.request_id.clone())
    .bind(d.payload.clone())
    .bind(OutboxState::Pending.as_str())
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` due rows until `until_ms` (the claim survives the
/// transaction, so a slow delivery is not picked up twice).
pub async fn claim(db: &Db, now_ms: i64, until_ms: i64, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    let select = match db.backend {
        Backend::Postgres => {
            "SELECT id FROM outbox WHERE state = $1 AND next_attempt_at <= $2 AND claimed_until < $2 \
             ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED"
        }
        Backend::Sqlite => {
            "SELECT id FROM outbox WHERE state = $1 AND next_attempt_at <= $2 AND claimed_until < $2 \
             ORDER BY next_attempt_at LIMIT $3"
        }
    };
    let mut tx = db.pool.begin().await?;
    let ids: Vec<String> = sqlx::query(select)
        .bind(OutboxState::Pending.as_str())
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        let row = sqlx::query(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id = $2 \
             RETURNING id, target, event, payload, attempts",
        )
        .bind(until_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        due.push(Claimed {
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

/// Marks a delivery done.
pub async fn delivered(pool: &AnyPool, id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET state = $1, delivered_at = $2, last_error = NULL WHERE id = $3")
        .bind(OutboxState::Delivered.as_str())
        .bind(now_ms)
        .bind(id.to_owned())
        .execute(pool)
        .await?;
    Ok(())
}

/// Records a failed attempt: `state` is pending again (retried at
/// `next_ms`) or failed for good.
pub async fn attempt_failed(
    pool: &AnyPool,
    id: &str,
    state: OutboxState,
    next_ms: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET state = $1, next_attempt_at = $2, claimed_until = 0, last_error = $3 WHERE id = $4")
        .bind(state.as_str())
        .bind(next_ms)
        .bind(error.to_owned())
        .bind(id.to_owned())
        .execute(pool)
        .await?;
    Ok(())
}

/// Deliveries about a request.
pub async fn for_request(pool: &AnyPool, request_id: &str) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, target, event, state, attempts, last_error, delivered_at FROM outbox WHERE request_id = $1 ORDER BY created_at, id",
    )
    .bind(request_id.to_owned())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            let state: String = r.try_get("state")?;
            Ok(Delivery {
                state: OutboxState::from_db(&state).map_err(|e| undecodable("state", &id, e))?,
                id,
                target: r.try_get("target")?,
                event: r.try_get("event")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                delivered_at: r.try_get("delivered_at")?,
            })
        })
        .collect()
}
