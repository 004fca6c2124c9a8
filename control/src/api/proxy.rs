//! Endpoints for proxies, authenticated by the ingest key: the revocation
//! list, the active grant set, and batches of decisions for the audit log.
//! The sync calls also say who polls (`x-jitgate-proxy`,
//! `x-jitgate-grant-spec`, `x-jitgate-resources`), recorded for device
//! binding ([`crate::workflow::binding`]).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiQuery, AppState};
use crate::audit::{self, Entry};
use crate::config::Config;
use crate::error::ApiError;
use crate::grants::{self, GrantSet, RevocationList};
use crate::store;
use crate::store::counts::CountRow;
use crate::workflow::binding;

/// Most decisions in one batch.
pub const MAX_EVENTS: usize = 20_000;

/// `?since=` of the sync endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Since {
    /// The cursor of the previous answer.
    pub since: Option<String>,
}

/// Revocations since a cursor.
#[utoipa::path(get, path = "/v1/revocations", operation_id = "list_revocations", tag = "proxies",
    security(("ingest_key" = [])), params(Since, PollerHeaders),
    responses((status = 200, description = "Revocations since the cursor (all current ones without it)", body = RevocationList)))]
pub async fn revocations(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<Since>,
) -> Result<Json<RevocationList>, ApiError> {
    record_poller(&app, &headers).await;
    Ok(Json(
        grants::revocations(&app, q.since.as_deref().filter(|s| !s.is_empty())).await?,
    ))
}

/// The active grant set (identity-aware proxies).
#[utoipa::path(get, path = "/v1/proxy/grants", operation_id = "list_active_grants", tag = "proxies",
    security(("ingest_key" = [])), params(PollerHeaders),
    responses((status = 200, description = "Every active grant token", body = GrantSet)))]
pub async fn grant_set(State(app): State<AppState>, headers: HeaderMap) -> Result<Json<GrantSet>, ApiError> {
    record_poller(&app, &headers).await;
    Ok(Json(grants::active_set(&app).await?))
}

/// Records who polls. Best effort: a sighting that cannot be written must
/// not keep revocations from reaching the proxy, and minting bound grants
/// fails closed anyway once no fresh sighting vouches for a resource.
async fn record_poller(app: &crate::App, headers: &HeaderMap) {
    if let Err(e) = binding::record(app, &poller(&app.cfg, headers)).await {
        tracing::warn!(error = %e, "proxy sighting not recorded; bound grants wait for the next one");
    }
}

/// The headers by which a sync call names its poller (for the OpenAPI
/// document; read by [`poller`]). Missing or malformed ones make the
/// poller count as a proxy that does not check device binding; they never
/// fail the call. The document therefore declares no length or pattern
/// for them (any value is accepted, and judged): a sync call refused over
/// a header would stop revocations reaching that proxy, which is worse
/// than not trusting it with bound grants.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct PollerHeaders {
    /// The proxy's id (`proxy_id`): 1 to 128 of `A-Z a-z 0-9 . _ - :`;
    /// any other value makes the poller unidentified (no bound grants).
    #[param(rename = "x-jitgate-proxy")]
    proxy: Option<String>,
    /// The grant-spec version the proxy implements (`MAJOR.MINOR`, e.g.
    /// `1.1`); any other value makes the poller unidentified.
    #[param(rename = "x-jitgate-grant-spec")]
    grant_spec: Option<String>,
    /// The resource ids it protects, comma-separated (ids not configured
    /// here are ignored).
    #[param(rename = "x-jitgate-resources")]
    resources: Option<String>,
}

/// Longest proxy id recorded.
const MAX_PROXY_ID: usize = 128;

/// Who polls, from a sync call's headers. Anything missing, repeated or
/// malformed makes the poller [`binding::Poller::Unidentified`]: recorded as a
/// proxy that may serve every resource and does not check `cnf`, so a bad
/// header can only stop bound grants, never allow one. Resource ids that
/// are not configured here are dropped (they cannot be requested, and
/// they would let a caller grow the table at will).
pub fn poller(cfg: &Config, headers: &HeaderMap) -> binding::Poller {
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    let id_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':');
    let (Some(proxy), Some(spec), Some(list)) = (
        one("x-jitgate-proxy"),
        one("x-jitgate-grant-spec"),
        one("x-jitgate-resources"),
    ) else {
        return binding::Poller::Unidentified;
    };
    if proxy.is_empty() || proxy.len() > MAX_PROXY_ID || !proxy.bytes().all(id_char) {
        return binding::Poller::Unidentified;
    }
    if crate::policy::spec_version(spec).is_none() {
        return binding::Poller::Unidentified;
    }
    let mut resources: Vec<String> = Vec::new();
    for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(r) = cfg.resource(id) {
            if !resources.contains(&r.id) {
                resources.push(r.id.clone());
            }
        }
    }
    binding::Poller::Named {
        proxy: proxy.to_owned(),
        grant_spec: spec.to_owned(),
        resources,
    }
}

