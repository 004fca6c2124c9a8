//! Creating a request: checked against policy, stored, and (auto-approval,
//! break-glass) approved with its grant in the same transaction.

use grant::scope::ScopeRule;
use serde_json::json;
use sqlx::AnyConnection;

use super::{approve_now, assemble, entry, event, scope_json};
use crate::audit::{self, Entry};
use crate::auth::stepup::{self, Step};
use crate::auth::Principal;
use crate::clock::new_id;
use crate::error::ApiError;
use crate::grants::GrantView;
use crate::requests::{AccessRequest, NewRequest};
use crate::states::{RequestState, ReviewState};
use crate::store::requests::{self as request_rows, RequestRow};
use crate::{notify, policy, App};

/// How many of the requester's groups a request records for approvers (a
/// token may carry hundreds; the row should not grow with them).
const MAX_RECORDED_GROUPS: usize = 64;

/// A request that policy accepts, not stored yet.
pub(super) struct Accepted {
    /// The row to store.
    pub row: RequestRow,
    /// Approved at once (break-glass or an auto-approve rule).
    pub at_once: bool,
}

/// What a creation wrote.
pub(super) struct Created {
    /// The row as stored (approved, if it was at once).
    pub row: RequestRow,
    /// Its grant, if approved at once.
    pub grant: Option<GrantView>,
}

impl Created {
    /// Counts what was committed.
    pub fn count(&self, app: &App) {
        app.metrics.requests_created.inc();
        if self.grant.is_some() {
            app.metrics.grants_issued.inc();
        }
    }
}

/// Checks a new request against policy and builds its row (`extends`: the
/// request whose grant it replaces).
pub(super) fn accept(
    app: &App,
    p: &Principal,
    input: NewRequest,
    extends: Option<String>,
    now: i64,
) -> Result<Accepted, ApiError> {
    let resource = policy::resource(&app.cfg, &input.resource)?;
    policy::may_request(resource, p)?;
    let step = if input.break_glass {
        Step::BreakGlass
    } else {
        Step::Request
    };
    stepup::require(&resource.step_up, step, &resource.id, &p.context, app.clock.now_s())?;
    policy::text("reason", "reason_invalid", &input.reason, policy::MAX_REASON)?;
    if let Some(t) = &input.ticket {
        policy::text("ticket", "ticket_invalid", t, policy::MAX_TICKET)?;
    }
    if let Some(s) = &input.source_cidrs {
        policy::sources(s)?;
    }
    if let Some(t) = &input.cnf_x5t_s256 {
        policy::thumbprint(t)?;
    }
    policy::device_binding(resource, input.cnf_x5t_s256.is_some())?;
    if let Some(at) = input.starts_at {
        policy::start(at, now / 1000, app.cfg.max_start_ahead_seconds, input.break_glass)?;
    }
    let scope: Vec<ScopeRule> = input.scope.into_iter().map(ScopeRule::from).collect();
    policy::requested_scope(resource, &scope)?;
    policy::duration(&app.cfg, resource.max_duration_seconds, input.duration_seconds)?;
    if input.break_glass {
        policy::break_glass(resource, p, input.duration_seconds)?;
    }
    let auto = if input.break_glass {
        None
    } else {
        policy::auto_approval(resource, p, &scope, input.duration_seconds)
    };
    let row = RequestRow {
        id: new_id("req"),
        resource: resource.id.clone(),
        requester: p.id.clone(),
        requester_email: p.email.clone(),
        scope,
        duration_seconds: input.duration_seconds as i64,
        reason: input.reason,
        ticket: input.ticket,
        source_cidrs: input.source_cidrs,
        cnf_x5t_s256: input.cnf_x5t_s256,
        starts_at_s: input.starts_at,
        requester_groups: Some(p.groups.iter().take(MAX_RECORDED_GROUPS).cloned().collect()),
        state: RequestState::Pending,
        approvals_required: i64::from(resource.approvals_required),
        break_glass: input.break_glass,
        review_state: input.break_glass.then_some(ReviewState::Pending),
        reviewed_by: None,
        auto_rule: auto.map(|a| a.name.clone()),
        extends_request: extends,
        created_at: now,
        pending_until: policy::pending_deadline(
            now,
            app.cfg.pending_timeout_seconds,
            input.starts_at,
            input.duration_seconds,
            app.cfg.min_ttl_seconds,
        ),
        resolved_at: None,
    };
    Ok(Accepted {
        at_once: input.break_glass || auto.is_some(),
        row,
    })
}

/// Stores an accepted request inside the caller's transaction, approves
/// it if policy said so, and writes `more` audit entries after the
/// creation's.
pub(super) async fn record(
    app: &App,
    conn: &mut AnyConnection,
    p: &Principal,
    accepted: Accepted,
    more: Vec<Entry>,
    now: i64,
) -> Result<Created, ApiError> {
    let Accepted { mut row, at_once } = accepted;
    if row.cnf_x5t_s256.is_some() {
        // Refused before anything is stored: a bound request that no
        // proxy could honour would only wait to fail at approval.
        super::binding::mintable(conn, &row.resource, now).await?;
    }
    request_rows::insert(conn, &row).await?;
    let mut entries = vec![entry(
        &p.id,
        "request.created",
        &row,
        "api",
        json!({"scope": scope_json(&row), "duration_seconds": row.duration_seconds, "reason": row.reason,
               "ticket": row.ticket, "source_cidrs": row.source_cidrs, "break_glass": row.break_glass,
               "cnf_x5t_s256": row.cnf_x5t_s256, "starts_at": row.starts_at_s,
               "requester_groups": row.requester_groups}),
    )];
    entries.extend(more);
    let mut grant = None;
    if at_once {
        let how = if row.break_glass {
            "request.break_glass"
        } else {
            "request.auto_approved"
        };
        entries.push(entry(&p.id, how, &row, "api", json!({"rule": row.auto_rule})));
        let (approved, minted) = approve_now(app, conn, &row, p, now).await?;
        entries.extend(approved);
        grant = Some(minted);
    }
    audit::append(conn, now, &entries).await?;
    notify::enqueue(app, conn, &event("request.created", &row, json!({})), now).await?;
    if at_once {
        let approved = event("request.approved", &row, json!({"auto_rule": row.auto_rule}));
        notify::enqueue(app, conn, &approved, now).await?;
        row.state = RequestState::Approved;
        row.resolved_at = Some(now);
    }
    Ok(Created { row, grant })
}

/// Creates a request; auto-approval and break-glass resolve it at once.
pub async fn create(app: &App, p: &Principal, input: NewRequest) -> Result<AccessRequest, ApiError> {
    let now = app.clock.now_ms();
    let accepted = accept(app, p, input, None, now)?;
    let mut tx = app.db.pool.begin().await?;
    let created = record(app, &mut tx, p, accepted, Vec::new(), now).await?;
    tx.commit().await?;
    created.count(app);
    // What the transaction wrote: the new row, no votes.
    Ok(assemble(app, created.row, Vec::new(), created.grant))
}
