//! Request access: pick a resource (its description, requestable rules,
//! maximum duration, approvers, approvals needed), then build the scope
//! from its rules and give duration, an optional start (a scheduled
//! window, in UTC), reason, ticket, source blocks and, where allowed,
//! break-glass. The workflow validates; its refusals are
//! shown next to the field they concern, with an error summary on top
//! (the GOV.UK pattern).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::parts;
use crate::api::AppState;
use crate::config::Resource;
use crate::error::ApiError;
use crate::policy;
use crate::preview::Preview;
use crate::requests::{NewRequest, Rule};
use crate::web::csrf::{Fields, SessionForm};
use crate::web::error::WebError;
use crate::web::layout::{self, csrf_field};
use crate::web::session::Session;
use crate::web::workflow;
use grant::scope::ScopeRule;

/// `GET /request?resource=`.
#[derive(Debug, Deserialize)]
pub struct Pick {
    resource: Option<String>,
}

/// The form's fields, in page order (the error summary follows it).
const FIELDS: [&str; 7] = [
    "scope",
    "duration",
    "starts_at",
    "reason",
    "ticket",
    "source_cidrs",
    "break_glass",
];

/// The form field a workflow refusal concerns.
pub fn field_of(code: &str) -> &'static str {
    match code {
        c if c.starts_with("scope") => "scope",
        c if c.starts_with("duration") => "duration",
        c if c.starts_with("starts_at") => "starts_at",
        c if c.starts_with("reason") => "reason",
        c if c.starts_with("ticket") => "ticket",
        c if c.starts_with("source") => "source_cidrs",
        c if c.starts_with("break_glass") => "break_glass",
        _ => "resource",
    }
}

/// `GET /request`.
pub async fn page(State(app): State<AppState>, s: Session, Query(pick): Query<Pick>) -> Result<Response, WebError> {
    match pick.resource.as_deref().and_then(|id| app.cfg.resource(id)) {
        Some(res) if policy::can_request(res, &s.principal) => {
            Ok(form(&app, &s, res, &Fields::default(), &BTreeMap::new(), None).into_response())
        }
        _ => Ok(picker(&app, &s).into_response()),
    }
}

