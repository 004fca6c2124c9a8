//! The approver inbox: every pending request the signed-in person may
//! decide, with its full context and the requester's recent history on
//! the resource; requests pending longer than
//! `console.remind_after_seconds` are marked (in words, not only colour).
//! The requester's own requests are listed without the vote forms.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::parts;
use crate::api::AppState;
use crate::policy;
use crate::requests::AccessRequest;
use crate::web::error::WebError;
use crate::web::layout::{self, shown};
use crate::web::session::Session;
use crate::web::{queries, workflow};

/// How many past requests of the requester on the resource are shown.
const HISTORY: usize = 3;

/// `GET /inbox?from=`: which page.
#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    from: Option<i64>,
}

/// `GET /inbox`.
pub async fn page(State(app): State<AppState>, s: Session, Query(paging): Query<Paging>) -> Result<Response, WebError> {
    let from = paging.from.unwrap_or(0).max(0);
    let ids = queries::pending(&app, app.clock.now_ms(), from).await?;
    let more = ids.len() as i64 == queries::INBOX_PAGE;
    let pending: Vec<AccessRequest> = workflow::visible(&app, &s.principal, &ids)
        .await?
        .into_iter()
        .filter(|r| {
            app.cfg
                .resource(&r.resource)
                .is_some_and(|res| policy::can_approve(res, &s.principal))
        })
        .collect();
    let now = app.clock.now_ms();
    let old_ms = (app.cfg.console.remind_after_seconds as i64) * 1000;
    let mut sections = Vec::new();
    for r in &pending {
        let history = history(&app, &s, r).await?;
        sections.push((r, history));
    }
    let body = layout::page(
        "Approver inbox",
        Some(&s),
        html! {
            h1 { "Approver inbox" }
            div #inbox data-live="1" {
                @if sections.is_empty() { p { "Nothing is waiting for your decision." } }
                @for (r, history) in &sections {
                    @let old = now - r.created_at >= old_ms;
                    section class=(if old { "card old" } else { "card" }) aria-labelledby=(format!("req-{}", r.id)) {
                        h2 #(format!("req-{}", r.id)) {
                            a href=(format!("/requests/{}", r.id)) { (shown(&r.requester)) " → " (shown(&r.resource)) }
                        }
                        @if old {
                            p.old-note { "Waiting for " (layout::duration((now - r.created_at) / 1000)) " — older than " (layout::duration(old_ms / 1000)) "." }
                        }
                        (parts::context(&app, r))
                        h3 { "Recent requests by " (shown(&r.requester)) " for " (shown(&r.resource)) }
                        @if history.is_empty() { p { "None before this one." } }
                        @else {
                            ul {
                                @for (h, used) in history {
                                    li {
                                        (layout::time_ms(h.created_at)) " — " (layout::state_badge(h.state.as_str())) " — " (layout::duration(h.duration_seconds))
                                        @if let Some(used) = used { " — " (if *used { "used" } else { "never used" }) }
                                    }
                                }
                            }
                        }
                        @if parts::may_vote(&app, &s.principal, r) {
                            (parts::vote_forms(&s, r))
                        } @else {
                            p.muted { "You cannot vote on this request (it is yours, or you have voted)." }
                        }
                    }
                }
            }
            @if more { p { a href=(format!("/inbox?from={}", from + queries::INBOX_PAGE)) { "More pending requests" } } }
        },
    );
    Ok(body.into_response())
}

/// The requester's earlier requests on the same resource, and whether each
/// grant was used at a proxy (`None`: it had no grant).
async fn history(
    app: &AppState,
    s: &Session,
    r: &AccessRequest,
) -> Result<Vec<(AccessRequest, Option<bool>)>, WebError> {
    let ids = queries::history(app, &r.requester, &r.resource, &r.id, HISTORY as i64).await?;
    let earlier = workflow::visible(app, &s.principal, &ids).await?;
    let grant_ids: Vec<String> = earlier
        .iter()
        .filter_map(|h| h.grant.as_ref().map(|g| g.id.clone()))
        .collect();
    let seen = super::grants::used(app, &grant_ids).await?;
    Ok(earlier
        .into_iter()
        .map(|h| {
            let used = h.grant.as_ref().map(|g| seen.contains(&g.id));
            (h, used)
        })
        .collect())
}
