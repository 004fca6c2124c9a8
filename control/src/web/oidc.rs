//! Console sign-in with the people's OpenID provider (`[auth] issuer`,
//! client `[console.oidc]`): authorization code with PKCE (RFC 7636, S256),
//! `state` against login CSRF, `nonce` against ID token replay, and the ID
//! token verified like every bearer token (issuer keys, `iss`, `exp`,
//! `nbf`), with `aud` the console's client id. It ends in
//! [`session::start`], like the development sign-in.
//!
//! Nothing is stored before the provider answers: the flow's one secret is
//! a random 256-bit value in a short-lived `__Host-` cookie (`HttpOnly`,
//! `Secure`, `SameSite=Lax`, so it comes back on the provider's top-level
//! redirect). It is the PKCE verifier itself; `state` and `nonce` are
//! hashes of it under distinct labels, so what the provider and the
//! browser's history see (`state`, `nonce`, the S256 challenge) reveals
//! nothing that redeems the code. Any replica can finish a flow another
//! one started.

use axum::http::{HeaderMap, HeaderValue};
use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope, StandardRevocableToken, TokenUrl,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::WebError;
use super::session;
use crate::auth::provider::{self, OAuthClient, Tokens};
use crate::auth::Principal;
use crate::config::console::ConsoleOidc;
use crate::App;

/// The flow's cookie.
pub const FLOW_COOKIE: &str = "__Host-jitgate-oidc";

/// How long a sign-in may take at the provider.
const FLOW_SECONDS: u64 = 600;

/// The scopes asked for: an OpenID Connect sign-in whose ID token carries
/// the email and groups.
const SCOPES: [&str; 3] = ["openid", "email", "groups"];

/// One sign-in in progress: its secret, the PKCE verifier.
pub struct Flow {
    secret: String,
}

impl Flow {
    /// A new flow (256 random bits).
    pub fn new() -> Result<Flow, WebError> {
        Ok(Flow {
            secret: session::random_token()?,
        })
    }

    /// The flow the browser's cookie names, if any.
    pub fn from_headers(headers: &HeaderMap) -> Option<Flow> {
        session::cookie_value(headers, FLOW_COOKIE).map(|s| Flow { secret: s.to_owned() })
    }

    fn derived(&self, label: &str) -> String {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0]);
        h.update(self.secret.as_bytes());
        hex::encode(h.finalize())
    }

    /// The `state` sent to the provider and expected back.
    pub fn state(&self) -> String {
        self.derived("jitgate console oidc state")
    }

    /// The `nonce` sent to the provider and expected in the ID token.
    pub fn nonce(&self) -> String {
        self.derived("jitgate console oidc nonce")
    }

    fn verifier(&self) -> PkceCodeVerifier {
        PkceCodeVerifier::new(self.secret.clone())
    }

    /// The `Set-Cookie` value that hands the flow to the browser.
    pub fn cookie(&self) -> HeaderValue {
        let value = format!(
            "{FLOW_COOKIE}={}; Path=/; Max-Age={FLOW_SECONDS}; HttpOnly; Secure; SameSite=Lax",
            self.secret
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The `Set-Cookie` value that ends a flow.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-jitgate-oidc=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax")
}

/// Whether `got` is `expected`, in constant time.
fn same(expected: &str, got: &str) -> bool {
    expected.as_bytes().ct_eq(got.as_bytes()).into()
}

/// The client with its endpoints set.
type ConsoleClient = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn failed(message: impl ToString) -> WebError {
    WebError::SignInFailed(message.to_string())
}

async fn client(app: &App, oidc: &ConsoleOidc) -> Result<(ConsoleClient, reqwest::Client), WebError> {
    let http = provider::http_client().map_err(failed)?;
    let endpoints = provider::discover(&http, &app.cfg.auth.issuer).await.map_err(failed)?;
    let mut client = OAuthClient::new(ClientId::new(oidc.client_id.clone()))
        .set_auth_uri(AuthUrl::new(endpoints.authorization_endpoint).map_err(failed)?)
        .set_token_uri(TokenUrl::new(endpoints.token_endpoint).map_err(failed)?)
        .set_redirect_uri(RedirectUrl::new(oidc.redirect_url.clone()).map_err(failed)?);
    if let Some(secret) = &oidc.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    Ok((client, http))
}

/// The console's OpenID client, or the page saying it is not configured.
pub fn configured(app: &App) -> Result<&ConsoleOidc, WebError> {
    app.cfg.console.oidc.as_ref().ok_or(WebError::OidcSignInDisabled)
}

/// A sign-in asked for by a step that needs a stronger or more recent one
/// (the step-up page's link): what to ask the provider for. It only shapes
/// the request; what the provider answers is checked when the step is
/// retried, so a changed link gains nothing.
#[derive(Debug, Default, serde::Deserialize)]
pub struct StepUp {
    /// Authentication context classes, space-separated.
    pub acr_values: Option<String>,
    /// The sign-in's greatest age, seconds.
    pub max_age: Option<String>,
}

/// A [`StepUp`] whose values were checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckedStepUp {
    acr_values: Option<String>,
    max_age: Option<u64>,
}

