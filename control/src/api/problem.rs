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
            ApiError::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
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
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}
