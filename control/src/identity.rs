//! How people are told apart: the canonical form of user ids and emails,
//! so that `Alice`, `alice` and a fullwidth `ａｌｉｃｅ` are one person
//! wherever the identity provider treats them as one.
//!
//! Opaque subject ids (`sub`) are compared exactly: the identity provider
//! issues them and two that differ are two accounts. Emails and usernames
//! are case-insensitive at most providers and may arrive in Unicode
//! compatibility variants, so they are compared after NFKC normalization
//! and lower-casing. Emails are always folded; for the self-approval check
//! an email's `+tag` is also ignored, since `alice+jit@example.com` reaches
//! the same mailbox at most providers.

use unicode_normalization::UnicodeNormalization;

/// How user ids (the `user_claim`) are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserMatch {
    /// Byte for byte: for opaque ids such as `sub`.
    Exact,
    /// After NFKC normalization and lower-casing: for emails and usernames.
    Folded,
}

impl UserMatch {
    /// The default for a user claim: exact for `sub` (opaque by the OpenID
    /// Connect specification), folded for anything else (emails,
    /// usernames), which people type and providers compare loosely.
    pub fn for_claim(claim: &str) -> UserMatch {
        if claim == "sub" {
            UserMatch::Exact
        } else {
            UserMatch::Folded
        }
    }

    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            UserMatch::Exact => "exact",
            UserMatch::Folded => "folded",
        }
    }
}

/// Case- and compatibility-folded text: NFKC, lower case, NFKC again
/// (lower-casing can produce text that is no longer normalized).
pub fn fold(text: &str) -> String {
    let lower = text.nfkc().collect::<String>().to_lowercase();
    lower.nfkc().collect()
}

/// The stored and shown form of a user id.
pub fn canonical_user(id: &str, how: UserMatch) -> String {
    match how {
        UserMatch::Exact => id.to_owned(),
        UserMatch::Folded => fold(id),
    }
}

/// The stored and shown form of an email.
pub fn canonical_email(email: &str) -> String {
    fold(email.trim())
}

/// The mailbox an email reaches, for telling whether two emails belong to
/// one person: folded, with any `+tag` of the local part removed.
pub fn mailbox(email: &str) -> String {
    let email = canonical_email(email);
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{local}@{domain}")
        }
        None => email,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_compatibility_variants() {
        assert_eq!(fold("Alice"), "alice");
        assert_eq!(fold("\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"), "alice", "fullwidth");
        assert_eq!(
            fold("\u{212B}ngstr\u{f6}m"),
            fold("\u{c5}NGSTR\u{d6}M"),
            "Angstrom sign"
        );
        assert_eq!(fold("ﬁona"), "fiona", "ligature");
        assert_ne!(fold("alice"), fold("alicia"));
    }

    #[test]
    fn opaque_ids_are_exact_and_others_folded_by_default() {
        assert_eq!(UserMatch::for_claim("sub"), UserMatch::Exact);
        assert_eq!(UserMatch::for_claim("email"), UserMatch::Folded);
        assert_eq!(UserMatch::for_claim("preferred_username"), UserMatch::Folded);
        assert_eq!(canonical_user("AbC-123", UserMatch::Exact), "AbC-123");
        assert_eq!(canonical_user("AbC-123", UserMatch::Folded), "abc-123");
    }

    #[test]
    fn emails_reach_one_mailbox_whatever_their_case_width_or_tag() {
        for variant in [
            "alice@example.com",
            "Alice@Example.COM",
            "alice+jit@example.com",
            "\u{ff41}lice@example.com",
            " alice@example.com ",
        ] {
            assert_eq!(mailbox(variant), "alice@example.com", "{variant:?}");
        }
        assert_ne!(mailbox("alice@example.com"), mailbox("alice@example.org"));
        assert_eq!(mailbox("no-at-sign"), "no-at-sign");
    }
}
