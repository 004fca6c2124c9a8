//! What a grant would allow: a requested scope laid over the protected
//! API's OpenAPI document, before anyone approves it.
//!
//! Pure functions only. Matching uses the grant crate's own scope functions
//! ([`grant::scope::pattern_covers`], [`grant::scope::pattern_matches`],
//! [`grant::scope::method_matches`]), so the preview says exactly what the
//! proxy will enforce: an operation is covered when every path of its
//! template is allowed, partly covered when some are (a rule that names one
//! id), and a rule that reaches no documented operation is flagged, as is a
//! rule that takes everything under a prefix.

pub mod document;

use grant::scope::{method_matches, pattern_covers, pattern_matches, ScopeRule};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use self::document::{ApiDocument, DocumentError, Operation};

/// How much of an operation's paths a scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Every path of the template.
    All,
    /// Only some (a rule names literal values where the template has a
    /// parameter).
    Some,
}

/// An operation a scope allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CoveredOperation {
    /// The operation.
    #[serde(flatten)]
    pub operation: Operation,
    /// All of its paths, or some.
    pub coverage: Coverage,
    /// Indexes of the scope rules that allow it (from 0).
    pub rules: Vec<usize>,
}

/// What a finding about one rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The rule's path reaches no documented operation with its methods
    /// (often a typo).
    MatchesNothing,
    /// The path ends in `**`: it allows everything under a prefix,
    /// including operations added to the API later.
    WholePrefix,
    /// The rule allows any method (`*`).
    AnyMethod,
}

/// A finding about one path of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleFinding {
    /// Index of the rule (from 0).
    pub rule: usize,
    /// The path pattern concerned.
    pub path: String,
    /// What was found.
    pub kind: FindingKind,
    /// For `whole_prefix`: the prefix (`/v1/invoices`).
    pub prefix: Option<String>,
    /// Documented operations this path allows, at least in part.
    pub operations: usize,
}

/// The preview of a scope against an API document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// The document's `info.title`.
    pub api_title: String,
    /// The document's `info.version`.
    pub api_version: String,
    /// Operations in the document.
    pub total_operations: usize,
    /// Operations the scope allows, wholly or in part.
    pub covered: Vec<CoveredOperation>,
    /// Operations the scope does not allow.
    pub not_covered: Vec<Operation>,
    /// Rules worth a second look.
    pub findings: Vec<RuleFinding>,
}

/// A path no real request can have but both patterns match, if one
/// exists; checked with the grant crate's matcher before it is returned.
fn common_path(a: &str, b: &str) -> Option<String> {
    fn segs(p: &str) -> Vec<&str> {
        p.split('/').filter(|s| !s.is_empty()).collect()
    }
    fn concrete(s: &str) -> &str {
        if s == "*" {
            "x"
        } else {
            s
        }
    }
    let (sa, sb) = (segs(a), segs(b));
    let mut out: Vec<&str> = Vec::new();
    let mut i = 0;
    loop {
        match (sa.get(i).copied(), sb.get(i).copied()) {
            (Some("**"), _) => {
                out.extend(sb.iter().skip(i).filter(|s| **s != "**").map(|s| concrete(s)));
                break;
            }
            (_, Some("**")) => {
                out.extend(sa.iter().skip(i).map(|s| concrete(s)));
                break;
            }
            (None, None) => break,
            (Some("*"), Some(s)) | (Some(s), Some("*")) => out.push(concrete(s)),
            (Some(x), Some(y)) if x == y => out.push(x),
            _ => return None,
        }
        i += 1;
    }
    let path = format!("/{}", out.join("/"));
    (pattern_matches(a.as_bytes(), path.as_bytes()) && pattern_matches(b.as_bytes(), path.as_bytes())).then_some(path)
}

/// How much of `op` one rule path allows (methods checked by the caller).
fn path_coverage(rule_path: &str, op: &Operation) -> Option<Coverage> {
    if pattern_covers(rule_path, &op.pattern) {
        Some(Coverage::All)
    } else {
        common_path(rule_path, &op.pattern).map(|_| Coverage::Some)
    }
}

fn rule_methods_allow(rule: &ScopeRule, method: &str) -> bool {
    rule.methods
        .iter()
        .any(|m| method_matches(m.as_bytes(), method.as_bytes()))
}

/// Lays `scope` over the document's operations.
pub fn preview(doc: &ApiDocument, scope: &[ScopeRule]) -> Preview {
    let mut covered = Vec::new();
    let mut not_covered = Vec::new();
    for op in &doc.operations {
        let mut best: Option<Coverage> = None;
        let mut rules = Vec::new();
        for (i, rule) in scope.iter().enumerate() {
            if !rule_methods_allow(rule, &op.method) {
                continue;
            }
            let c = rule
                .paths
                .iter()
                .filter_map(|p| path_coverage(p, op))
                .min_by_key(|c| *c != Coverage::All);
            if let Some(c) = c {
                rules.push(i);
                if best != Some(Coverage::All) {
                    best = Some(c);
                }
            }
        }
        match best {
            Some(coverage) => covered.push(CoveredOperation {
                operation: op.clone(),
                coverage,
                rules,
            }),
            None => not_covered.push(op.clone()),
        }
    }
    Preview {
        api_title: doc.title.clone(),
        api_version: doc.version.clone(),
        total_operations: doc.operations.len(),
        covered,
        not_covered,
        findings: findings(doc, scope),
    }
}

