//! Access requests and their workflow: create, vote, cancel, extend,
//! review, time out. Every state change and its audit records are written
//! in one transaction, after locking the request row, so racing votes on
//! any number of replicas resolve a request exactly once.

use grant::scope::ScopeRule;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::audit::{self, Entry};
use crate::auth::stepup::{self, Step};
use crate::auth::Principal;
use crate::clock::new_id;
use crate::error::ApiError;
use crate::grants::{self, GrantView};
use crate::{notify, policy, App};

/// A scope rule as the API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Upper-case methods, or `*`.
    #[schema(min_items = 1)]
    pub methods: Vec<String>,
    /// Path patterns (`*` one segment, `**` the rest).
    #[schema(min_items = 1)]
    pub paths: Vec<String>,
}

impl From<Rule> for ScopeRule {
    fn from(r: Rule) -> Self {
        ScopeRule {
            methods: r.methods,
            paths: r.paths,
        }
    }
}

impl From<ScopeRule> for Rule {
    fn from(r: ScopeRule) -> Self {
        Rule {
            methods: r.methods,
            paths: r.paths,
        }
    }
}

/// An integer field that also takes a JSON number with no fraction
/// (`600.0`): JSON Schema's `integer` includes them, so clients and tools
/// generated from the document may send one.
pub fn whole_number<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    use serde::de::Error;
    let n = serde_json::Number::deserialize(de)?;
    let whole = if let Some(u) = n.as_u64() {
        T::try_from(u).ok()
    } else if let Some(i) = n.as_i64() {
        T::try_from(i).ok()
    } else {
        // Within ±2^53 a float's integer value is exact.
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
            .and_then(|f| T::try_from(f as i64).ok())
    };
    whole.ok_or_else(|| D::Error::custom(format!("invalid value: {n}, expected an integer in range")))
}

/// `POST /v1/requests`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The resource id.
    pub resource: String,
    /// What to allow (each rule within what the resource allows to request).
    #[schema(min_items = 1, max_items = 32)]
    pub scope: Vec<Rule>,
    /// For how long, from approval (at most the resource's maximum).
    #[serde(deserialize_with = "whole_number")]
    pub duration_seconds: u64,
    /// Why (required; not blank, no control characters but newline and tab).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    /// A ticket reference.
    #[schema(min_length = 1, max_length = 200)]
    pub ticket: Option<String>,
    /// Client address blocks (CIDR) the grant is limited to.
    #[schema(min_items = 1, max_items = 16)]
    pub source_cidrs: Option<Vec<String>>,
    /// Emergency access without waiting for approvers.
    #[serde(default)]
    pub break_glass: bool,
}

/// `POST /v1/requests/{id}/approve|deny|review`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// A comment; missing, `null`, empty or blank means no comment.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// `POST /v1/requests/{id}/extend`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// New duration, from the extension's approval.
    #[serde(deserialize_with = "whole_number")]
    pub duration_seconds: u64,
    /// Why (required).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// A vote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vote {
    /// Who.
    pub approver: String,
    /// `approve` or `deny`.
    #[schema(value_type = VoteDecision)]
    pub decision: String,
    /// Comment.
    pub comment: Option<String>,
    /// Where it came from (`api`, `slack`, `webhook`).
    pub channel: String,
    /// When (ms).
    pub at: i64,
}

/// The state of an access request as the API shows it (refined by time:
/// an approved request whose grant ran out is `expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; its grant is active.
    Approved,
    /// Approved; its grant has expired.
    Expired,
    /// Approved; its grant was revoked.
    Revoked,
    /// Denied by an approver.
    Denied,
    /// Withdrawn by its requester.
    Cancelled,
    /// Nobody decided in time.
    TimedOut,
}

impl RequestState {
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Expired => "expired",
            RequestState::Revoked => "revoked",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::TimedOut => "timed_out",
        }
    }
}

/// Where a break-glass access stands in its after-the-fact review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Not reviewed yet.
    Pending,
    /// Reviewed.
    Reviewed,
}

/// A vote's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteDecision {
    /// For.
    Approve,
    /// Against (ends the request).
    Deny,
}

