//! Decisions on a request: votes (N of M approvals, one deny ends it),
//! cancellation by its requester, and the after-the-fact review of
//! break-glass access.

use serde_json::json;

use super::{approve_now, assemble, entry, event, is_requester, lock_visible, time_out, view};
use crate::audit;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::policy::{Ballot, Tally};
use crate::requests::{AccessRequest, Decision};
use crate::states::{RequestState, VoteDecision};
use crate::store::requests as request_rows;
use crate::store::votes::{self as vote_rows, Vote};
use crate::{notify, policy, App};

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
    let decision = if approve {
        VoteDecision::Approve
    } else {
        VoteDecision::Deny
    };
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let row = lock_visible(app, &mut tx, p, id).await?;
    let resource = policy::resource(&app.cfg, &row.resource)?;
    let how = app.cfg.auth.user_match;
    policy::may_approve(resource, &row.requester, row.requester_email.as_deref(), p, how)?;
    let existing = vote_rows::for_request(&mut tx, id).await?;
    let mine = existing.iter().find(|v| v.approver == p.id).map(|v| v.decision);
    if policy::repeat_vote(mine, decision)? {
        // Repeating a vote is harmless: nothing changes.
        let out = view(app, &mut tx, row).await?;
        tx.commit().await?;
        return Ok(out);
    }
    if policy::ballot(row.state, row.pending_until, now)? == Ballot::TimedOut {
        time_out(&mut tx, &row, now).await?;
        tx.commit().await?;
        return Err(ApiError::Conflict(
            "request_timed_out",
            "the request timed out before it was approved".into(),
        ));
    }
    let cast = Vote {
        approver: p.id.clone(),
        decision,
        comment,
        channel: channel.to_owned(),
        at: now,
    };
    vote_rows::insert(&mut tx, id, &cast).await?;
    let details = json!({"comment": cast.comment});
    let mut entries = vec![entry(
        &p.id,
        &format!("vote.{decision}"),
        &row,
        channel,
        details.clone(),
    )];
    let notice = json!({"approver": p.id, "comment": cast.comment});
    let mut resolved = None;
    let mut grant = None;
    match policy::tally(
        existing.iter().map(|v| v.decision).chain([decision]),
        row.approvals_required,
    ) {
        Tally::Approved => {
            let (approved, minted) = approve_now(app, &mut tx, &row, p, now).await?;
            entries.extend(approved);
            grant = Some(minted);
            resolved = Some(RequestState::Approved);
            notify::enqueue(app, &mut tx, &event("request.approved", &row, notice), now).await?;
        }
        Tally::Denied => {
            request_rows::resolve(&mut tx, id, RequestState::Denied, now).await?;
            entries.push(entry(&p.id, "request.denied", &row, channel, details));
            resolved = Some(RequestState::Denied);
            notify::enqueue(app, &mut tx, &event("request.denied", &row, notice), now).await?;
        }
        Tally::Pending(_) => {}
    }
    audit::append(&mut tx, now, &entries).await?;
    tx.commit().await?;
    if grant.is_some() {
        app.metrics.grants_issued.inc();
    }
    app.metrics.votes.inc();
    // What the transaction wrote (the row is locked, so nothing else
    // changed it): the vote after the earlier ones, the resolution, the
    // grant. As `for_request` orders them (a replica's clock may be behind).
    let mut votes = existing;
    votes.push(cast);
    votes.sort_by_key(|v| v.at);
    let mut row = row;
    if let Some(state) = resolved {
        row.state = state;
        row.resolved_at = Some(now);
    }
    Ok(assemble(app, row, votes, grant))
}

/// The requester withdraws a pending request.
pub async fn cancel(app: &App, p: &Principal, id: &str) -> Result<AccessRequest, ApiError> {
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let mut row = lock_visible(app, &mut tx, p, id).await?;
    policy::may_cancel(is_requester(app, p, &row.requester), row.state, row.pending_until, now)?;
    request_rows::resolve(&mut tx, id, RequestState::Cancelled, now).await?;
    audit::append(
        &mut tx,
        now,
        &[entry(&p.id, "request.cancelled", &row, "api", json!({}))],
    )
    .await?;
    row.state = RequestState::Cancelled;
    row.resolved_at = Some(now);
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
    let mut row = lock_visible(app, &mut tx, p, id).await?;
    let resource = policy::resource(&app.cfg, &row.resource)?;
    let how = app.cfg.auth.user_match;
    policy::may_approve(resource, &row.requester, row.requester_email.as_deref(), p, how)?;
    policy::may_review(row.break_glass, row.review_state)?;
    request_rows::set_reviewed(&mut tx, id, &p.id, now).await?;
    let e = entry(
        &p.id,
        "request.reviewed",
        &row,
        "api",
        json!({"comment": input.comment}),
    );
    audit::append(&mut tx, now, &[e]).await?;
    row.review_state = Some(crate::states::ReviewState::Reviewed);
    row.reviewed_by = Some(p.id.clone());
    let out = view(app, &mut tx, row).await?;
    tx.commit().await?;
    Ok(out)
}
