//! The workflow: one function per state change (create, vote, cancel,
//! extend, review, revoke, token fetch, the sweeps of what time alone
//! changes), each one transaction. Each locks the request row first, asks
//! [`crate::policy`] what the rules say, writes through [`crate::store`],
//! mints through [`crate::grants`], and appends its audit records and
//! queues its notifications in the same transaction, so racing calls on
//! any number of replicas resolve a request exactly once.
//!
//! These were `requests::{create, vote, cancel, extend, review, get, list,
//! sweep_timeouts}` and `grants::{revoke, fetch_token, sweep_expiries,
//! sweep_expiring_soon}`.

pub mod binding;
mod create;
mod extend;
mod grants;
mod read;
mod sweeps;
mod vote;

pub use create::create;
pub use extend::extend;
pub use grants::{fetch_token, revoke};
pub use read::{get, list, some};
pub use sweeps::{sweep_expiries, sweep_expiring_soon, sweep_timeouts};
pub use vote::{cancel, review, vote};

use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::grants::{GrantView, MintInput};
use crate::notify::{Event, RequestFacts};
use crate::requests::{AccessRequest, Rule};
use crate::states::{GrantState, RequestState};
use crate::store::grants as grant_rows;
use crate::store::requests::{self as request_rows, RequestRow};
use crate::store::votes::{self as vote_rows, Vote};
use crate::{policy, App};

/// Whether the caller made the request.
fn is_requester(app: &App, p: &Principal, requester: &str) -> bool {
    policy::is_requester(requester, p, app.cfg.auth.user_match)
}

/// Whether the caller may see the request.
fn visible(app: &App, p: &Principal, row: &RequestRow) -> bool {
    policy::may_see(
        app.cfg.resource(&row.resource),
        &row.requester,
        p,
        app.cfg.auth.user_match,
        app.auth.is_auditor(p),
    )
}

/// Locks a request the caller may see (else "not found").
async fn lock_visible(app: &App, conn: &mut AnyConnection, p: &Principal, id: &str) -> Result<RequestRow, ApiError> {
    let row = request_rows::lock(conn, id)
        .await?
        .ok_or_else(ApiError::request_not_found)?;
    if visible(app, p, &row) {
        Ok(row)
    } else {
        Err(ApiError::request_not_found())
    }
}

/// A scope as the API and the audit log show it.
fn scope_json(row: &RequestRow) -> Value {
    json!(row.scope.iter().cloned().map(Rule::from).collect::<Vec<_>>())
}

fn entry(actor: &str, action: &str, row: &RequestRow, channel: &str, details: Value) -> Entry {
    Entry {
        actor: actor.to_owned(),
        action: action.into(),
        resource: Some(row.resource.clone()),
        request_id: Some(row.id.clone()),
        grant_id: None,
        channel: Some(channel.into()),
        details,
    }
}

/// What notifications say about a request.
pub fn facts(row: &RequestRow) -> RequestFacts {
    RequestFacts {
        id: row.id.clone(),
        resource: row.resource.clone(),
        requester: row.requester.clone(),
        scope: row.scope.clone(),
        duration_seconds: row.duration_seconds,
        starts_at: row.starts_at_s,
        reason: row.reason.clone(),
        ticket: row.ticket.clone(),
        break_glass: row.break_glass,
    }
}

/// The notification of `kind` about a request.
fn event(kind: &'static str, row: &RequestRow, details: Value) -> Event {
    Event {
        kind,
        request: facts(row),
        details,
    }
}

fn grant_state(g: Option<&GrantView>, now_ms: i64) -> Option<GrantState> {
    g.map(|g| GrantState::at(g.revoked_at, g.expires_at, now_ms))
}

/// The API's view of a request from what is already known (a transaction
/// that has just written the row, its votes and its grant builds it
/// without reading them back).
fn assemble(app: &App, row: RequestRow, votes: Vec<Vote>, grant: Option<GrantView>) -> AccessRequest {
    let now = app.clock.now_ms();
    let state = policy::effective_state(row.state, row.pending_until, grant_state(grant.as_ref(), now), now);
    AccessRequest {
        state,
        votes,
        grant,
        id: row.id,
        resource: row.resource,
        requester: row.requester,
        requester_groups: row.requester_groups,
        scope: row.scope.into_iter().map(Rule::from).collect(),
        duration_seconds: row.duration_seconds,
        starts_at: row.starts_at_s,
        reason: row.reason,
        ticket: row.ticket,
        source_cidrs: row.source_cidrs,
        cnf_x5t_s256: row.cnf_x5t_s256,
        approvals_required: row.approvals_required,
        break_glass: row.break_glass,
        review_state: row.review_state,
        reviewed_by: row.reviewed_by,
        auto_approved_by: row.auto_rule,
        extends: row.extends_request,
        created_at: row.created_at,
        pending_until: row.pending_until,
        resolved_at: row.resolved_at,
    }
}

