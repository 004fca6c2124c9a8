//! The `[console]` section of the configuration: session lifetimes, when a
//! pending request counts as old (highlighted, approvers reminded), the
//! ticket link pattern, and `[console.oidc]`, the console's client at the
//! people's identity provider (sign-in with authorization code + PKCE).
//! Every field but the client has a default, so a configuration without
//! the section serves the console as documented.

use serde::Deserialize;

use super::{err, ConfigError, SecretSource};

/// `[console]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    session_ttl_seconds: Option<u64>,
    session_idle_seconds: Option<u64>,
    remind_after_seconds: Option<u64>,
    ticket_url: Option<String>,
    oidc: Option<RawConsoleOidc>,
}

/// `[console.oidc]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleOidc {
    client_id: String,
    client_secret: Option<SecretSource>,
    redirect_url: String,
}

/// The console's client at the people's identity provider (`[auth]
/// issuer`).
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleOidc {
    /// Its client id (the `aud` of the ID tokens it receives).
    pub client_id: String,
    /// Its secret, for a confidential client (`None`: a public client,
    /// protected by PKCE alone).
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back: this service's
    /// `/signin/callback`, as the browser reaches it.
    pub redirect_url: String,
}

impl std::fmt::Debug for ConsoleOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOidc")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

/// Browsers send `Secure` cookies over plain HTTP only to these hosts.
fn loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

impl RawConsoleOidc {
    fn validate(self) -> Result<ConsoleOidc, ConfigError> {
        let id = &self.client_id;
        if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(err("console.oidc.client_id", "1 to 256 visible characters"));
        }
        let url = reqwest::Url::parse(&self.redirect_url).ok();
        let fine = url.as_ref().is_some_and(|u| {
            let host = u.host_str().unwrap_or_default();
            let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && loopback(host));
            scheme_ok && u.path() == "/signin/callback" && u.query().is_none() && u.fragment().is_none()
        });
        if !fine {
            return Err(err(
                "console.oidc.redirect_url",
                "this service's https://<host>/signin/callback (http only on localhost), with no query",
            ));
        }
        let client_secret = self
            .client_secret
            .map(|s| s.resolve("console.oidc.client_secret"))
            .transpose()?;
        Ok(ConsoleOidc {
            client_id: self.client_id,
            client_secret,
            redirect_url: self.redirect_url,
        })
    }
}

/// The validated `[console]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Longest session, from sign-in.
    pub session_ttl_seconds: u64,
    /// A session unused this long ends.
    pub session_idle_seconds: u64,
    /// A pending request older than this is highlighted in the inbox and
    /// its approvers are sent one `request.reminder`.
    pub remind_after_seconds: u64,
    /// Link for a ticket: `{ticket}` is replaced by the (URL-encoded)
    /// ticket reference.
    pub ticket_url: Option<String>,
    /// Sign-in with the people's identity provider (`None`: only the
    /// development sign-in, when development auth is configured).
    pub oidc: Option<ConsoleOidc>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_ttl_seconds: 8 * 3600,
            session_idle_seconds: 3600,
            remind_after_seconds: 3600,
            ticket_url: None,
            oidc: None,
        }
    }
}

impl RawConsole {
    /// Validates the section; errors name the field (under `console.`).
    pub fn validate(self) -> Result<ConsoleConfig, ConfigError> {
        let d = ConsoleConfig::default();
        let ttl = self.session_ttl_seconds.unwrap_or(d.session_ttl_seconds);
        if !(300..=7 * 86400).contains(&ttl) {
            return Err(err("console.session_ttl_seconds", "between 300 and 604800"));
        }
        let idle = self.session_idle_seconds.unwrap_or(d.session_idle_seconds);
        if !(60..=ttl).contains(&idle) {
            return Err(err(
                "console.session_idle_seconds",
                "between 60 and session_ttl_seconds",
            ));
        }
        let remind = self.remind_after_seconds.unwrap_or(d.remind_after_seconds);
        if remind < 60 {
            return Err(err("console.remind_after_seconds", "at least 60"));
        }
        if let Some(url) = &self.ticket_url {
            let https = url.starts_with("https://") || url.starts_with("http://");
            if !https || !url.contains("{ticket}") {
                return Err(err(
                    "console.ticket_url",
                    "an http(s) URL containing {ticket}, e.g. https://tickets.example/browse/{ticket}",
                ));
            }
        }
        Ok(ConsoleConfig {
            session_ttl_seconds: ttl,
            session_idle_seconds: idle,
            remind_after_seconds: remind,
            ticket_url: self.ticket_url,
            oidc: self.oidc.map(RawConsoleOidc::validate).transpose()?,
        })
    }
}

impl ConsoleConfig {
    /// The link for a ticket reference, when a pattern is configured.
    pub fn ticket_link(&self, ticket: &str) -> Option<String> {
        let pattern = self.ticket_url.as_deref()?;
        let encoded: String = form_urlencoded::byte_serialize(ticket.as_bytes()).collect();
        Some(pattern.replace("{ticket}", &encoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_section_gives_the_defaults() {
        assert_eq!(RawConsole::default().validate().unwrap(), ConsoleConfig::default());
    }

    #[test]
    fn an_idle_limit_longer_than_the_session_is_refused_naming_the_field() {
        let raw = RawConsole {
            session_ttl_seconds: Some(600),
            session_idle_seconds: Some(601),
            ..RawConsole::default()
        };
        assert_eq!(raw.validate().unwrap_err().field, "console.session_idle_seconds");
    }

    #[test]
    fn ticket_links_need_the_placeholder_and_encode_the_reference() {
        let raw = RawConsole {
            ticket_url: Some("https://t.example/browse".into()),
            ..RawConsole::default()
        };
        assert_eq!(raw.validate().unwrap_err().field, "console.ticket_url");
        let cfg = RawConsole {
            ticket_url: Some("https://t.example/browse/{ticket}".into()),
            ..RawConsole::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            cfg.ticket_link("INC 1/\"x\"").as_deref(),
            Some("https://t.example/browse/INC+1%2F%22x%22")
        );
    }

    fn oidc(redirect_url: &str) -> RawConsole {
        RawConsole {
            oidc: Some(RawConsoleOidc {
                client_id: "jitgate-console".into(),
                client_secret: None,
                redirect_url: redirect_url.into(),
            }),
            ..RawConsole::default()
        }
    }

    #[test]
    fn the_sign_in_redirect_is_https_or_loopback_and_ends_at_the_callback() {
        for fine in [
            "https://jitgate.example.com/signin/callback",
            "http://localhost:8080/signin/callback",
            "http://127.0.0.1:8080/signin/callback",
        ] {
            assert!(oidc(fine).validate().is_ok(), "{fine}");
        }
        for bad in [
            "http://jitgate.example.com/signin/callback",
            "https://jitgate.example.com/auth/callback",
            "https://jitgate.example.com/signin/callback?next=/x",
            "https://jitgate.example.com/signin/callback#x",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert_eq!(
                oidc(bad).validate().unwrap_err().field,
                "console.oidc.redirect_url",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_client_secret_is_never_shown_in_debug_output() {
        let mut raw = oidc("https://j.example/signin/callback");
        if let Some(o) = raw.oidc.as_mut() {
            o.client_secret = Some(SecretSource {
                value: Some("s3cret-value".into()),
                ..SecretSource::default()
            });
        }
        let cfg = raw.validate().unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret-value"));
        assert_eq!(cfg.oidc.unwrap().client_secret.as_deref(), Some("s3cret-value"));
    }
}