impl CheckedStepUp {
    fn wanted(&self) -> bool {
        self.acr_values.is_some() || self.max_age.is_some()
    }
}

impl StepUp {
    /// `acr_values`: 1 to 512 characters, space-separated visible ASCII
    /// (RFC 6749's characters for such values); `max_age`: whole seconds,
    /// at most a day.
    pub fn checked(&self) -> Result<CheckedStepUp, WebError> {
        let acr_values = match self.acr_values.as_deref() {
            None => None,
            Some(a) if (1..=512).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => {
                Some(a.to_owned())
            }
            Some(_) => {
                return Err(WebError::BadForm(
                    "acr_values: 1 to 512 visible ASCII characters, space-separated",
                ))
            }
        };
        let max_age = match self.max_age.as_deref() {
            None => None,
            Some(m) => Some(
                m.parse::<u64>()
                    .ok()
                    .filter(|s| *s <= 86_400)
                    .ok_or(WebError::BadForm("max_age: whole seconds, at most 86400"))?,
            ),
        };
        Ok(CheckedStepUp { acr_values, max_age })
    }
}

/// Starts a sign-in: the provider's authorization URL to send the browser
/// to, and the flow whose cookie goes with it. A step-up sign-in asks for
/// the step's `acr_values` and `max_age`, with `prompt=login`: the
/// provider's existing sign-in is what fell short, so the person
/// authenticates again rather than being waved through on it.
pub async fn start(app: &App, step_up: &CheckedStepUp) -> Result<(String, Flow), WebError> {
    let oidc = configured(app)?;
    let (client, _) = client(app, oidc).await?;
    let flow = Flow::new()?;
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&flow.verifier());
    let state = flow.state();
    let mut request = client
        .authorize_url(|| CsrfToken::new(state))
        .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
        .add_extra_param("nonce", flow.nonce())
        .set_pkce_challenge(challenge);
    if step_up.wanted() {
        request = request.add_extra_param("prompt", "login");
    }
    if let Some(acr) = &step_up.acr_values {
        request = request.add_extra_param("acr_values", acr.clone());
    }
    if let Some(max_age) = step_up.max_age {
        request = request.add_extra_param("max_age", max_age.to_string());
    }
    let (url, _) = request.url();
    Ok((url.to_string(), flow))
}

/// What the provider sent the browser back with.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state sent.
    pub state: Option<String>,
    /// An error code (the person declined, the provider refused).
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

