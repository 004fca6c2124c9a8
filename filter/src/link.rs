//! The filter's control link: everything a worker's root context does with
//! the control service, written over a small [`LinkHost`] trait (shared
//! data with compare-and-swap, dispatched HTTP calls, metrics, log, a
//! random number) so that it runs natively in tests with a fake host.
//!
//! Each tick (see [`Link::tick`]) a worker
//! - copies the shared snapshot into its own [`Worker::live`] memory when
//!   another worker changed it;
//! - claims the next poll through the shared poll state (compare-and-swap,
//!   so one worker per proxy polls; see [`crate::poll`]) and dispatches it
//!   to the endpoint that state names (failover rotates after a failure);
//! - sends a batch of decision reports when one is due ([`crate::report`]);
//! - records the link's gauges and warns when the list is stale.
//!
//! Poll answers ([`Link::on_response`]) are merged into the shared snapshot
//! under compare-and-swap (retried), so every worker picks them up; the
//! poll then ends as a success or a failure (backoff, next endpoint).
//!
//! Request contexts share the [`Worker`] and never wait on the link: they
//! read its memory with `try_borrow`, so a re-entrant callback finds it
//! busy instead of panicking.

use core::cell::{Cell, RefCell};

use crate::config::{ControlLink, FilterConfig, Unsynced};
use crate::metrics::{Gauge, MetricIds};
use crate::poll::PollState;
use crate::report::Reporter;
use crate::sync::{self, GrantIndex, Live, Snapshot};

/// Why the host refused to store shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// The value changed since it was read (compare-and-swap lost).
    CasMismatch,
    /// Any other refusal.
    Refused,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail for diagnosis (failed polls).
    Debug,
    /// Something an operator should see (stale list, bad synced grants).
    Warn,
}

/// What the control link needs from the proxy: the proxy-wasm host in the
/// module, a fake in tests.
pub trait LinkHost {
    /// Shared data of all workers: the value and its compare-and-swap
    /// token; `(None, None)` when absent or unreadable.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Stores shared data if its token is still `cas` (`None`: always).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;
    /// Starts an HTTP call to `cluster`; the answer arrives later through
    /// [`Link::on_response`] with the returned token. The error is for the
    /// log only.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// Adds to a counter.
    fn increment_metric(&self, id: u32, by: u64);
    /// Sets a gauge.
    fn record_metric(&self, id: u32, value: u64);
    /// Writes a log line.
    fn log(&self, level: Level, message: &str);
    /// A fresh random number: the poll backoff's jitter, and the name of a
    /// worker's reporter, which must not collide with another's.
    fn random(&self) -> u64;
}

/// Configuration, metric ids and synced state shared by every request of
/// one worker (one VM).
#[derive(Debug)]
pub struct Worker {
    /// The validated configuration.
    pub cfg: FilterConfig,
    /// Metric ids and the counts not yet flushed.
    pub metrics: MetricIds,
    /// What requests read: revocations, grant set, cache.
    pub live: RefCell<Live>,
    /// Decision reports waiting to be sent (with a reporting link).
    pub reporter: Option<RefCell<Reporter>>,
    /// The clock as the last tick read it; `None` until a tick has arrived.
    pub ticked_ms: Cell<Option<u64>>,
}

impl Worker {
    /// A worker for `cfg`, with nothing synced yet; `instance` names its
    /// reporter in batch ids (random: each worker reports on its own).
    pub fn new(cfg: FilterConfig, metrics: MetricIds, instance: u64) -> Worker {
        let reporter = cfg.control.as_ref().filter(|c| c.report).map(|c| {
            RefCell::new(
                Reporter::new(c.report_buffer, c.report_batch, c.report_interval_ms, instance)
                    .count_every(c.count_interval_ms),
            )
        });
        Worker {
            cfg,
            metrics,
            live: RefCell::new(Live::default()),
            reporter,
            ticked_ms: Cell::new(None),
        }
    }