/// Typos, whole prefixes and any-method rules.
pub fn findings(doc: &ApiDocument, scope: &[ScopeRule]) -> Vec<RuleFinding> {
    let mut out = Vec::new();
    for (i, rule) in scope.iter().enumerate() {
        for path in &rule.paths {
            let operations = doc
                .operations
                .iter()
                .filter(|op| rule_methods_allow(rule, &op.method) && path_coverage(path, op).is_some())
                .count();
            let finding = |kind, prefix| RuleFinding {
                rule: i,
                path: path.clone(),
                kind,
                prefix,
                operations,
            };
            if operations == 0 {
                out.push(finding(FindingKind::MatchesNothing, None));
            }
            if let Some(prefix) = path.strip_suffix("/**") {
                let prefix = if prefix.is_empty() { "/" } else { prefix };
                out.push(finding(FindingKind::WholePrefix, Some(prefix.to_owned())));
            }
            if rule.methods.iter().any(|m| m == "*") {
                out.push(finding(FindingKind::AnyMethod, None));
            }
        }
    }
    out
}

/// At most `max` lines of [`render`] (the summary first, then what is
/// allowed, then findings before what is not allowed), for chat messages,
/// which have a size limit; says how many lines were left out.
pub fn render_short(p: &Preview, max: usize) -> Vec<String> {
    let all = render(p);
    // Findings matter more to an approver than the list of what is not allowed.
    let (denied, rest): (Vec<String>, Vec<String>) = all.into_iter().partition(|l| l.starts_with("  - "));
    let mut ordered = rest;
    ordered.extend(denied);
    let total = ordered.len();
    if total <= max {
        return ordered;
    }
    let mut out: Vec<String> = ordered.into_iter().take(max.saturating_sub(1)).collect();
    out.push(format!("  ... {} more lines", total - out.len()));
    out
}

/// The preview as plain lines of text, for the CLI and chat messages.
pub fn render(p: &Preview) -> Vec<String> {
    let mut lines = vec![format!(
        "{} {}: {} of {} operations allowed",
        p.api_title,
        p.api_version,
        p.covered.len(),
        p.total_operations
    )];
    for c in &p.covered {
        let part = match c.coverage {
            Coverage::All => "",
            Coverage::Some => " (some paths only)",
        };
        lines.push(format!("  + {}{part}", describe(&c.operation)));
    }
    for op in &p.not_covered {
        lines.push(format!("  - {}", describe(op)));
    }
    for f in &p.findings {
        let what = match f.kind {
            FindingKind::MatchesNothing => "matches no documented operation (typo?)".to_owned(),
            FindingKind::WholePrefix => format!(
                "allows everything under {} ({} operations now, and any added later)",
                f.prefix.as_deref().unwrap_or("/"),
                f.operations
            ),
            FindingKind::AnyMethod => "allows any method".to_owned(),
        };
        lines.push(format!("  ! rule {} {}: {what}", f.rule, f.path));
    }
    lines
}

