//! The jitgate grant token, version 1.1: mint and verify, scope and path
//! matching.
//!
//! This crate is the contract between the control service (which mints a
//! grant after an approval) and the proxy-wasm filter (which checks it on
//! every request). It follows `grant-token.md` exactly and is shared by
//! both sides, natively and in WebAssembly. It does no I/O, reads no clock
//! (the time is a parameter) and never panics on any input.
//!
//! ```
//! use grant::{decide, mint, GrantClaims, Identity, KeySet, KnownPeer, NoRevocations, Outcome, Request, ScopeRule, SigningKey, Verifier};
//!
//! let key = SigningKey::new("k1", &[7; 32]).unwrap();
//! let claims = GrantClaims {
//!     iss: "jit-control".into(), sub: "alice".into(), aud: "payments-api".into(),
//!     jti: "g-1".into(), iat: 1000, nbf: 1000, exp: 1900,
//!     scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
//!     src: None, req: Some("r-1".into()), cnf: None,
//! };
//! let token = mint(&claims, &key).unwrap();
//!
//! let mut keys = KeySet::new();
//! keys.add(key).unwrap();
//! let verifier = Verifier::new("jit-control", keys);
//! let request = Request {
//!     method: b"GET", path: b"/v1/invoices/INV-9", resource: "payments-api",
//!     identity: Identity::NotConfigured, peer: &KnownPeer::default(),
//! };
//! let decision = decide(&verifier, Some(token.as_bytes()), &request, 1200, &NoRevocations);
//! assert_eq!(decision.outcome, Outcome::Allowed);
//! assert_eq!(decision.grant.unwrap().sub(), "alice");
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

/// The version of `grant-token.md` this crate implements. Proxies send it
/// with their sync calls, so the control service knows which of them check
/// `cnf` (1.1) before it mints a bound grant.
pub const SPEC_VERSION: &str = "1.1";

pub mod cidr;
pub mod decide;
pub mod json;
pub mod key;
pub mod mint;
pub mod outcome;
pub mod path;
pub mod scope;
pub mod token;
pub mod verify;

pub use decide::{
    check_request, decide, decide_checked, Decision, GrantVerifier, Identity, KnownPeer, NoRevocations, Peer, Request,
    Revocations,
};
pub use key::{KeyError, KeySet, SigningKey};
pub use mint::{mint, GrantClaims, MintError};
pub use outcome::Outcome;
pub use path::{check_request_path, CheckedPath, PathRejected};
pub use scope::{ScopeError, ScopeRule};
pub use verify::{VerifiedGrant, Verifier, DEFAULT_LEEWAY, DEFAULT_MAX_TTL};
