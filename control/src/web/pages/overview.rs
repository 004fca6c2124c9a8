//! The overview for admins and auditors: the last 30 days in pictures
//! (requests per day by outcome, time to approval, denials at the proxies
//! by code, most requested resources, grants never used), each with its
//! numbers as a table; then least privilege from the same insights report
//! as `GET /v1/insights`: what the grants were used for, the narrower scope
//! that use suggests, who rarely uses their grants, denial hot spots.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::parts;
use crate::api::AppState;
use crate::insight::report::Insights;
use crate::states::RequestState;
use crate::web::charts::{self, Bar, Day, Series};
use crate::web::error::WebError;
use crate::web::layout::{self, duration, shown, DAY_MS};
use crate::web::session::Session;
use crate::web::workflow::{self, Overview};

/// The period shown.
const DAYS: i64 = 30;

/// The outcomes of the per-day chart, in stacking order, with colours
/// that differ in lightness too.
const OUTCOMES: [(RequestState, &str); 7] = [
    (RequestState::Approved, "#00703c"),
    (RequestState::Expired, "#85994b"),
    (RequestState::Revoked, "#942514"),
    (RequestState::Denied, "#d4351c"),
    (RequestState::Pending, "#ffdd00"),
    (RequestState::Cancelled, "#505a5f"),
    (RequestState::TimedOut, "#b1b4b6"),
];

/// A day number (days since the epoch) as `YYYY-MM-DD`.
fn day_label(day: i64) -> String {
    crate::clock::rfc3339(day.max(0) * 86_400).chars().take(10).collect()
}

/// Every day of the period with its counts per outcome (days without
/// requests included, so the time axis is even).
pub fn days(o: &Overview, today: i64) -> Vec<Day> {
    let mut counts: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (day, state, n) in &o.per_day {
        let row = counts.entry(*day).or_insert_with(|| vec![0; OUTCOMES.len()]);
        if let Some(k) = OUTCOMES.iter().position(|(s, _)| s == state) {
            row[k] += n;
        }
    }
    let first = o.since_ms.div_euclid(DAY_MS);
    (first..=today)
        .map(|day| Day {
            label: day_label(day),
            counts: counts.remove(&day).unwrap_or_else(|| vec![0; OUTCOMES.len()]),
        })
        .collect()
}

/// Denials under grants, summed per code.
fn denials_by_code(o: &Overview) -> Vec<Bar> {
    let mut by_code: BTreeMap<&str, i64> = BTreeMap::new();
    for d in &o.insights.denials {
        *by_code.entry(d.outcome.as_str()).or_default() += d.calls;
    }
    let mut rows: Vec<Bar> = by_code
        .into_iter()
        .map(|(code, n)| Bar {
            label: code.to_owned(),
            value: n,
            text: n.to_string(),
        })
        .collect();
    rows.sort_by_key(|b| std::cmp::Reverse(b.value));
    rows
}