fn describe(op: &Operation) -> String {
    let mut s = format!("{} {}", op.method, op.template);
    if let Some(id) = &op.operation_id {
        s.push_str(&format!(" [{id}]"));
    }
    if let Some(summary) = &op.summary {
        s.push_str(&format!(" {summary}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, template: &str) -> Operation {
        Operation {
            method: method.into(),
            template: template.into(),
            pattern: document::template_pattern(template).unwrap(),
            operation_id: Some(format!("{method}{template}")),
            summary: None,
        }
    }

    fn api() -> ApiDocument {
        ApiDocument {
            title: "Invoices".into(),
            version: "1".into(),
            operations: vec![
                op("GET", "/v1/invoices"),
                op("POST", "/v1/invoices"),
                op("GET", "/v1/invoices/{id}"),
                op("DELETE", "/v1/invoices/{id}"),
                op("GET", "/v1/invoices/{id}/lines/{line}"),
                op("GET", "/v1/reports"),
            ],
        }
    }

    fn names(p: &Preview) -> Vec<String> {
        p.covered
            .iter()
            .map(|c| format!("{} {} {:?}", c.operation.method, c.operation.template, c.coverage))
            .collect()
    }

    #[test]
    fn a_parameter_segment_is_one_segment_as_the_proxy_matches_it() {
        let p = preview(&api(), &[ScopeRule::new(&["GET"], &["/v1/invoices/*"])]);
        assert_eq!(names(&p), vec!["GET /v1/invoices/{id} All"]);
        assert_eq!(p.not_covered.len(), 5);
        assert!(p.findings.is_empty());
    }

    #[test]
    fn a_literal_id_covers_some_paths_of_its_template() {
        let p = preview(&api(), &[ScopeRule::new(&["GET"], &["/v1/invoices/INV-9"])]);
        assert_eq!(names(&p), vec!["GET /v1/invoices/{id} Some"]);
    }

    #[test]
    fn a_double_star_rule_is_flagged_as_a_whole_prefix() {
        let p = preview(&api(), &[ScopeRule::new(&["GET"], &["/v1/invoices/**"])]);
        assert_eq!(
            names(&p),
            vec![
                "GET /v1/invoices All",
                "GET /v1/invoices/{id} All",
                "GET /v1/invoices/{id}/lines/{line} All"
            ]
        );
        assert_eq!(
            p.findings,
            vec![RuleFinding {
                rule: 0,
                path: "/v1/invoices/**".into(),
                kind: FindingKind::WholePrefix,
                prefix: Some("/v1/invoices".into()),
                operations: 3,
            }]
        );
    }

    #[test]
    fn a_rule_that_reaches_nothing_is_flagged_as_a_typo() {
        let scope = [
            ScopeRule::new(&["GET"], &["/v1/invoice/*"]),
            ScopeRule::new(&["POST"], &["/v1/reports"]),
            ScopeRule::new(&["GET"], &["/v1/reports"]),
        ];
        let p = preview(&api(), &scope);
        assert_eq!(names(&p), vec!["GET /v1/reports All"]);
        assert_eq!(p.covered[0].rules, vec![2]);
        let typos: Vec<(usize, &str)> = p
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::MatchesNothing)
            .map(|f| (f.rule, f.path.as_str()))
            .collect();
        assert_eq!(typos, vec![(0, "/v1/invoice/*"), (1, "/v1/reports")]);
    }

    #[test]
    fn any_method_is_flagged_and_get_does_not_imply_head() {
        let p = preview(&api(), &[ScopeRule::new(&["*"], &["/v1/invoices/*"])]);
        assert_eq!(
            names(&p),
            vec!["GET /v1/invoices/{id} All", "DELETE /v1/invoices/{id} All"]
        );
        assert_eq!(p.findings.len(), 1);
        assert_eq!(p.findings[0].kind, FindingKind::AnyMethod);
        let head = ApiDocument {
            operations: vec![op("HEAD", "/v1/reports")],
            ..api()
        };
        assert!(preview(&head, &[ScopeRule::new(&["GET"], &["/v1/reports"])])
            .covered
            .is_empty());
    }

    #[test]
    fn every_covered_operation_has_a_path_the_proxy_would_allow() {
        // The preview's answer, checked against the enforcing function.
        let scope = [
            ScopeRule::new(&["GET", "DELETE"], &["/v1/invoices/*", "/v1/*/INV-1/**"]),
            ScopeRule::new(&["GET"], &["/**"]),
        ];
        let p = preview(&api(), &scope);
        for c in &p.covered {
            let path = common_path(&c.operation.pattern, &c.operation.pattern).unwrap();
            let allowed = c
                .rules
                .iter()
                .any(|&i| scope[i].allows(c.operation.method.as_bytes(), path.as_bytes()))
                || c.coverage == Coverage::Some;
            assert!(allowed, "{c:?}");
        }
        for op in &p.not_covered {
            let path = common_path(&op.pattern, &op.pattern).unwrap();
            assert!(
                !scope.iter().any(|r| r.allows(op.method.as_bytes(), path.as_bytes())),
                "{op:?}"
            );
        }
    }

    #[test]
    fn short_renderings_keep_findings_before_what_is_not_allowed() {
        let p = preview(&api(), &[ScopeRule::new(&["GET"], &["/v1/invoices/**"])]);
        let lines = render_short(&p, 6);
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "Invoices 1: 3 of 6 operations allowed");
        assert!(lines[4].starts_with("  ! rule 0 /v1/invoices/**: allows everything under /v1/invoices"));
        assert_eq!(lines[5], "  ... 3 more lines");
        assert_eq!(render_short(&p, 100), {
            let mut all = render(&p);
            let denied: Vec<String> = all.drain(4..7).collect();
            all.extend(denied);
            all
        });
    }

    #[test]
    fn common_paths_exist_only_where_both_patterns_match() {
        assert_eq!(common_path("/a/*", "/a/b").as_deref(), Some("/a/b"));
        assert_eq!(common_path("/a/**", "/a/*/c").as_deref(), Some("/a/x/c"));
        assert_eq!(common_path("/**", "/").as_deref(), Some("/"));
        assert_eq!(common_path("/a/*", "/a"), None);
        assert_eq!(common_path("/a/b", "/a/c"), None);
        assert_eq!(common_path("/a/*/c", "/a/b/**").as_deref(), Some("/a/b/c"));
    }
}
