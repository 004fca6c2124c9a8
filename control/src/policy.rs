//! Every rule of the workflow, as a pure function over typed inputs (no
//! I/O, no database): what may be requested, who may see, approve, cancel,
//! extend, review or revoke, how many approvals remain, who may fetch a
//! token or read the audit log, which auto-approve rule or break-glass
//! policy applies, and what state a caller sees. The workflow asks these
//! and does what they say; each has a unit test below.

use grant::scope::ScopeRule;

use crate::auth::Principal;
use crate::config::{AutoApprove, Config, Resource};
use crate::error::ApiError;
use crate::identity::{canonical_user, mailbox, UserMatch};
use crate::states::{GrantState, RequestState, ReviewState, VoteDecision};

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

/// Checks a scheduled start (`starts_at`, seconds since the epoch): after
/// now, at most `max_ahead` seconds ahead (0: scheduling is off), and not
/// for break-glass access, which is for now.
pub fn start(starts_at: i64, now_s: i64, max_ahead: u64, break_glass: bool) -> Result<(), ApiError> {
    let refuse = |m: String| Err(invalid("starts_at_invalid", format!("starts_at: {m}")));
    if break_glass {
        return refuse("break-glass access starts at once; omit starts_at".into());
    }
    if max_ahead == 0 {
        return refuse("this service takes no scheduled requests (grants.max_start_ahead_seconds is 0)".into());
    }
    if starts_at <= now_s {
        return refuse(format!(
            "must be after now ({now_s}, seconds since the epoch); omit it to start at approval"
        ));
    }
    if starts_at - now_s > i64::try_from(max_ahead).unwrap_or(i64::MAX) {
        return refuse(format!("must be at most {max_ahead} s ahead"));
    }
    Ok(())
}

/// Until when (ms) a request may wait for approvers. An unscheduled one:
/// the pending timeout from its creation. A scheduled one: the pending
/// timeout from its start, but never so late that less than the shortest
/// grant (`min_ttl`) of its window would be left.
pub fn pending_deadline(now_ms: i64, timeout_s: u64, starts_at_s: Option<i64>, duration_s: u64, min_ttl_s: u64) -> i64 {
    let timeout_ms = i64::try_from(timeout_s).unwrap_or(i64::MAX / 4).saturating_mul(1000);
    match starts_at_s {
        None => now_ms.saturating_add(timeout_ms),
        Some(start) => {
            let start_ms = start.saturating_mul(1000);
            let last_useful = start.saturating_add(i64::try_from(duration_s.saturating_sub(min_ttl_s)).unwrap_or(0));
            start_ms
                .saturating_add(timeout_ms)
                .min(last_useful.saturating_mul(1000))
        }
    }
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

/// Whether `p` may ask for access to the resource (`not_a_requester`).
pub fn may_request(resource: &Resource, p: &Principal) -> Result<(), ApiError> {
    if can_request(resource, p) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "not_a_requester",
            format!("you may not request access to {}", resource.id),
        ))
    }
}

/// Whether the caller made the request (rows stored before user ids were
/// kept in canonical form are compared in that form too).
pub fn is_requester(requester: &str, p: &Principal, how: UserMatch) -> bool {
    canonical_user(requester, how) == p.id
}

/// Whether the caller may see a request: its requester, the resource's
/// approvers, auditors and admins (`auditor`). Everyone else gets "not
/// found", so ids of other people's requests cannot be probed.
pub fn may_see(resource: Option<&Resource>, requester: &str, p: &Principal, how: UserMatch, auditor: bool) -> bool {
    is_requester(requester, p, how) || resource.is_some_and(|r| can_approve(r, p)) || auditor
}

/// Whether the caller may vote on or review the request: never the
/// requester under any of their identities (`self_approval`), and only an
/// approver of the resource (`not_an_approver`).
pub fn may_approve(
    resource: &Resource,
    requester: &str,
    requester_email: Option<&str>,
    p: &Principal,
    how: UserMatch,
) -> Result<(), ApiError> {
    if same_person(requester, requester_email, p, how) {
        return Err(ApiError::Forbidden(
            "self_approval",
            "you cannot decide on or review your own request".into(),
        ));
    }
    if !can_approve(resource, p) {
        return Err(ApiError::Forbidden(
            "not_an_approver",
            format!("you are not an approver of {}", resource.id),
        ));
    }
    Ok(())
}

