//! When the control service is polled, which of its endpoints is asked,
//! and whether the revocation list may be trusted: pure functions over the
//! poll state that the workers of one proxy share.
//!
//! The state lives in proxy-wasm shared data, so every worker sees the same
//! claim, backoff and endpoint: while the control service is down exactly
//! one poll is in flight per proxy, and failed polls back off exponentially
//! with jitter (capped at [`MAX_BACKOFF_INTERVALS`] poll intervals, so
//! revocations still arrive soon after recovery) instead of retrying on
//! every 100 ms tick. A fleet of proxies then does not hammer a control
//! service that is coming back.

use crate::config::{ControlLink, Unsynced};

/// The longest wait between failed polls, in poll intervals.
pub const MAX_BACKOFF_INTERVALS: u64 = 5;

/// The poll state shared by the workers of one proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollState {
    /// A worker has a poll in flight until then (ms since the epoch).
    pub held_until_ms: u64,
    /// No poll starts before then: the backoff after failures.
    pub not_before_ms: u64,
    /// Polls failed in a row.
    pub failures: u32,
    /// Which endpoint (index into the link's clusters) the next poll asks.
    pub endpoint: u32,
}

impl PollState {
    /// Decodes shared data; anything unreadable (absent, or written by
    /// another filter build) is a fresh state, which at worst lets one
    /// extra poll through.
    pub fn decode(bytes: &[u8]) -> PollState {
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes)
        };
        PollState {
            held_until_ms: u64_at(0),
            not_before_ms: u64_at(8),
            failures: u32_at(16),
            endpoint: u32_at(20),
        }
    }

    /// Encodes for shared data.
    pub fn encode(&self) -> [u8; 24] {
        let bytes = (self.held_until_ms.to_le_bytes().into_iter())
            .chain(self.not_before_ms.to_le_bytes())
            .chain(self.failures.to_le_bytes())
            .chain(self.endpoint.to_le_bytes());
        let mut out = [0u8; 24];
        for (slot, b) in out.iter_mut().zip(bytes) {
            *slot = b;
        }
        out
    }

    /// Whether a worker may start a poll now: none in flight, no backoff.
    pub fn may_claim(&self, now_ms: u64) -> bool {
        self.held_until_ms <= now_ms && self.not_before_ms <= now_ms
    }

    /// The state once a worker has claimed the poll until `now + timeout`.
    pub fn claimed(self, now_ms: u64, timeout_ms: u64) -> PollState {
        PollState {
            held_until_ms: now_ms.saturating_add(timeout_ms),
            ..self
        }
    }

    /// The state after a successful poll: the next one is due after the
    /// normal interval, at the same endpoint.
    pub fn succeeded(self) -> PollState {
        PollState {
            endpoint: self.endpoint,
            ..PollState::default()
        }
    }

    /// The state after a failed poll: back off, and ask the next endpoint
    /// next time. `random` is any fresh random-ish number (the jitter).
    pub fn failed(self, now_ms: u64, poll_interval_ms: u64, endpoints: usize, random: u64) -> PollState {
        let failures = self.failures.saturating_add(1);
        let count = u32::try_from(endpoints.max(1)).unwrap_or(u32::MAX);
        PollState {
            held_until_ms: 0,
            not_before_ms: now_ms.saturating_add(backoff_ms(failures, poll_interval_ms, random)),
            failures,
            endpoint: self.endpoint.saturating_add(1) % count,
        }
    }

    /// How long until the next poll may start (0 when not backing off).
    pub fn backoff_remaining_ms(&self, now_ms: u64) -> u64 {
        self.not_before_ms.saturating_sub(now_ms)
    }
}

/// The wait after the `failures`-th failure in a row: one poll interval
/// doubled per further failure, capped at [`MAX_BACKOFF_INTERVALS`]
/// intervals, of which a random half ("equal jitter") so that proxies that
/// lost the control service together do not return in step.
pub fn backoff_ms(failures: u32, poll_interval_ms: u64, random: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    let cap = poll_interval_ms.saturating_mul(MAX_BACKOFF_INTERVALS);
    let full = poll_interval_ms.saturating_mul(1u64 << doublings).min(cap);
    let half = full / 2;
    half + random % (full - half + 1)
}