/// An access request as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    /// Id.
    pub id: String,
    /// Resource id.
    pub resource: String,
    /// Who asked.
    pub requester: String,
    /// What.
    pub scope: Vec<Rule>,
    /// For how long.
    pub duration_seconds: i64,
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// Source blocks.
    pub source_cidrs: Option<Vec<String>>,
    /// `pending`, `approved` (grant active), `expired`, `revoked`,
    /// `denied`, `cancelled` or `timed_out`.
    #[schema(value_type = RequestState)]
    pub state: String,
    /// Approvals needed.
    pub approvals_required: i64,
    /// Votes so far.
    pub votes: Vec<Vote>,
    /// Break-glass access.
    pub break_glass: bool,
    /// `pending` or `reviewed` for break-glass access.
    #[schema(value_type = Option<ReviewState>)]
    pub review_state: Option<String>,
    /// Who reviewed.
    pub reviewed_by: Option<String>,
    /// The auto-approve rule that approved it.
    pub auto_approved_by: Option<String>,
    /// The request this one extends.
    pub extends: Option<String>,
    /// The grant, once approved.
    pub grant: Option<GrantView>,
    /// Created (ms).
    pub created_at: i64,
    /// Times out at (ms) while pending.
    pub pending_until: i64,
    /// Resolved (ms).
    pub resolved_at: Option<i64>,
}

/// A request row.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// Id.
    pub id: String,
    /// Resource.
    pub resource: String,
    /// Requester.
    pub requester: String,
    /// The requester's email when the request was made.
    pub requester_email: Option<String>,
    /// Scope JSON.
    pub scope: Vec<Rule>,
    /// Duration.
    pub duration_seconds: i64,
    /// Reason.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// Sources.
    pub source_cidrs: Option<Vec<String>>,
    /// Stored state.
    pub state: String,
    /// Approvals needed.
    pub approvals_required: i64,
    /// Break-glass flag.
    pub break_glass: bool,
    /// Review state.
    pub review_state: Option<String>,
    /// Reviewer.
    pub reviewed_by: Option<String>,
    /// Auto rule.
    pub auto_rule: Option<String>,
    /// Extends.
    pub extends_request: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Pending deadline.
    pub pending_until: i64,
    /// Resolved.
    pub resolved_at: Option<i64>,
}

const COLUMNS: &str = "id, resource, requester, requester_email, scope, duration_seconds, reason, ticket, source_cidrs, state, \
    approvals_required, break_glass, review_state, reviewed_by, auto_rule, extends_request, created_at, pending_until, resolved_at";

fn row(r: &AnyRow) -> Result<RequestRow, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    let sources: Option<String> = r.try_get("source_cidrs")?;
    let bg: i64 = r.try_get("break_glass")?;
    Ok(RequestRow {
        id: r.try_get("id")?,
        resource: r.try_get("resource")?,
        requester: r.try_get("requester")?,
        requester_email: r.try_get("requester_email")?,
        scope: serde_json::from_str(&scope).unwrap_or_default(),
        duration_seconds: r.try_get("duration_seconds")?,
        reason: r.try_get("reason")?,
        ticket: r.try_get("ticket")?,
        source_cidrs: sources.and_then(|s| serde_json::from_str(&s).ok()),
        state: r.try_get("state")?,
        approvals_required: r.try_get("approvals_required")?,
        break_glass: bg != 0,
        review_state: r.try_get("review_state")?,
        reviewed_by: r.try_get("reviewed_by")?,
        auto_rule: r.try_get("auto_rule")?,
        extends_request: r.try_get("extends_request")?,
        created_at: r.try_get("created_at")?,
        pending_until: r.try_get("pending_until")?,
        resolved_at: r.try_get("resolved_at")?,
    })
}