/// What a vote by someone who voted before does: the same vote again
/// changes nothing (`Ok(true)`), a first vote counts (`Ok(false)`), the
/// other way is refused (`already_voted`).
pub fn repeat_vote(earlier: Option<VoteDecision>, now: VoteDecision) -> Result<bool, ApiError> {
    match earlier {
        None => Ok(false),
        Some(e) if e == now => Ok(true),
        Some(_) => Err(ApiError::Conflict(
            "already_voted",
            "you have already voted on this request".into(),
        )),
    }
}

/// Whether votes still count on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ballot {
    /// Pending and within its deadline.
    Open,
    /// Pending past its deadline: it times out now.
    TimedOut,
}

/// Whether a vote counts: only on a pending request within its deadline
/// (`request_resolved`; past the deadline, [`Ballot::TimedOut`]).
pub fn ballot(stored: RequestState, pending_until: i64, now_ms: i64) -> Result<Ballot, ApiError> {
    if stored != RequestState::Pending {
        return Err(ApiError::Conflict(
            "request_resolved",
            format!("the request is {stored}; votes no longer count"),
        ));
    }
    Ok(if now_ms > pending_until {
        Ballot::TimedOut
    } else {
        Ballot::Open
    })
}

/// Where the votes leave a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Enough approvals.
    Approved,
    /// One deny ends it.
    Denied,
    /// This many more approvals are needed.
    Pending(i64),
}

/// N of M: a request is approved once `required` approvals are in; a
/// single deny ends it whatever the approvals.
pub fn tally(votes: impl IntoIterator<Item = VoteDecision>, required: i64) -> Tally {
    let mut approvals = 0;
    for v in votes {
        match v {
            VoteDecision::Deny => return Tally::Denied,
            VoteDecision::Approve => approvals += 1,
        }
    }
    if approvals >= required {
        Tally::Approved
    } else {
        Tally::Pending(required - approvals)
    }
}

/// Only the requester may cancel (`not_the_requester`), and only while the
/// request is pending within its deadline (`request_not_pending`).
pub fn may_cancel(requester: bool, stored: RequestState, pending_until: i64, now_ms: i64) -> Result<(), ApiError> {
    if !requester {
        return Err(ApiError::Forbidden(
            "not_the_requester",
            "only the requester can cancel a request".into(),
        ));
    }
    if stored != RequestState::Pending || now_ms > pending_until {
        return Err(ApiError::Conflict(
            "request_not_pending",
            "only a pending request can be cancelled".into(),
        ));
    }
    Ok(())
}

/// Only the requester may extend (`not_the_requester`), only an active
/// grant (`grant_not_active`), and only once its window has opened
/// (`grant_not_started`: an extension starts at its approval, so it would
/// move a scheduled window forward instead of extending it).
pub fn may_extend(requester: bool, effective: RequestState, opened: bool) -> Result<(), ApiError> {
    if !requester {
        return Err(ApiError::Forbidden(
            "not_the_requester",
            "only the requester can extend a grant".into(),
        ));
    }
    if effective != RequestState::Approved {
        return Err(ApiError::Conflict(
            "grant_not_active",
            "only an active grant can be extended".into(),
        ));
    }
    if !opened {
        return Err(ApiError::Conflict(
            "grant_not_started",
            "the grant's window has not started yet; cancel by revoking it and ask again instead".into(),
        ));
    }
    Ok(())
}

/// Only a break-glass access awaiting review may be reviewed
/// (`review_not_pending`); who may review is [`may_approve`].
pub fn may_review(break_glass: bool, review: Option<ReviewState>) -> Result<(), ApiError> {
    if break_glass && review == Some(ReviewState::Pending) {
        Ok(())
    } else {
        Err(ApiError::Conflict(
            "review_not_pending",
            "this request is not awaiting review".into(),
        ))
    }
}

