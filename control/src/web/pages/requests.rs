//! My requests (state kept fresh by polling, approvals, time left) and one
//! request's page, with the requester's actions: cancel, extend, show the
//! grant (a form post, so the token is never in a URL, and audited), and
//! revoke; and an approver's vote.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::parts;
use crate::api::AppState;
use crate::requests::Extension;
use crate::states::RequestState;
use crate::web::csrf::SessionForm;
use crate::web::error::WebError;
use crate::web::layout::{self, csrf_field, shown};
use crate::web::session::Session;
use crate::web::{queries, workflow};

/// `GET /requests`.
pub async fn mine(State(app): State<AppState>, s: Session) -> Result<Response, WebError> {
    let ids = queries::mine(&app, &s.principal.id).await?;
    let list = workflow::visible(&app, &s.principal, &ids).await?;
    let now = app.clock.now_ms();
    let body = layout::page(
        "My requests",
        Some(&s),
        html! {
            h1 { "My requests" }
            p { a href="/request" { "Request access" } }
            div #my-requests data-live="1" aria-live="polite" {
                @if list.is_empty() {
                    p { "You have no requests yet." }
                } @else {
                    table {
                        caption.muted { "Newest first; refreshed every few seconds while this page is open." }
                        thead { tr { th { "Request" } th { "Resource" } th { "State" } th { "Approvals" } th { "Time left" } } }
                        tbody {
                            @for r in &list {
                                tr {
                                    td { a href=(format!("/requests/{}", r.id)) { (r.id) } }
                                    td { (shown(&r.resource)) }
                                    td { (layout::state_badge(r.state.as_str())) }
                                    td { (parts::approvals(r)) }
                                    td { (parts::time_left(r, now).unwrap_or_else(|| "—".into())) }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(body.into_response())
}

/// `GET /requests/{id}`.
pub async fn show(State(app): State<AppState>, s: Session, Path(id): Path<String>) -> Result<Response, WebError> {
    let r = workflow::get(&app, &s.principal, &id).await?;
    let now = app.clock.now_ms();
    let mine = crate::policy::is_requester(&r.requester, &s.principal, app.cfg.auth.user_match);
    let may_revoke = r.state == RequestState::Approved;
    // An extension starts at its approval: offered once the window opened.
    let opened = r.grant.as_ref().is_none_or(|g| g.not_before <= now.div_euclid(1000));
    let title = format!("Request {}", r.id);
    let body = layout::page(
        &title,
        Some(&s),
        html! {
            h1 { "Request for " (shown(&r.resource)) }
            div #request-state data-live="1" aria-live="polite" {
                p {
                    "State: " (layout::state_badge(r.state.as_str()))
                    @if let Some(left) = parts::time_left(&r, now) { " — " (left) }
                }
            }
            (parts::context(&app, &r))
            @if mine && r.state == RequestState::Approved {
                h2 { "Use the grant" }
                form method="post" action=(format!("/requests/{}/grant", r.id)) {
                    (csrf_field(&s))
                    button.primary type="submit" { "Show the grant and a curl line" }
                }
                h2 { "Extend" }
                @if !opened {
                    p { "A grant can be extended once its window has started." }
                } @else {
                form method="post" action=(format!("/requests/{}/extend", r.id)) {
                    (csrf_field(&s))
                    div.field {
                        label for="extend-duration" { "New duration (minutes)" }
                        input #extend-duration type="number" name="duration_minutes" min="1" required;
                    }
                    div.field {
                        label for="extend-reason" { "Reason" }
                        input #extend-reason type="text" name="reason" required maxlength="2000";
                    }
                    button type="submit" { "Ask for an extension" }
                }
                }
            }
            @if may_revoke {
                @if let Some(g) = &r.grant {
                    h2 { "Revoke" }
                    form method="post" action=(format!("/grants/{}/revoke", g.id)) {
                        (csrf_field(&s))
                        div.field {
                            label for="revoke-reason" { "Reason" }
                            input #revoke-reason type="text" name="reason" required maxlength="2000";
                        }
                        button.danger type="submit" { "Revoke the grant" }
                    }
                }
            }
            @if mine && r.state == RequestState::Pending {
                form method="post" action=(format!("/requests/{}/cancel", r.id)) {
                    (csrf_field(&s))
                    button type="submit" { "Cancel this request" }
                }
            }
            @if parts::may_vote(&app, &s.principal, &r) {
                h2 { "Decide" }
                (parts::vote_forms(&s, &r))
            }
            @if app.auth.is_auditor(&s.principal) {
                p { a href=(format!("/audit?request_id={}", r.id)) { "Audit timeline of this request" } }
            }
        },
    );
    Ok(body.into_response())
}

fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/requests/{id}")).into_response()
}

/// `POST /requests/{id}/cancel`.
pub async fn cancel(State(app): State<AppState>, Path(id): Path<String>, f: SessionForm) -> Result<Response, WebError> {
    workflow::cancel(&app, &f.session.principal, &id).await?;
    Ok(back_to(&id))
}

/// `POST /requests/{id}/extend`.
pub async fn extend(State(app): State<AppState>, Path(id): Path<String>, f: SessionForm) -> Result<Response, WebError> {
    let minutes: u64 = f
        .fields
        .text("duration_minutes")
        .and_then(|m| m.parse().ok())
        .ok_or(WebError::BadForm("duration_minutes: a whole number of minutes"))?;
    let input = Extension {
        duration_seconds: minutes.saturating_mul(60),
        reason: f.fields.get("reason").unwrap_or_default().to_owned(),
    };
    let new = workflow::extend(&app, &f.session.principal, &id, input).await?;
    Ok(back_to(&new.id))
}

/// `POST /requests/{id}/approve` and `/deny`.
async fn vote(app: AppState, id: String, f: SessionForm, approve: bool) -> Result<Response, WebError> {
    let comment = f.fields.text("comment");
    workflow::vote(&app, &f.session.principal, &id, approve, comment).await?;
    Ok(back_to(&id))
}

/// `POST /requests/{id}/approve`.
pub async fn approve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    f: SessionForm,
) -> Result<Response, WebError> {
    vote(app, id, f, true).await
}

/// `POST /requests/{id}/deny`.
pub async fn deny(State(app): State<AppState>, Path(id): Path<String>, f: SessionForm) -> Result<Response, WebError> {
    vote(app, id, f, false).await
}

/// `POST /requests/{id}/grant`: the token, in the page body only (never a
/// URL; the page is not cached), with a ready `curl` line.
pub async fn grant(State(app): State<AppState>, Path(id): Path<String>, f: SessionForm) -> Result<Response, WebError> {
    let s = f.session;
    let r = workflow::get(&app, &s.principal, &id).await?;
    let t = workflow::fetch_token(&app, &s.principal, &id).await?;
    let now = app.clock.now_ms();
    let example = r
        .scope
        .first()
        .and_then(|rule| rule.paths.first())
        .map_or("/".to_owned(), |p| p.replace("**", "x").replace('*', "x"));
    let method = r
        .scope
        .first()
        .and_then(|rule| rule.methods.first())
        .map_or("GET", String::as_str);
    let curl = format!("curl -X {method} -H 'x-jit-grant: {}' \"$PROXY{example}\"", t.token);
    let body = layout::page(
        "Your grant",
        Some(&s),
        html! {
            h1 { "Your grant for " (shown(&r.resource)) }
            p {
                "Valid "
                @if t.not_before > now / 1000 { "from " (layout::time_s(t.not_before)) " (proxies refuse it before then) " }
                "until " (layout::time_s(t.expires_at)) ". Send it in the " code { "x-jit-grant" } " header. Keep it secret: anyone holding it has this access until it expires or is revoked." }
            div.field {
                label for="grant-token" { "Grant token" }
                textarea #grant-token.token readonly { (t.token) }
                button type="button" data-copy="grant-token" hidden { "Copy the grant" }
                span #grant-token-status role="status" {}
            }
            div.field {
                label for="grant-curl" { "curl (set PROXY to the proxy's URL)" }
                textarea #grant-curl.token readonly { (curl) }
                button type="button" data-copy="grant-curl" hidden { "Copy the curl line" }
                span #grant-curl-status role="status" {}
            }
            p { a href=(format!("/requests/{}", r.id)) { "Back to the request" } }
        },
    );
    Ok(body.into_response())
}
