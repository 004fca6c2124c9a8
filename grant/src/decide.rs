//! The whole decision for one request (spec: "Outcomes", in order).
//!
//! Path first, then the grant, then what depends on the request: audience,
//! revocation, source address, identity, device binding and scope. The first failing check
//! decides, and the verified grant is returned with denials that come after
//! verification so callers can say whose grant was refused.

use core::borrow::Borrow;
use core::net::IpAddr;
use std::collections::{BTreeSet, HashSet};

use crate::path::{check_request_path, CheckedPath, PathRejected};
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

/// Facts about the client's connection. A proxy asks its host for each only
/// when a grant needs it (`src`, `cnf`), so they are methods, not fields.
pub trait Peer {
    /// The client's address, if known.
    fn source(&self) -> Option<IpAddr>;
    /// The SHA-256 thumbprint of the client certificate presented on the
    /// connection (RFC 8705 `x5t#S256`), if any.
    fn client_cert(&self) -> Option<[u8; 32]>;
}

/// Connection facts known up front (tests, the CLI, the vectors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownPeer {
    /// The client's address.
    pub source: Option<IpAddr>,
    /// The client certificate's SHA-256 thumbprint.
    pub client_cert: Option<[u8; 32]>,
}

impl Peer for KnownPeer {
    fn source(&self) -> Option<IpAddr> {
        self.source
    }

    fn client_cert(&self) -> Option<[u8; 32]> {
        self.client_cert
    }
}

/// One request as the verifier sees it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The HTTP method, exactly as received.
    pub method: &'a [u8],
    /// The request target's path, possibly with a query string.
    pub path: &'a [u8],
    /// The protected resource the request was routed to.
    pub resource: &'a str,
    /// The caller's identity from a trusted source.
    pub identity: Identity<'a>,
    /// The client's connection.
    pub peer: &'a dyn Peer,
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

/// Where verified grants come from: a [`Verifier`], or a cache in front of
/// one (the proxy's). Either way [`decide`] runs the checks in one order.
pub trait GrantVerifier {
    /// The verified grant, owned or shared.
    type Grant: Borrow<VerifiedGrant>;
    /// Checks 3 to 10 of the spec.
    fn verify_grant(&self, token: &[u8], now: u64) -> Result<Self::Grant, Outcome>;
}

impl GrantVerifier for Verifier {
    type Grant = VerifiedGrant;

    fn verify_grant(&self, token: &[u8], now: u64) -> Result<VerifiedGrant, Outcome> {
        self.verify(token, now)
    }
}

/// The outcome of one request, with the grant when it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<G = VerifiedGrant> {
    /// What was decided.
    pub outcome: Outcome,
    /// The verified grant, when verification got that far.
    pub grant: Option<G>,
}

impl<G> Decision<G> {
    fn deny(outcome: Outcome) -> Self {
        Decision { outcome, grant: None }
    }
}

/// Decides one request. `token` is `None` (or empty) when no grant was sent.
pub fn decide<V: GrantVerifier + ?Sized, R: Revocations + ?Sized>(
    verifier: &V,
    token: Option<&[u8]>,
    request: &Request<'_>,
    now: u64,
    revoked: &R,
) -> Decision<V::Grant> {
    match check_request_path(request.path) {
        Ok(path) => decide_checked(verifier, token, path, request, now, revoked),
        Err(PathRejected) => Decision::deny(Outcome::PathRejected),
    }
}

/// [`decide`] for a path already checked (check 1 passed): checks 2 to 16.
/// A proxy that must route on the checked path before deciding calls this,
/// so its order of checks is this function's, not its own.
pub fn decide_checked<V: GrantVerifier + ?Sized, R: Revocations + ?Sized>(
    verifier: &V,
    token: Option<&[u8]>,
    path: CheckedPath<'_>,
    request: &Request<'_>,
    now: u64,
    revoked: &R,
) -> Decision<V::Grant> {
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Decision::deny(Outcome::GrantMissing),
    };
    let grant = match verifier.verify_grant(token, now) {
        Ok(grant) => grant,
        Err(outcome) => return Decision::deny(outcome),
    };
    let outcome = check_request(grant.borrow(), path, request, revoked);
    Decision {
        outcome,
        grant: Some(grant),
    }
}

/// The request-dependent checks (11 to 16) for an already verified grant
/// and an already checked path.
pub fn check_request<R: Revocations + ?Sized>(
    grant: &VerifiedGrant,
    path: CheckedPath<'_>,
    request: &Request<'_>,
    revoked: &R,
) -> Outcome {
    if grant.aud() != request.resource {
        return Outcome::GrantWrongAudience;
    }
    if revoked.is_revoked(grant.jti()) {
        return Outcome::GrantRevoked;
    }
    if grant.has_source_restriction() && !grant.source_allowed(request.peer.source()) {
        return Outcome::SourceNotAllowed;
    }
    match request.identity {
        Identity::NotConfigured => {}
        Identity::Value(id) if id == grant.sub().as_bytes() => {}
        Identity::Absent | Identity::Value(_) => return Outcome::IdentityMismatch,
    }
    if grant.bound_certificate().is_some() && !grant.device_allowed(request.peer.client_cert().as_ref().map(|c| &c[..]))
    {
        return Outcome::DeviceMismatch;
    }
    if !grant.allows(request.method, path.as_bytes()) {
        return Outcome::RequestOutOfScope;
    }
    Outcome::Allowed
}
