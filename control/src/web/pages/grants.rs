//! Active grants, per resource: who holds access now, until when, whether
//! a proxy has seen it used; revoke with a reason.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::parts;
use crate::api::AppState;
use crate::store;
use crate::web::csrf::SessionForm;
use crate::web::error::WebError;
use crate::web::layout::{self, csrf_field, shown};
use crate::web::session::Session;
use crate::web::{queries, workflow};

/// Which of these grants any proxy reported a decision under (one query).
pub async fn used(app: &AppState, grant_ids: &[String]) -> Result<HashSet<String>, WebError> {
    Ok(store::usage::reported(&app.db.read, grant_ids).await?)
}

/// `GET /grants`.
pub async fn page(State(app): State<AppState>, s: Session) -> Result<Response, WebError> {
    let now = app.clock.now_ms();
    let ids = queries::active(&app, now).await?;
    let active = workflow::visible(&app, &s.principal, &ids).await?;
    let grant_ids: Vec<String> = active
        .iter()
        .filter_map(|r| r.grant.as_ref().map(|g| g.id.clone()))
        .collect();
    let seen = used(&app, &grant_ids).await?;
    let mut by_resource: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in active {
        let Some(g) = r.grant.clone() else { continue };
        let used = seen.contains(&g.id);
        by_resource.entry(r.resource.clone()).or_default().push((r, g, used));
    }
    let body = layout::page(
        "Active grants",
        Some(&s),
        html! {
            h1 { "Active grants" }
            div #grants data-live="1" {
                @if by_resource.is_empty() { p { "No active grants that you can see." } }
                @for (resource, list) in &by_resource {
                    h2 { (shown(resource)) }
                    table {
                        thead { tr { th { "Holder" } th { "Scope" } th { "Until" } th { "Used" } th { "Revoke" } } }
                        tbody {
                            @for (r, g, used) in list {
                                tr {
                                    td { a href=(format!("/requests/{}", r.id)) { (shown(&r.requester)) } }
                                    td { (parts::scope(&r.scope)) }
                                    td { (layout::time_s(g.expires_at)) " (" (parts::window_left(g.not_before, g.expires_at, now / 1000)) ")" }
                                    td { (if *used { "yes" } else { "not yet" }) }
                                    td {
                                        form method="post" action=(format!("/grants/{}/revoke", g.id)) {
                                            (csrf_field(&s))
                                            label for=(format!("reason-{}", g.id)) { "Reason" }
                                            input type="text" name="reason" id=(format!("reason-{}", g.id)) required maxlength="2000";
                                            button.danger type="submit" { "Revoke" }
                                        }
                                    }
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

/// `POST /grants/{id}/revoke`.
pub async fn revoke(State(app): State<AppState>, Path(id): Path<String>, f: SessionForm) -> Result<Response, WebError> {
    let reason = f.fields.get("reason").unwrap_or_default().to_owned();
    workflow::revoke(&app, &f.session.principal, &id, reason).await?;
    let request = crate::grants::request_of(&app, &id).await?;
    Ok(Redirect::to(&request.map_or("/grants".to_owned(), |r| format!("/requests/{r}"))).into_response())
}