/// Reads the votes and grant of a request and builds its view.
async fn view(app: &App, conn: &mut AnyConnection, row: RequestRow) -> Result<AccessRequest, sqlx::Error> {
    let grant = grant_rows::for_request(conn, &row.id).await?;
    let votes = vote_rows::for_request(conn, &row.id).await?;
    Ok(assemble(app, row, votes, grant))
}

/// Marks the request approved and mints its grant (the clock starts now);
/// an extension also revokes the grant it replaces. Returns the audit
/// entries and the grant.
async fn approve_now(
    app: &App,
    conn: &mut AnyConnection,
    row: &RequestRow,
    actor: &Principal,
    now: i64,
) -> Result<(Vec<Entry>, GrantView), ApiError> {
    if !request_rows::resolve(conn, &row.id, RequestState::Approved, now).await? {
        return Err(ApiError::Conflict(
            "request_not_pending",
            "the request is no longer pending".into(),
        ));
    }
    // Checked again at mint time: a proxy of an older spec may have
    // appeared since the request was made.
    let device_binding = match &row.cnf_x5t_s256 {
        Some(x5t) => {
            let proxies = binding::mintable(conn, &row.resource, now).await?;
            json!({"cnf": {"x5t#S256": x5t}, "decision": "bound", "proxies_checking_cnf": proxies,
                   "window_seconds": binding::WINDOW_MS / 1000})
        }
        None => json!({"decision": "unbound"}),
    };
    let input = MintInput {
        request_id: &row.id,
        subject: &row.requester,
        resource: &row.resource,
        scope: &row.scope,
        source_cidrs: row.source_cidrs.as_deref(),
        duration_seconds: row.duration_seconds,
        starts_at_s: row.starts_at_s,
        cnf_x5t_s256: row.cnf_x5t_s256.as_deref(),
    };
    let grant = crate::grants::mint(&app.cfg, conn, input, now).await?;
    let mut entries = vec![Entry {
        grant_id: Some(grant.id.clone()),
        ..entry(
            &actor.id,
            "grant.issued",
            row,
            "api",
            json!({"subject": row.requester, "issued_at": grant.issued_at, "not_before": grant.not_before,
                   "expires_at": grant.expires_at,
                   "duration_seconds": row.duration_seconds, "scope": scope_json(row), "kid": grant.kid,
                   "device_binding": device_binding}),
        )
    }];
    if let Some(old) = &row.extends_request {
        let reason = format!("superseded by extension {}", row.id);
        entries.extend(revoke_grant_of(conn, old, actor, &reason, now).await?);
    }
    Ok((entries, grant))
}

/// Revokes the active grant of a request (and marks the request revoked);
/// returns the audit entry, or `None` if nothing active was revoked.
async fn revoke_grant_of(
    conn: &mut AnyConnection,
    request_id: &str,
    actor: &Principal,
    reason: &str,
    now_ms: i64,
) -> Result<Option<Entry>, sqlx::Error> {
    let Some((grant_id, resource)) = grant_rows::revoke_active(conn, request_id, &actor.id, reason, now_ms).await?
    else {
        return Ok(None);
    };
    request_rows::set_state(conn, request_id, RequestState::Revoked, now_ms).await?;
    Ok(Some(Entry {
        actor: actor.id.clone(),
        action: "grant.revoked".into(),
        resource: Some(resource),
        request_id: Some(request_id.to_owned()),
        grant_id: Some(grant_id),
        channel: Some("api".into()),
        details: json!({"reason": reason}),
    }))
}

/// Records the timeout of a pending request past its deadline; false if
/// it was no longer pending.
async fn time_out(conn: &mut AnyConnection, row: &RequestRow, now: i64) -> Result<bool, sqlx::Error> {
    let done = request_rows::resolve(conn, &row.id, RequestState::TimedOut, now).await?;
    if done {
        let e = entry(
            "system",
            "request.timed_out",
            row,
            "system",
            json!({"pending_until": row.pending_until}),
        );
        audit::append(conn, now, &[e]).await?;
    }
    Ok(done)
}

/// The request a notice is about. A row that does not decode gets no
/// notice (logged): the change being announced (a revocation, an expiry
/// record) must not be blocked by it.
async fn load_for_notice(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    match request_rows::load(conn, id).await {
        Err(e @ sqlx::Error::ColumnDecode { .. }) => {
            tracing::error!(request = id, error = %e, "request row does not decode; no notification sent");
            Ok(None)
        }
        other => other,
    }
}
