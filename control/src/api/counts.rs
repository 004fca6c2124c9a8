//! `GET /v1/audit/counts`: the allowed requests the proxies counted under a
//! grant or a request's grants (`report_allowed: aggregate`), each with the
//! audit record that holds it (auditors and admins). The counts are rows
//! of their own, read by grant; the records make them tamper-evident
//! ([`crate::audit::counts`]).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiQuery, AppState, Caller, Problem};
use crate::audit;
use crate::error::ApiError;
use crate::store::counts::{CountRow, Of, StoredCount};

/// Which counts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    /// The counts under this grant (this or `request_id`).
    pub grant_id: Option<String>,
    /// The counts under this access request's grants (this or `grant_id`).
    pub request_id: Option<String>,
    /// Only counts held by records after this seq (for paging).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Allowed requests a proxy counted under one grant, method, scope rule
/// and status over one interval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionCount {
    /// The `proxy.decisions_counted` audit record that holds this count
    /// (its inclusion proof is `/v1/audit/{seq}/proof`).
    pub record: i64,
    /// The count.
    #[serde(flatten)]
    pub count: CountRow,
}

impl From<StoredCount> for DecisionCount {
    fn from(s: StoredCount) -> Self {
        DecisionCount {
            record: s.batch_seq,
            count: s.count,
        }
    }
}

/// Counted allowed requests of a grant or a request.
#[utoipa::path(get, path = "/v1/audit/counts", operation_id = "decision_counts", tag = "audit",
    security(("bearer" = [])), params(CountQuery),
    responses(
        (status = 200, description = "The counts, oldest record first", body = [DecisionCount]),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem),
        (status = 422, description = "Neither or both of `grant_id` and `request_id` (`grant_or_request_required`)", body = Problem)))]
pub async fn decision_counts(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<CountQuery>,
) -> Result<Json<Vec<DecisionCount>>, ApiError> {
    super::handlers::auditor(&app, &p)?;
    let of = match (&q.grant_id, &q.request_id) {
        (Some(g), None) => Of::Grant(g),
        (None, Some(r)) => Of::Request(r),
        _ => {
            return Err(ApiError::Invalid(
                "grant_or_request_required",
                "give exactly one of grant_id and request_id".into(),
            ))
        }
    };
    super::handlers::audit_paging(q.limit, q.after)?;
    let rows = audit::counted(&app.db, of, q.after.unwrap_or(0), q.limit.unwrap_or(100)).await?;
    Ok(Json(rows.into_iter().map(DecisionCount::from).collect()))
}
