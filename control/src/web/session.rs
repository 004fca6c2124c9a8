//! Server-side sessions of the web console: who is signed in, and the
//! CSRF token of their forms.
//!
//! The browser holds only a random 256-bit session id, in a cookie that is
//! `HttpOnly` (no script reads it), `Secure` (never sent in clear; browsers
//! treat `http://localhost` as secure, so local use still works),
//! `SameSite=Lax` (not sent on cross-site form posts) and `__Host-`
//! prefixed (no `Domain`, path `/`: a sibling host cannot set or shadow
//! it). The database keys sessions by the id's SHA-256, so a copy of the
//! table yields no usable cookie. A session ends at sign-out, after
//! [`ConsoleConfig::session_idle_seconds`] unused, or after
//! [`ConsoleConfig::session_ttl_seconds`] in all; ending deletes the row,
//! which signs the browser out on every replica at once.
//!
//! Sign-in methods only produce a [`Principal`] and call [`start`]: the
//! development sign-in page and OpenID Connect (authorization code with
//! PKCE). The session keeps the sign-in's context (`acr`, `amr`,
//! `auth_time`), so step-up rules hold in the console as for the API.
//!
//! [`ConsoleConfig::session_idle_seconds`]: crate::config::console::ConsoleConfig::session_idle_seconds
//! [`ConsoleConfig::session_ttl_seconds`]: crate::config::console::ConsoleConfig::session_ttl_seconds

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::csrf::CsrfToken;
use super::error::WebError;
use crate::api::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::App;

/// The session cookie's name. The `__Host-` prefix makes browsers refuse
/// it unless it is `Secure`, has path `/` and no `Domain`.
pub const COOKIE: &str = "__Host-jitgate-session";

/// The idle clock is written at most this often (a page view is not a
/// database write each time).
const TOUCH_EVERY_MS: i64 = 60_000;

/// How the person signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// The development sign-in page (HS256 development auth configured).
    Development,
    /// OpenID Connect authorization code with PKCE.
    Oidc,
}

impl SignInMethod {
    /// The name stored with the session and shown in the page header.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Development => "development",
            SignInMethod::Oidc => "oidc",
        }
    }

    fn parse(s: &str) -> Option<SignInMethod> {
        match s {
            "development" => Some(SignInMethod::Development),
            "oidc" => Some(SignInMethod::Oidc),
            _ => None,
        }
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub principal: Principal,
    /// How they signed in.
    pub method: SignInMethod,
    /// The token every form of this session carries.
    pub csrf: CsrfToken,
    /// When the session ends at the latest (ms).
    pub expires_at: i64,
    id_hash: String,
}

