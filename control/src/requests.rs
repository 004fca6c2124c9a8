//! Access requests as the API carries them: what a caller sends (a new
//! request, a decision, an extension, list filters) and what it gets back.
//! The state changes themselves are in [`crate::workflow`].

use grant::scope::ScopeRule;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::grants::GrantView;
pub use crate::states::{RequestState, ReviewState, VoteDecision};
pub use crate::store::votes::Vote;

/// A scope rule as the API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Upper-case methods, or `*`.
    #[schema(min_items = 1)]
    pub methods: Vec<String>,
    /// Path patterns (`*` one segment, `**` the rest).
    #[schema(min_items = 1)]
    pub paths: Vec<String>,
}

impl From<Rule> for ScopeRule {
    fn from(r: Rule) -> Self {
        ScopeRule {
            methods: r.methods,
            paths: r.paths,
        }
    }
}

impl From<ScopeRule> for Rule {
    fn from(r: ScopeRule) -> Self {
        Rule {
            methods: r.methods,
            paths: r.paths,
        }
    }
}

/// An integer field that also takes a JSON number with no fraction
/// (`600.0`): JSON Schema's `integer` includes them, so clients and tools
/// generated from the document may send one.
pub fn whole_number<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    use serde::de::Error;
    let n = serde_json::Number::deserialize(de)?;
    let whole = if let Some(u) = n.as_u64() {
        T::try_from(u).ok()
    } else if let Some(i) = n.as_i64() {
        T::try_from(i).ok()
    } else {
        // Within ±2^53 a float's integer value is exact.
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
            .and_then(|f| T::try_from(f as i64).ok())
    };
    whole.ok_or_else(|| D::Error::custom(format!("invalid value: {n}, expected an integer in range")))
}

/// [`whole_number`] for an optional field (missing or `null`: `None`).
pub fn optional_whole_number<'de, D>(de: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] i64);
    Ok(Option::<Whole>::deserialize(de)?.map(|w| w.0))
}

/// `POST /v1/requests`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The resource id.
    pub resource: String,
    /// What to allow (each rule within what the resource allows to request).
    #[schema(min_items = 1, max_items = 32)]
    pub scope: Vec<Rule>,
    /// For how long, from approval or from `starts_at` (at most the
    /// resource's maximum).
    #[serde(deserialize_with = "whole_number")]
    pub duration_seconds: u64,
    /// When the window starts (seconds since the epoch), for access planned
    /// ahead: after now and at most `grants.max_start_ahead_seconds` ahead.
    /// Approvers may approve before it; the grant's `nbf` is this time and
    /// `duration_seconds` runs from it. Omitted: the window starts at
    /// approval. Not with `break_glass`.
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub starts_at: Option<i64>,
    /// Why (required; not blank, no control characters but newline and tab).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    /// A ticket reference.
    #[schema(min_length = 1, max_length = 200)]
    pub ticket: Option<String>,
    /// Client address blocks (CIDR) the grant is limited to.
    #[schema(min_items = 1, max_items = 16)]
    pub source_cidrs: Option<Vec<String>>,
    /// Emergency access without waiting for approvers.
    #[serde(default)]
    pub break_glass: bool,
    /// Bind the grant to a client certificate: its RFC 8705 `x5t#S256`
    /// thumbprint (unpadded base64url SHA-256 of the DER certificate, 43
    /// characters). Proxies then allow the grant only on mTLS connections
    /// presenting that certificate.
    /// The pattern spells the canonical encoding only: the last character
    /// carries four bits of the digest and two zero bits
    /// ([`crate::policy::THUMBPRINT_LAST`]).
    #[schema(min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub cnf_x5t_s256: Option<String>,
}

/// `POST /v1/requests/{id}/approve|deny|review`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// A comment; missing, `null`, empty or blank means no comment.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// `POST /v1/requests/{id}/extend`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// New duration, from the extension's approval.
    #[serde(deserialize_with = "whole_number")]
    pub duration_seconds: u64,
    /// Why (required).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// An access request as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    /// Id.
    pub id: String,
    /// Resource id.
    pub resource: String,
    /// Who asked.
    pub requester: String,
    /// The requester's groups when they asked (`null` on requests made
    /// before groups were recorded).
    pub requester_groups: Option<Vec<String>>,
    /// What.
    pub scope: Vec<Rule>,
    /// For how long.
    pub duration_seconds: i64,
    /// When the window starts (seconds), for a scheduled request.
    pub starts_at: Option<i64>,
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// Source blocks.
    pub source_cidrs: Option<Vec<String>>,
    /// The client certificate thumbprint (`x5t#S256`) the grant is bound to.
    #[serde(default)]
    pub cnf_x5t_s256: Option<String>,
    /// `pending`, `approved` (grant active), `expired`, `revoked`,
    /// `denied`, `cancelled` or `timed_out`.
    pub state: RequestState,
    /// Approvals needed.
    pub approvals_required: i64,
    /// Votes so far.
    pub votes: Vec<Vote>,
    /// Break-glass access.
    pub break_glass: bool,
    /// `pending` or `reviewed` for break-glass access.
    pub review_state: Option<ReviewState>,
    /// Who reviewed.
    pub reviewed_by: Option<String>,
    /// The auto-approve rule that approved it.
    pub auto_approved_by: Option<String>,
    /// The request this one extends.
    pub extends: Option<String>,
    /// The grant, once approved.
    pub grant: Option<GrantView>,
    /// Created (ms).
    pub created_at: i64,
    /// Times out at (ms) while pending.
    pub pending_until: i64,
    /// Resolved (ms).
    pub resolved_at: Option<i64>,
}

/// `GET /v1/requests` filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this (effective) state.
    pub state: Option<RequestState>,
    /// Only this resource.
    pub resource: Option<String>,
    /// Only my own requests.
    pub mine: Option<bool>,
    /// Only break-glass requests awaiting review.
    pub awaiting_review: Option<bool>,
}
