//! From an issuer's claims to jitgate groups: which claim holds them
//! (dotted paths reach nested claims such as Keycloak's
//! `realm_access.roles`), an optional prefix that marks the groups meant
//! for jitgate (kept, and stripped), renaming, and for workload issuers the
//! groups they may place callers in at all. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// How one issuer's group claim becomes jitgate groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMapping {
    /// Claim name or dotted path (`groups`, `realm_access.roles`).
    pub claim: String,
    /// Only groups with this prefix count; it is removed (`jitgate-dev` → `dev`).
    pub prefix: Option<String>,
    /// Renaming after the prefix is removed (IdP name → jitgate group).
    pub rename: BTreeMap<String, String>,
    /// The only groups this issuer may place callers in (`None`: any).
    pub allowed: Option<BTreeSet<String>>,
}

/// The claim at a dotted path.
pub fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    // An exact top-level name wins (claims may contain dots, such as
    // namespaced URLs).
    claims
        .get(path)
        .or_else(|| path.split('.').try_fold(claims, |v, part| v.get(part)))
}

/// The caller's jitgate groups.
pub fn map_groups(claims: &Value, m: &GroupMapping) -> BTreeSet<String> {
    let raw: Vec<&str> = match claim_at(claims, &m.claim) {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split_whitespace().collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .filter_map(|g| match &m.prefix {
            Some(p) => g.strip_prefix(p.as_str()),
            None => Some(g),
        })
        .filter(|g| !g.is_empty())
        .map(|g| m.rename.get(g).map_or(g, String::as_str).to_owned())
        .filter(|g| m.allowed.as_ref().is_none_or(|a| a.contains(g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn groups_are_read_from_a_list_or_a_space_separated_string() {
        let m = GroupMapping {
            claim: "groups".into(),
            ..Default::default()
        };
        assert_eq!(map_groups(&json!({"groups": ["a", "b"]}), &m), set(&["a", "b"]));
        assert_eq!(map_groups(&json!({"groups": "a b"}), &m), set(&["a", "b"]));
        assert_eq!(map_groups(&json!({"groups": 3}), &m), set(&[]));
    }

    #[test]
    fn a_prefix_keeps_only_marked_groups_and_renaming_applies_after_it() {
        let m = GroupMapping {
            claim: "realm_access.roles".into(),
            prefix: Some("jitgate-".into()),
            rename: BTreeMap::from([("payments-leads".to_owned(), "payments-approvers".to_owned())]),
            allowed: None,
        };
        let claims =
            json!({"realm_access": {"roles": ["jitgate-dev", "jitgate-payments-leads", "offline_access", "jitgate-"]}});
        assert_eq!(map_groups(&claims, &m), set(&["dev", "payments-approvers"]));
    }

    #[test]
    fn a_workload_issuer_places_callers_only_in_its_allowed_groups() {
        let m = GroupMapping {
            claim: "groups".into(),
            allowed: Some(set(&["deployers"])),
            ..Default::default()
        };
        assert_eq!(
            map_groups(&json!({"groups": ["deployers", "admins"]}), &m),
            set(&["deployers"])
        );
    }
}