/// `GET /overview`.
pub async fn page(State(app): State<AppState>, s: Session) -> Result<Response, WebError> {
    let now = app.clock.now_ms();
    let today = now.div_euclid(DAY_MS);
    let since_ms = (today - (DAYS - 1)) * DAY_MS;
    let o = workflow::overview(&app, &s.principal, since_ms).await?;
    let series: Vec<Series<'_>> = OUTCOMES
        .iter()
        .map(|(state, colour)| Series {
            name: state.as_str(),
            colour,
        })
        .collect();
    let approval: Vec<Bar> = o
        .insights
        .approval_times
        .iter()
        .flat_map(|a| {
            [("p50", a.p50_seconds), ("p90", a.p90_seconds)].map(|(which, secs)| Bar {
                label: format!("{} {which}", a.resource),
                value: secs,
                text: format!("{} ({} approved)", duration(secs), a.approved),
            })
        })
        .collect();
    let requested: Vec<Bar> = o
        .by_resource
        .iter()
        .map(|(resource, n)| Bar {
            label: resource.clone(),
            value: *n,
            text: n.to_string(),
        })
        .collect();
    let unused: Vec<Bar> = o
        .insights
        .resources
        .iter()
        .map(|r| Bar {
            label: r.resource.clone(),
            value: r.never_used.len() as i64,
            text: format!("{} of {} grants", r.never_used.len(), r.grants),
        })
        .collect();
    let body = layout::page(
        "Overview",
        Some(&s),
        html! {
            h1 { "Overview" }
            p { "The last " (DAYS) " days, from " (layout::time_ms(o.since_ms)) ". Each chart's numbers are under “As a table”." }
            (charts::stacked_days("per-day", "Requests per day by outcome",
                "Stacked bars, one per day, of the requests made that day by their outcome so far.", &series, &days(&o, today)))
            (charts::bars("approval", "Time to approval (people, not auto-approve rules)",
                "Median (p50) and 90th percentile (p90) time from request to approval, per resource.", &approval,
                "No request was approved by people in the period."))
            (charts::bars("denials", "Denials at the proxies under grants, by code",
                "Requests the proxies refused although they carried a grant, per denial code.", &denials_by_code(&o),
                "No denials under grants in the period."))
            (charts::bars("requested", "Most requested resources",
                "Requests per resource in the period.", &requested, "No requests in the period."))
            (charts::bars("unused", "Grants never used",
                "Per resource, the grants issued in the period under which no call reached a proxy.", &unused,
                "No grants issued in the period."))
            (least_privilege(&o.insights))
        },
    );
    Ok(body.into_response())
}

/// What the grants were used for, the narrower scopes that use suggests
/// (never applied: an administrator decides), who asks but rarely uses,
/// and where the proxies refuse most.
fn least_privilege(i: &Insights) -> Markup {
    let rarely: Vec<_> = i.requesters.iter().filter(|r| r.rarely_uses).collect();
    html! {
        h2 #least-privilege { "Least privilege: granted and used" }
        @for r in &i.resources {
            section.card aria-labelledby=(format!("lp-{}", r.resource)) {
                h3 #(format!("lp-{}", r.resource)) { (shown(&r.resource)) }
                p { (r.grants) " grants issued, " (r.never_used.len()) " never used." }
                @if r.used.is_empty() {
                    p { "No allowed calls were reported under these grants." }
                } @else {
                    table {
                        caption { "Operations called under grants (allowed)" }
                        thead { tr { th { "Method" } th { "Operation" } th { "Calls" } th { "Grants" } } }
                        tbody {
                            @for u in &r.used {
                                tr { td { (u.method) } td { code { (shown(&u.operation)) } } td { (u.calls) } td { (u.grants) } }
                            }
                        }
                    }
                }
                @if let Some(s) = &r.suggestion {
                    p { strong { "Suggested narrower scope" } " (not applied; from " (shown(&s.derived_from)) "):" }
                    (parts::scope(&s.scope))
                    @if s.read_only { p { "Read-only: a candidate for a short auto-approve rule." } }
                }
            }
        }
        @if !rarely.is_empty() {
            h3 { "Requesters who rarely use their grants" }
            ul {
                @for r in rarely { li { (shown(&r.requester)) ": " (shown(&r.derived_from)) } }
            }
        }
        @if !i.denials.is_empty() {
            table {
                caption { "Denial hot spots (a misconfigured client, or someone probing)" }
                thead { tr { th { "Resource" } th { "Method" } th { "Operation or path" } th { "Code" } th { "Calls" } } }
                tbody {
                    @for d in &i.denials {
                        tr {
                            td { (shown(&d.resource)) } td { (shown(&d.method)) } td { code { (shown(&d.operation)) } }
                            td { (d.outcome) } td { (d.calls) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_labelled_in_utc() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(20_424), "2025-12-02");
    }
}
