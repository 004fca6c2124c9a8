//! Cross-site request forgery protection for the console's form posts.
//!
//! Every form carries the session's token in a hidden `csrf` field; a post
//! whose token is missing or differs is refused (403 `csrf_rejected`)
//! before anything else in it is read. Browsers that say where a request
//! comes from (`Sec-Fetch-Site`, `Origin`) are also refused when it is
//! another site. The session cookie is `SameSite=Lax` as well, so a
//! forged post fails three ways.
//!
//! Before sign-in there is no session: the sign-in form uses a
//! double-submit token instead (a random value in a `__Host-` cookie and
//! the same value in the form), so that another site cannot sign a
//! browser into an account of the attacker's choosing.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use super::error::WebError;
use super::session::{cookie_value, random_token, Session};
use crate::api::AppState;

/// The form field that carries the token.
pub const FIELD: &str = "csrf";

/// The cookie of the pre-sign-in double-submit token.
pub const SIGNIN_COOKIE: &str = "__Host-jitgate-signin";

/// A session's CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

impl CsrfToken {
    /// Wraps a stored token.
    pub fn new(token: String) -> CsrfToken {
        CsrfToken(token)
    }

    /// The value forms carry.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a presented value is this token (constant time).
    pub fn matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| !self.0.is_empty() && p.as_bytes().ct_eq(self.0.as_bytes()).into())
    }
}

/// Whether the browser says the request comes from another site. Browsers
/// that send neither header are judged by the token alone.
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return true;
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        // Some browsers send `Origin: null` for privacy-sensitive contexts;
        // that is not this site.
        (Some(o), Some(h)) => {
            let authority = o.split_once("://").map(|(_, rest)| rest);
            authority != Some(h)
        }
        _ => false,
    }
}

/// The fields of a posted form, in order.
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of a field, trimmed; `None` when missing or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Every value of a repeated field (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

async fn form_body(headers: &HeaderMap, body: axum::body::Body, app: &AppState) -> Result<Bytes, WebError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(WebError::BadForm("send the form as application/x-www-form-urlencoded"));
    }
    axum::body::to_bytes(body, app.cfg.max_body_bytes)
        .await
        .map_err(|_| WebError::BadForm("the form is larger than this service accepts"))
}

/// A form posted by a signed-in person, its CSRF token checked. The
/// session is found (the caller authenticated) before the body is read.
#[derive(Debug)]
pub struct SessionForm {
    /// Who posted it.
    pub session: Session,
    /// The fields (without the token).
    pub fields: Fields,
}

impl FromRequest<AppState> for SessionForm {
    type Rejection = WebError;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, app).await?;
        if cross_site(&parts.headers) {
            tracing::info!(user = %session.principal.id, "form refused: posted from another site");
            return Err(WebError::CsrfRejected);
        }
        let body = form_body(&parts.headers, body, app).await?;
        let fields = Fields::parse(&body);
        if !session.csrf.matches(fields.get(FIELD)) {
            tracing::info!(user = %session.principal.id, "form refused: missing or wrong CSRF token");
            return Err(WebError::CsrfRejected);
        }
        Ok(SessionForm { session, fields })
    }
}

/// A form posted before sign-in, its double-submit token checked.
#[derive(Debug)]
pub struct SignInForm(pub Fields);

impl FromRequest<AppState> for SignInForm {
    type Rejection = WebError;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        if cross_site(req.headers()) {
            let h = req.headers();
            tracing::info!(origin = ?h.get(header::ORIGIN), host = ?h.get(header::HOST), site = ?h.get("sec-fetch-site"),
                "sign-in form refused: posted from another site");
            return Err(WebError::CsrfRejected);
        }
        let (parts, body) = req.into_parts();
        let expected = cookie_value(&parts.headers, SIGNIN_COOKIE).map(|v| CsrfToken::new(v.to_owned()));
        let body = form_body(&parts.headers, body, app).await?;
        let fields = Fields::parse(&body);
        if !expected.as_ref().is_some_and(|t| t.matches(fields.get(FIELD))) {
            tracing::info!(
                cookie = expected.is_some(),
                field = fields.get(FIELD).is_some(),
                "sign-in form refused: its token does not match its cookie"
            );
            return Err(WebError::CsrfRejected);
        }
        Ok(SignInForm(fields))
    }
}

/// A fresh pre-sign-in token and the `Set-Cookie` value that carries it.
pub fn signin_token() -> Result<(CsrfToken, HeaderValue), WebError> {
    let token = random_token()?;
    let cookie = format!("{SIGNIN_COOKIE}={token}; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict");
    let cookie =
        HeaderValue::from_str(&cookie).map_err(|e| WebError::Api(crate::error::ApiError::Internal(e.into())))?;
    Ok((CsrfToken::new(token), cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_different_token_does_not_match() {
        let t = CsrfToken::new("abc".into());
        assert!(t.matches(Some("abc")));
        assert!(!t.matches(None));
        assert!(!t.matches(Some("")));
        assert!(!t.matches(Some("abd")));
        assert!(
            !CsrfToken::new(String::new()).matches(Some("")),
            "an empty token never matches"
        );
    }

    #[test]
    fn requests_from_another_site_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "console.example:8080".parse().unwrap());
        assert!(!cross_site(&h), "no origin information: judged by the token");
        h.insert(header::ORIGIN, "http://console.example:8080".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(!cross_site(&h));
    }

    #[test]
    fn repeated_fields_are_kept_in_order() {
        let f = Fields::parse(b"m=GET&m=HEAD&reason=+why+&empty=");
        assert_eq!(f.all("m"), vec!["GET", "HEAD"]);
        assert_eq!(f.text("reason").as_deref(), Some("why"));
        assert_eq!(f.text("empty"), None);
        assert_eq!(f.get("missing"), None);
    }
}
