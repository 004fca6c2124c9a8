//! The insights report (`GET /v1/insights`): per resource, the grants
//! issued in a period, those never used, what was used, and a narrower
//! scope suggested from that use; plus denial hot spots. Suggestions say
//! how they were derived and are never applied.
//!
//! [`suggest`] is the rule (pure, unit-tested); [`report`] reads the rows.

use std::collections::BTreeMap;

use grant::scope::ScopeRule;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::preview::document::template_pattern;
use crate::requests::Rule;
use crate::store::{self, Db};

/// `GET /v1/insights` query.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InsightQuery {
    /// Start of the period (grants issued at or after, Unix seconds; default: 30 days ago).
    #[param(minimum = 0)]
    pub since_s: Option<i64>,
}

/// Use of one operation in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsedOperation {
    /// Method.
    pub method: String,
    /// Documented template, or the path.
    pub operation: String,
    /// Allowed calls.
    pub calls: i64,
    /// Grants that called it.
    pub grants: i64,
}

/// A narrower scope, with how it was derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Suggestion {
    /// The scope rules that cover exactly what was used.
    pub scope: Vec<Rule>,
    /// Every used method is `GET` or `HEAD`: a candidate for an
    /// auto-approve rule.
    pub read_only: bool,
    /// How it was derived (counts, period).
    pub derived_from: String,
}

/// One resource's use in the period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceInsight {
    /// Resource id.
    pub resource: String,
    /// Grants issued in the period.
    pub grants: i64,
    /// Of those, grants with no allowed call.
    pub never_used: Vec<String>,
    /// Operations called (allowed), most called first.
    pub used: Vec<UsedOperation>,
    /// A narrower scope from that use (`null` when nothing was used).
    pub suggestion: Option<Suggestion>,
}

/// Denials of one kind.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DenialSpot {
    /// Resource.
    pub resource: String,
    /// Method.
    pub method: String,
    /// Documented template, or the path.
    pub operation: String,
    /// Denial code.
    pub outcome: String,
    /// How many.
    pub calls: i64,
}

/// The report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Insights {
    /// Period start (Unix seconds).
    pub since_s: i64,
    /// Per resource.
    pub resources: Vec<ResourceInsight>,
    /// Denials under grants, most frequent first (at most 50).
    pub denials: Vec<DenialSpot>,
}

/// The scope rules covering exactly the used operations: one rule per
/// pattern with the methods used on it. `None` when nothing was used.
pub fn suggest(used: &[UsedOperation], grants: i64, since_s: i64) -> Option<Suggestion> {
    let mut by_pattern: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in used {
        // A template becomes its grant pattern; a recorded path is one already.
        let Some(pattern) = template_pattern(&u.operation) else {
            continue;
        };
        let methods = by_pattern.entry(pattern).or_default();
        if !methods.contains(&u.method) {
            methods.push(u.method.clone());
            methods.sort();
        }
    }
    if by_pattern.is_empty() {
        return None;
    }
    let read_only = by_pattern.values().flatten().all(|m| m == "GET" || m == "HEAD");
    let scope = by_pattern
        .into_iter()
        .map(|(path, methods)| {
            Rule::from(ScopeRule {
                methods,
                paths: vec![path],
            })
        })
        .collect();
    let calls: i64 = used.iter().map(|u| u.calls).sum();
    Some(Suggestion {
        scope,
        read_only,
        derived_from: format!(
            "{calls} allowed calls to {} operations under {grants} grants issued since {since_s} (Unix seconds)",
            used.len()
        ),
    })
}

/// Allowed calls and calling grants per (method, operation).
type CallsByOperation = BTreeMap<(String, String), (i64, i64)>;

/// Reads the report for grants issued since `since_s`.
pub async fn report(db: &Db, since_s: i64) -> Result<Insights, sqlx::Error> {
    let grants = store::grants::issued_since(&db.read, since_s).await?;
    let usage = store::usage::of_grants_issued_since(&db.read, since_s).await?;
    let mut resources: BTreeMap<String, (Vec<String>, CallsByOperation)> = BTreeMap::new();
    let mut used_grants = std::collections::BTreeSet::new();
    let mut denials: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
    for (id, resource) in grants {
        resources.entry(resource).or_default().0.push(id);
    }
    for u in usage {
        let (grant_id, resource, method, operation, outcome, calls) =
            (u.grant_id, u.resource, u.method, u.operation, u.outcome, u.calls);
        if outcome == "allowed" {
            used_grants.insert(grant_id);
            let entry = resources
                .entry(resource)
                .or_default()
                .1
                .entry((method, operation))
                .or_default();
            entry.0 += calls;
            entry.1 += 1;
        } else {
            *denials.entry((resource, method, operation, outcome)).or_default() += calls;
        }
    }
    let resources = resources
        .into_iter()
        .map(|(resource, (ids, ops))| {
            let mut used: Vec<UsedOperation> = ops
                .into_iter()
                .map(|((method, operation), (calls, grants))| UsedOperation {
                    method,
                    operation,
                    calls,
                    grants,
                })
                .collect();
            used.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.operation.cmp(&b.operation)));
            let grants = ids.len() as i64;
            ResourceInsight {
                suggestion: suggest(&used, grants, since_s),
                never_used: ids.into_iter().filter(|id| !used_grants.contains(id)).collect(),
                resource,
                grants,
                used,
            }
        })
        .collect();
    let mut denials: Vec<DenialSpot> = denials
        .into_iter()
        .map(|((resource, method, operation, outcome), calls)| DenialSpot {
            resource,
            method,
            operation,
            outcome,
            calls,
        })
        .collect();
    denials.sort_by_key(|d| std::cmp::Reverse(d.calls));
    denials.truncate(50);
    Ok(Insights {
        since_s,
        resources,
        denials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(method: &str, operation: &str, calls: i64) -> UsedOperation {
        UsedOperation {
            method: method.into(),
            operation: operation.into(),
            calls,
            grants: 1,
        }
    }

    #[test]
    fn reads_of_one_template_suggest_one_read_only_rule() {
        let s = suggest(
            &[
                used("GET", "/v1/invoices/{id}", 9),
                used("HEAD", "/v1/invoices/{id}", 1),
            ],
            3,
            100,
        )
        .unwrap();
        assert_eq!(
            s.scope,
            vec![Rule {
                methods: vec!["GET".into(), "HEAD".into()],
                paths: vec!["/v1/invoices/*".into()]
            }]
        );
        assert!(s.read_only);
        assert_eq!(
            s.derived_from,
            "10 allowed calls to 2 operations under 3 grants issued since 100 (Unix seconds)"
        );
    }

    #[test]
    fn a_write_is_not_read_only_and_nothing_used_suggests_nothing() {
        let s = suggest(&[used("GET", "/v1/a", 1), used("POST", "/v1/refunds", 1)], 1, 0).unwrap();
        assert!(!s.read_only);
        assert_eq!(s.scope.len(), 2);
        assert_eq!(suggest(&[], 4, 0), None);
    }
}
