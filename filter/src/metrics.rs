//! Counters per decision code, overall and per resource, defined once at
//! configuration time so the request path only increments by id.
//!
//! Envoy shows them in `/stats` with its `wasmcustom.` prefix, for example
//! `wasmcustom.jitgate.decisions.grant_expired` and
//! `wasmcustom.jitgate.resource.payments-api.allowed`.

use grant::Outcome;

use crate::check::Verdict;

/// Number of distinct decision codes: the spec's outcomes plus the
/// filter's `no_resource`, `unprotected`, `revocations_stale` and
/// `authority_rejected`.
pub const CODES: usize = Outcome::ALL.len() + 4;

/// Position of a verdict in the per-code tables.
pub fn code_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Grant(o) => Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0),
        Verdict::NoResource => Outcome::ALL.len(),
        Verdict::Unprotected => Outcome::ALL.len() + 1,
        Verdict::RevocationsStale => Outcome::ALL.len() + 2,
        Verdict::AuthorityRejected => Outcome::ALL.len() + 3,
    }
}

/// Every decision code, in table order.
pub fn codes() -> impl Iterator<Item = &'static str> {
    Outcome::ALL.iter().map(|o| o.code()).chain([
        Verdict::NoResource.code(),
        Verdict::Unprotected.code(),
        Verdict::RevocationsStale.code(),
        Verdict::AuthorityRejected.code(),
    ])
}

/// The metric names to define, in table order: per code, then per resource
/// and code, then the dry-run counter.
pub fn names(resource_ids: &[String]) -> Vec<String> {
    let mut names: Vec<String> = codes().map(|c| format!("jitgate.decisions.{c}")).collect();
    for id in resource_ids {
        names.extend(codes().map(|c| format!("jitgate.resource.{id}.{c}")));
    }
    names.extend(GAUGES.iter().map(|g| (*g).to_owned()));
    names
}

/// Counters and gauges about the control link, after the decision counters
/// (the dry-run counter comes last).
pub const GAUGES: [&str; 10] = [
    "jitgate.revocations.staleness_ms",
    "jitgate.revocations.entries",
    "jitgate.sync.failures",
    "jitgate.reports.delivered",
    "jitgate.reports.dropped",
    "jitgate.sync.consecutive_failures",
    "jitgate.sync.backoff_ms",
    "jitgate.revocations.unsynced_allowed",
    "jitgate.sync.successes",
    "jitgate.dry_run.would_deny",
];

/// Which of [`GAUGES`] an id refers to.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// Age of the revocation list (gauge).
    StalenessMs = 0,
    /// Revocations held (gauge).
    Revocations = 1,
    /// Failed polls (counter).
    SyncFailures = 2,
    /// Reported decisions acknowledged (counter).
    ReportsDelivered = 3,
    /// Reported decisions dropped because the buffer was full (counter).
    ReportsDropped = 4,
    /// Polls failed in a row, across the proxy's workers (gauge).
    ConsecutiveFailures = 5,
    /// Time until the next poll may start while backing off (gauge).
    BackoffMs = 6,
    /// Protected requests checked without a revocation list because none
    /// was synced yet and `unsynced` is `allow` (counter).
    UnsyncedAllowed = 7,
    /// Polls that brought the revocation list up to date (counter).
    SyncSuccesses = 8,
}

/// Whether a metric of [`GAUGES`] is a gauge (else a counter).
pub fn is_gauge(name: &str) -> bool {
    matches!(
        name,
        "jitgate.revocations.staleness_ms"
            | "jitgate.revocations.entries"
            | "jitgate.sync.consecutive_failures"
            | "jitgate.sync.backoff_ms"
    )
}

/// Metric ids as the host assigned them, laid out as [`names`] lists them,
/// with counts not yet handed to the host.
///
/// Requests only bump these local counts; the root context's tick flushes
/// them, so a request costs no metric hostcall at all.
#[derive(Debug, Default)]
pub struct MetricIds {
    ids: Vec<u32>,
    pending: core::cell::RefCell<Vec<u64>>,
}