/// Locks a request row for the rest of the transaction and reads it.
async fn lock(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    let sql = format!("UPDATE access_requests SET lock_version = lock_version + 1 WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

pub(crate) async fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM access_requests WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

async fn votes(conn: &mut AnyConnection, id: &str) -> Result<Vec<Vote>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT approver, decision, comment, channel, created_at FROM votes WHERE request_id = $1 ORDER BY created_at, approver",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Vote {
                approver: r.try_get("approver")?,
                decision: r.try_get("decision")?,
                comment: r.try_get("comment")?,
                channel: r.try_get("channel")?,
                at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// The state a caller sees: stored state refined by time (a grant expires
/// on its own, a pending request times out on its own).
pub fn effective_state(row: &RequestRow, grant: Option<&GrantView>, now_ms: i64) -> String {
    match row.state.as_str() {
        "pending" if now_ms > row.pending_until => "timed_out".into(),
        "approved" => match grant {
            Some(g) if g.revoked_at.is_some() => "revoked".into(),
            Some(g) if g.expires_at * 1000 <= now_ms => "expired".into(),
            _ => "approved".into(),
        },
        other => other.into(),
    }
}

async fn view(app: &App, conn: &mut AnyConnection, row: RequestRow) -> Result<AccessRequest, sqlx::Error> {
    let grant = grants::for_request(conn, &row.id).await?;
    let votes = votes(conn, &row.id).await?;
    Ok(assemble(app, row, votes, grant))
}

/// The API's view of a request from what is already known (a transaction
/// that has just written the row, its votes and its grant builds it
/// without reading them back).
fn assemble(app: &App, row: RequestRow, votes: Vec<Vote>, grant: Option<GrantView>) -> AccessRequest {
    let state = effective_state(&row, grant.as_ref(), app.clock.now_ms());
    AccessRequest {
        state,
        votes,
        grant,
        id: row.id,
        resource: row.resource,
        requester: row.requester,
        scope: row.scope,
        duration_seconds: row.duration_seconds,
        reason: row.reason,
        ticket: row.ticket,
        source_cidrs: row.source_cidrs,
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

/// Whether the caller made the request (rows stored before user ids were
/// kept in canonical form are compared in that form too).
pub fn is_requester(app: &App, p: &Principal, requester: &str) -> bool {
    crate::identity::canonical_user(requester, app.cfg.auth.user_match) == p.id
}

/// Whether the caller is the requester under any of their identities: a
/// vote or review by them would be a self-approval.
fn self_approval(app: &App, p: &Principal, row: &RequestRow) -> bool {
    policy::same_person(
        &row.requester,
        row.requester_email.as_deref(),
        p,
        app.cfg.auth.user_match,
    )
}

/// Whether the caller may see the request: its requester, the resource's
/// approvers, admins and auditors. Everyone else gets "not found".
fn visible(app: &App, p: &Principal, row: &RequestRow) -> bool {
    is_requester(app, p, &row.requester)
        || app
            .cfg
            .resource(&row.resource)
            .is_some_and(|r| policy::can_approve(r, p))
        || app.auth.is_auditor(p)
}

fn entry(p: &Principal, action: &str, row: &RequestRow, channel: &str, details: serde_json::Value) -> Entry {
    Entry {
        actor: p.id.clone(),
        action: action.into(),
        resource: Some(row.resource.clone()),
        request_id: Some(row.id.clone()),
        grant_id: None,
        channel: Some(channel.into()),
        details,
    }
}

/// Creates a request; auto-approval and break-glass resolve it at once.
pub async fn create(app: &App, p: &Principal, input: NewRequest) -> Result<AccessRequest, ApiError> {
    let resource = policy::resource(&app.cfg, &input.resource)?;
    if !policy::can_request(resource, p) {
        return Err(ApiError::Forbidden(
            "not_a_requester",
            format!("you may not request access to {}", resource.id),
        ));
    }
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
    let scope: Vec<ScopeRule> = input.scope.iter().cloned().map(ScopeRule::from).collect();
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

    let now = app.clock.now_ms();
    let row = RequestRow {
        id: new_id("req"),
        resource: resource.id.clone(),
        requester: p.id.clone(),
        requester_email: p.email.clone(),
        scope: input.scope,
        duration_seconds: input.duration_seconds as i64,
        reason: input.reason,
        ticket: input.ticket,
        source_cidrs: input.source_cidrs,
        state: "pending".into(),
        approvals_required: i64::from(resource.approvals_required),
        break_glass: input.break_glass,
        review_state: input.break_glass.then(|| "pending".to_owned()),
        reviewed_by: None,
        auto_rule: auto.map(|a| a.name.clone()),
        extends_request: None,
        created_at: now,
        pending_until: now + app.cfg.pending_timeout_seconds as i64 * 1000,
        resolved_at: None,
    };
    let mut tx = app.db.pool.begin().await?;
    insert(&mut tx, &row).await?;
    let mut grant = None;
    let mut entries = vec![entry(
        p,
        "request.created",
        &row,
        "api",
        json!({"scope": row.scope, "duration_seconds": row.duration_seconds, "reason": row.reason,
               "ticket": row.ticket, "source_cidrs": row.source_cidrs, "break_glass": row.break_glass}),
    )];
    if input.break_glass || auto.is_some() {
        let how = if input.break_glass {
            "break_glass"
        } else {
            "auto_approved"
        };
        entries.push(entry(
            p,
            &format!("request.{how}"),
            &row,
            "api",
            json!({"rule": row.auto_rule}),
        ));
        let (approved, minted) = approve_now(app, &mut tx, &row, p, now).await?;
        entries.extend(approved);
        grant = Some(minted);
    }
    audit::append(&mut tx, now, &entries).await?;
    notify::enqueue(app, &mut tx, "request.created", &row, json!({}), now).await?;
    if input.break_glass || auto.is_some() {
        notify::enqueue(
            app,
            &mut tx,
            "request.approved",
            &row,
            json!({"auto_rule": row.auto_rule}),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    // What the transaction wrote: the new row (approved with its grant if
    // policy approved it at once), no votes.
    let mut stored = row;
    if grant.is_some() {
        stored.state = "approved".into();
        stored.resolved_at = Some(now);
    }
    let out = assemble(app, stored, Vec::new(), grant);
    app.metrics.requests_created.inc();
    if input.break_glass || auto.is_some() {
        app.metrics.grants_issued.inc();
    }
    Ok(out)
}

async fn insert(conn: &mut AnyConnection, row: &RequestRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access_requests (id, resource, requester, requester_email, scope, duration_seconds, reason, ticket, \
         source_cidrs, state, approvals_required, break_glass, review_state, auto_rule, extends_request, created_at, \
         updated_at, pending_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(row.id.clone())
    .bind(row.resource.clone())
    .bind(row.requester.clone())
    .bind(row.requester_email.clone())
    .bind(serde_json::to_string(&row.scope).unwrap_or_default())
    .bind(row.duration_seconds)
    .bind(row.reason.clone())
    .bind(row.ticket.clone())
    .bind(row.source_cidrs.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default()))
    .bind(row.state.clone())
    .bind(row.approvals_required)
    .bind(i64::from(row.break_glass))
    .bind(row.review_state.clone())
    .bind(row.auto_rule.clone())
    .bind(row.extends_request.clone())
    .bind(row.created_at)
    .bind(row.created_at)
    .bind(row.pending_until)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
    let updated = sqlx::query(
        "UPDATE access_requests SET state = 'approved', resolved_at = $1, updated_at = $1 WHERE id = $2 AND state = 'pending'",
    )
    .bind(now)
    .bind(row.id.clone())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(ApiError::Conflict(
            "request_not_pending",
            "the request is no longer pending".into(),
        ));
    }
    let grant = grants::mint(app, conn, row, now).await?;
    let mut entries = vec![Entry {
        actor: actor.id.clone(),
        action: "grant.issued".into(),
        resource: Some(row.resource.clone()),
        request_id: Some(row.id.clone()),
        grant_id: Some(grant.id.clone()),
        channel: Some("api".into()),
        details: json!({"subject": row.requester, "issued_at": grant.issued_at, "expires_at": grant.expires_at,
                        "duration_seconds": row.duration_seconds, "scope": row.scope, "kid": grant.kid}),
    }];
    if let Some(old) = &row.extends_request {
        if let Some(e) =
            grants::revoke_for_request(conn, old, actor, &format!("superseded by extension {}", row.id), now).await?
        {
            entries.push(e);
        }
    }
    Ok((entries, grant))
}

/// An approver's vote, from the API or a chat integration (`channel`).
pub async fn vote(
    app: &App,
    p: &Principal,
    id: &str,
    approve: bool,
    comment: Option<String>,
    channel: &str,
) -> Result<AccessRequest, ApiError> {
    if let Some(c) = &comment {
        policy::text("comment", "comment_invalid", c, policy::MAX_COMMENT)?;
    }
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let row = lock(&mut tx, id).await?.ok_or_else(ApiError::request_not_found)?;
    if !visible(app, p, &row) {
        return Err(ApiError::request_not_found());
    }
    let resource = policy::resource(&app.cfg, &row.resource)?;
    if self_approval(app, p, &row) {
        return Err(ApiError::Forbidden(
            "self_approval",
            "you cannot decide on your own request".into(),
        ));
    }
    if !policy::can_approve(resource, p) {
        return Err(ApiError::Forbidden(
            "not_an_approver",
            format!("you are not an approver of {}", resource.id),
        ));
    }
    if approve {
        stepup::require(
            &resource.step_up,
            Step::Approve,
            &resource.id,
            &p.context,
            app.clock.now_s(),
        )?;
    }
    let decision = if approve { "approve" } else { "deny" };
    let existing = votes(&mut tx, id).await?;
    if let Some(mine) = existing.iter().find(|v| v.approver == p.id) {
        if mine.decision == decision {
            // Repeating a vote is harmless: nothing changes.
            let out = view(app, &mut tx, row).await?;
            tx.commit().await?;
            return Ok(out);
        }
        return Err(ApiError::Conflict(
            "already_voted",
            "you have already voted on this request".into(),
        ));
    }
    if row.state != "pending" {
        return Err(ApiError::Conflict(
            "request_resolved",
            format!("the request is {}; votes no longer count", row.state),
        ));
    }
    if now > row.pending_until {
        time_out(&mut tx, &row, now).await?;
        tx.commit().await?;
        return Err(ApiError::Conflict(
            "request_timed_out",
            "the request timed out before it was approved".into(),
        ));
    }
    sqlx::query("INSERT INTO votes (request_id, approver, decision, comment, channel, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id.to_owned())
        .bind(p.id.clone())
        .bind(decision)
        .bind(comment.clone())
        .bind(channel.to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let mut entries = vec![entry(
        p,
        &format!("vote.{decision}"),
        &row,
        channel,
        // How the approver signed in (issuer, acr, amr, auth_time).
        json!({"comment": comment, "auth_context": p.context}),
    )];
    let mut resolved = None;
    let mut grant = None;
    if approve {
        let approvals = existing.iter().filter(|v| v.decision == "approve").count() as i64 + 1;
        if approvals >= row.approvals_required {
            let (approved, minted) = approve_now(app, &mut tx, &row, p, now).await?;
            entries.extend(approved);
            grant = Some(minted);
            resolved = Some("approved");
            notify::enqueue(
                app,
                &mut tx,
                "request.approved",
                &row,
                json!({"approver": p.id, "comment": comment}),
                now,
            )
            .await?;
            app.metrics.grants_issued.inc();
        }
    } else {
        sqlx::query("UPDATE access_requests SET state = 'denied', resolved_at = $1, updated_at = $1 WHERE id = $2 AND state = 'pending'")
            .bind(now)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        entries.push(entry(p, "request.denied", &row, channel, json!({"comment": comment})));
        resolved = Some("denied");
        notify::enqueue(
            app,
            &mut tx,
            "request.denied",
            &row,
            json!({"approver": p.id, "comment": comment}),
            now,
        )
        .await?;
    }
    audit::append(&mut tx, now, &entries).await?;
    tx.commit().await?;
    // What the transaction wrote (the row is locked, so nothing else
    // changed it): the vote after the earlier ones, the resolution, the
    // grant. A pending request has no grant.
    let mut votes = existing;
    votes.push(Vote {
        approver: p.id.clone(),
        decision: decision.into(),
        comment,
        channel: channel.to_owned(),
        at: now,
    });
    // As `votes()` orders them (a replica's clock may be behind).
    votes.sort_by_key(|v| v.at);
    let mut row = row;
    if let Some(state) = resolved {
        row.state = state.into();
        row.resolved_at = Some(now);
    }
    let out = assemble(app, row, votes, grant);
    app.metrics.votes.inc();
    Ok(out)
}

async fn time_out(conn: &mut AnyConnection, row: &RequestRow, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE access_requests SET state = 'timed_out', resolved_at = $1, updated_at = $1 WHERE id = $2 AND state = 'pending'",
    )
    .bind(now)
    .bind(row.id.clone())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        let e = Entry {
            actor: "system".into(),
            action: "request.timed_out".into(),
            resource: Some(row.resource.clone()),
            request_id: Some(row.id.clone()),
            channel: Some("system".into()),
            details: json!({"pending_until": row.pending_until}),
            ..Entry::default()
        };
        audit::append(conn, now, &[e]).await?;
    }
    Ok(done.rows_affected() == 1)
}

/// The requester withdraws a pending request.
pub async fn cancel(app: &App, p: &Principal, id: &str) -> Result<AccessRequest, ApiError> {
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let row = lock(&mut tx, id).await?.ok_or_else(ApiError::request_not_found)?;
    if !visible(app, p, &row) {
        return Err(ApiError::request_not_found());
    }
    if !is_requester(app, p, &row.requester) {
        return Err(ApiError::Forbidden(
            "not_the_requester",
            "only the requester can cancel a request".into(),
        ));
    }
    if row.state != "pending" || now > row.pending_until {
        return Err(ApiError::Conflict(
            "request_not_pending",
            "only a pending request can be cancelled".into(),
        ));
    }
    sqlx::query("UPDATE access_requests SET state = 'cancelled', resolved_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
    audit::append(&mut tx, now, &[entry(p, "request.cancelled", &row, "api", json!({}))]).await?;
    let row = load(&mut tx, id).await?.ok_or_else(ApiError::request_not_found)?;
    let out = view(app, &mut tx, row).await?;
    tx.commit().await?;
    Ok(out)
}

/// The requester asks to extend an active grant: a new request for the
/// same scope, through the same policy; on approval its grant replaces the
/// old one, which is revoked.
pub async fn extend(app: &App, p: &Principal, id: &str, input: Extension) -> Result<AccessRequest, ApiError> {
    let original = {
        let mut conn = app.db.pool.acquire().await?;
        let row = load(&mut conn, id).await?.ok_or_else(ApiError::request_not_found)?;
        if !visible(app, p, &row) {
            return Err(ApiError::request_not_found());
        }
        if !is_requester(app, p, &row.requester) {
            return Err(ApiError::Forbidden(
                "not_the_requester",
                "only the requester can extend a grant".into(),
            ));
        }
        let grant = grants::for_request(&mut conn, id).await?;
        if effective_state(&row, grant.as_ref(), app.clock.now_ms()) != "approved" {
            return Err(ApiError::Conflict(
                "grant_not_active",
                "only an active grant can be extended".into(),
            ));
        }
        row
    };
    let created = create(
        app,
        p,
        NewRequest {
            resource: original.resource.clone(),
            scope: original.scope.clone(),
            duration_seconds: input.duration_seconds,
            reason: input.reason,
            ticket: original.ticket.clone(),
            source_cidrs: original.source_cidrs.clone(),
            break_glass: false,
        },
    )
    .await?;
    // Link the new request to the one it extends; if policy approved it at
    // once, revoke the old grant now (otherwise approval does it).
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let row = lock(&mut tx, &created.id)
        .await?
        .ok_or_else(ApiError::request_not_found)?;
    sqlx::query("UPDATE access_requests SET extends_request = $1 WHERE id = $2")
        .bind(id.to_owned())
        .bind(created.id.clone())
        .execute(&mut *tx)
        .await?;
    let mut entries = vec![entry(
        p,
        "request.extension_requested",
        &row,
        "api",
        json!({"extends": id}),
    )];
    if row.state == "approved" {
        let reason = format!("superseded by extension {}", row.id);
        entries.extend(grants::revoke_for_request(&mut tx, id, p, &reason, now).await?);
    }
    audit::append(&mut tx, now, &entries).await?;
    let row = load(&mut tx, &created.id)
        .await?
        .ok_or_else(ApiError::request_not_found)?;
    let out = view(app, &mut tx, row).await?;
    tx.commit().await?;
    Ok(out)
}

/// An approver reviews a break-glass access after the fact.
pub async fn review(app: &App, p: &Principal, id: &str, input: Decision) -> Result<AccessRequest, ApiError> {
    if let Some(c) = &input.comment {
        policy::text("comment", "comment_invalid", c, policy::MAX_COMMENT)?;
    }
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let row = lock(&mut tx, id).await?.ok_or_else(ApiError::request_not_found)?;
    if !visible(app, p, &row) {
        return Err(ApiError::request_not_found());
    }
    let resource = policy::resource(&app.cfg, &row.resource)?;
    if self_approval(app, p, &row) {
        return Err(ApiError::Forbidden(
            "self_approval",
            "you cannot review your own break-glass access".into(),
        ));
    }
    if !policy::can_approve(resource, p) {
        return Err(ApiError::Forbidden(
            "not_an_approver",
            format!("you are not an approver of {}", resource.id),
        ));
    }
    if !row.break_glass || row.review_state.as_deref() != Some("pending") {
        return Err(ApiError::Conflict(
            "review_not_pending",
            "this request is not awaiting review".into(),
        ));
    }
    sqlx::query("UPDATE access_requests SET review_state = 'reviewed', reviewed_by = $1, reviewed_at = $2, updated_at = $2 WHERE id = $3")
        .bind(p.id.clone())
        .bind(now)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
    audit::append(
        &mut tx,
        now,
        &[entry(
            p,
            "request.reviewed",
            &row,
            "api",
            json!({"comment": input.comment}),
        )],
    )
    .await?;
    let row = load(&mut tx, id).await?.ok_or_else(ApiError::request_not_found)?;
    let out = view(app, &mut tx, row).await?;
    tx.commit().await?;
    Ok(out)
}

/// One request, if the caller may see it.
pub async fn get(app: &App, p: &Principal, id: &str) -> Result<AccessRequest, ApiError> {
    let mut conn = app.db.pool.acquire().await?;
    let row = load(&mut conn, id).await?.ok_or_else(ApiError::request_not_found)?;
    if !visible(app, p, &row) {
        return Err(ApiError::request_not_found());
    }
    Ok(view(app, &mut conn, row).await?)
}

/// `GET /v1/requests` filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this (effective) state.
    pub state: Option<RequestState>,
    /// Only this resource.
    pub resource: Option<String>,
    /// Only my own requests.
    pub mine: Option<bool>,
    /// Only break-glass requests awaiting review.
    pub awaiting_review: Option<bool>,
}

/// The requests the caller may see, newest first (at most 200).
pub async fn list(app: &App, p: &Principal, q: &ListQuery) -> Result<Vec<AccessRequest>, ApiError> {
    let mut conn = app.db.pool.acquire().await?;
    let mut sql = format!("SELECT {COLUMNS} FROM access_requests WHERE 1 = 1");
    let mut binds = Vec::new();
    if let Some(r) = &q.resource {
        binds.push(r.clone());
        sql.push_str(&format!(" AND resource = ${}", binds.len()));
    }
    if q.mine.unwrap_or(false) {
        binds.push(p.id.clone());
        sql.push_str(&format!(" AND requester = ${}", binds.len()));
    }
    if q.awaiting_review.unwrap_or(false) {
        sql.push_str(" AND break_glass = 1 AND review_state = 'pending'");
    }
    sql.push_str(" ORDER BY created_at DESC LIMIT 500");
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = query.bind(b);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut out = Vec::new();
    for r in &rows {
        let r = row(r)?;
        if !visible(app, p, &r) {
            continue;
        }
        let v = view(app, &mut conn, r).await?;
        if q.state.is_none_or(|s| s.as_str() == v.state) {
            out.push(v);
        }
        if out.len() >= 200 {
            break;
        }
    }
    Ok(out)
}

/// Times out pending requests whose deadline passed (the API already shows
/// them as timed out; this records it). Returns how many.
pub async fn sweep_timeouts(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM access_requests WHERE state = 'pending' AND pending_until < $1 LIMIT 100")
            .bind(now)
            .fetch_all(&app.db.pool)
            .await?
            .iter()
            .filter_map(|r| r.try_get("id").ok())
            .collect();
    let mut n = 0;
    for id in ids {
        let mut tx = app.db.pool.begin().await?;
        if let Some(row) = lock(&mut tx, &id).await? {
            if time_out(&mut tx, &row, now).await? {
                n += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(n)
}
