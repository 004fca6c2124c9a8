//! `jitgate login`, `logout`, `whoami`: signing people in with the
//! organisation's OpenID provider, through the `oauth2` crate.
//!
//! - Device Authorization Grant (RFC 8628) by default: the terminal prints a
//!   code and a URL to open on any device.
//! - `--browser`: authorization code with PKCE (S256) on a loopback redirect
//!   (RFC 8252, `http://127.0.0.1:<free port>/callback`), state checked.
//!
//! The login (ID token, refresh token, endpoints) is stored in
//! `~/.config/jitgate/login.json`, created with mode 0600. Every command
//! that calls the service uses it when no `JITGATE_TOKEN` or profile token is
//! set, refreshing the ID token with the refresh token shortly before it
//! expires. The ID token is the bearer: the service verifies it
//! (`[auth] audience` is the CLI's client id). Its claims are read here
//! only to show them and to know when to refresh; the service checks them.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationUrl, PkceCodeChallenge, RedirectUrl,
    RefreshToken, Scope, StandardDeviceAuthorizationResponse, StandardRevocableToken, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::auth::provider::Endpoints;
use crate::auth::provider::{self, OAuthClient, Tokens};

/// Where the login is stored, relative to `$HOME`.
pub const LOGIN_FILE: &str = ".config/jitgate/login.json";

/// Refresh this long before the ID token expires.
const REFRESH_MARGIN_S: i64 = 30;

/// A stored login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLogin {
    /// The provider.
    pub endpoints: Endpoints,
    /// The CLI's client id at the provider.
    pub client_id: String,
    /// The bearer token.
    pub id_token: String,
    /// Refreshes the ID token.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// What `login` asks of the provider.
#[derive(Debug, Clone, Default)]
pub struct LoginRequest {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The CLI's client id.
    pub client_id: String,
    /// Authorization code + PKCE on a loopback redirect instead of the device flow.
    pub browser: bool,
    /// `acr_values` to ask for (step-up).
    pub acr_values: Option<String>,
    /// `max_age` to ask for, seconds (step-up).
    pub max_age: Option<u64>,
}

fn login_path() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(LOGIN_FILE))
}

