//! The page frame every console page shares: title, navigation by role,
//! who is signed in (and a clear banner for development sign-in), the
//! sign-out form, and small formatting helpers (times, durations). Text is
//! escaped by the template engine; hostile text is also made visible
//! ([`crate::text::shown`]) so that bidi controls cannot reorder it.

use maud::{html, Markup, DOCTYPE};

use super::session::{Session, SignInMethod};
use crate::auth::Principal;

/// A whole page.
pub fn page(title: &str, session: Option<&Session>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · jitgate" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to main content" }
                header.top {
                    a.brand href="/" { "jitgate" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/request" { "Request access" } }
                                li { a href="/requests" { "My requests" } }
                                li { a href="/inbox" { "Approver inbox" } }
                                li { a href="/grants" { "Active grants" } }
                                li { a href="/reviews" { "Break-glass reviews" } }
                                li { a href="/audit" { "Audit" } }
                                li { a href="/overview" { "Overview" } }
                            }
                        }
                        div.who {
                            span { "Signed in as " strong { (shown(&s.principal.id)) } }
                            form method="post" action="/signout" {
                                (csrf_field(s))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                @if session.is_some_and(|s| s.method == SignInMethod::Development) {
                    p.dev-banner role="note" { "Development sign-in: identities here are not verified by an identity provider." }
                }
                main #main tabindex="-1" { (content) }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(s.csrf.as_str()); }
}

/// Text as shown to people: bidi and invisible characters made visible.
pub fn shown(text: &str) -> String {
    crate::text::shown(text).into_owned()
}

/// Who someone is, with their groups.
pub fn person(p: &Principal) -> Markup {
    html! {
        (shown(&p.id))
        @if !p.groups.is_empty() {
            " (" (p.groups.iter().map(|g| shown(g)).collect::<Vec<_>>().join(", ")) ")"
        }
    }
}

/// Milliseconds in a (UTC) day.
pub const DAY_MS: i64 = 86_400_000;

/// A UTC time from milliseconds, in a `<time>` element.
pub fn time_ms(ms: i64) -> Markup {
    time_s(ms.div_euclid(1000))
}

/// A UTC time from seconds, in a `<time>` element.
pub fn time_s(secs: i64) -> Markup {
    let text = crate::clock::rfc3339(secs);
    html! { time datetime=(text) { (text.replace('T', " ").replace('Z', " UTC")) } }
}

/// A duration in words: `1 h 30 min`, `45 s`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec} s"));
    }
    parts.join(" ")
}

/// A state as a badge: the word itself (colour is never the only signal).
pub fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("badge state-{state}")) { (state.replace('_', " ")) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(5400), "1 h 30 min");
        assert_eq!(duration(3600), "1 h");
        assert_eq!(duration(-5), "0 s");
    }

    #[test]
    fn hostile_text_is_escaped_in_pages() {
        let out = page(
            "t",
            None,
            html! { p { (shown("<script>alert(1)</script>\u{202e}txt")) } },
        )
        .into_string();
        assert!(!out.contains("<script>alert"));
        assert!(out.contains("&lt;script&gt;"));
        assert!(!out.contains('\u{202e}'), "bidi override shown, not applied");
    }
}
