//! Break-glass reviews: emergency accesses waiting for their
//! after-the-fact review, with their context; mark one reviewed with a
//! comment.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::parts;
use crate::api::AppState;
use crate::requests::ListQuery;
use crate::web::csrf::SessionForm;
use crate::web::error::WebError;
use crate::web::layout::{self, csrf_field, shown};
use crate::web::session::Session;
use crate::web::workflow;

/// `GET /reviews`.
pub async fn page(State(app): State<AppState>, s: Session) -> Result<Response, WebError> {
    let q = ListQuery {
        awaiting_review: Some(true),
        ..ListQuery::default()
    };
    let list = workflow::list(&app, &s.principal, &q).await?;
    let body = layout::page(
        "Break-glass reviews",
        Some(&s),
        html! {
            h1 { "Break-glass reviews" }
            @if list.is_empty() { p { "No emergency access is waiting for review." } }
            @for r in &list {
                section.card aria-labelledby=(format!("req-{}", r.id)) {
                    h2 #(format!("req-{}", r.id)) { a href=(format!("/requests/{}", r.id)) { (shown(&r.requester)) " → " (shown(&r.resource)) } }
                    (parts::context(&app, r))
                    @if may_review(&app, &s, r) { form method="post" action=(format!("/requests/{}/review", r.id)) {
                        (csrf_field(&s))
                        div.field {
                            label for=(format!("review-{}", r.id)) { "Comment (optional)" }
                            input type="text" name="comment" id=(format!("review-{}", r.id)) maxlength="2000";
                        }
                        button.primary type="submit" { "Mark reviewed" }
                    } }
                }
            }
        },
    );
    Ok(body.into_response())
}

/// Whether the review form is offered: to the resource's approvers, not
/// to the person who used the access (the server refuses others anyway).
fn may_review(app: &AppState, s: &Session, r: &crate::requests::AccessRequest) -> bool {
    app.cfg
        .resource(&r.resource)
        .is_some_and(|res| crate::policy::can_approve(res, &s.principal))
        && !crate::policy::same_person(&r.requester, None, &s.principal, app.cfg.auth.user_match)
}

/// `POST /requests/{id}/review`.
pub async fn review(State(app): State<AppState>, Path(id): Path<String>, f: SessionForm) -> Result<Response, WebError> {
    workflow::review(&app, &f.session.principal, &id, f.fields.text("comment")).await?;
    Ok(Redirect::to("/reviews").into_response())
}
