//! Signing in and out: with the organisation's identity provider
//! (`[console.oidc]`, see [`crate::web::oidc`]), and, with the development
//! HS256 auth configured, a clearly marked page that lets anyone pick a
//! user id and groups (as `jitgate dev-token` does for the API). Both start
//! a session through [`session::start`].

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::api::AppState;
use crate::auth::Principal;
use crate::web::csrf::{self, SessionForm, SignInForm};
use crate::web::error::WebError;
use crate::web::layout;
use crate::web::oidc::{self, Callback, Flow, StepUp};
use crate::web::session::{self, SignInMethod};

/// Every group the configuration names, for the development sign-in page.
fn known_groups(app: &AppState) -> BTreeSet<String> {
    let cfg = &app.cfg;
    let mut all: BTreeSet<String> = cfg.auth.admin_groups.union(&cfg.auth.auditor_groups).cloned().collect();
    for r in &cfg.resources {
        all.extend(r.requesters.iter().cloned());
        all.extend(r.approvers.iter().cloned());
        if let Some(bg) = &r.break_glass {
            all.extend(bg.groups.iter().cloned());
        }
    }
    all
}

/// `GET /signin`.
pub async fn page(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, WebError> {
    if session::find(&app, &headers).await?.is_some() {
        return Ok(Redirect::to("/requests").into_response());
    }
    let dev = app.cfg.auth.hs256_secret.is_some();
    let oidc_on = app.cfg.console.oidc.is_some();
    let (token, cookie) = csrf::signin_token()?;
    let body = layout::page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if oidc_on {
                p { a.button href="/signin/oidc" { "Sign in with your organisation's identity provider" } }
            }
            @if dev {
                div.dev-banner role="note" {
                    strong { "Development sign-in. " }
                    "This service is configured with development (HS256) authentication: anyone who can reach it can sign in as anyone. Never use it in production."
                }
                form method="post" action="/signin/dev" {
                    input type="hidden" name=(csrf::FIELD) value=(token.as_str());
                    div.field {
                        label for="user" { "User id" }
                        input #user name="user" type="text" required autocomplete="username" maxlength="256";
                    }
                    div.field {
                        label for="email" { "Email (optional)" }
                        input #email name="email" type="email" maxlength="256";
                    }
                    fieldset {
                        legend { "Groups" }
                        @for g in known_groups(&app) {
                            div.check {
                                input type="checkbox" name="group" value=(g) id=(format!("group-{g}"));
                                label for=(format!("group-{g}")) { (g) }
                            }
                        }
                    }
                    button type="submit" { "Sign in (development)" }
                }
            } @else if !oidc_on {
                p { "Sign-in with the organisation's identity provider is not configured for the console ([console.oidc])." }
            }
        },
    );
    Ok(([(header::SET_COOKIE, cookie)], body).into_response())
}

/// `POST /signin/dev`.
pub async fn dev(State(app): State<AppState>, SignInForm(fields): SignInForm) -> Result<Response, WebError> {
    if app.cfg.auth.hs256_secret.is_none() {
        return Err(WebError::DevSignInDisabled);
    }
    let user = fields.text("user").unwrap_or_default();
    if user.is_empty() || user.len() > 256 || crate::text::first_deceptive(&user).is_some() {
        return Err(WebError::BadForm("user: a user id of 1 to 256 visible characters"));
    }
    let known = known_groups(&app);
    let groups: BTreeSet<String> = fields
        .all("group")
        .into_iter()
        .filter(|g| known.contains(*g))
        .map(str::to_owned)
        .collect();
    let principal = Principal {
        id: crate::identity::canonical_user(&user, app.cfg.auth.user_match),
        email: fields.text("email").map(|e| crate::identity::canonical_email(&e)),
        groups,
        context: crate::auth::AuthContext::default(),
    };
    let (_, cookie) = session::start(&app, &principal, SignInMethod::Development).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/requests")).into_response())
}

/// `GET /signin/oidc`: sends the browser to the identity provider, with
/// this sign-in's flow in a cookie; `acr_values` and `max_age` (the
/// step-up page's link) are passed on to the provider.
pub async fn oidc(State(app): State<AppState>, Query(step_up): Query<StepUp>) -> Result<Response, WebError> {
    let (url, flow) = oidc::start(&app, &step_up.checked()?).await?;
    Ok(([(header::SET_COOKIE, flow.cookie())], Redirect::to(&url)).into_response())
}

/// `GET /signin/callback`: where the identity provider sends the browser
/// back; a session starts when everything checks out. The flow cookie is
/// cleared whatever the outcome: a flow is used once.
pub async fn callback(State(app): State<AppState>, headers: HeaderMap, Query(back): Query<Callback>) -> Response {
    let result = async {
        let principal = oidc::finish(&app, Flow::from_headers(&headers), &back).await?;
        // Signing in again (a step-up) replaces the browser's session: one
        // browser, one session, and the weaker one is not left behind.
        if let Some(before) = session::find(&app, &headers).await? {
            session::end(&app, &before).await?;
        }
        let (_, cookie) = session::start(&app, &principal, SignInMethod::Oidc).await?;
        Ok::<_, WebError>(cookie)
    }
    .await;
    let mut response = match result {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/requests")).into_response(),
        Err(e) => e.into_response(),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, oidc::cleared_cookie());
    response
}

/// `POST /signout`: ends the session (the row is deleted) and clears the
/// cookie.
pub async fn signout(State(app): State<AppState>, form: SessionForm) -> Result<Response, WebError> {
    session::end(&app, &form.session).await?;
    Ok((
        [(header::SET_COOKIE, session::cleared_cookie())],
        Redirect::to("/signin"),
    )
        .into_response())
}