fn picker(app: &AppState, s: &Session) -> Markup {
    let mine: Vec<&Resource> = app
        .cfg
        .resources
        .iter()
        .filter(|r| policy::can_request(r, &s.principal))
        .collect();
    layout::page(
        "Request access",
        Some(s),
        html! {
            h1 { "Request access" }
            @if mine.is_empty() { p { "None of your groups may request access to a resource." } }
            @for r in mine {
                section.card aria-labelledby=(format!("res-{}", r.id)) {
                    h2 #(format!("res-{}", r.id)) { (r.id) }
                    p { (r.description) }
                    dl.context {
                        dt { "Requestable" } dd { (parts::scope(&r.scope.iter().cloned().map(Rule::from).collect::<Vec<_>>())) }
                        dt { "Longest grant" } dd { (layout::duration(r.max_duration_seconds as i64)) }
                        dt { "Approved by" } dd { (r.approvers.iter().cloned().collect::<Vec<_>>().join(", ")) }
                        dt { "Approvals needed" } dd { (r.approvals_required) }
                        @if r.break_glass.is_some() { dt { "Break-glass" } dd { "available to " (r.break_glass.as_ref().map(|b| b.groups.iter().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()) } }
                    }
                    a.button href=(format!("/request?resource={}", r.id)) { "Request " (r.id) }
                }
            }
        },
    )
}

fn field_error(errors: &BTreeMap<&'static str, String>, name: &str) -> Markup {
    html! {
        @if let Some(e) = errors.get(name) {
            span.error-message id=(format!("{name}-error")) { span.visually-hidden { "Error: " } (e) }
        }
    }
}

fn field_class(errors: &BTreeMap<&'static str, String>, name: &str) -> &'static str {
    if errors.contains_key(name) {
        "field has-error"
    } else {
        "field"
    }
}

fn form(
    app: &AppState,
    s: &Session,
    r: &Resource,
    values: &Fields,
    errors: &BTreeMap<&'static str, String>,
    preview: Option<&Preview>,
) -> Markup {
    let checked = |name: &str, value: &str| values.all(name).contains(&value);
    let bg_allowed = r.break_glass.as_ref().is_some_and(|b| s.principal.in_any(&b.groups));
    let title = if errors.is_empty() {
        format!("Request access to {}", r.id)
    } else {
        format!("Error: request access to {}", r.id)
    };
    let _ = app;
    layout::page(
        &title,
        Some(s),
        html! {
            h1 { "Request access to " (r.id) }
            p { (r.description) }
            @if !errors.is_empty() {
                div.error-summary role="alert" tabindex="-1" #error-summary {
                    h2 { "There is a problem" }
                    ul {
                        @for name in FIELDS.iter().chain(["resource"].iter()) {
                            @if let Some(e) = errors.get(name) { li { a href=(format!("#{name}")) { (e) } } }
                        }
                    }
                }
            }
            form method="post" action="/request" novalidate {
                (csrf_field(s))
                input type="hidden" name="resource" value=(r.id);
                @if let Some(e) = errors.get("resource") { p.error-message #resource { (e) } }
                fieldset class=(field_class(errors, "scope")) #scope {
                    legend { "Scope: what to allow" }
                    span.hint { "Tick the methods and paths you need, within each rule of the resource." }
                    (field_error(errors, "scope"))
                    @for (i, rule) in r.scope.iter().enumerate() {
                        div.card {
                            p { "Rule " (i + 1) }
                            @for m in &rule.methods {
                                @let name = format!("rule{i}_method");
                                div.check {
                                    input type="checkbox" name=(name) value=(m) id=(format!("rule{i}-m-{m}")) checked[checked(&name, m)];
                                    label for=(format!("rule{i}-m-{m}")) { (m) }
                                }
                            }
                            @for (j, p) in rule.paths.iter().enumerate() {
                                @let name = format!("rule{i}_path");
                                div.check {
                                    input type="checkbox" name=(name) value=(p) id=(format!("rule{i}-p-{j}")) checked[checked(&name, p)];
                                    label for=(format!("rule{i}-p-{j}")) { code { (p) } }
                                }
                            }
                        }
                    }
                    @if let Some(p) = preview { (parts::preview(p)) }
                }
                div class=(field_class(errors, "duration")) {
                    label for="duration" { "Duration (minutes)" }
                    span.hint { "At most " (layout::duration(r.max_duration_seconds as i64)) "." }
                    (field_error(errors, "duration"))
                    input #duration type="number" name="duration_minutes" min="1" max=(r.max_duration_seconds / 60)
                        value=(values.get("duration_minutes").unwrap_or("30")) aria-describedby=[errors.get("duration").map(|_| "duration-error")];
                }
                div class=(field_class(errors, "starts_at")) {
                    label for="starts_at" { "Start (UTC, optional)" }
                    span.hint #starts_at-hint {
                        "For access planned ahead: approvers can approve before it, and the grant works from then. "
                        "Empty: from approval."
                    }
                    (field_error(errors, "starts_at"))
                    input #starts_at type="datetime-local" step="1" name="starts_at"
                        value=(values.get("starts_at").unwrap_or_default())
                        aria-describedby=(if errors.contains_key("starts_at") { "starts_at-hint starts_at-error" } else { "starts_at-hint" });
                }
                div class=(field_class(errors, "reason")) {
                    label for="reason" { "Reason" }
                    (field_error(errors, "reason"))
                    textarea #reason name="reason" maxlength="2000" aria-describedby=[errors.get("reason").map(|_| "reason-error")] { (values.get("reason").unwrap_or_default()) }
                }
                div class=(field_class(errors, "ticket")) {
                    label for="ticket" { "Ticket (optional)" }
                    (field_error(errors, "ticket"))
                    input #ticket type="text" name="ticket" maxlength="200" value=(values.get("ticket").unwrap_or_default());
                }
                div class=(field_class(errors, "source_cidrs")) {
                    label for="source_cidrs" { "Source addresses (optional)" }
                    span.hint { "CIDR blocks, separated by commas, e.g. 10.0.0.0/8, 192.0.2.7/32. Empty: any address." }
                    (field_error(errors, "source_cidrs"))
                    input #source_cidrs type="text" name="source_cidrs" value=(values.get("source_cidrs").unwrap_or_default());
                }
                @if bg_allowed {
                    div class=(field_class(errors, "break_glass")) {
                        (field_error(errors, "break_glass"))
                        div.check {
                            input #break_glass type="checkbox" name="break_glass" value="yes" checked[values.get("break_glass").is_some()];
                            label for="break_glass" { "Break-glass: emergency access now, without approval (reviewed afterwards)" }
                        }
                    }
                }
                // The send button first: Enter in a field sends the request.
                button.primary type="submit" { "Send the request" }
                @if r.api.is_some() {
                    " "
                    button type="submit" name="intent" value="preview" { "Preview what this allows" }
                }
            }
        },
    )
}

/// The scope the ticked boxes describe, or what is wrong with it.
fn scope_of(r: &Resource, f: &Fields) -> Result<Vec<Rule>, String> {
    let mut scope = Vec::new();
    for i in 0..r.scope.len() {
        let methods: Vec<String> = f
            .all(&format!("rule{i}_method"))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let paths: Vec<String> = f.all(&format!("rule{i}_path")).into_iter().map(str::to_owned).collect();
        match (methods.is_empty(), paths.is_empty()) {
            (true, true) => {}
            (false, false) => scope.push(Rule { methods, paths }),
            _ => {
                return Err(format!(
                    "rule {}: tick at least one method and one path, or neither",
                    i + 1
                ))
            }
        }
    }
    if scope.is_empty() {
        return Err("tick at least one method and one path".to_owned());
    }
    Ok(scope)
}

