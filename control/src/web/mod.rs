//! The web console, served by the control service under `/` beside the
//! API under `/v1`: server-rendered pages (maud templates compiled into the
//! binary), a small script for live updates and copying that nothing
//! depends on (every action is a plain form post), server-side sessions
//! and CSRF-checked forms.
//!
//! - [`session`]: who is signed in (server-side sessions, cookies);
//! - [`oidc`]: sign-in with the people's OpenID provider (code + PKCE);
//! - [`csrf`]: the token every form post carries;
//! - [`headers`]: Content-Security-Policy and the other security headers;
//! - the `[console]` configuration section is [`crate::config::console`];
//! - [`layout`]: the page frame and formatting helpers;
//! - [`charts`]: the overview's charts, as inline SVG;
//! - [`workflow`]: the one door to the workflow functions the API uses;
//! - [`reminders`]: `request.reminder` for requests pending too long;
//! - [`queries`]: which requests a page lists (indexed, limited);
//! - [`pages`]: one module per page.

pub mod charts;
pub mod csrf;
pub mod error;
pub mod headers;
pub mod layout;
pub mod oidc;
pub mod pages;
pub mod queries;
pub mod reminders;
pub mod session;
pub mod workflow;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::api::AppState;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes (state is supplied by the API router they are
/// merged into).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(pages::signin::page))
        .route("/signin/dev", post(pages::signin::dev))
        .route("/signin/oidc", get(pages::signin::oidc))
        .route("/signin/callback", get(pages::signin::callback))
        .route("/signout", post(pages::signin::signout))
        .route(
            "/request",
            get(pages::new_request::page).post(pages::new_request::create),
        )
        .route("/requests", get(pages::requests::mine))
        .route("/requests/{id}", get(pages::requests::show))
        .route("/requests/{id}/cancel", post(pages::requests::cancel))
        .route("/requests/{id}/extend", post(pages::requests::extend))
        .route("/requests/{id}/approve", post(pages::requests::approve))
        .route("/requests/{id}/deny", post(pages::requests::deny))
        .route("/requests/{id}/grant", post(pages::requests::grant))
        .route("/requests/{id}/review", post(pages::reviews::review))
        .route("/inbox", get(pages::inbox::page))
        .route("/grants", get(pages::grants::page))
        .route("/grants/{id}/revoke", post(pages::grants::revoke))
        .route("/reviews", get(pages::reviews::page))
        .route("/audit", get(pages::audit::page))
        .route("/overview", get(pages::overview::page))
        .route("/audit/verify", get(pages::audit::verify))
        .route("/audit/export.jsonl", get(pages::audit::export_jsonl))
        .route("/audit/export.csv", get(pages::audit::export_csv))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(middleware::from_fn(headers::secure))
}

async fn home(session: Option<session::Session>) -> Response {
    match session {
        Some(_) => Redirect::to("/requests").into_response(),
        None => Redirect::to("/signin").into_response(),
    }
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS).into_response()
}
