//! The whole decision for one request (spec: "Outcomes", in order).
//!
//! Path first, then the grant, then what depends on the request: audience,
//! revocation, source address, identity and scope. The first failing check
//! decides, and the verified grant is returned with denials that come after
//! verification so callers can say whose grant was refused.

use core::net::IpAddr;
use std::collections::{BTreeSet, HashSet};

use crate::path::check_request_path;
use crate::verify::{VerifiedGrant, Verifier};
use crate::Outcome;

/// What the verifier knows about the identity of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// No identity source is configured: `sub` is not compared.
    NotConfigured,
    /// A source is configured but the request carries no identity.
    Absent,
    /// The identity the trusted source reported.
    Value(&'a [u8]),
}

/// One request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The HTTP method, exactly as received.
    pub method: &'a [u8],
    /// The request target's path, possibly with a query string.
    pub path: &'a [u8],
    /// The protected resource the request was routed to.
    pub resource: &'a str,
    /// The client address, if known.
    pub source: Option<IpAddr>,
    /// The caller's identity from a trusted source.
    pub identity: Identity<'a>,
}

/// The set of revoked grant ids.
pub trait Revocations {
    /// Whether the grant with this id is revoked.
    fn is_revoked(&self, jti: &str) -> bool;
}

impl Revocations for [&str] {
    fn is_revoked(&self, jti: &str) -> bool {
        self.contains(&jti)
    }
}

impl Revocations for [String] {
    fn is_revoked(&self, jti: &str) -> bool {
        self.iter().any(|r| r == jti)
    }
}

impl<S: core::hash::BuildHasher> Revocations for HashSet<String, S> {
    fn is_revoked(&self, jti: &str) -> bool {
        self.contains(jti)
    }
}

impl Revocations for BTreeSet<String> {
    fn is_revoked(&self, jti: &str) -> bool {
        self.contains(jti)
    }
}

/// No grant is revoked.
pub struct NoRevocations;

impl Revocations for NoRevocations {
    fn is_revoked(&self, _: &str) -> bool {
        false
    }
}

/// The outcome of one request, with the grant when it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What was decided.
    pub outcome: Outcome,
    /// The verified grant, when verification got that far.
    pub grant: Option<VerifiedGrant>,
}

impl Decision {
    fn deny(outcome: Outcome) -> Self {
        Decision { outcome, grant: None }
    }
}

/// Decides one request. `token` is `None` (or empty) when no grant was sent.
pub fn decide<R: Revocations + ?Sized>(
    verifier: &Verifier,
    token: Option<&[u8]>,
    request: &Request<'_>,
    now: u64,
    revoked: &R,
) -> Decision {
    let Ok(path) = check_request_path(request.path) else {
        return Decision::deny(Outcome::PathRejected);
    };
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Decision::deny(Outcome::GrantMissing),
    };
    let grant = match verifier.verify(token, now) {
        Ok(grant) => grant,
        Err(outcome) => return Decision::deny(outcome),
    };
    let outcome = check_request(&grant, request.method, path, request, revoked);
    Decision {
        outcome,
        grant: Some(grant),
    }
}

/// The request-dependent checks (11 to 15) for an already verified grant
/// and an already checked path.
pub fn check_request<R: Revocations + ?Sized>(
    grant: &VerifiedGrant,
    method: &[u8],
    checked_path: &[u8],
    request: &Request<'_>,
    revoked: &R,
) -> Outcome {
    if grant.aud() != request.resource {
        return Outcome::GrantWrongAudience;
    }
    if revoked.is_revoked(grant.jti()) {
        return Outcome::GrantRevoked;
    }
    if !grant.source_allowed(request.source) {
        return Outcome::SourceNotAllowed;
    }
    match request.identity {
        Identity::NotConfigured => {}
        Identity::Value(id) if id == grant.sub().as_bytes() => {}
        Identity::Absent | Identity::Value(_) => return Outcome::IdentityMismatch,
    }
    if !grant.allows(method, checked_path) {
        return Outcome::RequestOutOfScope;
    }
    Outcome::Allowed
}
