//! The states of stored things as enums, and their database spelling: the
//! one place where a state becomes a string and a string becomes a state
//! (an unknown string is a typed error, never a default).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stored value that is not one of the states of its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column}: {value:?} is not a known state")]
pub struct UnknownState {
    /// The column.
    pub column: &'static str,
    /// What was stored.
    pub value: String,
}

/// One database spelling per variant, both ways.
macro_rules! db_states {
    ($ty:ident, $column:literal, { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The state as stored (and shown).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)*
                }
            }

            /// The state a stored string names.
            pub fn from_db(value: &str) -> Result<Self, UnknownState> {
                match value {
                    $($text => Ok($ty::$variant),)*
                    other => Err(UnknownState { column: $column, value: other.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The state of an access request. Stored: `pending`, `approved`,
/// `revoked`, `denied`, `cancelled`, `timed_out`; the API refines it by
/// time (an approved request whose grant ran out is `expired`, a pending
/// one past its deadline `timed_out`: see [`crate::policy::effective_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; its grant is active.
    Approved,
    /// Approved; its grant has expired.
    Expired,
    /// Approved; its grant was revoked.
    Revoked,
    /// Denied by an approver.
    Denied,
    /// Withdrawn by its requester.
    Cancelled,
    /// Nobody decided in time.
    TimedOut,
}

db_states!(RequestState, "access_requests.state", {
    Pending => "pending",
    Approved => "approved",
    Expired => "expired",
    Revoked => "revoked",
    Denied => "denied",
    Cancelled => "cancelled",
    TimedOut => "timed_out",
});

/// Where a break-glass access stands in its after-the-fact review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Not reviewed yet.
    Pending,
    /// Reviewed.
    Reviewed,
}

db_states!(ReviewState, "access_requests.review_state", {
    Pending => "pending",
    Reviewed => "reviewed",
});

/// A vote's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteDecision {
    /// For.
    Approve,
    /// Against (ends the request).
    Deny,
}

db_states!(VoteDecision, "votes.decision", {
    Approve => "approve",
    Deny => "deny",
});

/// A notification delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting for (another) attempt.
    Pending,
    /// The target accepted it.
    Delivered,
    /// Given up after the last attempt.
    Failed,
}

db_states!(OutboxState, "outbox.state", {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// A grant's state, from its stored times (a grant is never stored as a
/// state: revocation and expiry are times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Valid now.
    Active,
    /// Its window has passed.
    Expired,
    /// Revoked before it expired.
    Revoked,
}

impl GrantState {
    /// The state at `now_ms` of a grant revoked at `revoked_at` (ms) that
    /// expires at `expires_at_s` (seconds).
    pub fn at(revoked_at: Option<i64>, expires_at_s: i64, now_ms: i64) -> GrantState {
        if revoked_at.is_some() {
            GrantState::Revoked
        } else if expires_at_s * 1000 <= now_ms {
            GrantState::Expired
        } else {
            GrantState::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_what_it_stores() {
        for s in [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Expired,
            RequestState::Revoked,
            RequestState::Denied,
            RequestState::Cancelled,
            RequestState::TimedOut,
        ] {
            assert_eq!(RequestState::from_db(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in [ReviewState::Pending, ReviewState::Reviewed] {
            assert_eq!(ReviewState::from_db(s.as_str()), Ok(s));
        }
        for s in [VoteDecision::Approve, VoteDecision::Deny] {
            assert_eq!(VoteDecision::from_db(s.as_str()), Ok(s));
        }
        for s in [OutboxState::Pending, OutboxState::Delivered, OutboxState::Failed] {
            assert_eq!(OutboxState::from_db(s.as_str()), Ok(s));
        }
    }

    #[test]
    fn an_unknown_stored_state_is_an_error_naming_the_column() {
        let e = RequestState::from_db("approvedd").unwrap_err();
        assert_eq!(e.column, "access_requests.state");
        assert_eq!(
            VoteDecision::from_db(""),
            Err(UnknownState {
                column: "votes.decision",
                value: String::new()
            })
        );
    }

    #[test]
    fn a_grant_is_revoked_expired_or_active_by_its_times() {
        assert_eq!(GrantState::at(Some(5), 100, 1_000), GrantState::Revoked);
        assert_eq!(GrantState::at(None, 100, 100_000), GrantState::Expired);
        assert_eq!(GrantState::at(None, 100, 99_999), GrantState::Active);
    }
}