fn http() -> anyhow::Result<reqwest::blocking::Client> {
    // No redirects: a token endpoint that redirects is misconfigured or
    // hostile (oauth2's advice).
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Reads the provider's discovery document.
pub fn discover(issuer: &str) -> anyhow::Result<Endpoints> {
    let url = provider::discovery_url(issuer);
    let doc: Endpoints = http()?
        .get(&url)
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .with_context(|| format!("reading {url}"))?
        .json()
        .with_context(|| format!("{url} is not an OpenID discovery document"))?;
    Ok(provider::check_issuer(&url, issuer, doc)?)
}

/// The client with its token endpoint set (every flow needs it).
type WithTokenUrl = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn client(endpoints: &Endpoints, client_id: &str) -> anyhow::Result<WithTokenUrl> {
    Ok(OAuthClient::new(ClientId::new(client_id.to_owned()))
        .set_token_uri(TokenUrl::new(endpoints.token_endpoint.clone())?))
}

/// The claims of an ID token, unverified (for display and expiry only).
pub fn claims_of(id_token: &str) -> anyhow::Result<Value> {
    let payload = id_token.split('.').nth(1).context("the stored ID token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .context("the stored ID token is not a JWT")?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn stored(
    tokens: &Tokens,
    endpoints: Endpoints,
    client_id: &str,
    old_refresh: Option<String>,
) -> anyhow::Result<StoredLogin> {
    let id_token = tokens
        .extra_fields()
        .id_token
        .clone()
        .context("the provider answered without an ID token (is the openid scope allowed for this client?)")?;
    Ok(StoredLogin {
        endpoints,
        client_id: client_id.to_owned(),
        id_token,
        refresh_token: tokens.refresh_token().map(|r| r.secret().clone()).or(old_refresh),
    })
}

fn save(login: &StoredLogin) -> anyhow::Result<PathBuf> {
    let path = login_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its mode on open: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(serde_json::to_string_pretty(login)?.as_bytes())?;
    Ok(path)
}

/// Reads the stored login, if any.
pub fn load() -> anyhow::Result<Option<StoredLogin>> {
    let path = login_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is damaged: run jitgate login", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn scopes() -> [Scope; 3] {
    [
        Scope::new("openid".into()),
        Scope::new("email".into()),
        Scope::new("groups".into()),
    ]
}

fn extra_params(req: &LoginRequest) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    if let Some(a) = &req.acr_values {
        p.push(("acr_values", a.clone()));
    }
    if let Some(m) = req.max_age {
        p.push(("max_age", m.to_string()));
    }
    p
}

fn device_flow(req: &LoginRequest, endpoints: &Endpoints) -> anyhow::Result<Tokens> {
    let device_url = endpoints
        .device_authorization_endpoint
        .clone()
        .context("the provider offers no device authorization endpoint: use jitgate login --browser")?;
    let oauth =
        client(endpoints, &req.client_id)?.set_device_authorization_url(DeviceAuthorizationUrl::new(device_url)?);
    let http = http()?;
    let mut ask = oauth.exchange_device_code().add_scopes(scopes());
    for (k, v) in extra_params(req) {
        ask = ask.add_extra_param(k, v);
    }
    let details: StandardDeviceAuthorizationResponse = ask.request(&http).context("starting the device sign-in")?;
    eprintln!(
        "To sign in, open {} and enter the code {}",
        details.verification_uri().as_str(),
        details.user_code().secret()
    );
    if let Some(full) = details.verification_uri_complete() {
        eprintln!("(or open {})", full.secret());
    }
    oauth
        .exchange_device_access_token(&details)
        .request(&http, std::thread::sleep, None)
        .context("waiting for the sign-in to complete")
}

fn browser_flow(req: &LoginRequest, endpoints: &Endpoints) -> anyhow::Result<Tokens> {
    let listener = TcpListener::bind("127.0.0.1:0").context("opening the loopback redirect port")?;
    let redirect = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let oauth = client(endpoints, &req.client_id)?
        .set_auth_uri(AuthUrl::new(endpoints.authorization_endpoint.clone())?)
        .set_redirect_uri(RedirectUrl::new(redirect)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut ask = oauth
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes())
        .set_pkce_challenge(challenge);
    for (k, v) in extra_params(req) {
        ask = ask.add_extra_param(k, v);
    }
    let (url, state) = ask.url();
    eprintln!("To sign in, open this URL in your browser:\n{url}");
    let code = wait_for_redirect(&listener, state.secret())?;
    oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request(&http()?)
        .context("exchanging the authorization code")
}

/// Answers the browser's one redirect to the loopback port; returns the code.
fn wait_for_redirect(listener: &TcpListener, state: &str) -> anyhow::Result<String> {
    let (mut stream, _) = listener.accept().context("waiting for the browser")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: std::collections::HashMap<String, String> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let (status, body, result) = match (params.get("code"), params.get("state"), params.get("error")) {
        (_, _, Some(e)) => (
            "400 Bad Request",
            "Sign-in failed; see the terminal.",
            Err(anyhow::anyhow!("the provider refused: {e}")),
        ),
        (Some(code), Some(s), None) if s == state => (
            "200 OK",
            "Signed in. You can close this tab and return to the terminal.",
            Ok(code.clone()),
        ),
        _ => (
            "400 Bad Request",
            "Unexpected redirect; see the terminal.",
            Err(anyhow::anyhow!(
                "the redirect's state did not match (another tab or a forged redirect)"
            )),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    result
}

/// `jitgate login`: signs in and stores the login.
pub fn login(req: &LoginRequest) -> anyhow::Result<String> {
    let endpoints = discover(&req.issuer)?;
    let tokens = if req.browser {
        browser_flow(req, &endpoints)?
    } else {
        device_flow(req, &endpoints)?
    };
    let login = stored(&tokens, endpoints, &req.client_id, None)?;
    let path = save(&login)?;
    Ok(format!("{}\nstored in {}", whoami_text(&login)?, path.display()))
}

/// `jitgate logout`: forgets the stored login.
pub fn logout() -> anyhow::Result<String> {
    let path = login_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(format!("signed out (removed {})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("not signed in".into()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn expiry_of(id_token: &str) -> i64 {
    claims_of(id_token).ok().and_then(|c| c["exp"].as_i64()).unwrap_or(0)
}

/// The stored ID token, refreshed first when it expires within
/// [`REFRESH_MARGIN_S`]; `None` when nobody signed in.
pub fn current_token(now_s: i64) -> anyhow::Result<Option<String>> {
    let Some(login) = load()? else { return Ok(None) };
    if expiry_of(&login.id_token) > now_s + REFRESH_MARGIN_S {
        return Ok(Some(login.id_token));
    }
    let Some(refresh) = login.refresh_token.clone() else {
        bail!("your sign-in has expired: run jitgate login");
    };
    let oauth = client(&login.endpoints, &login.client_id)?;
    let tokens = oauth
        .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
        .request(&http()?)
        .context("refreshing your sign-in failed: run jitgate login")?;
    let renewed = stored(&tokens, login.endpoints, &login.client_id, Some(refresh))?;
    save(&renewed)?;
    Ok(Some(renewed.id_token))
}

/// What a login says about the user.
#[derive(Debug, Clone, Serialize)]
pub struct WhoAmI {
    /// `sub`.
    pub user: String,
    /// `email`.
    pub email: Option<String>,
    /// The groups claim as the provider sent it.
    pub groups: Vec<String>,
    /// The provider.
    pub issuer: String,
    /// When the ID token expires (seconds).
    pub expires_at: i64,
    /// `acr`.
    pub acr: Option<String>,
    /// `amr`.
    pub amr: Vec<String>,
}

/// The stored login's identity.
pub fn whoami(login: &StoredLogin) -> anyhow::Result<WhoAmI> {
    let c = claims_of(&login.id_token)?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    Ok(WhoAmI {
        user: c["sub"].as_str().unwrap_or_default().to_owned(),
        email: c["email"].as_str().map(str::to_owned),
        groups: strings(&c["groups"]),
        issuer: login.endpoints.issuer.clone(),
        expires_at: c["exp"].as_i64().unwrap_or_default(),
        acr: c["acr"].as_str().map(str::to_owned),
        amr: strings(&c["amr"]),
    })
}

/// `jitgate whoami` as a sentence.
pub fn whoami_text(login: &StoredLogin) -> anyhow::Result<String> {
    let w = whoami(login)?;
    let expires =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(w.expires_at.max(0) as u64));
    Ok(format!(
        "signed in as {}{} at {}\ngroups: {}\nsign-in: acr {} amr {}\ntoken expires {expires} (refreshed automatically)",
        w.user,
        w.email.as_deref().map(|e| format!(" <{e}>")).unwrap_or_default(),
        w.issuer,
        if w.groups.is_empty() { "(none)".into() } else { w.groups.join(", ") },
        w.acr.as_deref().unwrap_or("-"),
        if w.amr.is_empty() { "-".into() } else { w.amr.join(",") },
    ))
}

/// When `error` is the service asking for a step-up and the caller uses a
/// stored login (not `JITGATE_TOKEN`), signs in again asking the provider
/// for what the service named (`acr_values`, `max_age`) and runs the
/// command once more; otherwise returns the error.
pub fn step_up_and_retry(error: anyhow::Error, retry: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let Some(super::client::ClientError::StepUp { detail, acr_values, .. }) = error.downcast_ref() else {
        return Err(error);
    };
    if std::env::var_os("JITGATE_TOKEN").is_some() {
        return Err(error);
    }
    let Some(stored) = load()? else { return Err(error) };
    eprintln!("{detail}\nsigning in again for it");
    let req = LoginRequest {
        issuer: stored.endpoints.issuer,
        client_id: stored.client_id,
        browser: false,
        acr_values: acr_values.clone(),
        // max_age 0 forces a fresh sign-in even when the provider's
        // session would satisfy max_age (the service checks max_age itself).
        max_age: Some(0),
    };
    eprintln!("{}", login(&req)?);
    retry()
}