impl MetricIds {
    /// Wraps host-assigned ids given in the order of [`names`].
    pub fn new(ids: Vec<u32>) -> Self {
        let pending = core::cell::RefCell::new(vec![0; ids.len()]);
        MetricIds { ids, pending }
    }

    /// Counts one decision locally.
    pub fn count(&self, verdict: Verdict, resource: Option<usize>, dry_run_denied: bool) {
        // On the request path: a count lost to a re-entrant call is better
        // than a panic that traps the VM.
        let Ok(mut pending) = self.pending.try_borrow_mut() else {
            return;
        };
        for i in Self::indices(self.ids.len(), verdict, resource, dry_run_denied) {
            if let Some(n) = pending.get_mut(i) {
                *n += 1;
            }
        }
    }

    /// Counts one event of a link counter locally (flushed with the
    /// decision counters).
    pub fn count_link(&self, which: Gauge) {
        let Some(base) = self.ids.len().checked_sub(GAUGES.len()) else {
            return;
        };
        // On the request path too (`UnsyncedAllowed`): never a panicking
        // borrow.
        if let Some(n) = self
            .pending
            .try_borrow_mut()
            .ok()
            .as_mut()
            .and_then(|p| p.get_mut(base + which as usize))
        {
            *n += 1;
        }
    }

    /// Hands the counts gathered since the last flush to `add(id, n)`.
    pub fn flush(&self, mut add: impl FnMut(u32, u64)) {
        let Ok(mut pending) = self.pending.try_borrow_mut() else {
            return;
        };
        for (i, n) in pending.iter_mut().enumerate() {
            if *n > 0 {
                if let Some(id) = self.ids.get(i) {
                    add(*id, *n);
                }
                *n = 0;
            }
        }
    }

    /// Positions in the [`names`] table (of `len` metrics) that one
    /// decision increments; allocation-free, for hosts that count directly.
    pub fn indices(
        len: usize,
        verdict: Verdict,
        resource: Option<usize>,
        dry_run_denied: bool,
    ) -> impl Iterator<Item = usize> {
        let code = code_index(verdict);
        let per_resource = resource.map(|r| CODES + r * CODES + code);
        let dry_run = dry_run_denied.then(|| len.saturating_sub(1));
        [Some(code), per_resource, dry_run].into_iter().flatten()
    }

    /// The ids to increment for one decision.
    pub fn for_decision(&self, verdict: Verdict, resource: Option<usize>, dry_run_denied: bool) -> Vec<u32> {
        Self::indices(self.ids.len(), verdict, resource, dry_run_denied)
            .filter_map(|i| self.ids.get(i).copied())
            .collect()
    }

    /// The id of one of the link metrics.
    pub fn link(&self, which: Gauge) -> Option<u32> {
        let at = self.ids.len().checked_sub(GAUGES.len())? + which as usize;
        self.ids.get(at).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_line_up_with_names() {
        let names = names(&["a".into(), "b".into()]);
        assert_eq!(names.len(), CODES * 3 + GAUGES.len());
        let ids = MetricIds::new((0..names.len() as u32).collect());
        let picked: Vec<_> = ids
            .for_decision(Verdict::Grant(Outcome::GrantExpired), Some(1), true)
            .into_iter()
            .map(|i| names[i as usize].as_str())
            .collect();
        assert_eq!(
            picked,
            [
                "jitgate.decisions.grant_expired",
                "jitgate.resource.b.grant_expired",
                "jitgate.dry_run.would_deny"
            ]
        );
        let picked: Vec<_> = ids
            .for_decision(Verdict::NoResource, None, false)
            .into_iter()
            .map(|i| names[i as usize].as_str())
            .collect();
        assert_eq!(picked, ["jitgate.decisions.no_resource"]);
        ids.count(Verdict::NoResource, None, false);
        ids.count(Verdict::NoResource, None, false);
        let mut flushed = Vec::new();
        ids.flush(|id, n| flushed.push((names[id as usize].clone(), n)));
        assert_eq!(flushed, [("jitgate.decisions.no_resource".to_owned(), 2)]);
        ids.flush(|_, _| panic!("nothing pending after a flush"));
    }
}