/// Who may revoke a grant: its holder, admins, approvers of its resource.
/// Auditors learn it exists (`not_an_approver`); everyone else gets "not
/// found" (`grant_not_found`).
pub fn may_revoke(
    resource: Option<&Resource>,
    holder: &str,
    p: &Principal,
    admin: bool,
    auditor: bool,
) -> Result<(), ApiError> {
    if holder == p.id || admin || resource.is_some_and(|r| can_approve(r, p)) {
        Ok(())
    } else if auditor {
        Err(ApiError::Forbidden(
            "not_an_approver",
            "only approvers of the resource or admins can revoke".into(),
        ))
    } else {
        Err(grant_not_found())
    }
}

/// A grant that does not exist or that the caller may not see.
pub fn grant_not_found() -> ApiError {
    ApiError::NotFound("grant_not_found", "no such grant".into())
}

/// Whether revoking a grant in this state changes anything: an active one
/// is revoked (`Ok(false)`), a revoked one stays so (`Ok(true)`, already
/// revoked), an expired one cannot be (`grant_expired`).
pub fn revocation(state: GrantState) -> Result<bool, ApiError> {
    match state {
        GrantState::Active => Ok(false),
        GrantState::Revoked => Ok(true),
        GrantState::Expired => Err(ApiError::Conflict(
            "grant_expired",
            "the grant has already expired".into(),
        )),
    }
}

/// Only the requester may fetch the token (`not_the_requester`), and only
/// while the grant is active (`grant_not_active`).
pub fn may_fetch_token(requester: bool, effective: RequestState) -> Result<(), ApiError> {
    if !requester {
        return Err(ApiError::Forbidden(
            "not_the_requester",
            "only the requester can fetch the grant".into(),
        ));
    }
    if effective != RequestState::Approved {
        return Err(ApiError::Conflict(
            "grant_not_active",
            format!("the request is {effective}; no active grant"),
        ));
    }
    Ok(())
}

/// Reading the audit log needs an auditor or admin group
/// (`not_an_auditor`).
pub fn may_read_audit(auditor: bool) -> Result<(), ApiError> {
    if auditor {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "not_an_auditor",
            "reading the audit log needs an auditor or admin group".into(),
        ))
    }
}

/// The state a caller sees: the stored state refined by time (a grant
/// expires on its own, a pending request times out on its own) and by its
/// grant (revoked).
pub fn effective_state(
    stored: RequestState,
    pending_until: i64,
    grant: Option<GrantState>,
    now_ms: i64,
) -> RequestState {
    match stored {
        RequestState::Pending if now_ms > pending_until => RequestState::TimedOut,
        RequestState::Approved => match grant {
            Some(GrantState::Revoked) => RequestState::Revoked,
            Some(GrantState::Expired) => RequestState::Expired,
            _ => RequestState::Approved,
        },
        other => other,
    }
}

/// Length of an `x5t#S256` thumbprint: base64url (no padding) of 32 bytes.
pub const THUMBPRINT_LEN: usize = 43;

/// The characters a thumbprint may end with: 43 characters carry 258 bits
/// for 256, so the last one's two low bits must be zero (the API
/// document's pattern says the same).
pub const THUMBPRINT_LAST: &str = "AEIMQUYcgkosw048";

/// Checks a requested device binding (`cnf_x5t_s256`): exactly 43
/// base64url characters (a SHA-256 digest, unpadded) whose last one
/// carries no stray bits, so that one digest has one spelling and the
/// proxy's comparison with the peer certificate's digest is exact.
pub fn thumbprint(value: &str) -> Result<(), ApiError> {
    use base64::Engine as _;
    let field = |message: &str| ApiError::Field {
        code: "thumbprint_invalid",
        field: "cnf_x5t_s256".into(),
        message: message.into(),
    };
    if value.len() != THUMBPRINT_LEN {
        return Err(field(
            "must be 43 characters: the unpadded base64url SHA-256 of the DER certificate",
        ));
    }
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value) {
        Ok(digest) if digest.len() == 32 => Ok(()),
        _ => Err(field(
            "must use only the base64url alphabet (A-Z a-z 0-9 - _), encode 32 bytes and end in one of \
             AEIMQUYcgkosw048 (no stray bits)",
        )),
    }
}

