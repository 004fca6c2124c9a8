//! The audit log for auditors: records filtered by request (a request's
//! timeline: creation, votes, grant, token fetches, every proxy decision,
//! revocation, expiry), resource, actor, action and dates (UTC), a page at a time; the
//! chain's verification on demand; export as JSON lines or CSV with the
//! same filters.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::api::AppState;
use crate::audit::{self, Record};
use crate::web::error::WebError;
use crate::web::layout::{self, shown, DAY_MS};
use crate::web::session::Session;
use crate::web::workflow;

/// Records per page.
const PAGE: i64 = 100;

/// The page's filters (empty fields mean no filter).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    request_id: Option<String>,
    resource: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    /// First day (UTC, `YYYY-MM-DD`), inclusive.
    from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`), inclusive.
    until: Option<String>,
    after: Option<i64>,
}

/// The start of a UTC day given as `YYYY-MM-DD`, in ms.
pub fn day_start_ms(text: &str) -> Option<i64> {
    let ok_shape = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    if !ok_shape {
        return None;
    }
    let at = humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

fn set(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl Filters {
    fn query(&self, limit: i64) -> Result<audit::Query, WebError> {
        let from_ms = match set(&self.from) {
            Some(d) => Some(day_start_ms(&d).ok_or(WebError::BadForm("from: a date as YYYY-MM-DD"))?),
            None => None,
        };
        let until_ms = match set(&self.until) {
            Some(d) => Some(day_start_ms(&d).ok_or(WebError::BadForm("until: a date as YYYY-MM-DD"))? + DAY_MS),
            None => None,
        };
        Ok(audit::Query {
            request_id: set(&self.request_id),
            resource: set(&self.resource),
            actor: set(&self.actor),
            action: set(&self.action),
            from_ms,
            until_ms,
            after: self.after.filter(|a| *a >= 0),
            limit: Some(limit),
            order: None,
            grant_id: None,
        })
    }

    fn query_string(&self, after: Option<i64>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("request_id", &self.request_id),
            ("resource", &self.resource),
            ("actor", &self.actor),
            ("action", &self.action),
            ("from", &self.from),
            ("until", &self.until),
        ] {
            if let Some(v) = set(v) {
                s.append_pair(k, &v);
            }
        }
        if let Some(a) = after {
            s.append_pair("after", &a.to_string());
        }
        s.finish()
    }
}

/// `GET /audit`.
pub async fn page(State(app): State<AppState>, s: Session, Query(f): Query<Filters>) -> Result<Response, WebError> {
    let records = workflow::audit(&app, &s.principal, &f.query(PAGE)?).await?;
    // A request's timeline also lists what the proxies counted under its
    // grants (one record per reporter's batch holds those of many grants).
    let counted = match (&f.request_id, &f.after) {
        (Some(id), None) if !id.is_empty() => workflow::counted(&app, &s.principal, id).await?,
        _ => Vec::new(),
    };
    let next = (records.len() as i64 == PAGE)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    let input = |name: &str, label: &str, value: &Option<String>| {
        html! {
            div.field {
                label for=(name) { (label) }
                input type="text" id=(name) name=(name) value=(value.clone().unwrap_or_default());
            }
        }
    };
    let body = layout::page(
        "Audit",
        Some(&s),
        html! {
            h1 { "Audit" }
            p { a href="/audit/verify" { "Verify the chain" } }
            form method="get" action="/audit" {
                (input("request_id", "Request", &f.request_id))
                (input("resource", "Resource", &f.resource))
                (input("actor", "Actor", &f.actor))
                (input("action", "Action", &f.action))
                div.field {
                    label for="from" { "From (UTC date)" }
                    input type="date" id="from" name="from" value=(f.from.clone().unwrap_or_default());
                }
                div.field {
                    label for="until" { "Until (UTC date, inclusive)" }
                    input type="date" id="until" name="until" value=(f.until.clone().unwrap_or_default());
                }
                button type="submit" { "Filter" }
            }
            p {
                "Export these records: "
                a href=(format!("/audit/export.jsonl?{}", f.query_string(None))) { "JSON lines" } " · "
                a href=(format!("/audit/export.csv?{}", f.query_string(None))) { "CSV" }
            }
            table {
                thead { tr { th { "#" } th { "When" } th { "Actor" } th { "Action" } th { "Resource" } th { "Request" } th { "Details" } } }
                tbody {
                    @for r in &records {
                        tr {
                            td { (r.seq) }
                            td { (layout::time_ms(r.at)) }
                            td { (shown(&r.actor)) }
                            td { (r.action) }
                            td { (shown(r.resource.as_deref().unwrap_or(""))) }
                            td {
                                @if let Some(id) = &r.request_id { a href=(format!("/audit?request_id={id}")) { (id) } }
                            }
                            td { code.reason { (shown(&r.details.to_string())) } }
                        }
                    }
                }
            }
            @if !counted.is_empty() {
                h2 { "Allowed requests counted at the proxies" }
                table {
                    thead { tr { th { "Record" } th { "Grant" } th { "Method" } th { "Scope rule" } th { "Status" } th { "Calls" } th { "First" } th { "Last" } } }
                    tbody {
                        @for c in &counted {
                            tr {
                                td { (c.batch_seq) }
                                td { code { (shown(&c.count.grant_id)) } }
                                td { (shown(&c.count.method)) }
                                td { (c.count.rule + 1) }
                                td { (c.count.status) }
                                td { (c.count.calls) }
                                td { (layout::time_ms(c.count.first_ms)) }
                                td { (layout::time_ms(c.count.last_ms)) }
                            }
                        }
                    }
                }
            }
            @if let Some(after) = next { a href=(format!("/audit?{}", f.query_string(Some(after)))) { "Next page" } }
        },
    );
    Ok(body.into_response())
}

/// `GET /audit/verify`.
pub async fn verify(State(app): State<AppState>, s: Session) -> Result<Response, WebError> {
    let v = workflow::verify(&app, &s.principal).await?;
    let body = layout::page(
        "Audit chain",
        Some(&s),
        html! {
            h1 { "Audit chain" }
            @if v.ok {
                p #chain-state { strong { "Verified: " } "every link of the chain holds (" (v.records) " records)." }
            } @else {
                div.error-summary role="alert" #chain-state {
                    p { strong { "Broken: " } "the chain does not verify." }
                    @if let Some(b) = &v.first_broken { p { "First broken link at record " (b.seq) ": " (b.reason) } }
                }
            }
            p { a href="/audit" { "Back to the audit log" } }
        },
    );
    Ok(body.into_response())
}

async fn all(app: &AppState, s: &Session, f: &Filters) -> Result<Vec<Record>, WebError> {
    let mut q = f.query(1000)?;
    let mut out = Vec::new();
    loop {
        let page = workflow::audit(app, &s.principal, &q).await?;
        let full = page.len() == 1000;
        q.after = page.last().map(|r| r.seq);
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// `GET /audit/export.jsonl`.
pub async fn export_jsonl(
    State(app): State<AppState>,
    s: Session,
    Query(f): Query<Filters>,
) -> Result<Response, WebError> {
    let mut out = String::new();
    for r in all(&app, &s, &f).await? {
        out.push_str(&serde_json::to_string(&r).unwrap_or_default());
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"jitgate-audit.jsonl\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// One CSV cell: quoted, quotes doubled, and a leading `=`, `+`, `-` or
/// `@` defused so that a spreadsheet does not run a hostile reason as a
/// formula.
pub fn csv_cell(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

/// `GET /audit/export.csv`.
pub async fn export_csv(
    State(app): State<AppState>,
    s: Session,
    Query(f): Query<Filters>,
) -> Result<Response, WebError> {
    let mut out = String::from("seq,at,actor,action,resource,request_id,grant_id,channel,details,prev_hash,hash\r\n");
    for r in all(&app, &s, &f).await? {
        let cells = [
            r.seq.to_string(),
            r.at.to_string(),
            r.actor,
            r.action,
            r.resource.unwrap_or_default(),
            r.request_id.unwrap_or_default(),
            r.grant_id.unwrap_or_default(),
            r.channel.unwrap_or_default(),
            r.details.to_string(),
            r.prev_hash,
            r.hash,
        ];
        out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"jitgate-audit.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "\"plain\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "\"'-1\"");
    }

    #[test]
    fn dates_are_utc_days_and_anything_else_is_refused() {
        assert_eq!(day_start_ms("1970-01-02"), Some(DAY_MS));
        assert_eq!(day_start_ms("2026-12-02"), Some(1_796_169_600_000));
        for bad in [
            "2026-13-01",
            "2026-12-2",
            "02/12/2026",
            "2026-12-02T00:00:00Z",
            "",
            "yesterday",
        ] {
            assert_eq!(day_start_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_until_day_is_included() {
        let f = Filters {
            from: Some("2026-12-01".into()),
            until: Some("2026-12-01".into()),
            ..Filters::default()
        };
        let q = f.query(10).unwrap();
        assert_eq!(q.until_ms.unwrap() - q.from_ms.unwrap(), DAY_MS);
        let bad = Filters {
            from: Some("tomorrow".into()),
            ..Filters::default()
        };
        assert_eq!(bad.query(10).unwrap_err().code(), "invalid_form");
    }
}
