//! Per-grant usage rows from proxy decisions.
//!
//! A decision is counted under its grant, method, operation and outcome.
//! The operation is the API document's path template when the resource
//! names one (`/v1/invoices/{id}`), matched with the grant crate's own
//! pattern matching, else the request path as the proxy saw it (without
//! its query). A batch is summed in memory first, so a proxy's batch of
//! thousands of calls to one operation is one upsert.

use std::collections::BTreeMap;

use sqlx::AnyConnection;

use crate::preview::ApiDocument;
use crate::store::usage::{self, UsageRow};
use crate::store::Backend;

/// What one usage row counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageKey {
    /// The grant.
    pub grant_id: String,
    /// The resource.
    pub resource: String,
    /// The request method.
    pub method: String,
    /// The operation's template, or the path.
    pub operation: String,
    /// The decision's outcome code (`allowed`, `scope_denied`, ...).
    pub outcome: String,
}

/// Calls and first/last time (ms) of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// How many decisions.
    pub calls: i64,
    /// The earliest.
    pub first_at: i64,
    /// The latest.
    pub last_at: i64,
}

/// One decision, as far as usage needs it.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// The grant, if the request carried one.
    pub grant_id: Option<&'a str>,
    /// The resource.
    pub resource: Option<&'a str>,
    /// Method.
    pub method: &'a str,
    /// Path, possibly with a query.
    pub path: &'a str,
    /// Outcome code.
    pub outcome: &'a str,
    /// When (ms); the first of them for counted requests.
    pub time_ms: i64,
    /// The last of them (ms), for counted requests.
    pub last_ms: i64,
    /// How many requests: 1, or what a proxy counted.
    pub calls: i64,
    /// For counted requests: the scope rule that allowed them (from 0).
    /// They are used under that rule: the proxy did not keep their paths.
    pub rule: Option<u16>,
}

/// The documented operation `method path` is, if any: of several
/// templates that match (`/pet/{id}` and `/pet/findByStatus`), the one with
/// the fewest parameters, as routers pick it.
pub fn operation_of<'d>(doc: &'d ApiDocument, method: &str, path: &str) -> Option<&'d str> {
    let path = path.split('?').next().unwrap_or(path);
    doc.operations
        .iter()
        .filter(|op| op.method == method && grant::scope::pattern_matches(op.pattern.as_bytes(), path.as_bytes()))
        .min_by_key(|op| op.pattern.matches('*').count())
        .map(|op| op.template.as_str())
}

/// Sums a batch by key; decisions without a grant are not usage.
pub fn tally<'a>(
    decisions: impl IntoIterator<Item = Decision<'a>>,
    document_of: impl Fn(&str) -> Option<&'a ApiDocument>,
) -> BTreeMap<UsageKey, Tally> {
    let mut out: BTreeMap<UsageKey, Tally> = BTreeMap::new();
    for d in decisions {
        let Some(grant_id) = d.grant_id else { continue };
        let resource = d.resource.unwrap_or_default();
        let path = d.path.split('?').next().unwrap_or(d.path);
        let operation = match d.rule {
            Some(rule) => format!("scope rule {}", u32::from(rule) + 1),
            None => document_of(resource)
                .and_then(|doc| operation_of(doc, d.method, path))
                .unwrap_or(path)
                .to_owned(),
        };
        let key = UsageKey {
            grant_id: grant_id.to_owned(),
            resource: resource.to_owned(),
            method: d.method.to_owned(),
            operation,
            outcome: d.outcome.to_owned(),
        };
        out.entry(key)
            .and_modify(|t| {
                t.calls += d.calls;
                t.first_at = t.first_at.min(d.time_ms);
                t.last_at = t.last_at.max(d.last_ms);
            })
            .or_insert(Tally {
                calls: d.calls,
                first_at: d.time_ms,
                last_at: d.last_ms,
            });
    }
    out
}

/// Adds a batch's tallies, inside the caller's transaction.
pub async fn record(
    conn: &mut AnyConnection,
    backend: Backend,
    tallies: &BTreeMap<UsageKey, Tally>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<UsageRow> = tallies
        .iter()
        .map(|(k, t)| UsageRow {
            grant_id: k.grant_id.clone(),
            resource: k.resource.clone(),
            method: k.method.clone(),
            operation: k.operation.clone(),
            outcome: k.outcome.clone(),
            calls: t.calls,
            first_at: t.first_at,
            last_at: t.last_at,
        })
        .collect();
    usage::add(conn, backend, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> ApiDocument {
        ApiDocument::parse(
            "openapi: 3.1.0\ninfo: {title: T, version: '1'}\npaths:\n  /pet/{id}:\n    get: {operationId: getPet}\n  /pet/findByStatus:\n    get: {operationId: find}\n",
        )
        .unwrap()
    }

    fn d<'a>(grant: Option<&'a str>, method: &'a str, path: &'a str, outcome: &'a str, t: i64) -> Decision<'a> {
        Decision {
            grant_id: grant,
            resource: Some("pets"),
            method,
            path,
            outcome,
            time_ms: t,
            last_ms: t,
            calls: 1,
            rule: None,
        }
    }

    #[test]
    fn a_literal_template_wins_over_a_parameter_one() {
        let doc = doc();
        assert_eq!(
            operation_of(&doc, "GET", "/pet/findByStatus?x=1"),
            Some("/pet/findByStatus")
        );
        assert_eq!(operation_of(&doc, "GET", "/pet/7"), Some("/pet/{id}"));
        assert_eq!(operation_of(&doc, "POST", "/pet/7"), None);
        assert_eq!(operation_of(&doc, "GET", "/pet/7/x"), None);
    }

    #[test]
    fn a_batch_is_summed_per_grant_operation_and_outcome() {
        let doc = doc();
        let batch = [
            d(Some("g1"), "GET", "/pet/7", "allowed", 30),
            d(Some("g1"), "GET", "/pet/8", "allowed", 10),
            d(Some("g1"), "DELETE", "/pet/8?force=1", "scope_denied", 20),
            d(None, "GET", "/pet/9", "grant_missing", 5),
        ];
        let with_doc = tally(batch, |_| Some(&doc));
        let rows: Vec<(&str, &str, &str, Tally)> = with_doc
            .iter()
            .map(|(k, t)| (k.method.as_str(), k.operation.as_str(), k.outcome.as_str(), *t))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "DELETE",
                    "/pet/8",
                    "scope_denied",
                    Tally {
                        calls: 1,
                        first_at: 20,
                        last_at: 20
                    }
                ),
                (
                    "GET",
                    "/pet/{id}",
                    "allowed",
                    Tally {
                        calls: 2,
                        first_at: 10,
                        last_at: 30
                    }
                ),
            ]
        );
        let without = tally(batch, |_| None);
        assert_eq!(without.len(), 3, "paths, not templates, without a document");
    }
}
