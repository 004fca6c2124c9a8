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

use crate::config::Resource;
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

/// One requester's requests in the period and how many of their grants
/// were used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequesterInsight {
    /// Who asked.
    pub requester: String,
    /// Requests made in the period.
    pub requests: i64,
    /// Grants issued to them in the period.
    pub grants: i64,
    /// Of those, grants a proxy allowed at least one call under.
    pub used_grants: i64,
    /// They often ask but rarely use what they get ([`rarely_uses`]): a
    /// standing need better met by a narrower auto-approve rule, or access
    /// asked for just in case.
    pub rarely_uses: bool,
    /// How that was derived.
    pub derived_from: String,
}

/// How long approvers took on one resource's requests in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalTime {
    /// The resource.
    pub resource: String,
    /// The groups that approve it (from the configuration).
    pub approver_groups: Vec<String>,
    /// Requests approved by people (not auto-approved, not break-glass).
    pub approved: i64,
    /// Median time from request to approval, seconds.
    pub p50_seconds: i64,
    /// 90th percentile, seconds.
    pub p90_seconds: i64,
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
    /// Per requester; those who rarely use their grants first, then by
    /// requests (at most 100).
    pub requesters: Vec<RequesterInsight>,
    /// Per resource approved by people in the period.
    pub approval_times: Vec<ApprovalTime>,
}

/// The fewest grants before "rarely uses" is said of anyone.
pub const RARELY_MIN_GRANTS: i64 = 3;

/// Someone rarely uses their grants when they received at least
/// [`RARELY_MIN_GRANTS`] and used at most a third of them.
pub fn rarely_uses(grants: i64, used: i64) -> bool {
    grants >= RARELY_MIN_GRANTS && used * 3 <= grants
}

/// The `p`th percentile (nearest rank, 1 to 100) of sorted values; `None`
/// for none.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p.clamp(1, 100)) * sorted.len() as u64).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

/// Approval times per resource from (resource, waited ms) pairs.
pub fn approval_times(waits: Vec<(String, i64)>, approvers: &BTreeMap<String, Vec<String>>) -> Vec<ApprovalTime> {
    let mut by_resource: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (resource, waited_ms) in waits {
        by_resource.entry(resource).or_default().push(waited_ms.max(0) / 1000);
    }
    by_resource
        .into_iter()
        .map(|(resource, mut seconds)| {
            seconds.sort_unstable();
            ApprovalTime {
                approver_groups: approvers.get(&resource).cloned().unwrap_or_default(),
                approved: seconds.len() as i64,
                p50_seconds: percentile(&seconds, 50).unwrap_or_default(),
                p90_seconds: percentile(&seconds, 90).unwrap_or_default(),
                resource,
            }
        })
        .collect()
}

/// Per requester: requests, grants and grants used.
fn requesters(
    requests: Vec<(String, i64)>,
    grants: &[store::grants::Issued],
    used: &std::collections::BTreeSet<String>,
    since_s: i64,
) -> Vec<RequesterInsight> {
    let mut counts: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for (requester, n) in requests {
        counts.entry(requester).or_default().0 = n;
    }
    for g in grants {
        let c = counts.entry(g.subject.clone()).or_default();
        c.1 += 1;
        if used.contains(&g.id) {
            c.2 += 1;
        }
    }
    let mut out: Vec<RequesterInsight> = counts
        .into_iter()
        .map(|(requester, (requests, grants, used_grants))| RequesterInsight {
            rarely_uses: rarely_uses(grants, used_grants),
            derived_from: format!(
                "{requests} requests and {grants} grants since {since_s} (Unix seconds), {used_grants} of the grants used; \
                 rarely: at least {RARELY_MIN_GRANTS} grants and at most a third used"
            ),
            requester,
            requests,
            grants,
            used_grants,
        })
        .collect();
    out.sort_by(|a, b| {
        b.rarely_uses
            .cmp(&a.rarely_uses)
            .then_with(|| b.requests.cmp(&a.requests))
            .then_with(|| a.requester.cmp(&b.requester))
    });
    out.truncate(100);
    out
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

/// Reads the report for grants issued and requests made since `since_s`
/// (`resources`: the configured ones, for their approver groups).
pub async fn report(db: &Db, since_s: i64, resources: &[Resource]) -> Result<Insights, sqlx::Error> {
    let approvers: BTreeMap<String, Vec<String>> = resources
        .iter()
        .map(|r| (r.id.clone(), r.approvers.iter().cloned().collect()))
        .collect();
    let grants = store::grants::issued_since(&db.read, since_s).await?;
    let usage = store::usage::of_grants_issued_since(&db.read, since_s).await?;
    let since_ms = since_s.saturating_mul(1000);
    let requests = store::requests::count_by_requester_since(&db.read, since_ms).await?;
    let waits = store::requests::approval_waits_since(&db.read, since_ms).await?;
    let mut resources: BTreeMap<String, (Vec<String>, CallsByOperation)> = BTreeMap::new();
    let mut used_grants = std::collections::BTreeSet::new();
    let mut denials: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
    for g in &grants {
        resources.entry(g.resource.clone()).or_default().0.push(g.id.clone());
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
        requesters: requesters(requests, &grants, &used_grants, since_s),
        approval_times: approval_times(waits, &approvers),
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

    #[test]
    fn someone_rarely_uses_grants_with_three_or_more_and_a_third_or_less_used() {
        assert!(rarely_uses(3, 1));
        assert!(rarely_uses(9, 3));
        assert!(!rarely_uses(9, 4));
        assert!(!rarely_uses(2, 0), "too few grants to say");
        assert!(!rarely_uses(0, 0));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[60, 120, 600], 50), Some(120));
        assert_eq!(percentile(&[60, 120, 600], 90), Some(600));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&ten, 100), Some(10));
    }

    #[test]
    fn approval_times_are_per_resource_in_seconds_with_its_approver_groups() {
        let approvers = BTreeMap::from([("pay".to_owned(), vec!["payments-approvers".to_owned()])]);
        let times = approval_times(
            vec![
                ("pay".into(), 600_000),
                ("pay".into(), 60_000),
                ("pay".into(), 120_900),
                ("hr".into(), 5_000),
            ],
            &approvers,
        );
        assert_eq!(times.len(), 2);
        assert_eq!((times[0].resource.as_str(), times[0].approved), ("hr", 1));
        assert!(times[0].approver_groups.is_empty());
        assert_eq!(times[1].approver_groups, vec!["payments-approvers".to_owned()]);
        assert_eq!((times[1].p50_seconds, times[1].p90_seconds), (120, 600));
    }

    #[test]
    fn requesters_who_rarely_use_their_grants_come_first() {
        let g = |id: &str, who: &str| store::grants::Issued {
            id: id.into(),
            resource: "pay".into(),
            subject: who.into(),
        };
        let grants = [g("g1", "alice"), g("g2", "alice"), g("g3", "alice"), g("g4", "sam")];
        let used = ["g1".to_owned(), "g4".to_owned()].into();
        let out = requesters(
            vec![("alice".into(), 3), ("sam".into(), 5), ("eve".into(), 1)],
            &grants,
            &used,
            0,
        );
        let summary: Vec<(&str, i64, i64, i64, bool)> = out
            .iter()
            .map(|r| (r.requester.as_str(), r.requests, r.grants, r.used_grants, r.rarely_uses))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("alice", 3, 3, 1, true),
                ("sam", 5, 1, 1, false),
                ("eve", 1, 0, 0, false)
            ]
        );
        assert!(out[0].derived_from.contains("3 requests and 3 grants"));
    }
}