/// One decision as a proxy reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProxyEvent {
    /// When (ms).
    #[serde(deserialize_with = "crate::requests::whole_number")]
    pub time_ms: i64,
    /// Decision code.
    #[schema(max_length = 64)]
    pub outcome: String,
    /// Resource.
    #[schema(max_length = 512)]
    pub resource: Option<String>,
    /// Grant id.
    #[schema(max_length = 512)]
    pub grant_id: Option<String>,
    /// Grant subject.
    #[schema(max_length = 512)]
    pub subject: Option<String>,
    /// Access request id.
    #[schema(max_length = 512)]
    pub access_request_id: Option<String>,
    /// Method.
    #[schema(max_length = 32)]
    pub method: String,
    /// Path without query.
    #[schema(max_length = 4096)]
    pub path: String,
    /// Status returned.
    #[serde(deserialize_with = "crate::requests::whole_number")]
    #[schema(maximum = 65535)]
    pub status: u16,
    /// Client address.
    #[schema(max_length = 512)]
    pub client: Option<String>,
    /// The proxy's request id.
    #[schema(max_length = 512)]
    pub request_id: Option<String>,
}

/// Allowed requests a proxy counted under one grant, method, scope rule
/// and status since its last counts (`report_allowed: aggregate`): the
/// first of them as a decision, and how many there were.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProxyCount {
    /// The first counted request (its outcome is `allowed`).
    #[serde(flatten)]
    pub first: ProxyEvent,
    /// How many requests.
    #[serde(deserialize_with = "crate::requests::whole_number")]
    #[schema(minimum = 1)]
    pub calls: i64,
    /// The first one's time (ms).
    #[serde(deserialize_with = "crate::requests::whole_number")]
    pub first_ms: i64,
    /// The last one's time (ms).
    #[serde(deserialize_with = "crate::requests::whole_number")]
    pub last_ms: i64,
    /// The scope rule that allowed them (index in the grant's scope, from 0).
    #[serde(deserialize_with = "crate::requests::whole_number")]
    #[schema(maximum = 65535)]
    pub rule: u16,
}

/// Most requests one count may stand for.
const MAX_CALLS: i64 = 1_000_000_000_000;

/// Which batch of which reporter this is: a reporter (one proxy worker)
/// numbers its batches from 1 and resends a batch unchanged until it is
/// acknowledged.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchId {
    /// The reporter, random at its start (1 to 64 of `A-Z a-z 0-9 _ -`).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub instance: String,
    /// Its batch number, from 1.
    #[serde(deserialize_with = "crate::requests::whole_number")]
    #[schema(minimum = 1)]
    pub seq: i64,
}

/// `POST /v1/audit/events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBatch {
    /// The reporting proxy.
    #[schema(max_length = 128)]
    pub proxy: String,
    /// The batch's id: with it, a batch sent again (its acknowledgement
    /// lost) is acknowledged without being written twice. Without it (older
    /// proxies) every delivery is written.
    pub batch: Option<BatchId>,
    /// Its decisions, one record each.
    #[schema(max_items = 20000)]
    pub events: Vec<ProxyEvent>,
    /// Allowed requests it counted (requires `batch`).
    #[serde(default)]
    #[schema(max_items = 20000)]
    pub counts: Vec<ProxyCount>,
}

/// What was recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestResult {
    /// Decisions and counts written.
    pub accepted: usize,
    /// Last audit seq written (0 for a repeated batch).
    pub last_seq: i64,
    /// The batch had been written before (nothing was written now).
    pub duplicate: bool,
}