/// The request the form describes, or the field errors of its shape.
pub fn parse(r: &Resource, f: &Fields) -> Result<NewRequest, BTreeMap<&'static str, String>> {
    let mut errors = BTreeMap::new();
    let scope = scope_of(r, f).unwrap_or_else(|e| {
        errors.insert("scope", e);
        Vec::new()
    });
    let minutes = f
        .text("duration_minutes")
        .and_then(|m| m.parse::<u64>().ok())
        .filter(|m| *m > 0);
    if minutes.is_none() {
        errors.insert("duration", "enter a whole number of minutes, at least 1".to_owned());
    }
    let starts_at = match f.text("starts_at").map(|t| start_time(&t)) {
        None => None,
        Some(Some(at)) => Some(at),
        Some(None) => {
            errors.insert(
                "starts_at",
                "enter a date and time like 2026-12-03 02:00 (UTC), or leave it empty".to_owned(),
            );
            None
        }
    };
    let reason = f.get("reason").unwrap_or_default().to_owned();
    if reason.trim().is_empty() {
        errors.insert("reason", "say why you need access".to_owned());
    }
    let sources: Option<Vec<String>> = f.text("source_cidrs").map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NewRequest {
        resource: r.id.clone(),
        scope,
        duration_seconds: minutes.unwrap_or(0).saturating_mul(60),
        starts_at,
        reason,
        ticket: f.text("ticket"),
        source_cidrs: sources.filter(|s| !s.is_empty()),
        break_glass: f.get("break_glass").is_some(),
        // The console does not offer device binding yet (issue 16): a
        // resource that requires it refuses this with its problem code.
        cnf_x5t_s256: None,
    })
}

/// A `datetime-local` value (`2026-12-03T02:00`, seconds optional, a
/// space accepted for the `T`), read as UTC; seconds since the epoch.
fn start_time(text: &str) -> Option<i64> {
    let t = text.trim().replacen(' ', "T", 1);
    let full = if t.len() == "2026-12-03T02:00".len() {
        format!("{t}:00Z")
    } else {
        format!("{t}Z")
    };
    let at = humantime::parse_rfc3339(&full).ok()?;
    i64::try_from(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// `POST /request`.
pub async fn create(State(app): State<AppState>, form_post: SessionForm) -> Result<Response, WebError> {
    let SessionForm { session: s, fields } = form_post;
    let Some(r) = fields.get("resource").and_then(|id| app.cfg.resource(id)) else {
        return Err(WebError::Api(ApiError::Invalid(
            "unknown_resource",
            "no such resource".into(),
        )));
    };
    let invalid = |errors: BTreeMap<&'static str, String>| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            form(&app, &s, r, &fields, &errors, None),
        )
            .into_response()
    };
    if fields.get("intent") == Some("preview") {
        // Only the scope matters here: the other fields are checked when
        // the request is sent.
        let scope = match scope_of(r, &fields) {
            Ok(scope) => scope,
            Err(e) => return Ok(invalid(BTreeMap::from([("scope", e)]))),
        };
        let rules: Vec<ScopeRule> = scope.iter().cloned().map(Into::into).collect();
        if let Err(e) = policy::may_request(r, &s.principal).and_then(|()| policy::requested_scope(r, &rules)) {
            return Ok(invalid(BTreeMap::from([(field_of(e.code()), e.to_string())])));
        }
        let shown = r.preview(&rules);
        return Ok(form(&app, &s, r, &fields, &BTreeMap::new(), shown.as_ref()).into_response());
    }
    let input = match parse(r, &fields) {
        Ok(i) => i,
        Err(errors) => return Ok(invalid(errors)),
    };
    match workflow::create(&app, &s.principal, input).await {
        Ok(created) => Ok(Redirect::to(&format!("/requests/{}", created.id)).into_response()),
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::FORBIDDEN => {
            let errors = BTreeMap::from([(field_of(e.code()), e.to_string())]);
            Ok(invalid(errors))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_refusals_land_next_to_their_field() {
        assert_eq!(field_of("duration_out_of_range"), "duration");
        assert_eq!(field_of("scope_not_allowed"), "scope");
        assert_eq!(field_of("reason_invalid"), "reason");
        assert_eq!(field_of("ticket_invalid"), "ticket");
        assert_eq!(field_of("source_cidrs_invalid"), "source_cidrs");
        assert_eq!(field_of("break_glass_not_allowed"), "break_glass");
        assert_eq!(field_of("unknown_resource"), "resource");
        assert_eq!(field_of("starts_at_invalid"), "starts_at");
    }

    #[test]
    fn a_start_is_read_as_utc_with_or_without_seconds() {
        assert_eq!(start_time("2026-12-03T02:00"), Some(1_796_263_200));
        assert_eq!(start_time("2026-12-03 02:00:30"), Some(1_796_263_230));
        assert_eq!(start_time("2026-12-03T02:00+01:00"), None);
        assert_eq!(start_time("tomorrow"), None);
    }
}
