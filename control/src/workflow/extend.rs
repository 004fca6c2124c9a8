//! Extending an active grant: a new request for the same scope, through
//! the same policy, linked to the one it extends; on approval (at once, or
//! later by vote) its grant replaces the old one, which is revoked. One
//! transaction: a failure leaves neither a new request nor two grants.

use serde_json::json;

use super::create::{accept, record};
use super::{assemble, entry, grant_state, is_requester, lock_visible};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::requests::{AccessRequest, Extension, NewRequest};
use crate::store::grants as grant_rows;
use crate::{policy, App};

/// The requester asks to extend the active grant of request `id`.
pub async fn extend(app: &App, p: &Principal, id: &str, input: Extension) -> Result<AccessRequest, ApiError> {
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let original = lock_visible(app, &mut tx, p, id).await?;
    let grant = grant_rows::for_request(&mut tx, id).await?;
    let effective = policy::effective_state(
        original.state,
        original.pending_until,
        grant_state(grant.as_ref(), now),
        now,
    );
    let opened = grant.as_ref().is_none_or(|g| g.not_before <= now / 1000);
    policy::may_extend(is_requester(app, p, &original.requester), effective, opened)?;
    let new = NewRequest {
        resource: original.resource.clone(),
        scope: original.scope.iter().cloned().map(Into::into).collect(),
        duration_seconds: input.duration_seconds,
        reason: input.reason,
        ticket: original.ticket.clone(),
        source_cidrs: original.source_cidrs.clone(),
        starts_at: None,
        break_glass: false,
        cnf_x5t_s256: original.cnf_x5t_s256.clone(),
    };
    let accepted = accept(app, p, new, Some(id.to_owned()), now)?;
    let linked = entry(
        &p.id,
        "request.extension_requested",
        &accepted.row,
        "api",
        json!({"extends": id}),
    );
    let created = record(app, &mut tx, p, accepted, vec![linked], now).await?;
    tx.commit().await?;
    created.count(app);
    Ok(assemble(app, created.row, Vec::new(), created.grant))
}