    /// The time to decide a request by (`now` reads the host's clock).
    ///
    /// Every call into the host costs about as much as the rest of a cache
    /// hit, so requests take the clock from the last tick instead of asking
    /// the host each time. Ticks run on this worker's event loop, the same
    /// loop that delivers requests, so the reading is at most one tick
    /// period (plus one loop iteration) old: far inside the grant's
    /// one-second resolution and its leeway. Until a tick has arrived (a
    /// host without timers never sends one) every request reads the clock.
    /// Decision reports always carry the precise time.
    pub fn request_now_ms(&self, now: impl FnOnce() -> u64) -> u64 {
        match self.ticked_ms.get() {
            Some(t) if self.reporter.is_none() => t,
            _ => now(),
        }
    }

    /// Makes a synced revocation list this worker's.
    fn adopt_revocations(&self, live: &mut Live, revoked: sync::RevocationSet, synced_at_ms: Option<u64>, now_ms: u64) {
        live.revoked = revoked;
        live.revoked.prune(now_ms / 1000, self.cfg.verifier.leeway());
        live.synced_at_ms = synced_at_ms;
    }

    /// While this worker has never synced, a request first looks at shared
    /// data: the list another worker fetched counts at once rather than at
    /// this worker's next tick, so the refusals before the first sync last
    /// no longer than the first poll. (Only until then: afterwards
    /// requests read local memory alone.) Never panics when the memory is
    /// busy: the request then decides with what it has.
    pub fn adopt_first_sync(&self, host: &impl LinkHost, now_ms: u64) {
        let Some(link) = &self.cfg.control else {
            return;
        };
        if !self.live.try_borrow().is_ok_and(|l| l.synced_at_ms.is_none()) {
            return;
        }
        let (Some(bytes), _) = host.shared_get(&snapshot_key(link)) else {
            return;
        };
        if let Some(snapshot) = Snapshot::decode(&bytes).filter(|s| s.synced_at_ms.is_some()) {
            if let Ok(mut live) = self.live.try_borrow_mut() {
                self.adopt_revocations(&mut live, snapshot.revoked, snapshot.synced_at_ms, now_ms);
            }
        }
    }
}

/// What one poll call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Revocations,
    Grants,
}

/// The state of the control link kept by one worker's root context.
#[derive(Debug, Default)]
pub struct Link {
    /// This worker's poll calls in flight.
    calls: Vec<(u32, Call)>,
    /// Whether this worker's poll in flight got its revocations.
    revocations_ok: bool,
    /// The snapshot's compare-and-swap token when this worker last copied it.
    seen_cas: Option<u32>,
    /// Cursor of the grant set this worker indexed.
    grants_cursor: String,
    last_warning_ms: u64,
    /// The first tick since the configuration was loaded: a list never
    /// synced is only "stale" once the first poll has had its time.
    started_ms: Option<u64>,
    reported_delivered: u64,
    reported_dropped: u64,
}

/// The shared-data key of the synced snapshot of one control cluster.
pub fn snapshot_key(link: &ControlLink) -> String {
    format!("jitgate/{}/snapshot", link.cluster)
}

/// The shared-data key of the poll state of one control cluster.
pub fn claim_key(link: &ControlLink) -> String {
    format!("jitgate/{}/claim", link.cluster)
}

/// Tries a compare-and-swap change a few times: another worker may win a
/// round, never forever.
const CAS_ATTEMPTS: usize = 8;

impl Link {
    /// One tick: copy the shared snapshot, poll if due, report, observe.
    pub fn tick(&mut self, host: &impl LinkHost, worker: &Worker, now_ms: u64) {
        self.refresh_from_shared(host, worker, now_ms);
        self.poll(host, worker, now_ms);
        self.report(host, worker, now_ms);
        self.observe(host, worker, now_ms);
    }

    /// Copies the shared snapshot into this worker's memory if it changed.
    pub fn refresh_from_shared(&mut self, host: &impl LinkHost, worker: &Worker, now_ms: u64) {
        let Some(link) = &worker.cfg.control else {
            return;
        };
        let (Some(bytes), cas) = host.shared_get(&snapshot_key(link)) else {
            return;
        };
        if cas.is_some() && cas == self.seen_cas {
            return;
        }
        let Some(snapshot) = Snapshot::decode(&bytes) else {
            return;
        };
        // Busy only if a callback re-entered: try again next tick.
        let Ok(mut live) = worker.live.try_borrow_mut() else {
            return;
        };
        worker.adopt_revocations(&mut live, snapshot.revoked, snapshot.synced_at_ms, now_ms);
        if worker.cfg.identity_aware && snapshot.grants_cursor != self.grants_cursor {
            let (index, rejected) = GrantIndex::build(&worker.cfg.verifier, &snapshot.grants, now_ms / 1000);
            if rejected > 0 {
                host.log(
                    Level::Warn,
                    &format!("jitgate: {rejected} synced grants failed verification and are ignored"),
                );
            }
            live.grants = index;
            self.grants_cursor = snapshot.grants_cursor;
        }
        self.seen_cas = cas;
    }