fn bounded(field: &'static str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.len() > max {
        return Err(ApiError::Invalid(
            "event_invalid",
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

/// A reported decision as usage counts it.
fn decision(
    e: &ProxyEvent,
    first_ms: i64,
    last_ms: i64,
    calls: i64,
    rule: Option<u16>,
) -> crate::insight::usage::Decision<'_> {
    crate::insight::usage::Decision {
        grant_id: e.grant_id.as_deref(),
        resource: e.resource.as_deref(),
        method: &e.method,
        path: &e.path,
        outcome: &e.outcome,
        time_ms: first_ms,
        last_ms,
        calls,
        rule,
    }
}

/// A count as stored.
fn count_row(c: &ProxyCount) -> CountRow {
    CountRow {
        grant_id: c.first.grant_id.clone().unwrap_or_default(),
        resource: c.first.resource.clone(),
        method: c.first.method.clone(),
        rule: i64::from(c.rule),
        status: i64::from(c.first.status),
        calls: c.calls,
        first_ms: c.first_ms,
        last_ms: c.last_ms,
    }
}

/// Checks a batch's shape beyond its types: lengths, the batch id, counts.
fn check(batch: &IngestBatch) -> Result<(), ApiError> {
    bounded("proxy", &batch.proxy, 128)?;
    if let Some(b) = &batch.batch {
        let name_ok = (1..=64).contains(&b.instance.len())
            && b.instance
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !name_ok || b.seq < 1 {
            return Err(ApiError::Invalid(
                "batch_invalid",
                "batch: instance is 1 to 64 of A-Z a-z 0-9 _ -, and seq at least 1".into(),
            ));
        }
    }
    if batch.events.len() + batch.counts.len() > MAX_EVENTS {
        return Err(ApiError::Invalid(
            "batch_too_large",
            format!("send at most {MAX_EVENTS} events per batch"),
        ));
    }
    for e in batch.events.iter().chain(batch.counts.iter().map(|c| &c.first)) {
        bounded("outcome", &e.outcome, 64)?;
        bounded("method", &e.method, 32)?;
        bounded("path", &e.path, 4096)?;
        for v in [
            &e.resource,
            &e.grant_id,
            &e.subject,
            &e.access_request_id,
            &e.client,
            &e.request_id,
        ]
        .into_iter()
        .flatten()
        {
            bounded("field", v, 512)?;
        }
    }
    let bad_count = |m: &str| Err(ApiError::Invalid("count_invalid", format!("counts: {m}")));
    if !batch.counts.is_empty() && batch.batch.is_none() {
        return bad_count("a batch with counts names itself (batch)");
    }
    for c in &batch.counts {
        if c.first.outcome != "allowed" || c.first.grant_id.is_none() {
            return bad_count("only allowed requests under a grant are counted");
        }
        if !(1..=MAX_CALLS).contains(&c.calls) || c.first_ms > c.last_ms {
            return bad_count("calls is 1 to 10^12 and first_ms is at most last_ms");
        }
    }
    Ok(())
}

/// Writes a batch of decisions to the audit log, each linked to its grant
/// and access request. Acknowledged only once committed.
#[utoipa::path(post, path = "/v1/audit/events", operation_id = "ingest_decisions", tag = "proxies",
    security(("ingest_key" = [])), request_body = IngestBatch,
    responses(
        (status = 202, description = "Written to the audit log (acknowledged once committed)", body = IngestResult),
        (status = 422, description = "A field is too long, too many events, or a malformed batch id (`event_invalid`, `batch_too_large`, `batch_invalid`, `count_invalid`)", body = super::Problem)))]