/// 256 random bits, hex.
pub(super) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::Internal(anyhow::anyhow!("no OS randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The `Set-Cookie` value that hands a session id to the browser.
pub fn cookie(id: &str, max_age_seconds: u64) -> HeaderValue {
    let value = format!("{COOKIE}={id}; Path=/; Max-Age={max_age_seconds}; HttpOnly; Secure; SameSite=Lax");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-jitgate-session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax")
}

/// The value of a cookie in the request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Starts a session for someone who has just signed in, and records the
/// sign-in (`console.signed_in`: the method, and the issuer, `acr` and
/// `amr` the provider vouched for) in the audit log in the same
/// transaction; returns the session and the `Set-Cookie` value to answer
/// with.
pub async fn start(app: &App, principal: &Principal, method: SignInMethod) -> Result<(Session, HeaderValue), ApiError> {
    let id = random_token()?;
    let csrf = CsrfToken::new(random_token()?);
    let now = app.clock.now_ms();
    let ttl = app.cfg.console.session_ttl_seconds;
    let expires_at = now + (ttl as i64) * 1000;
    let groups = serde_json::to_string(&principal.groups).map_err(|e| ApiError::Internal(e.into()))?;
    let context = serde_json::to_string(&principal.context).map_err(|e| ApiError::Internal(e.into()))?;
    let id_hash = hash(&id);
    let mut tx = app.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO web_sessions (id_hash, user_id, email, groups_json, method, csrf_token, created_at, last_seen_at, expires_at, sign_in_context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id_hash.clone())
    .bind(principal.id.clone())
    .bind(principal.email.clone())
    .bind(groups)
    .bind(method.as_str())
    .bind(csrf.as_str().to_owned())
    .bind(now)
    .bind(now)
    .bind(expires_at)
    .bind(context)
    .execute(&mut *tx)
    .await?;
    let signed_in = crate::audit::Entry {
        actor: principal.id.clone(),
        action: "console.signed_in".into(),
        channel: Some("console".into()),
        details: serde_json::json!({
            "method": method.as_str(),
            "issuer": principal.context.issuer,
            "acr": principal.context.acr,
            "amr": principal.context.amr,
            "groups": principal.groups,
        }),
        ..crate::audit::Entry::default()
    };
    crate::audit::append(&mut tx, now, &[signed_in]).await?;
    tx.commit().await?;
    let session = Session {
        principal: principal.clone(),
        method,
        csrf,
        expires_at,
        id_hash,
    };
    Ok((session, cookie(&id, ttl)))
}

/// The session a request's cookie names, if it is still alive.
pub async fn find(app: &App, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let id_hash = hash(id);
    let now = app.clock.now_ms();
    let idle_ms = (app.cfg.console.session_idle_seconds as i64) * 1000;
    let row = sqlx::query(
        "SELECT user_id, email, groups_json, method, csrf_token, last_seen_at, expires_at, sign_in_context FROM web_sessions WHERE id_hash = $1",
    )
    .bind(id_hash.clone())
    .fetch_optional(&app.db.read)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (last_seen, expires_at): (i64, i64) = (row.try_get("last_seen_at")?, row.try_get("expires_at")?);
    if now >= expires_at || now - last_seen >= idle_ms {
        end_by_hash(app, &id_hash).await?;
        return Ok(None);
    }
    if now - last_seen >= TOUCH_EVERY_MS {
        sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(id_hash.clone())
            .execute(&app.db.pool)
            .await?;
    }
    let groups: BTreeSet<String> = serde_json::from_str(&row.try_get::<String, _>("groups_json")?).unwrap_or_default();
    let method: String = row.try_get("method")?;
    let Some(method) = SignInMethod::parse(&method) else {
        return Ok(None);
    };
    Ok(Some(Session {
        principal: Principal {
            id: row.try_get("user_id")?,
            email: row.try_get("email")?,
            groups,
            context: sign_in_context(row.try_get("sign_in_context")?),
        },
        method,
        csrf: CsrfToken::new(row.try_get("csrf_token")?),
        expires_at,
        id_hash,
    }))
}

/// The sign-in context a session keeps: what the provider vouched for
/// (`acr`, `amr`, `auth_time`), checked by the workflow's step-up rules
/// like a bearer token's. None stored, or unreadable: no context, so steps
/// that require step-up stay refused (fail closed).
fn sign_in_context(stored: Option<String>) -> crate::auth::AuthContext {
    stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

async fn end_by_hash(app: &App, id_hash: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
        .bind(id_hash.to_owned())
        .execute(&app.db.pool)
        .await?;
    Ok(())
}

/// Ends a session (sign-out).
pub async fn end(app: &App, session: &Session) -> Result<(), ApiError> {
    end_by_hash(app, &session.id_hash).await
}

/// Deletes sessions that ended by time; returns how many.
pub async fn sweep(app: &App) -> Result<u64, sqlx::Error> {
    let now = app.clock.now_ms();
    let idle_ms = (app.cfg.console.session_idle_seconds as i64) * 1000;
    let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
        .bind(now)
        .bind(now - idle_ms)
        .execute(&app.db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// Pages that need a signed-in person take a [`Session`]; without one the
/// browser is sent to the sign-in page.
impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(s) = parts.extensions.get::<Session>() {
            return Ok(s.clone());
        }
        let session = find(app, &parts.headers).await?.ok_or(WebError::SignInRequired)?;
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// Pages that show something else to signed-out visitors take an
/// `Option<Session>`.
impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match <Session as FromRequestParts<AppState>>::from_request_parts(parts, app).await {
            Ok(s) => Ok(Some(s)),
            Err(WebError::SignInRequired) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_host_only_http_only_secure_and_same_site() {
        let c = cookie(&"a".repeat(64), 600);
        let c = c.to_str().unwrap();
        assert!(c.starts_with("__Host-jitgate-session="));
        for attribute in ["Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=600"] {
            assert!(c.contains(attribute), "{attribute} in {c}");
        }
        assert!(!c.contains("Domain"));
        assert!(cleared_cookie().to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn only_a_well_formed_session_id_is_read_from_the_cookie_header() {
        let id = "0f".repeat(32);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("a=b; {COOKIE}={id}; c=d").parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE), Some(id.as_str()));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("{COOKIE}=short").parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE), None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("{COOKIE}={}", "z".repeat(64)).parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE), None, "not hex");
    }

    #[test]
    fn session_ids_are_stored_only_as_their_hash() {
        let id = random_token().unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(hash(&id), id);
        assert_eq!(hash(&id), hash(&id));
    }
}
