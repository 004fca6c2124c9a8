//! What time alone changes, recorded by the background sweeper: pending
//! requests that timed out, grants that expired, grants about to expire.
//! Safe on several replicas: each record is claimed with a conditional
//! update, one transaction per item.

use serde_json::json;

use super::{event, load_for_notice, time_out};
use crate::audit::{self, Entry};
use crate::store::grants::{self as grant_rows, Flag};
use crate::store::requests as request_rows;
use crate::{notify, App};

/// Times out pending requests whose deadline passed (the API already shows
/// them as timed out; this records it). Returns how many.
pub async fn sweep_timeouts(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let ids = {
        let mut conn = app.db.pool.acquire().await?;
        request_rows::pending_past(&mut conn, now, 100).await?
    };
    let mut n = 0;
    for id in ids {
        let mut tx = app.db.pool.begin().await?;
        match request_rows::lock(&mut tx, &id).await {
            Ok(Some(row)) => {
                if time_out(&mut tx, &row, now).await? {
                    n += 1;
                }
            }
            Ok(None) => {}
            // One row that does not decode must not stop the others.
            Err(e @ sqlx::Error::ColumnDecode { .. }) => {
                tracing::error!(request = %id, error = %e, "request row does not decode; not timed out");
                continue;
            }
            Err(e) => return Err(e),
        }
        tx.commit().await?;
    }
    Ok(n)
}

/// Records the expiry of grants whose time has passed (enforcement needs
/// no job: proxies check `exp`; this only writes the audit record).
pub async fn sweep_expiries(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let expired = grant_rows::expired_unrecorded(&app.db.pool, now / 1000, 200).await?;
    let mut n = 0;
    for g in expired {
        let mut tx = app.db.pool.begin().await?;
        if grant_rows::claim(&mut tx, &g.id, Flag::ExpiryRecorded).await? {
            let e = Entry {
                actor: "system".into(),
                action: "grant.expired".into(),
                resource: Some(g.resource.clone()),
                request_id: Some(g.request_id.clone()),
                grant_id: Some(g.id.clone()),
                channel: Some("system".into()),
                details: json!({"subject": g.subject}),
            };
            audit::append(&mut tx, now, &[e]).await?;
            if let Some(row) = load_for_notice(&mut tx, &g.request_id).await? {
                notify::enqueue(app, &mut tx, &event("grant.expired", &row, json!({})), now).await?;
            }
            n += 1;
        }
        tx.commit().await?;
    }
    Ok(n)
}

/// Announces grants that expire within the configured lead time, once.
pub async fn sweep_expiring_soon(app: &App) -> Result<usize, sqlx::Error> {
    if app.cfg.targets.is_empty() {
        return Ok(0);
    }
    let now = app.clock.now_ms();
    let horizon = now / 1000 + app.cfg.expiring_soon_seconds as i64;
    let soon = grant_rows::expiring_unannounced(&app.db.pool, now / 1000, horizon, 200).await?;
    let mut n = 0;
    for g in soon {
        let mut tx = app.db.pool.begin().await?;
        if grant_rows::claim(&mut tx, &g.id, Flag::ExpiringNotified).await? {
            if let Some(row) = load_for_notice(&mut tx, &g.request_id).await? {
                let notice = event("grant.expiring_soon", &row, json!({"grant_id": g.id}));
                notify::enqueue(app, &mut tx, &notice, now).await?;
                n += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(n)
}
