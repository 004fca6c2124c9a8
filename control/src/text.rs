//! Human text (reasons, tickets, comments): which characters may be stored,
//! and how stored text is shown.
//!
//! Unicode bidirectional controls and other invisible formatting characters
//! (general category Cf, such as U+202E RIGHT-TO-LEFT OVERRIDE or U+200B
//! ZERO WIDTH SPACE) and line or paragraph separators can make an approver
//! read something other than what was written: the Trojan Source class,
//! CVE-2021-42574. New text with them is refused; text stored before that
//! rule is shown with them escaped, in every channel.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is invisible or changes how the text around it is laid out:
/// format characters (Cf: bidi embeddings, overrides and isolates, U+061C,
/// U+200E/U+200F, zero-width characters, U+FEFF, tags...), line and
/// paragraph separators, and control characters other than newline and
/// tab.
pub fn is_deceptive(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        c if c.is_control() => true,
        c => matches!(
            c.general_category(),
            GeneralCategory::Format | GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
        ),
    }
}

/// The first deceptive character of `text`, if any.
pub fn first_deceptive(text: &str) -> Option<char> {
    text.chars().find(|&c| is_deceptive(c))
}

/// `text` with each deceptive character written as `<U+202E>`, for
/// display in chat, webhooks and the terminal. Borrows when there is
/// nothing to escape (the usual case).
pub fn shown(text: &str) -> Cow<'_, str> {
    if first_deceptive(text).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_deceptive(c) {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A JSON value with every string in it [`shown`]: for payloads that
/// people read (chat messages, webhooks).
pub fn shown_json(value: Value) -> Value {
    match value {
        Value::String(s) => match shown(&s) {
            Cow::Borrowed(_) => Value::String(s),
            Cow::Owned(escaped) => Value::String(escaped),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(shown_json).collect()),
        Value::Object(members) => Value::Object(members.into_iter().map(|(k, v)| (k, shown_json(v))).collect()),
        other => other,
    }
}

/// [`shown`] for an optional value.
pub fn shown_opt(text: Option<&str>) -> Option<String> {
    text.map(|t| shown(t).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_invisible_characters_are_deceptive() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}', // embeddings, overrides
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}', // isolates
            '\u{200E}',
            '\u{200F}',
            '\u{061C}', // marks
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}', // zero width
            '\u{00AD}',
            '\u{E0041}', // soft hyphen, tag
            '\u{2028}',
            '\u{2029}', // separators
            '\u{0085}',
            '\u{0007}',
            '\r',
        ] {
            assert!(is_deceptive(c), "U+{:04X}", u32::from(c));
        }
        for c in ['a', 'é', 'ش', '中', ' ', '\n', '\t', '😀', '-'] {
            assert!(!is_deceptive(c), "{c:?}");
        }
    }

    #[test]
    fn stored_text_is_shown_with_deceptive_characters_escaped() {
        assert!(matches!(shown("INC-7: reconcile"), Cow::Borrowed(_)));
        assert_eq!(shown("refund \u{202E}gnp.exe"), "refund <U+202E>gnp.exe");
        assert_eq!(shown("a\u{200B}b\u{2066}"), "a<U+200B>b<U+2066>");
        assert_eq!(shown_opt(None), None);
        let v = shown_json(serde_json::json!({"a": ["x\u{202E}y", 1], "b": {"c": "\u{2067}"}}));
        assert_eq!(v, serde_json::json!({"a": ["x<U+202E>y", 1], "b": {"c": "<U+2067>"}}));
    }
}