    /// The poll state all workers share, with its compare-and-swap token.
    fn poll_state(host: &impl LinkHost, link: &ControlLink) -> (PollState, Option<u32>) {
        let (bytes, cas) = host.shared_get(&claim_key(link));
        (PollState::decode(&bytes.unwrap_or_default()), cas)
    }

    /// Claims the next poll for this worker if it is due, no other worker
    /// holds the claim and the proxy is not backing off after failures;
    /// returns the endpoint to ask.
    fn claim_poll(&self, host: &impl LinkHost, worker: &Worker, link: &ControlLink, now_ms: u64) -> Option<usize> {
        if !self.calls.is_empty() {
            return None;
        }
        let due = worker
            .live
            .try_borrow()
            .ok()?
            .synced_at_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= link.poll_interval_ms);
        if !due {
            return None;
        }
        let (state, cas) = Self::poll_state(host, link);
        if !state.may_claim(now_ms) {
            return None;
        }
        let claimed = state.claimed(now_ms, link.timeout_ms);
        // With a CAS of an absent key two workers can both win once; two
        // polls are harmless.
        host.shared_set(&claim_key(link), &claimed.encode(), cas).ok()?;
        Some(usize::try_from(state.endpoint).unwrap_or(0) % link.endpoints.len().max(1))
    }

    /// Ends this worker's poll: the next one is due after the poll interval
    /// if it got the revocations, else after the backoff, at the next
    /// endpoint.
    fn finish_poll(host: &impl LinkHost, link: &ControlLink, now_ms: u64, ok: bool) {
        let jitter = host.random();
        for _ in 0..CAS_ATTEMPTS {
            let (state, cas) = Self::poll_state(host, link);
            let next = if ok {
                state.succeeded()
            } else {
                state.failed(now_ms, link.poll_interval_ms, link.endpoints.len(), jitter)
            };
            if host.shared_set(&claim_key(link), &next.encode(), cas) != Err(SharedDataError::CasMismatch) {
                return;
            }
        }
    }

    fn dispatch_get(host: &impl LinkHost, worker: &Worker, endpoint: usize, path: &str) -> Result<u32, String> {
        let link = worker.cfg.control.as_ref().ok_or("no control link")?;
        let auth = format!("Bearer {}", link.ingest_key);
        let endpoint = link.endpoints.get(endpoint).ok_or("no such endpoint")?;
        let [(n1, v1), (n2, v2), (n3, v3)] = sync::poller_headers(&worker.cfg, link);
        host.dispatch(
            &endpoint.cluster,
            &[
                (":method", "GET"),
                (":path", path),
                (":authority", &endpoint.authority),
                ("authorization", &auth),
                ("accept", "application/json"),
                (n1, &v1),
                (n2, &v2),
                (n3, &v3),
            ],
            None,
            link.timeout_ms,
        )
    }

    /// Starts a poll if this worker may claim one.
    fn poll(&mut self, host: &impl LinkHost, worker: &Worker, now_ms: u64) {
        let Some(link) = &worker.cfg.control else {
            return;
        };
        let Some(endpoint) = self.claim_poll(host, worker, link, now_ms) else {
            return;
        };
        let snapshot = host
            .shared_get(&snapshot_key(link))
            .0
            .and_then(|b| Snapshot::decode(&b))
            .unwrap_or_default();
        let mut calls = Vec::new();
        let path = format!("/v1/revocations?since={}", sync::query_escape(&snapshot.cursor));
        match Self::dispatch_get(host, worker, endpoint, &path) {
            Ok(token) => calls.push((token, Call::Revocations)),
            Err(why) => {
                sync_failed(
                    host,
                    worker,
                    now_ms,
                    &format!("cannot call control endpoint {endpoint}: {why}"),
                );
                Self::finish_poll(host, link, now_ms, false);
                return;
            }
        }
        if worker.cfg.identity_aware {
            let path = format!("/v1/proxy/grants?since={}", sync::query_escape(&snapshot.grants_cursor));
            if let Ok(token) = Self::dispatch_get(host, worker, endpoint, &path) {
                calls.push((token, Call::Grants));
            }
        }
        self.calls = calls;
        self.revocations_ok = false;
    }

    /// An answer to one of this worker's calls arrived: `status` is the
    /// HTTP status the host reports, `body` reads the answer's body.
    /// Tokens this worker does not own are ignored.
    pub fn on_response(
        &mut self,
        host: &impl LinkHost,
        worker: &Worker,
        token: u32,
        status: Option<&str>,
        body: impl FnOnce() -> Option<Vec<u8>>,
        now_ms: u64,
    ) {
        let Some(link) = &worker.cfg.control else {
            return;
        };
        let ok = matches!(status, Some("200" | "202"));
        if let Some(at) = self.calls.iter().position(|(t, _)| *t == token) {
            let (_, call) = self.calls.swap_remove(at);
            let result = match (ok, if ok { body() } else { None }) {
                (true, Some(body)) => apply(host, worker, link, call, &body, now_ms),
                _ => Err(sync::SyncError("control service answered with an error")),
            };
            if call == Call::Revocations {
                self.revocations_ok = result.is_ok();
                if let (Ok(()), Some(id)) = (&result, worker.metrics.link(Gauge::SyncSuccesses)) {
                    host.increment_metric(id, 1);
                }
            }
            match result {
                Ok(()) => self.refresh_from_shared(host, worker, now_ms),
                Err(e) => sync_failed(host, worker, now_ms, &format!("{:?} {}", status, e.0)),
            }
            if self.calls.is_empty() {
                Self::finish_poll(host, link, now_ms, self.revocations_ok);
            }
            return;
        }
        if let Some(Ok(mut reporter)) = worker.reporter.as_ref().map(RefCell::try_borrow_mut) {
            if reporter.owns(token) {
                reporter.finished(ok, now_ms);
            }
        }
    }

    /// Sends the next batch of decision reports if one is due, and counts
    /// what was delivered and dropped since the last tick.
    fn report(&mut self, host: &impl LinkHost, worker: &Worker, now_ms: u64) {
        let (Some(link), Some(reporter)) = (&worker.cfg.control, &worker.reporter) else {
            return;
        };
        let Ok(mut reporter) = reporter.try_borrow_mut() else {
            return;
        };
        if let Some(body) = reporter.next_batch(now_ms, &link.proxy_id) {
            let auth = format!("Bearer {}", link.ingest_key);
            let sent = host.dispatch(
                &link.cluster,
                &[
                    (":method", "POST"),
                    (":path", "/v1/audit/events"),
                    (":authority", &link.authority),
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Some(&body),
                link.timeout_ms,
            );
            match sent {
                Ok(token) => reporter.dispatched(token),
                Err(_) => reporter.failed(now_ms),
            }
        }
        for (which, total, seen) in [
            (
                Gauge::ReportsDelivered,
                reporter.delivered,
                &mut self.reported_delivered,
            ),
            (Gauge::ReportsDropped, reporter.dropped, &mut self.reported_dropped),
        ] {
            if total > *seen {
                if let Some(id) = worker.metrics.link(which) {
                    host.increment_metric(id, total - *seen);
                }
                *seen = total;
            }
        }
    }

    /// Records the link's gauges and warns when the list is stale.
    fn observe(&mut self, host: &impl LinkHost, worker: &Worker, now_ms: u64) {
        let Some(link) = &worker.cfg.control else {
            return;
        };
        let Ok(live) = worker.live.try_borrow() else {
            return;
        };
        let staleness = live.synced_at_ms.map_or(u64::MAX, |t| now_ms.saturating_sub(t));
        let (state, _) = Self::poll_state(host, link);
        for (which, value) in [
            (Gauge::StalenessMs, staleness.min(i64::MAX as u64)),
            (Gauge::Revocations, live.revoked.len() as u64),
            (Gauge::ConsecutiveFailures, u64::from(state.failures)),
            (Gauge::BackoffMs, state.backoff_remaining_ms(now_ms)),
        ] {
            if let Some(id) = worker.metrics.link(which) {
                host.record_metric(id, value);
            }
        }
        let started = *self.started_ms.get_or_insert(now_ms);
        let since = live.synced_at_ms.unwrap_or(started);
        if stale_warning_due(since, now_ms, link.poll_interval_ms, self.last_warning_ms) {
            let age = if staleness == u64::MAX {
                "never synced".to_owned()
            } else {
                format!("{} ms old", staleness)
            };
            host.log(
                Level::Warn,
                &format!(
                    "jitgate: revocation list is {age} (control cluster {}); {}",
                    link.cluster,
                    if staleness == u64::MAX && link.unsynced == Unsynced::Deny {
                        "protected requests are refused until the first sync"
                    } else if link.max_staleness_seconds.is_some() {
                        "valid grants keep working until max_staleness_seconds"
                    } else {
                        "valid grants keep working"
                    }
                ),
            );
            self.last_warning_ms = now_ms;
        }
    }
}

