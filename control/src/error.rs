//! The one error type of the API: every failure has a stable machine code
//! and becomes an RFC 9457 problem document.
//!
//! Client errors say what was wrong; server errors log the cause and return
//! a generic document, never SQL or internal text. The HTTP side (status,
//! problem document) is in `api::problem`: only the API speaks HTTP.

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or invalid credentials.
    #[error("{1}")]
    Unauthenticated(&'static str, String),
    /// Authenticated but not allowed.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// Not found (also used for things the caller may not see, so that ids
    /// of other people's requests cannot be probed).
    #[error("{1}")]
    NotFound(&'static str, String),
    /// The state does not allow this transition.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// The input is well-formed but breaks a rule.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The input is not well-formed (JSON, types, missing fields).
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// One field of the body or query string is not well-formed; the
    /// problem document names it in its `errors` member.
    #[error("{field}: {message}")]
    Field {
        /// Stable code (`invalid_body`, `invalid_query`).
        code: &'static str,
        /// The field's path (`duration_seconds`, `scope[0].methods`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The method is not one the endpoint serves.
    #[error("this endpoint does not accept this method (see the Allow header)")]
    MethodNotAllowed,
    /// The body is larger than allowed.
    #[error("the request body is larger than this endpoint accepts (max_body_bytes; 8 MiB for decision batches)")]
    PayloadTooLarge,
    /// The body is not JSON.
    #[error("send application/json")]
    UnsupportedMediaType,
    /// Something failed on our side.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// The database is unavailable.
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(c, _)
            | ApiError::Forbidden(c, _)
            | ApiError::NotFound(c, _)
            | ApiError::Conflict(c, _)
            | ApiError::Invalid(c, _)
            | ApiError::BadRequest(c, _) => c,
            ApiError::Field { code, .. } => code,
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable(_) => "service_unavailable",
        }
    }

    /// A request that does not exist or that the caller may not see.
    pub fn request_not_found() -> ApiError {
        ApiError::NotFound("request_not_found", "no such access request".into())
    }

    /// Wraps a database error: unavailability is 503, anything else 500.
    pub fn db(e: sqlx::Error) -> ApiError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => ApiError::Unavailable(e.into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::db(e)
    }
}
