//! State changes of a grant: revocation, and the audited fetch of its
//! token. Both lock the request row first, so they serialize with each
//! other and with votes: a token is never handed out after its grant's
//! revocation committed.

use serde_json::json;

use super::{event, is_requester, load_for_notice, lock_visible, revoke_grant_of};
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::grants::{Revocation, Revoke, TokenResponse};
use crate::states::GrantState;
use crate::store::grants as grant_rows;
use crate::store::requests as request_rows;
use crate::{notify, policy, App};

/// Revokes a grant: approvers of its resource, admins, or its holder.
pub async fn revoke(app: &App, p: &Principal, grant_id: &str, input: Revoke) -> Result<Revocation, ApiError> {
    policy::text("reason", "reason_invalid", &input.reason, policy::MAX_REASON)?;
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let found = grant_rows::find(&mut tx, grant_id)
        .await?
        .ok_or_else(policy::grant_not_found)?;
    // The request row's lock orders this revocation with token fetches;
    // the grant is read again under it.
    request_rows::lock_only(&mut tx, &found.request_id).await?;
    let g = grant_rows::find(&mut tx, grant_id)
        .await?
        .ok_or_else(policy::grant_not_found)?;
    policy::may_revoke(
        app.cfg.resource(&g.resource),
        &g.subject,
        p,
        app.auth.is_admin(p),
        app.auth.is_auditor(p),
    )?;
    let already = policy::revocation(GrantState::at(g.revoked_at, g.expires_at_s, now))?;
    if !already {
        if let Some(e) = revoke_grant_of(&mut tx, &g.request_id, p, &input.reason, now).await? {
            audit::append(&mut tx, now, &[e]).await?;
            if let Some(row) = load_for_notice(&mut tx, &g.request_id).await? {
                let notice = event("grant.revoked", &row, json!({"by": p.id, "reason": input.reason}));
                notify::enqueue(app, &mut tx, &notice, now).await?;
            }
            app.metrics.grants_revoked.inc();
        }
    }
    let out = grant_rows::by_id(&mut tx, grant_id)
        .await?
        .ok_or_else(policy::grant_not_found)?;
    tx.commit().await?;
    Ok(Revocation {
        grant: out,
        already_revoked: already,
    })
}

/// The token of a request's grant: only for its requester, only while the
/// grant is active; every fetch is audited. The state is checked and the
/// token read in one transaction, under the request row's lock.
pub async fn fetch_token(app: &App, p: &Principal, request_id: &str) -> Result<TokenResponse, ApiError> {
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let row = lock_visible(app, &mut tx, p, request_id).await?;
    let stored = grant_rows::token_of_request(&mut tx, request_id).await?;
    let state = stored
        .as_ref()
        .map(|t| GrantState::at(t.revoked_at, t.expires_at_s, now));
    let effective = policy::effective_state(row.state, row.pending_until, state, now);
    policy::may_fetch_token(is_requester(app, p, &row.requester), effective)?;
    let Some(t) = stored else {
        return Err(ApiError::Conflict(
            "grant_not_active",
            "the request has no grant".into(),
        ));
    };
    let e = Entry {
        actor: p.id.clone(),
        action: "grant.token_fetched".into(),
        resource: Some(row.resource.clone()),
        request_id: Some(row.id.clone()),
        grant_id: Some(t.id.clone()),
        channel: Some("api".into()),
        details: json!({}),
    };
    audit::append(&mut tx, now, &[e]).await?;
    tx.commit().await?;
    app.metrics.tokens_fetched.inc();
    Ok(TokenResponse {
        grant_id: t.id,
        token: t.token,
        not_before: t.not_before_s,
        expires_at: t.expires_at_s,
    })
}