/// A cheap, well-mixed 64-bit number from a seed (SplitMix64's finalizer):
/// enough for jitter, which needs spread, not secrecy.
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether protected requests must be refused (`revocations_stale`)
/// because the revocation list cannot be trusted: it was never synced since
/// the proxy started (unless the link allows that), or it is older than
/// `max_staleness_seconds`.
///
/// Without the first rule, a proxy restarted while the control service is
/// down starts with an empty list and honours every grant revoked before
/// the outage.
pub fn revocations_stale(link: &ControlLink, synced_at_ms: Option<u64>, now_ms: u64) -> bool {
    match (synced_at_ms, link.max_staleness_seconds) {
        (None, _) => link.unsynced == Unsynced::Deny,
        (Some(at), Some(max)) => now_ms.saturating_sub(at) > max.saturating_mul(1000),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: u64 = 1000;

    #[test]
    fn failed_polls_back_off_exponentially_with_jitter_up_to_five_intervals() {
        for (failures, full) in [(1, 1000), (2, 2000), (3, 4000), (4, 5000), (30, 5000)] {
            assert_eq!(
                backoff_ms(failures, INTERVAL, 0),
                full / 2,
                "least wait after {failures}"
            );
            assert_eq!(
                backoff_ms(failures, INTERVAL, full / 2),
                full,
                "most wait after {failures}"
            );
            for seed in 0..200 {
                let wait = backoff_ms(failures, INTERVAL, mix(seed));
                assert!((full / 2..=full).contains(&wait), "{failures}: {wait}");
            }
        }
        let spread: std::collections::BTreeSet<u64> = (0..50).map(|s| backoff_ms(4, INTERVAL, mix(s))).collect();
        assert!(spread.len() > 25, "jitter spreads proxies apart: {spread:?}");
    }

    #[test]
    fn one_poll_at_a_time_and_none_during_the_backoff() {
        let s = PollState::default();
        assert!(s.may_claim(10));
        let held = s.claimed(10, 2000);
        assert!(!held.may_claim(11) && held.may_claim(2010));
        let failed = held.failed(500, INTERVAL, 1, 0);
        assert_eq!((failed.failures, failed.held_until_ms, failed.endpoint), (1, 0, 0));
        assert!(!failed.may_claim(999), "backing off");
        assert!(failed.may_claim(1000));
        assert_eq!(failed.backoff_remaining_ms(600), 400);
        let again = failed.claimed(1000, 2000).failed(1100, INTERVAL, 1, 0);
        assert_eq!((again.failures, again.not_before_ms), (2, 2100));
        let ok = again.claimed(2100, 2000).succeeded();
        assert_eq!(ok, PollState::default());
        assert!(ok.may_claim(2101));
    }

    #[test]
    fn failures_rotate_through_the_endpoints_and_success_stays() {
        let s = PollState::default().failed(0, INTERVAL, 3, 0);
        assert_eq!(s.endpoint, 1);
        let s = s.failed(0, INTERVAL, 3, 0).failed(0, INTERVAL, 3, 0);
        assert_eq!(s.endpoint, 0, "wraps around");
        let s = s.failed(0, INTERVAL, 3, 0).succeeded();
        assert_eq!(s.endpoint, 1, "the endpoint that answered stays");
    }

    #[test]
    fn poll_state_round_trips_and_garbage_is_a_fresh_state() {
        let s = PollState {
            held_until_ms: 1_780_000_000_123,
            not_before_ms: u64::MAX - 1,
            failures: 7,
            endpoint: 2,
        };
        assert_eq!(PollState::decode(&s.encode()), s);
        assert_eq!(PollState::decode(&[]), PollState::default());
        assert_eq!(PollState::decode(&[1, 2, 3]), PollState::default());
        // The claim of earlier builds was only the held-until time.
        assert_eq!(PollState::decode(&42u64.to_le_bytes()).held_until_ms, 42);
    }

    fn link(extra: &str) -> ControlLink {
        let json = format!(
            r#"{{"issuer":"i","keys":{{"k1":"AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"}},"resources":[{{"id":"a"}}],"control":{{"cluster":"c","ingest_key":"0123456789abcdef"{extra}}}}}"#
        );
        crate::config::parse(json.as_bytes()).unwrap().control.unwrap()
    }

    #[test]
    fn a_list_never_synced_since_start_is_stale_unless_allowed() {
        assert!(revocations_stale(&link(""), None, 0), "deny is the default");
        assert!(!revocations_stale(&link(r#","unsynced":"allow""#), None, 0));
        assert!(
            !revocations_stale(&link(""), Some(0), 3_600_000),
            "no max_staleness: an old list is kept"
        );
        let strict = link(r#","max_staleness_seconds":5"#);
        assert!(!revocations_stale(&strict, Some(1000), 6000));
        assert!(revocations_stale(&strict, Some(1000), 6001));
        let strict_allow = link(r#","max_staleness_seconds":5,"unsynced":"allow""#);
        assert!(
            !revocations_stale(&strict_allow, None, 6001),
            "unsynced allow wins before the first sync"
        );
    }
}
