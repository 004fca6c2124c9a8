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
            WebError::Api(e) => e.code(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::SignInRequired => StatusCode::SEE_OTHER,
            WebError::CsrfRejected => StatusCode::FORBIDDEN,
            WebError::BadForm(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound | WebError::DevSignInDisabled => StatusCode::NOT_FOUND,
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
                p { a href="/" { "Back to the console" } }
            },
        );
        let mut response = (status, body).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}
