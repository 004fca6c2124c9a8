//! The `[console]` section of the configuration: session lifetimes, when a
//! pending request counts as old (highlighted, approvers reminded), and
//! the ticket link pattern. Every field has a default, so a configuration
//! without the section serves the console as documented.

use serde::Deserialize;

/// `[console]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    session_ttl_seconds: Option<u64>,
    session_idle_seconds: Option<u64>,
    remind_after_seconds: Option<u64>,
    ticket_url: Option<String>,
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
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_ttl_seconds: 8 * 3600,
            session_idle_seconds: 3600,
            remind_after_seconds: 3600,
            ticket_url: None,
        }
    }
}

impl RawConsole {
    /// Validates the section; errors name the field (under `console.`).
    pub fn validate(self) -> Result<ConsoleConfig, (&'static str, String)> {
        let d = ConsoleConfig::default();
        let ttl = self.session_ttl_seconds.unwrap_or(d.session_ttl_seconds);
        if !(300..=7 * 86400).contains(&ttl) {
            return Err(("console.session_ttl_seconds", "between 300 and 604800".into()));
        }
        let idle = self.session_idle_seconds.unwrap_or(d.session_idle_seconds);
        if !(60..=ttl).contains(&idle) {
            return Err((
                "console.session_idle_seconds",
                "between 60 and session_ttl_seconds".into(),
            ));
        }
        let remind = self.remind_after_seconds.unwrap_or(d.remind_after_seconds);
        if remind < 60 {
            return Err(("console.remind_after_seconds", "at least 60".into()));
        }
        if let Some(url) = &self.ticket_url {
            let https = url.starts_with("https://") || url.starts_with("http://");
            if !https || !url.contains("{ticket}") {
                return Err((
                    "console.ticket_url",
                    "an http(s) URL containing {ticket}, e.g. https://tickets.example/browse/{ticket}".into(),
                ));
            }
        }
        Ok(ConsoleConfig {
            session_ttl_seconds: ttl,
            session_idle_seconds: idle,
            remind_after_seconds: remind,
            ticket_url: self.ticket_url,
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
        assert_eq!(RawConsole::default().validate(), Ok(ConsoleConfig::default()));
    }

    #[test]
    fn an_idle_limit_longer_than_the_session_is_refused_naming_the_field() {
        let raw = RawConsole {
            session_ttl_seconds: Some(600),
            session_idle_seconds: Some(601),
            ..RawConsole::default()
        };
        assert_eq!(raw.validate().unwrap_err().0, "console.session_idle_seconds");
    }

    #[test]
    fn ticket_links_need_the_placeholder_and_encode_the_reference() {
        let raw = RawConsole {
            ticket_url: Some("https://t.example/browse".into()),
            ..RawConsole::default()
        };
        assert_eq!(raw.validate().unwrap_err().0, "console.ticket_url");
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
}
