//! The HTTP side of [`ApiError`]: its status and its RFC 9457 problem
//! document.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

/// The stable code of a response, kept in its extensions so the audit
/// layer can record failures.
#[derive(Debug, Clone)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(..) | ApiError::StepUp(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(..) => StatusCode::FORBIDDEN,
            ApiError::NotFound(..) => StatusCode::NOT_FOUND,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(..) | ApiError::Field { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                tracing::error!(code = self.code(), error = ?cause, "request failed");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let mut body = json!({
            "type": format!("https://jitgate.dev/problems/{}", self.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": self.code(),
            "detail": detail,
        });
        if let ApiError::Field { field, message, .. } = &self {
            body["errors"] = json!([{"field": field, "detail": message}]);
        }
        // Step-up: what the caller's sign-in lacks, and the RFC 9470
        // challenge a client answers by signing in again.
        let mut challenge = None;
        if let ApiError::StepUp(m) = &self {
            body["missing"] = json!(m.missing);
            body["acr_values"] = json!(m.acr_values);
            body["max_age"] = json!(m.max_age);
            challenge = step_up_challenge(m);
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if let Some(c) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// The RFC 9470 `WWW-Authenticate` challenge of a refusal.
fn step_up_challenge(m: &crate::error::Missing) -> Option<axum::http::HeaderValue> {
    let mut c = String::from("Bearer error=\"insufficient_user_authentication\"");
    if let Some(a) = &m.acr_values {
        c.push_str(&format!(", acr_values=\"{a}\""));
    }
    if let Some(age) = m.max_age {
        c.push_str(&format!(", max_age={age}"));
    }
    axum::http::HeaderValue::from_str(&c).ok()
}
