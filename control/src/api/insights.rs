//! `GET /v1/insights`: what grants were used for and narrower scopes
//! suggested from it (admins and auditors). The report is
//! [`crate::insight::report`].

use axum::extract::State;
use axum::Json;

use super::{ApiQuery, AppState, Caller, Problem};
use crate::error::ApiError;
use crate::insight::report::{self, InsightQuery, Insights};

/// Default period: the last 30 days.
const DEFAULT_PERIOD_S: i64 = 30 * 24 * 3600;

/// Use of grants and suggested narrower scopes.
#[utoipa::path(get, path = "/v1/insights", operation_id = "insights", tag = "audit",
    security(("bearer" = [])), params(InsightQuery),
    responses(
        (status = 200, description = "Per resource: grants issued since `since_s`, those never used, the operations used and a narrower scope derived from them (never applied); denial hot spots; per requester, requests and grants used (who rarely uses what they ask for); per resource, time to approval (p50, p90)", body = Insights),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem)))]
pub async fn insights(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<InsightQuery>,
) -> Result<Json<Insights>, ApiError> {
    super::handlers::auditor(&app, &p)?;
    // Held to what the document declares (0 or more), not clamped.
    let since_s = match q.since_s {
        Some(s) if s < 0 => {
            return Err(ApiError::Field {
                code: "invalid_query",
                field: "since_s".into(),
                message: "must be 0 or more".into(),
            })
        }
        Some(s) => s,
        None => (app.clock.now_ms() / 1000 - DEFAULT_PERIOD_S).max(0),
    };
    Ok(Json(report::report(&app.db, since_s, &app.cfg.resources).await?))
}
