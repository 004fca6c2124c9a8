//! What a console page answers when something fails: an HTML page with the
//! status and the stable code of the failure (the same codes as the API's
//! problem documents), or a redirect to the sign-in page.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::api::problem::ErrorCode;
use crate::error::ApiError;

/// A console failure.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No session: the browser is sent to sign in.
    #[error("sign in first")]
    SignInRequired,
    /// The form's CSRF token is missing or wrong, or the post came from
    /// another site.
    #[error("this form is not from this console session (missing or wrong CSRF token); reload the page and try again")]
    CsrfRejected,
    /// The form could not be read.
    #[error("{0}")]
    BadForm(&'static str),
    /// Not a console page, or something the person may not see.
    #[error("no such page")]
    NotFound,
    /// The development sign-in page, when development auth is not configured.
    #[error("development sign-in is not available: the service is not configured with development (HS256) auth")]
    DevSignInDisabled,
    /// OpenID Connect sign-in, when `[console.oidc]` is not configured.
    #[error("sign-in with the identity provider is not configured for the console ([console.oidc])")]
    OidcSignInDisabled,
    /// The provider sent the browser back without a sign-in in progress
    /// (it took longer than ten minutes, or was started in another browser).
    #[error("no sign-in is in progress in this browser (it took too long, or was started elsewhere); sign in again")]
    SignInExpired,
    /// The `state` the provider sent back is not this browser's.
    #[error("this sign-in answer is not for the sign-in this browser started (state mismatch); sign in again")]
    SignInStateMismatch,
    /// The ID token's `nonce` is not this sign-in's (a replayed token).
    #[error("the identity provider's ID token is not for this sign-in (nonce mismatch); sign in again")]
    SignInNonceMismatch,
    /// The provider answered with an error (the person cancelled, or the
    /// provider refused them).
    #[error("the identity provider did not sign you in: {0}")]
    SignInRefused(String),
    /// The provider could not be reached, or answered nonsense.
    #[error("sign-in failed: {0}")]
    SignInFailed(String),
    /// The workflow refused or failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::Api(ApiError::db(e))
    }
}

impl WebError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::SignInRequired => "sign_in_required",
            WebError::CsrfRejected => "csrf_rejected",
            WebError::BadForm(_) => "invalid_form",
            WebError::NotFound => "not_found",
            WebError::DevSignInDisabled => "dev_sign_in_disabled",
            WebError::OidcSignInDisabled => "oidc_sign_in_disabled",
            WebError::SignInExpired => "sign_in_expired",
            WebError::SignInStateMismatch => "sign_in_state_mismatch",
            WebError::SignInNonceMismatch => "sign_in_nonce_mismatch",
            WebError::SignInRefused(_) => "sign_in_refused",
            WebError::SignInFailed(_) => "sign_in_failed",
            WebError::Api(e) => e.code(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::SignInRequired => StatusCode::SEE_OTHER,
            WebError::CsrfRejected => StatusCode::FORBIDDEN,
            WebError::BadForm(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound | WebError::DevSignInDisabled | WebError::OidcSignInDisabled => StatusCode::NOT_FOUND,
            WebError::SignInExpired | WebError::SignInStateMismatch => StatusCode::BAD_REQUEST,
            WebError::SignInNonceMismatch | WebError::SignInRefused(_) => StatusCode::UNAUTHORIZED,
            WebError::SignInFailed(_) => StatusCode::BAD_GATEWAY,
            WebError::Api(e) => e.status(),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::SignInRequired = self {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/signin")]).into_response();
        }
        let status = self.status();
        let detail = match &self {
            WebError::Api(ApiError::Internal(cause) | ApiError::Unavailable(cause)) => {
                tracing::error!(code = self.code(), error = ?cause, "console page failed");
                self.to_string()
            }
            other => other.to_string(),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let body = layout::page(
            title,
            None,
            html! {
                h1 { (title) }
                div.error-summary role="alert" {
                    p { (detail) }
                    p { "Code: " code { (self.code()) } }
                }
                @if let WebError::Api(ApiError::StepUp(missing)) = &self {
                    p { a.button href=(step_up_link(missing)) { "Sign in again with the identity provider" } }
                }
                p { a href="/" { "Back to the console" } " · " a href="/signin" { "Sign in" } }
            },
        );
        let mut response = (status, body).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// Where a person whose sign-in is not strong or recent enough for a step
/// signs in again: the provider is asked for what the step requires (its
/// `acr_values`, `max_age`), and what it vouches for is checked again
/// when the step is retried.
fn step_up_link(missing: &crate::error::Missing) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(acr) = &missing.acr_values {
        query.append_pair("acr_values", acr);
    }
    if let Some(max_age) = missing.max_age {
        query.append_pair("max_age", &max_age.to_string());
    }
    format!("/signin/oidc?{}", query.finish())
}
