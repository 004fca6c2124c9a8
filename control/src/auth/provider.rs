//! The people's OpenID provider as an OAuth 2.0 client sees it: its
//! endpoints (from the discovery document) and the token response with
//! OpenID Connect's `id_token`, for the `oauth2` crate. Shared by the
//! CLI's `jitgate login` and the console's sign-in.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{ExtraTokenFields, StandardRevocableToken, StandardTokenResponse};
use serde::{Deserialize, Serialize};

/// The ID token in a token response (OpenID Connect adds it to OAuth's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    /// The ID token, when the provider sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

/// A token response with its ID token.
pub type Tokens = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An OAuth client whose token responses carry ID tokens (endpoints not
/// set yet).
pub type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoints {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `device_authorization_endpoint` (RFC 8628).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// The discovery document's address for `issuer`.
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// Why the provider's endpoints could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The document could not be fetched or is not JSON of that shape.
    #[error("{url}: {message}")]
    Unreadable {
        /// The document's address.
        url: String,
        /// What failed.
        message: String,
    },
    /// The document names another issuer (OpenID Connect Discovery 1.0
    /// section 4.3: it must be the one asked for).
    #[error("{url} names issuer {found:?}, not {expected:?}")]
    OtherIssuer {
        /// The document's address.
        url: String,
        /// The issuer asked for.
        expected: String,
        /// The issuer it names.
        found: String,
    },
}

/// Reads the provider's endpoints (asynchronously; no redirects followed,
/// as `oauth2` advises for every call to a provider).
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Endpoints, DiscoveryError> {
    let url = discovery_url(issuer);
    let unreadable = |e: reqwest::Error| DiscoveryError::Unreadable {
        url: url.clone(),
        message: e.to_string(),
    };
    let doc: Endpoints = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unreadable)?
        .json()
        .await
        .map_err(unreadable)?;
    check_issuer(&url, issuer, doc)
}

/// The document, if it names the issuer asked for.
pub fn check_issuer(url: &str, issuer: &str, doc: Endpoints) -> Result<Endpoints, DiscoveryError> {
    if doc.issuer != issuer {
        return Err(DiscoveryError::OtherIssuer {
            url: url.to_owned(),
            expected: issuer.to_owned(),
            found: doc.issuer,
        });
    }
    Ok(doc)
}

/// An HTTP client for calls to a provider: no redirects, a timeout.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
