//! Pieces several pages show: a request's full context (who with their
//! groups, what, when, why, votes), the scope as a readable list, the time
//! left on a grant, and the approve/deny forms.

use maud::{html, Markup};

use crate::api::AppState;
use crate::auth::Principal;
use crate::policy;
use crate::preview::{Coverage, FindingKind, Operation, Preview};
use crate::requests::{AccessRequest, Rule};
use crate::states::{RequestState, VoteDecision};
use crate::web::layout::{self, shown};
use crate::web::session::Session;

/// The scope as a list people read: `GET, HEAD on /v1/invoices/**`.
pub fn scope(rules: &[Rule]) -> Markup {
    html! {
        ul.scope {
            @for r in rules {
                li {
                    strong { (r.methods.join(", ")) } " on "
                    (r.paths.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", "))
                }
            }
        }
    }
}

/// What a scope allows in the resource's API (its OpenAPI document): the
/// operations covered, the rules worth a second look, and, folded, the
/// operations not covered. Document text is shown like any stored text.
pub fn preview(p: &Preview) -> Markup {
    let op = |o: &Operation| {
        html! {
            strong { (o.method) } " " code { (shown(&o.template)) }
            @if let Some(s) = &o.summary { " — " (shown(s)) }
        }
    };
    html! {
        section.preview aria-label="What this scope allows" {
            p {
                strong { "What this allows in " (shown(&p.api_title)) " " (shown(&p.api_version)) ": " }
                (p.covered.len()) " of " (p.total_operations) " operations"
            }
            @if !p.findings.is_empty() {
                ul.findings {
                    @for f in &p.findings {
                        li {
                            span.visually-hidden { "Warning: " }
                            "Rule " (f.rule + 1) " path " code { (shown(&f.path)) } " "
                            @match f.kind {
                                FindingKind::MatchesNothing => "matches no documented operation (a typo?)",
                                FindingKind::WholePrefix => {
                                    "allows everything under " code { (shown(f.prefix.as_deref().unwrap_or("/"))) }
                                    " (" (f.operations) " operations now, and any added later)"
                                },
                                FindingKind::AnyMethod => "allows any method",
                            }
                        }
                    }
                }
            }
            @if !p.covered.is_empty() {
                ul.covered {
                    @for c in &p.covered {
                        li { (op(&c.operation)) @if c.coverage == Coverage::Some { " (some paths only)" } }
                    }
                }
            }
            @if !p.not_covered.is_empty() {
                details {
                    summary { (p.not_covered.len()) " operations not allowed" }
                    ul { @for o in &p.not_covered { li { (op(o)) } } }
                }
            }
        }
    }
}

/// Votes so far over votes needed.
pub fn approvals(r: &AccessRequest) -> String {
    let yes = r.votes.iter().filter(|v| v.decision == VoteDecision::Approve).count();
    format!("{yes} of {}", r.approvals_required)
}

/// Time left on an active grant, in words; for a scheduled grant whose
/// window has not opened, how long until it does.
pub fn time_left(r: &AccessRequest, now_ms: i64) -> Option<String> {
    let g = r.grant.as_ref()?;
    let now_s = now_ms.div_euclid(1000);
    (r.state == RequestState::Approved).then(|| window_left(g.not_before, g.expires_at, now_s))
}

/// `45 min left`, or `starts in 2 h` before the window opens.
pub fn window_left(not_before: i64, expires_at: i64, now_s: i64) -> String {
    if not_before > now_s {
        format!("starts in {}", layout::duration(not_before - now_s))
    } else {
        format!("{} left", layout::duration(expires_at - now_s))
    }
}

/// The preview of a scope, when the resource names an API document.
pub fn scope_preview(app: &AppState, resource: &str, rules: &[Rule]) -> Option<Preview> {
    let scope: Vec<grant::scope::ScopeRule> = rules.iter().cloned().map(Into::into).collect();
    app.cfg.resource(resource)?.preview(&scope)
}

