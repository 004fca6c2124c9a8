//! The outcomes of checking a request against a grant (spec: "Outcomes").
//!
//! One enum, in the order the spec runs its checks, with each outcome's
//! stable code, HTTP status and human sentence defined here and nowhere
//! else: the filter's deny responses and metrics, the control service's
//! audit records and the CLI all print these.

use core::fmt;

/// The result of checking one request. Every variant but [`Outcome::Allowed`]
/// is a denial; the first failing check (in declaration order) decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The request path is refused before any matching.
    PathRejected,
    /// No grant on the request.
    GrantMissing,
    /// Form, base64url, JSON, types or limits are wrong.
    GrantMalformed,
    /// `alg`, `typ` or `crit` are not as required.
    GrantUnsupported,
    /// `kid` is not in the verifier's key set.
    GrantUnknownKey,
    /// The MAC does not match.
    GrantBadSignature,
    /// `iss` is not the configured issuer.
    GrantWrongIssuer,
    /// Before `nbf - leeway`, or `iat` is in the future.
    GrantNotYetValid,
    /// At or after `exp + leeway`.
    GrantExpired,
    /// `exp - iat` is over the maximum lifetime.
    GrantTtlTooLong,
    /// `aud` is not the resource the request was routed to.
    GrantWrongAudience,
    /// `jti` is on the revocation list.
    GrantRevoked,
    /// `src` is present and the client address is unknown or outside it.
    SourceNotAllowed,
    /// The configured identity source is absent or differs from `sub`.
    IdentityMismatch,
    /// `cnf` binds the grant to a client certificate and the connection
    /// presented none, or one with another SHA-256 thumbprint.
    DeviceMismatch,
    /// No scope rule allows this method and path.
    RequestOutOfScope,
    /// Every check passed.
    Allowed,
}

impl Outcome {
    /// Every outcome, in check order.
    pub const ALL: [Outcome; 17] = [
        Outcome::PathRejected,
        Outcome::GrantMissing,
        Outcome::GrantMalformed,
        Outcome::GrantUnsupported,
        Outcome::GrantUnknownKey,
        Outcome::GrantBadSignature,
        Outcome::GrantWrongIssuer,
        Outcome::GrantNotYetValid,
        Outcome::GrantExpired,
        Outcome::GrantTtlTooLong,
        Outcome::GrantWrongAudience,
        Outcome::GrantRevoked,
        Outcome::SourceNotAllowed,
        Outcome::IdentityMismatch,
        Outcome::DeviceMismatch,
        Outcome::RequestOutOfScope,
        Outcome::Allowed,
    ];

    /// The stable machine-readable code.
    pub const fn code(self) -> &'static str {
        match self {
            Outcome::PathRejected => "path_rejected",
            Outcome::GrantMissing => "grant_missing",
            Outcome::GrantMalformed => "grant_malformed",
            Outcome::GrantUnsupported => "grant_unsupported",
            Outcome::GrantUnknownKey => "grant_unknown_key",
            Outcome::GrantBadSignature => "grant_bad_signature",
            Outcome::GrantWrongIssuer => "grant_wrong_issuer",
            Outcome::GrantNotYetValid => "grant_not_yet_valid",
            Outcome::GrantExpired => "grant_expired",
            Outcome::GrantTtlTooLong => "grant_ttl_too_long",
            Outcome::GrantWrongAudience => "grant_wrong_audience",
            Outcome::GrantRevoked => "grant_revoked",
            Outcome::SourceNotAllowed => "source_not_allowed",
            Outcome::IdentityMismatch => "identity_mismatch",
            Outcome::DeviceMismatch => "device_mismatch",
            Outcome::RequestOutOfScope => "request_out_of_scope",
            Outcome::Allowed => "allowed",
        }
    }

    /// The HTTP status of a denial (200 for [`Outcome::Allowed`]).
    pub const fn status(self) -> u16 {
        match self {
            Outcome::PathRejected => 400,
            Outcome::GrantMissing
            | Outcome::GrantMalformed
            | Outcome::GrantUnsupported
            | Outcome::GrantUnknownKey
            | Outcome::GrantBadSignature
            | Outcome::GrantWrongIssuer
            | Outcome::GrantNotYetValid
            | Outcome::GrantExpired
            | Outcome::GrantTtlTooLong => 401,
            Outcome::GrantWrongAudience
            | Outcome::GrantRevoked
            | Outcome::SourceNotAllowed
            | Outcome::IdentityMismatch
            | Outcome::DeviceMismatch
            | Outcome::RequestOutOfScope => 403,
            Outcome::Allowed => 200,
        }
    }

    /// A sentence for people, used in deny bodies and CLI output.
    pub const fn message(self) -> &'static str {
        match self {
            Outcome::PathRejected => "The request path is not in a form that can be checked safely.",
            Outcome::GrantMissing => "This API needs a just-in-time access grant and none was sent.",
            Outcome::GrantMalformed => "The access grant is not a well-formed grant token.",
            Outcome::GrantUnsupported => "The access grant uses an algorithm or type that is not accepted.",
            Outcome::GrantUnknownKey => "The access grant was signed with a key this gateway does not know.",
            Outcome::GrantBadSignature => "The access grant's signature does not match.",
            Outcome::GrantWrongIssuer => "The access grant was issued by someone this gateway does not trust.",
            Outcome::GrantNotYetValid => "The access grant is not valid yet.",
            Outcome::GrantExpired => "The access grant has expired.",
            Outcome::GrantTtlTooLong => "The access grant's lifetime is longer than this gateway allows.",
            Outcome::GrantWrongAudience => "The access grant is for a different API.",
            Outcome::GrantRevoked => "The access grant has been revoked.",
            Outcome::SourceNotAllowed => "The access grant does not allow requests from this address.",
            Outcome::IdentityMismatch => "The access grant was issued to someone else.",
            Outcome::DeviceMismatch => {
                "The access grant is bound to a client certificate that this connection did not present."
            }
            Outcome::RequestOutOfScope => "The access grant does not cover this method and path.",
            Outcome::Allowed => "Access allowed.",
        }
    }

    /// Looks an outcome up by its code.
    pub fn from_code(code: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == code)
    }

    /// Whether this outcome lets the request through.
    pub const fn is_allowed(self) -> bool {
        matches!(self, Outcome::Allowed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_code(o.code()), Some(o));
        }
        let mut codes: Vec<_> = Outcome::ALL.iter().map(|o| o.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Outcome::ALL.len());
    }

    #[test]
    fn check_order_is_declaration_order() {
        let mut sorted = Outcome::ALL;
        sorted.sort();
        assert_eq!(sorted, Outcome::ALL);
    }
}