fn sync_failed(host: &impl LinkHost, worker: &Worker, now_ms: u64, why: &str) {
    if let Some(id) = worker.metrics.link(Gauge::SyncFailures) {
        host.increment_metric(id, 1);
    }
    host.log(
        Level::Debug,
        &format!("jitgate: revocation sync failed at {now_ms}: {why}"),
    );
}

/// Applies a poll answer to the shared snapshot (compare-and-swap,
/// retried) so every worker picks it up on its next tick. Revocations are
/// merged into the list (never forgotten on error); the grant set is
/// replaced as a whole.
fn apply(
    host: &impl LinkHost,
    worker: &Worker,
    link: &ControlLink,
    call: Call,
    body: &[u8],
    now_ms: u64,
) -> Result<(), sync::SyncError> {
    let key = snapshot_key(link);
    let leeway = worker.cfg.verifier.leeway();
    let (mut revocations, mut grants) = (None, None);
    match call {
        Call::Revocations => revocations = Some(sync::parse_revocations(body)?),
        Call::Grants => grants = Some(sync::parse_grants(body)?),
    }
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = host.shared_get(&key);
        let mut snapshot = bytes.and_then(|b| Snapshot::decode(&b)).unwrap_or_default();
        if let Some((cursor, entries)) = &revocations {
            snapshot.revoked.merge(entries.iter().cloned())?;
            snapshot.revoked.prune(now_ms / 1000, leeway);
            snapshot.cursor.clone_from(cursor);
            snapshot.synced_at_ms = Some(now_ms);
        }
        if let Some((cursor, tokens)) = &grants {
            snapshot.grants.clone_from(tokens);
            snapshot.grants_cursor.clone_from(cursor);
        }
        match host.shared_set(&key, &snapshot.encode(), cas) {
            Ok(()) => return Ok(()),
            // Another worker wrote in between: merge into its snapshot.
            Err(SharedDataError::CasMismatch) => {}
            Err(SharedDataError::Refused) => return Err(sync::SyncError("shared data refused the snapshot")),
        }
    }
    Err(sync::SyncError("shared data kept changing"))
}

/// Whether the staleness warning is due: the list has not been synced for
/// three poll intervals since `since` (its last sync, or the first tick
/// when it was never synced: the first poll needs its time), and the last
/// warning is [`sync::STALE_WARNING_EVERY_MS`] old.
fn stale_warning_due(since_ms: u64, now_ms: u64, poll_interval_ms: u64, last_warning_ms: u64) -> bool {
    now_ms.saturating_sub(since_ms) > poll_interval_ms.saturating_mul(3)
        && now_ms.saturating_sub(last_warning_ms) >= sync::STALE_WARNING_EVERY_MS
}

#[cfg(test)]
mod staleness_warning_tests {
    use super::stale_warning_due;

    #[test]
    fn a_list_never_synced_is_not_stale_before_three_poll_intervals_from_the_first_tick() {
        let first_tick = 1_700_000_000_000;
        assert!(!stale_warning_due(first_tick, first_tick, 1000, 0), "at the first tick");
        assert!(!stale_warning_due(first_tick, first_tick + 2_900, 1000, 0));
        assert!(stale_warning_due(first_tick, first_tick + 3_100, 1000, 0));
        assert!(!stale_warning_due(first_tick, first_tick + 3_100, 1000, first_tick + 1));
    }
}
