//! Who may do what, decided on the server from the configuration alone:
//! what may be requested, who may approve, which auto-approve rule or
//! break-glass policy applies. Pure functions, no I/O.

use grant::scope::ScopeRule;

use crate::auth::Principal;
use crate::config::{AutoApprove, Config, Resource};
use crate::error::ApiError;
use crate::identity::{canonical_user, mailbox, UserMatch};

/// Longest reason accepted.
pub const MAX_REASON: usize = 2000;
/// Longest ticket reference accepted.
pub const MAX_TICKET: usize = 200;
/// Longest comment accepted.
pub const MAX_COMMENT: usize = 2000;
/// Most source blocks in a request.
pub const MAX_SOURCES: usize = 16;

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(code, message.into())
}

/// A resource by id, or `unknown_resource`.
pub fn resource<'c>(cfg: &'c Config, id: &str) -> Result<&'c Resource, ApiError> {
    cfg.resource(id)
        .ok_or_else(|| invalid("unknown_resource", format!("no resource {id:?} is configured")))
}

/// Checks free text: required, bounded, no control characters but newline
/// and tab, and nothing that can make an approver read something else than
/// what is stored (bidi controls, invisible formatting characters: see
/// [`crate::text`]).
pub fn text(field: &'static str, code: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(invalid(code, format!("{field} is required")));
    }
    if value.len() > max {
        return Err(invalid(code, format!("{field} is longer than {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(code, format!("{field} contains control characters")));
    }
    if let Some(c) = crate::text::first_deceptive(value) {
        return Err(invalid(
            code,
            format!(
                "{field} contains U+{:04X}, a bidirectional control or invisible formatting character that can change what readers see",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Checks a requested scope: valid rules, each within the resource's
/// requestable scope.
pub fn requested_scope(resource: &Resource, scope: &[ScopeRule]) -> Result<(), ApiError> {
    if scope.is_empty() || scope.len() > grant::scope::MAX_RULES {
        return Err(invalid("scope_invalid", "request 1 to 32 scope rules"));
    }
    for rule in scope {
        rule.validate().map_err(|e| invalid("scope_invalid", e.to_string()))?;
        // Each method and path must be covered by one requestable rule
        // together: GET on /a plus POST on /b must not yield POST on /a.
        for method in &rule.methods {
            for path in &rule.paths {
                let single = ScopeRule {
                    methods: vec![method.clone()],
                    paths: vec![path.clone()],
                };
                if !resource.scope.iter().any(|allowed| allowed.covers(&single)) {
                    return Err(invalid(
                        "scope_not_allowed",
                        format!("{method} {path} is not within what {} allows to request", resource.id),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks the duration against the resource and the grant bounds.
pub fn duration(cfg: &Config, max: u64, seconds: u64) -> Result<(), ApiError> {
    if seconds < cfg.min_ttl_seconds || seconds > max {
        return Err(invalid(
            "duration_out_of_range",
            format!("duration_seconds must be {} to {max}", cfg.min_ttl_seconds),
        ));
    }
    Ok(())
}

/// Checks source address blocks.
pub fn sources(list: &[String]) -> Result<(), ApiError> {
    if list.is_empty() || list.len() > MAX_SOURCES {
        return Err(invalid(
            "source_cidrs_invalid",
            "give 1 to 16 CIDR blocks, or omit source_cidrs",
        ));
    }
    if let Some(bad) = list.iter().find(|c| grant::cidr::Cidr::parse(c).is_none()) {
        return Err(invalid("source_cidrs_invalid", format!("{bad:?} is not a CIDR block")));
    }
    Ok(())
}

/// Whether the caller may request access to the resource.
pub fn can_request(resource: &Resource, p: &Principal) -> bool {
    p.in_any(&resource.requesters)
}

/// What identifies a person for the self-approval rule: the canonical user
/// id, and the mailbox of every value that is an email.
fn identity_keys(id: &str, email: Option<&str>, how: UserMatch) -> Vec<String> {
    let mut keys = vec![canonical_user(id, how)];
    keys.extend(
        [Some(id), email]
            .into_iter()
            .flatten()
            .filter(|v| v.contains('@'))
            .map(mailbox),
    );
    keys
}

/// Whether the caller is the requester under another look: the same user
/// id (compared as configured) or an email reaching the same mailbox. Such
/// a caller may not vote on or review the request (`self_approval`).
pub fn same_person(requester: &str, requester_email: Option<&str>, p: &Principal, how: UserMatch) -> bool {
    let theirs = identity_keys(requester, requester_email, how);
    identity_keys(&p.id, p.email.as_deref(), how)
        .iter()
        .any(|k| theirs.contains(k))
}

/// Whether the caller may approve or deny requests for the resource.
pub fn can_approve(resource: &Resource, p: &Principal) -> bool {
    p.in_any(&resource.approvers)
}

/// The auto-approve rule that applies, if any.
pub fn auto_approval<'r>(
    resource: &'r Resource,
    p: &Principal,
    scope: &[ScopeRule],
    seconds: u64,
) -> Option<&'r AutoApprove> {
    resource.auto_approve.iter().find(|rule| {
        seconds <= rule.max_duration_seconds
            && (rule.groups.is_empty() || p.in_any(&rule.groups))
            && scope.iter().all(|r| r.methods.iter().all(|m| rule.methods.contains(m)))
    })
}

/// Checks a break-glass request: allowed for this resource and caller, and
/// short enough.
pub fn break_glass(resource: &Resource, p: &Principal, seconds: u64) -> Result<(), ApiError> {
    let Some(bg) = &resource.break_glass else {
        return Err(ApiError::Forbidden(
            "break_glass_not_allowed",
            format!("{} has no break-glass access", resource.id),
        ));
    };
    if !p.in_any(&bg.groups) {
        return Err(ApiError::Forbidden(
            "break_glass_not_allowed",
            "you are not in a break-glass group".into(),
        ));
    }
    if seconds > bg.max_duration_seconds {
        return Err(invalid(
            "duration_out_of_range",
            format!("break-glass access lasts at most {} s", bg.max_duration_seconds),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, email: Option<&str>) -> Principal {
        Principal {
            id: id.into(),
            email: email.map(str::to_owned),
            groups: Default::default(),
            context: Default::default(),
        }
    }

    #[test]
    fn look_alike_identities_are_the_same_person() {
        let folded = UserMatch::Folded;
        assert!(same_person("alice", None, &p("Alice", None), folded));
        assert!(same_person("alice", None, &p("\u{ff41}lice", None), folded));
        assert!(!same_person("alice", None, &p("Alice", None), UserMatch::Exact));
        // Any shared mailbox links them, whatever the user ids.
        for email in ["alice@example.com", "ALICE@example.com", "alice+x@example.com"] {
            assert!(
                same_person(
                    "u-1",
                    Some("alice@example.com"),
                    &p("u-2", Some(email)),
                    UserMatch::Exact
                ),
                "{email}"
            );
        }
        // An email used as the user id matches the other side's email.
        assert!(same_person(
            "Alice@Example.com",
            None,
            &p("u-2", Some("alice@example.com")),
            folded
        ));
        assert!(!same_person(
            "alice",
            Some("alice@example.com"),
            &p("bob", Some("bob@example.com")),
            folded
        ));
        assert!(!same_person("alice", None, &p("bob", None), folded));
    }
}