/// Whether the console offers this person a vote on the request: an
/// approver of its resource who is not its requester (the server refuses
/// the others anyway).
pub fn may_vote(app: &AppState, p: &Principal, r: &AccessRequest) -> bool {
    r.state == RequestState::Pending
        && app
            .cfg
            .resource(&r.resource)
            .is_some_and(|res| policy::can_approve(res, p))
        && !policy::same_person(&r.requester, None, p, app.cfg.auth.user_match)
        && !r.votes.iter().any(|v| v.approver == p.id)
}

/// Who, what, why of a request.
pub fn context(app: &AppState, r: &AccessRequest) -> Markup {
    html! {
        dl.context {
            dt { "Requester" }
            dd {
                (shown(&r.requester))
                @if let Some(groups) = r.requester_groups.as_ref().filter(|g| !g.is_empty()) {
                    span.groups { " (" (groups.iter().map(|g| shown(g)).collect::<Vec<_>>().join(", ")) ")" }
                }
            }
            dt { "Resource" }
            dd {
                (shown(&r.resource))
                @if let Some(res) = app.cfg.resource(&r.resource) { span.muted { " — " (res.description) } }
            }
            dt { "Scope" }
            dd {
                (scope(&r.scope))
                @if let Some(p) = scope_preview(app, &r.resource, &r.scope) { (preview(&p)) }
            }
            dt { "Duration" }
            dd { (layout::duration(r.duration_seconds)) }
            dt { "Starts" }
            dd.starts {
                @match r.starts_at {
                    Some(at) => { (layout::time_s(at)) " (scheduled)" },
                    None => "when approved",
                }
            }
            dt { "Source restriction" }
            dd {
                @match &r.source_cidrs {
                    Some(list) => (list.join(", ")),
                    None => "none (any address)",
                }
            }
            dt { "Reason" }
            dd.reason { (shown(&r.reason)) }
            dt { "Ticket" }
            dd {
                @match &r.ticket {
                    Some(t) => @match app.cfg.console.ticket_link(t) {
                        Some(url) => a href=(url) rel="noopener noreferrer" { (shown(t)) },
                        None => (shown(t)),
                    },
                    None => "none",
                }
            }
            @if r.break_glass { dt { "Break-glass" } dd { "yes — emergency access, reviewed after the fact" } }
            dt { "Requested" }
            dd { (layout::time_ms(r.created_at)) }
            dt { "Approvals" }
            dd { (approvals(r)) }
        }
        @if !r.votes.is_empty() {
            h3 { "Votes" }
            ul {
                @for v in &r.votes {
                    li {
                        strong { (shown(&v.approver)) } " " (v.decision.as_str()) " (" (v.channel) ", " (layout::time_ms(v.at)) ")"
                        @if let Some(c) = &v.comment { ": " span.reason { (shown(c)) } }
                    }
                }
            }
        }
    }
}

/// Approve and deny, each with a comment.
pub fn vote_forms(s: &Session, r: &AccessRequest) -> Markup {
    html! {
        div.actions {
            (vote_form(s, &r.id, "approve", "Approve", "primary"))
            (vote_form(s, &r.id, "deny", "Deny", "danger"))
        }
    }
}

fn vote_form(s: &Session, id: &str, action: &str, label: &str, class: &str) -> Markup {
    let field = format!("{action}-comment-{id}");
    html! {
        form method="post" action=(format!("/requests/{id}/{action}")) {
            (layout::csrf_field(s))
            div.field {
                label for=(field) { "Comment (optional)" }
                input type="text" name="comment" id=(field) maxlength="2000";
            }
            button class=(class) type="submit" { (label) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::window_left;

    #[test]
    fn a_window_not_yet_open_says_when_it_starts() {
        assert_eq!(window_left(1_000, 1_600, 400), "starts in 10 min");
        assert_eq!(window_left(1_000, 1_600, 1_000), "10 min left");
        assert_eq!(window_left(1_000, 1_600, 1_300), "5 min left");
    }
}
