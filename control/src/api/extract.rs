//! Extractors whose every failure is a problem document with a stable code
//! that names the field: JSON bodies (`invalid_json`, `invalid_body`),
//! query strings (`invalid_query`), and the authenticated caller.
//!
//! axum's own `Json` and `Query` answer `text/plain` and report serde's
//! message with a line and column; a client (or an approver reading a CLI
//! error) needs the field instead, so decoding goes through
//! `serde_path_to_error` and serde's message is turned into a short
//! sentence about that field.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::error::ApiError;

/// The caller, as authenticated by the middleware.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthenticated("auth_missing", "send Authorization: Bearer <token>".into()))
    }
}

/// A JSON object body whose failures are problem documents naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        decode_object(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: no body, or `null`, is `None`; anything else
/// must be the object `T` (for `approve`, `deny`, `review`).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l != "0")
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        if !has_body {
            return Ok(OptionalJson(None));
        }
        let bytes = json_bytes(req, state).await?;
        if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(None));
        }
        decode_object(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// A query string whose failures (a bad value, an unknown enum value, an
/// unknown parameter) are 400 `invalid_query` naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        decode_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// A path parameter whose failures (a value that is not UTF-8 once
/// percent-decoded) are 400 `invalid_path` naming the parameter.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|rejection| {
                let (field, message) = match &rejection {
                    PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => (key.clone(), "is not valid UTF-8".into()),
                        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
                            (key.clone(), e.kind().to_string())
                        }
                        other => ("(path)".into(), other.to_string()),
                    },
                    other => ("(path)".into(), other.body_text()),
                };
                ApiError::Field {
                    code: "invalid_path",
                    field,
                    message,
                }
            })
    }
}

/// Decodes a query string into `T`.
pub fn decode_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let (field, message) = describe(&e.path().to_string(), &e.inner().to_string());
        ApiError::Field {
            code: "invalid_query",
            field,
            message,
        }
    })
}

/// The body of a JSON request: the media type is checked before the body
/// is read, and an oversized body is 413.
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("body_unreadable", rejection.body_text())
        }
    })
}

/// Decodes a body that must be one JSON object into `T`.
pub fn decode_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // An array would otherwise fill a struct positionally.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => ApiError::BadRequest("invalid_body", "the body must be a JSON object".into()),
            Err(e) => ApiError::BadRequest("invalid_json", without_position(&e.to_string()).into()),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest("invalid_json", without_position(&inner.to_string()).into());
        }
        let (field, message) = describe(&e.path().to_string(), without_position(&inner.to_string()));
        ApiError::Field {
            code: "invalid_body",
            field,
            message,
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest("invalid_json", without_position(&e.to_string()).into()))?;
    Ok(value)
}

/// serde_json's message without its ` at line 1 column 108`.
fn without_position(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

/// The field a serde message is about, and a short sentence about it.
/// `path` is serde_path_to_error's (`.` at the top level); a missing or
/// unknown field is named in the message, one level below the path.
fn describe(path: &str, message: &str) -> (String, String) {
    let child = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |m: &str| m.split('`').nth(1).unwrap_or_default().to_owned();
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (child(&quoted(rest)), "is required".into());
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("no fields");
        // The path already ends at an unknown field (it was entered).
        let name = quoted(rest);
        let field = if path.ends_with(&name) {
            path.to_owned()
        } else {
            child(&name)
        };
        return (field, format!("is not a known field (expected {expected})"));
    }
    let field = if path == "." || path.is_empty() {
        "(body)".to_owned()
    } else {
        path.to_owned()
    };
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        let expected = expected.strip_prefix("one of ").unwrap_or(expected);
        return (field, format!("is not one of {expected}"));
    }
    let expected = message.rsplit_once("expected ").map(|(_, e)| e);
    let sentence = match expected {
        Some(e) if message.starts_with("invalid value: integer") => format!("expected {}", plain_type(e, true)),
        Some(e) => format!("expected {}", plain_type(e, false)),
        // Errors from parsing query values carry no "expected".
        None if message.contains("invalid digit") || message.contains("cannot parse integer") => {
            "expected an integer".into()
        }
        None if message.contains("`true` or `false`") => "expected true or false".into(),
        None => message.to_owned(),
    };
    (field, sentence)
}

/// serde's Rust type names in the words of JSON.
fn plain_type(expected: &str, out_of_range: bool) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" if out_of_range => "a non-negative integer in range".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" if out_of_range => "an integer in range".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        // Integer fields that take whole floats too read a JSON number first.
        "a JSON number" => "an integer".into(),
        "a sequence" => "an array".into(),
        "a map" => "an object".into(),
        "a boolean" | "a string" => expected.into(),
        e if e.starts_with("struct ") => "an object".into(),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        duration_seconds: u64,
        scope: Vec<Rule>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        methods: Vec<String>,
    }

    fn field_error(body: &str) -> (String, String, String) {
        match decode_object::<Body>(body.as_bytes()) {
            Err(ApiError::Field { code, field, message }) => (code.to_owned(), field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_string_where_an_integer_belongs_names_the_field() {
        let (code, field, message) = field_error(r#"{"duration_seconds": "600", "scope": []}"#);
        assert_eq!((code.as_str(), field.as_str()), ("invalid_body", "duration_seconds"));
        assert_eq!(message, "expected an integer");
    }

    #[test]
    fn nested_missing_and_unknown_fields_are_named_by_their_path() {
        let (_, field, message) = field_error(r#"{"duration_seconds": 1, "scope": [{"methods": 3}]}"#);
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("scope[0].methods", "expected an array")
        );
        let (_, field, message) = field_error(r#"{"scope": []}"#);
        assert_eq!((field.as_str(), message.as_str()), ("duration_seconds", "is required"));
        let (_, field, _) = field_error(r#"{"duration_seconds": 1, "scope": [], "extra": 1}"#);
        assert_eq!(field, "extra");
    }

    #[test]
    fn the_top_level_must_be_an_object() {
        let err = decode_object::<Body>(br#"[600, []]"#).unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("invalid_body", 400));
        let err = decode_object::<Body>(b"{nope").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }

    #[test]
    fn a_bad_query_value_names_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Q {
            limit: Option<i64>,
        }
        match decode_query::<Q>("limit=abc") {
            Err(ApiError::Field { code, field, message }) => {
                assert_eq!(
                    (code, field.as_str(), message.as_str()),
                    ("invalid_query", "limit", "expected an integer")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