pub async fn ingest(
    State(app): State<AppState>,
    ApiJson(batch): ApiJson<IngestBatch>,
) -> Result<(StatusCode, Json<IngestResult>), ApiError> {
    check(&batch)?;
    // Link decisions that name a grant but not its request. Grants are
    // committed before any proxy sees them, so the read pool has them
    // (and the writer's connection stays free for appends).
    let mut request_of: HashMap<String, String> = HashMap::new();
    let mut looked_up: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let decided = batch.events.iter().chain(batch.counts.iter().map(|c| &c.first));
    for e in decided.filter(|e| e.access_request_id.is_none()) {
        if let Some(g) = &e.grant_id {
            if looked_up.insert(g.as_str()) {
                if let Some(request) = grants::request_of(&app, g).await? {
                    request_of.insert(g.clone(), request);
                }
            }
        }
    }
    let actor = format!("proxy:{}", batch.proxy);
    let entry = |action: &str, e: &ProxyEvent, details: serde_json::Value| Entry {
        actor: actor.clone(),
        action: action.into(),
        resource: e.resource.clone(),
        request_id: e
            .access_request_id
            .clone()
            .or_else(|| e.grant_id.as_ref().and_then(|g| request_of.get(g).cloned())),
        grant_id: e.grant_id.clone(),
        channel: Some("proxy".into()),
        details,
    };
    let mut entries: Vec<Entry> = batch
        .events
        .iter()
        .map(|e| entry("proxy.decision", e, serde_json::to_value(e).unwrap_or_default()))
        .collect();
    // The counts are one record for the whole batch, and rows of their own
    // linked to their grants (stored below, under the record's seq).
    // (`check` refused counts without a batch id.)
    let counts: Vec<CountRow> = batch.counts.iter().map(count_row).collect();
    let counted = match &batch.batch {
        Some(b) if !counts.is_empty() => {
            entries.push(Entry {
                actor: actor.clone(),
                action: audit::counts::ACTION.into(),
                channel: Some("proxy".into()),
                details: audit::counts::details(&b.instance, b.seq, &counts),
                ..Entry::default()
            });
            true
        }
        _ => false,
    };
    // Usage per grant is written with the records it is derived from.
    let tallies = crate::insight::usage::tally(
        batch
            .events
            .iter()
            .map(|e| decision(e, e.time_ms, e.time_ms, 1, None))
            .chain(
                batch
                    .counts
                    .iter()
                    .map(|c| decision(&c.first, c.first_ms, c.last_ms, c.calls, Some(c.rule))),
            ),
        |resource| app.cfg.resource(resource).and_then(|r| r.api.as_deref()),
    );
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    if let Some(b) = &batch.batch {
        if !store::reports::claim(&mut tx, &batch.proxy, &b.instance, b.seq, now).await? {
            // Written before: acknowledge, write nothing.
            tx.rollback().await?;
            return Ok((
                StatusCode::ACCEPTED,
                Json(IngestResult {
                    accepted: 0,
                    last_seq: 0,
                    duplicate: true,
                }),
            ));
        }
    }
    let last_seq = audit::append(&mut tx, now, &entries).await?;
    if counted {
        // The batch's record is the last one appended.
        store::counts::insert(&mut tx, last_seq, &counts).await?;
    }
    crate::insight::usage::record(&mut tx, app.db.backend, &tallies).await?;
    tx.commit().await?;
    let accepted = batch.events.len() + counts.len();
    app.metrics.proxy_events.add(accepted as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestResult {
            accepted,
            last_seq,
            duplicate: false,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::binding::Poller;

    fn cfg() -> Config {
        Config::parse(include_str!("../../examples/jitgate.toml")).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_well_formed_poller_is_recorded_for_configured_resources_only() {
        let h = headers(&[
            ("x-jitgate-proxy", "edge-1"),
            ("x-jitgate-grant-spec", "1.1"),
            ("x-jitgate-resources", "hr-api, nope,hr-api"),
        ]);
        assert_eq!(
            poller(&cfg(), &h),
            Poller::Named {
                proxy: "edge-1".into(),
                grant_spec: "1.1".into(),
                resources: vec!["hr-api".into()]
            }
        );
    }

    #[test]
    fn missing_repeated_or_malformed_headers_make_an_unidentified_poller() {
        let ok = [
            ("x-jitgate-proxy", "edge-1"),
            ("x-jitgate-grant-spec", "1.1"),
            ("x-jitgate-resources", "hr-api"),
        ];
        assert_eq!(poller(&cfg(), &HeaderMap::new()), Poller::Unidentified);
        for (i, bad) in ["edge 1", "1.1-beta", ""].iter().enumerate() {
            let mut pairs = ok.to_vec();
            if i < 2 {
                pairs[i].1 = bad;
            } else {
                pairs.remove(0);
            }
            assert_eq!(poller(&cfg(), &headers(&pairs)), Poller::Unidentified, "{pairs:?}");
        }
        let long = "p".repeat(MAX_PROXY_ID + 1);
        let mut pairs = ok.to_vec();
        pairs[0].1 = &long;
        assert_eq!(poller(&cfg(), &headers(&pairs)), Poller::Unidentified);
        let mut pairs = ok.to_vec();
        pairs.push(("x-jitgate-grant-spec", "1.0"));
        assert_eq!(poller(&cfg(), &headers(&pairs)), Poller::Unidentified);
    }
}