/// A resource that requires device binding refuses unbound requests.
pub fn device_binding(resource: &Resource, bound: bool) -> Result<(), ApiError> {
    if resource.require_device_binding && !bound {
        return Err(invalid(
            "device_binding_required",
            format!(
                "{} requires grants bound to a client certificate: send cnf_x5t_s256 (jitgate request --bind-cert)",
                resource.id
            ),
        ));
    }
    Ok(())
}

/// The first grant-spec version whose verifiers check `cnf`.
pub const BINDING_SPEC: (u32, u32) = (1, 1);

/// A grant-spec version as proxies report it (`MAJOR.MINOR`, digits only);
/// `None` for anything else, which counts as too old.
pub fn spec_version(reported: &str) -> Option<(u32, u32)> {
    let (major, minor) = reported.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Whether a bound grant may be minted for a resource, given the proxies
/// seen serving it (`proxy`, reported spec, seen at ms): only when at least
/// one was seen within `window_ms` of now and every one seen in that window
/// reports spec 1.1 or later. A verifier of spec 1.0 ignores the unknown
/// `cnf` claim, so one such proxy would make the binding a false promise.
/// Returns how many proxies vouch for it.
pub fn binding_mintable<'a>(
    resource: &str,
    seen: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    now_ms: i64,
    window_ms: i64,
) -> Result<usize, ApiError> {
    let mut count = 0;
    for (proxy, spec, at) in seen {
        if at < now_ms.saturating_sub(window_ms) {
            continue;
        }
        if spec_version(spec).is_none_or(|v| v < BINDING_SPEC) {
            return Err(ApiError::Conflict(
                "device_binding_unavailable",
                format!(
                    "proxy {proxy:?} serves {resource} with grant spec {spec:?}, which does not check device binding (1.1 or later needed); nothing was stored"
                ),
            ));
        }
        count += 1;
    }
    if count == 0 {
        return Err(ApiError::Conflict(
            "device_binding_unavailable",
            format!(
                "no proxy serving {resource} has been seen in the last {} s, so none is known to check device binding; nothing was stored",
                window_ms / 1000
            ),
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    fn code(e: ApiError) -> &'static str {
        match e {
            ApiError::Conflict(c, _) | ApiError::Invalid(c, _) => c,
            ApiError::Field { code, .. } => code,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn versions_compare_numerically_and_garbage_is_too_old() {
        assert_eq!(spec_version("1.1"), Some((1, 1)));
        assert_eq!(spec_version("1.10"), Some((1, 10)));
        assert!(spec_version("1.10").unwrap() > BINDING_SPEC);
        assert!(spec_version("2.0").unwrap() > BINDING_SPEC);
        assert!(spec_version("1.0").unwrap() < BINDING_SPEC);
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.1.0",
            "v1.1",
            "1.1 ",
            "+1.1",
            "1.-1",
            "99999999999.1",
            "1,1",
        ] {
            assert_eq!(spec_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn binding_is_mintable_only_when_every_recent_proxy_checks_cnf() {
        let now = 1_000_000;
        let w = 60_000;
        assert_eq!(
            binding_mintable("db", [("p1", "1.1", now), ("p2", "1.2", now - w)], now, w).unwrap(),
            2
        );
        // One old proxy in the window blocks it, whatever the others say.
        let mixed = [("p1", "1.1", now), ("old", "1.0", now - 10)];
        assert_eq!(
            code(binding_mintable("db", mixed, now, w).unwrap_err()),
            "device_binding_unavailable"
        );
        // A version that does not parse counts as old.
        let junk = [("p1", "1.1", now), ("x", "latest", now)];
        assert_eq!(
            code(binding_mintable("db", junk, now, w).unwrap_err()),
            "device_binding_unavailable"
        );
    }

    #[test]
    fn proxies_outside_the_window_are_forgotten() {
        let now = 1_000_000;
        let w = 60_000;
        // The old proxy was last seen before the window: it no longer counts.
        let seen = [("p1", "1.1", now), ("old", "1.0", now - w - 1)];
        assert_eq!(binding_mintable("db", seen, now, w).unwrap(), 1);
        // ...and neither does a new one seen only then.
        let stale = [("p1", "1.1", now - w - 1)];
        assert_eq!(
            code(binding_mintable("db", stale, now, w).unwrap_err()),
            "device_binding_unavailable"
        );
    }

    #[test]
    fn no_proxy_seen_means_no_bound_grant() {
        assert_eq!(
            code(binding_mintable("db", [], 5, 60_000).unwrap_err()),
            "device_binding_unavailable"
        );
    }

    #[test]
    fn thumbprints_are_exactly_43_base64url_characters() {
        let good = "dGhpcyBpcyBhIDMyLWJ5dGUgZGlnZXN0ISEhISEhISE";
        assert_eq!(good.len(), 43);
        thumbprint(good).unwrap();
        for bad in [
            "",
            &good[..42],
            &format!("{good}="),
            &format!("{good}A"),
            &good.replace('d', "+"),
            &good.replace('d', "/"),
            &good.replace('d', " "),
        ] {
            assert_eq!(code(thumbprint(bad).unwrap_err()), "thumbprint_invalid", "{bad:?}");
        }
    }

    /// Schemathesis found `...zz` accepted by the document's pattern and
    /// refused here: the pattern's last class is exactly what decodes.
    #[test]
    fn a_thumbprint_is_accepted_exactly_when_its_last_character_is_in_the_documented_class() {
        let prefix = "dGhpcyBpcyBhIDMyLWJ5dGUgZGlnZXN0ISEhISEhIS";
        assert_eq!(prefix.len(), 42);
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for last in alphabet.chars() {
            let accepted = thumbprint(&format!("{prefix}{last}")).is_ok();
            assert_eq!(accepted, THUMBPRINT_LAST.contains(last), "{last}");
        }
    }
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

    fn resource() -> Resource {
        Config::parse(include_str!("../examples/jitgate.toml"))
            .unwrap()
            .resource("hr-api")
            .unwrap()
            .clone()
    }

    fn in_groups(id: &str, groups: &[&str]) -> Principal {
        Principal {
            id: id.into(),
            email: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            context: Default::default(),
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn only_requester_groups_may_request() {
        let r = resource();
        assert!(may_request(&r, &in_groups("alice", &["dev"])).is_ok());
        assert_eq!(code(may_request(&r, &in_groups("zed", &["sre"]))), "not_a_requester");
    }

    #[test]
    fn approvers_may_approve_but_never_their_own_request() {
        let r = resource();
        let dave = in_groups("dave", &["hr-approvers"]);
        assert!(may_approve(&r, "alice", None, &dave, UserMatch::Folded).is_ok());
        assert_eq!(
            code(may_approve(&r, "dave", None, &dave, UserMatch::Folded)),
            "self_approval"
        );
        assert_eq!(
            code(may_approve(
                &r,
                "alice",
                None,
                &in_groups("bob", &["payments-approvers"]),
                UserMatch::Folded
            )),
            "not_an_approver"
        );
    }

    #[test]
    fn requester_approvers_and_auditors_see_a_request_others_do_not() {
        let r = resource();
        let how = UserMatch::Folded;
        assert!(may_see(Some(&r), "alice", &in_groups("alice", &[]), how, false));
        assert!(may_see(
            Some(&r),
            "alice",
            &in_groups("dave", &["hr-approvers"]),
            how,
            false
        ));
        assert!(may_see(Some(&r), "alice", &in_groups("ann", &[]), how, true));
        assert!(!may_see(Some(&r), "alice", &in_groups("eve", &["dev"]), how, false));
    }

    #[test]
    fn n_of_m_approvals_and_one_deny_ends_it() {
        use VoteDecision::{Approve, Deny};
        assert_eq!(tally([], 2), Tally::Pending(2));
        assert_eq!(tally([Approve], 2), Tally::Pending(1));
        assert_eq!(tally([Approve, Approve], 2), Tally::Approved);
        assert_eq!(tally([Approve, Deny], 2), Tally::Denied);
        assert_eq!(tally([Approve, Approve, Deny], 2), Tally::Denied);
    }

    #[test]
    fn a_repeated_vote_changes_nothing_and_a_changed_vote_is_refused() {
        use VoteDecision::{Approve, Deny};
        assert!(!repeat_vote(None, Approve).unwrap());
        assert!(repeat_vote(Some(Approve), Approve).unwrap());
        assert_eq!(code(repeat_vote(Some(Approve), Deny)), "already_voted");
    }

    #[test]
    fn votes_count_only_on_a_pending_request_within_its_deadline() {
        assert_eq!(ballot(RequestState::Pending, 10, 10).unwrap(), Ballot::Open);
        assert_eq!(ballot(RequestState::Pending, 10, 11).unwrap(), Ballot::TimedOut);
        assert_eq!(code(ballot(RequestState::Denied, 10, 5)), "request_resolved");
    }

    #[test]
    fn only_the_requester_cancels_and_only_while_pending() {
        assert!(may_cancel(true, RequestState::Pending, 10, 10).is_ok());
        assert_eq!(
            code(may_cancel(false, RequestState::Pending, 10, 10)),
            "not_the_requester"
        );
        assert_eq!(
            code(may_cancel(true, RequestState::Pending, 10, 11)),
            "request_not_pending"
        );
        assert_eq!(
            code(may_cancel(true, RequestState::Approved, 10, 5)),
            "request_not_pending"
        );
    }

    #[test]
    fn only_the_requester_extends_and_only_an_active_grant_whose_window_opened() {
        assert!(may_extend(true, RequestState::Approved, true).is_ok());
        assert_eq!(
            code(may_extend(false, RequestState::Approved, true)),
            "not_the_requester"
        );
        assert_eq!(code(may_extend(true, RequestState::Expired, true)), "grant_not_active");
        assert_eq!(
            code(may_extend(true, RequestState::Approved, false)),
            "grant_not_started"
        );
    }

    #[test]
    fn a_start_is_in_the_future_within_the_limit_and_not_for_break_glass() {
        let day = 86_400;
        assert!(start(1_001, 1_000, day, false).is_ok());
        assert!(start(1_000 + day as i64, 1_000, day, false).is_ok());
        assert_eq!(code(start(1_000, 1_000, day, false)), "starts_at_invalid");
        assert_eq!(code(start(-5, 1_000, day, false)), "starts_at_invalid");
        assert_eq!(code(start(1_001 + day as i64, 1_000, day, false)), "starts_at_invalid");
        assert_eq!(code(start(i64::MAX, 1_000, day, false)), "starts_at_invalid");
        assert_eq!(code(start(2_000, 1_000, day, true)), "starts_at_invalid");
        assert_eq!(code(start(2_000, 1_000, 0, false)), "starts_at_invalid");
    }

    #[test]
    fn a_scheduled_request_waits_from_its_start_while_a_useful_grant_is_left() {
        // Unscheduled: the timeout from now.
        assert_eq!(pending_deadline(5_000, 3_600, None, 600, 60), 3_605_000);
        // Scheduled a day ahead with a 2 h window: the timeout from the start...
        assert_eq!(pending_deadline(0, 3_600, Some(86_400), 7_200, 60), 90_000_000);
        // ...but not past the last minute of a 10 min window.
        assert_eq!(pending_deadline(0, 3_600, Some(86_400), 600, 60), 86_940_000);
    }

    #[test]
    fn only_break_glass_access_awaiting_review_is_reviewed() {
        assert!(may_review(true, Some(ReviewState::Pending)).is_ok());
        assert_eq!(
            code(may_review(true, Some(ReviewState::Reviewed))),
            "review_not_pending"
        );
        assert_eq!(code(may_review(false, None)), "review_not_pending");
    }

    #[test]
    fn holder_admins_and_approvers_revoke_auditors_are_told_no_others_see_nothing() {
        let r = resource();
        let dave = in_groups("dave", &["hr-approvers"]);
        let eve = in_groups("eve", &["dev"]);
        assert!(may_revoke(Some(&r), "alice", &in_groups("alice", &[]), false, false).is_ok());
        assert!(may_revoke(Some(&r), "alice", &dave, false, false).is_ok());
        assert!(may_revoke(Some(&r), "alice", &eve, true, true).is_ok());
        assert_eq!(
            code(may_revoke(Some(&r), "alice", &eve, false, true)),
            "not_an_approver"
        );
        assert_eq!(
            code(may_revoke(Some(&r), "alice", &eve, false, false)),
            "grant_not_found"
        );
        assert!(!revocation(GrantState::Active).unwrap());
        assert!(revocation(GrantState::Revoked).unwrap());
        assert_eq!(code(revocation(GrantState::Expired)), "grant_expired");
    }

    #[test]
    fn only_the_requester_fetches_the_token_of_an_active_grant() {
        assert!(may_fetch_token(true, RequestState::Approved).is_ok());
        assert_eq!(
            code(may_fetch_token(false, RequestState::Approved)),
            "not_the_requester"
        );
        assert_eq!(code(may_fetch_token(true, RequestState::Revoked)), "grant_not_active");
    }

    #[test]
    fn only_auditors_read_the_audit_log() {
        assert!(may_read_audit(true).is_ok());
        assert_eq!(code(may_read_audit(false)), "not_an_auditor");
    }

    #[test]
    fn auto_approval_needs_the_group_the_methods_and_a_short_enough_duration() {
        let cfg = Config::parse(include_str!("../examples/jitgate.toml")).unwrap();
        let r = cfg.resource("payments-api").unwrap();
        let sam = in_groups("sam", &["sre"]);
        let get = [ScopeRule {
            methods: vec!["GET".into()],
            paths: vec!["/v1/invoices/*".into()],
        }];
        assert_eq!(
            auto_approval(r, &sam, &get, 900).map(|a| a.name.as_str()),
            Some("sre-read-only-15m")
        );
        assert!(auto_approval(r, &sam, &get, 901).is_none());
        assert!(auto_approval(r, &in_groups("alice", &["dev"]), &get, 600).is_none());
        let post = [ScopeRule {
            methods: vec!["POST".into()],
            paths: vec!["/v1/refunds".into()],
        }];
        assert!(auto_approval(r, &sam, &post, 600).is_none());
    }

    #[test]
    fn break_glass_needs_the_group_and_a_short_enough_duration() {
        let cfg = Config::parse(include_str!("../examples/jitgate.toml")).unwrap();
        let r = cfg.resource("payments-api").unwrap();
        let oscar = in_groups("oscar", &["oncall"]);
        assert!(break_glass(r, &oscar, 3600).is_ok());
        assert_eq!(code(break_glass(r, &oscar, 3601)), "duration_out_of_range");
        assert_eq!(
            code(break_glass(r, &in_groups("alice", &["dev"]), 60)),
            "break_glass_not_allowed"
        );
        assert_eq!(
            code(break_glass(cfg.resource("hr-api").unwrap(), &oscar, 60)),
            "break_glass_not_allowed"
        );
    }

    #[test]
    fn the_state_shown_is_refined_by_time_and_by_the_grant() {
        use RequestState::*;
        assert_eq!(effective_state(Pending, 10, None, 10), Pending);
        assert_eq!(effective_state(Pending, 10, None, 11), TimedOut);
        assert_eq!(effective_state(Approved, 10, Some(GrantState::Active), 11), Approved);
        assert_eq!(effective_state(Approved, 10, Some(GrantState::Expired), 11), Expired);
        assert_eq!(effective_state(Approved, 10, Some(GrantState::Revoked), 11), Revoked);
        assert_eq!(effective_state(Denied, 10, None, 11), Denied);
    }
}