/// Finishes a sign-in: checks the state, redeems the code with the
/// verifier, verifies the ID token and its nonce; returns the person.
pub async fn finish(app: &App, flow: Option<Flow>, back: &Callback) -> Result<Principal, WebError> {
    let oidc = configured(app)?;
    let flow = flow.ok_or(WebError::SignInExpired)?;
    let state_ok = back.state.as_deref().is_some_and(|s| same(&flow.state(), s));
    if !state_ok {
        return Err(WebError::SignInStateMismatch);
    }
    if let Some(error) = &back.error {
        let description = back.error_description.as_deref().unwrap_or("");
        // Anyone can put anything in this URL: the text is cut and kept to
        // the characters RFC 6749 allows in these fields (printable ASCII),
        // so it cannot hide or reorder what the page says.
        let text: String = format!("{error}: {description}")
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(300)
            .collect();
        return Err(WebError::SignInRefused(text));
    }
    let code = back
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or(WebError::BadForm(
            "code: the identity provider sent no authorization code",
        ))?;
    let (client, http) = client(app, oidc).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(flow.verifier())
        .request_async(&http)
        .await
        .map_err(|e| failed(format!("the code was not redeemed: {e}")))?;
    let id_token = tokens
        .extra_fields()
        .id_token
        .as_deref()
        .ok_or_else(|| failed("the identity provider answered without an ID token"))?;
    let (principal, claims) = app
        .auth
        .verify_id_token(id_token, &oidc.client_id)
        .await
        .map_err(WebError::Api)?;
    let nonce_ok = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| same(&flow.nonce(), n));
    if !nonce_ok {
        return Err(WebError::SignInNonceMismatch);
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_up_asks_only_for_plain_acr_values_and_a_bounded_max_age() {
        let ask = |acr: Option<&str>, max_age: Option<&str>| {
            StepUp {
                acr_values: acr.map(str::to_owned),
                max_age: max_age.map(str::to_owned),
            }
            .checked()
        };
        let wanted = ask(Some("phr mfa"), Some("900")).unwrap();
        assert_eq!(wanted.acr_values.as_deref(), Some("phr mfa"));
        assert_eq!(wanted.max_age, Some(900));
        assert!(!ask(None, None).unwrap().wanted());
        for (acr, max_age) in [
            (Some(""), None),
            (Some("phr\u{202e}"), None),
            (Some("a\nb"), None),
            (None, Some("-1")),
            (None, Some("86401")),
            (None, Some("1e3")),
        ] {
            assert!(ask(acr, max_age).is_err(), "{acr:?} {max_age:?}");
        }
        assert!(ask(Some(&"x".repeat(513)), None).is_err());
    }

    #[test]
    fn state_nonce_and_verifier_are_distinct_and_fixed_by_the_secret() {
        let flow = Flow {
            secret: "ab".repeat(32),
        };
        let again = Flow {
            secret: "ab".repeat(32),
        };
        assert_eq!(flow.state(), again.state());
        assert_eq!(flow.nonce(), again.nonce());
        let values = [flow.state(), flow.nonce(), flow.secret.clone()];
        assert_eq!(values.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
        let other = Flow {
            secret: "cd".repeat(32),
        };
        assert_ne!(flow.state(), other.state());
    }

    #[test]
    fn the_flow_cookie_is_host_only_http_only_secure_and_short_lived() {
        let flow = Flow {
            secret: "ab".repeat(32),
        };
        let cookie = flow.cookie();
        let text = cookie.to_str().unwrap();
        assert!(text.starts_with("__Host-jitgate-oidc="));
        for attribute in ["Path=/", "Max-Age=600", "HttpOnly", "Secure", "SameSite=Lax"] {
            assert!(text.contains(attribute), "{attribute}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_str(&format!("{FLOW_COOKIE}={}", "ab".repeat(32))).unwrap(),
        );
        assert_eq!(Flow::from_headers(&headers).unwrap().state(), flow.state());
        headers.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_static("__Host-jitgate-oidc=short"),
        );
        assert!(Flow::from_headers(&headers).is_none(), "only 64 hex digits are a flow");
    }

    #[test]
    fn comparisons_need_the_exact_value() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("abc", ""));
    }
}
