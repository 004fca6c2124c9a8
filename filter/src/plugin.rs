//! The proxy-wasm glue: root and HTTP contexts that move data between the
//! host and the pure modules. No decision is made here.
//!
//! The root context (one per worker VM) loads the configuration and, when a
//! control link is configured, ticks every 100 ms: it copies the shared
//! revocation snapshot into this worker's memory, polls the control service
//! when the snapshot is due (one worker at a time, claimed through shared
//! data, backing off after failures: see [`crate::poll`]), and sends
//! decision reports. HTTP contexts only read that memory and append to the
//! report buffer.

use core::cell::{Cell, RefCell};
use core::net::{IpAddr, SocketAddr};
use std::borrow::Cow;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::check::{self, Plan, RequestHost};
use crate::config::{self, ControlLink, FilterConfig, Mode};
use crate::hostmap;
use crate::metrics::{self, Gauge, MetricIds};
use crate::poll::{self, PollState};
use crate::report::{Event, Reporter};
use crate::sync::{self, GrantIndex, Live, Snapshot};

/// How often the root context wakes up: to flush counters and, with a
/// control link, to sync and report.
const TICK: Duration = Duration::from_millis(100);

/// What one poll call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Revocations,
    Grants,
}

/// State of the control link kept by the root context.
#[derive(Default)]
struct Link {
    calls: Vec<(u32, Call)>,
    /// Whether this worker's poll in flight got its revocations.
    revocations_ok: bool,
    seen_cas: Option<u32>,
    grants_cursor: String,
    last_warning_ms: u64,
    /// The first tick since the configuration was loaded: a list never
    /// synced is only "stale" once the first poll has had its time.
    started_ms: Option<u64>,
    reported_delivered: u64,
    reported_dropped: u64,
}

/// Configuration, metric ids and synced state shared by every request of
/// one VM (one worker).
struct Active {
    cfg: FilterConfig,
    metrics: MetricIds,
    live: RefCell<Live>,
    reporter: Option<RefCell<Reporter>>,
    /// The clock as the last tick read it; `None` until a tick has arrived.
    ticked_ms: Cell<Option<u64>>,
}

impl Active {
    /// The time to decide a request by.
    ///
    /// Every call into the host costs about as much as the rest of a cache
    /// hit, so requests take the clock from the last tick instead of asking
    /// the host each time. Ticks run on this worker's event loop, the same
    /// loop that delivers requests, so the reading is at most one tick
    /// period (plus one loop iteration) old: far inside the grant's
    /// one-second resolution and its leeway. Until a tick has arrived (a
    /// host without timers never sends one) every request reads the clock.
    /// Decision reports always carry the precise time.
    fn request_now_ms(&self) -> u64 {
        match self.ticked_ms.get() {
            Some(t) if self.reporter.is_none() => t,
            _ => now_ms(),
        }
    }
}

/// The root context.
#[derive(Default)]
pub struct Root {
    active: Option<Rc<Active>>,
    link: Link,
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Jitter for the poll backoff: the clock's nanoseconds, mixed.
fn random() -> u64 {
    let nanos = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
    poll::mix(nanos)
}

fn snapshot_key(link: &ControlLink) -> String {
    format!("jitgate/{}/snapshot", link.cluster)
}

fn claim_key(link: &ControlLink) -> String {
    format!("jitgate/{}/claim", link.cluster)
}

impl Root {
    fn control(&self) -> Option<(&Rc<Active>, &ControlLink)> {
        let active = self.active.as_ref()?;
        Some((active, active.cfg.control.as_ref()?))
    }

    /// Copies the shared snapshot into this worker's memory if it changed.
    fn refresh_from_shared(&mut self, now_ms: u64) {
        let Some((active, link)) = self.control() else {
            return;
        };
        let Ok((Some(bytes), cas)) = hostcalls::get_shared_data(&snapshot_key(link)) else {
            return;
        };
        if cas.is_some() && cas == self.link.seen_cas {
            return;
        }
        let Some(snapshot) = Snapshot::decode(&bytes) else {
            return;
        };
        let active = Rc::clone(active);
        let mut live = active.live.borrow_mut();
        adopt_revocations(&active, &mut live, snapshot.revoked, snapshot.synced_at_ms, now_ms);
        if active.cfg.identity_aware && snapshot.grants_cursor != self.link.grants_cursor {
            let (index, rejected) = GrantIndex::build(&active.cfg.verifier, &snapshot.grants, now_ms / 1000);
            if rejected > 0 {
                log(
                    LogLevel::Warn,
                    &format!("jitgate: {rejected} synced grants failed verification and are ignored"),
                );
            }
            live.grants = index;
            self.link.grants_cursor = snapshot.grants_cursor;
        }
        self.link.seen_cas = cas;
    }

    /// The poll state all workers share, with its compare-and-swap token.
    fn poll_state(&self) -> (PollState, Option<u32>) {
        let Some((_, link)) = self.control() else {
            return (PollState::default(), None);
        };
        let (bytes, cas) = hostcalls::get_shared_data(&claim_key(link)).unwrap_or((None, None));
        (PollState::decode(&bytes.unwrap_or_default()), cas)
    }

    /// Changes the shared poll state (compare-and-swap, retried).
    fn update_poll_state(&self, change: impl Fn(PollState) -> PollState) {
        let Some((_, link)) = self.control() else {
            return;
        };
        for _ in 0..8 {
            let (state, cas) = self.poll_state();
            match hostcalls::set_shared_data(&claim_key(link), Some(&change(state).encode()), cas) {
                Err(Status::CasMismatch) => continue,
                _ => return,
            }
        }
    }

    /// Claims the next poll for this worker if it is due, no other worker
    /// holds the claim and the proxy is not backing off after failures;
    /// returns the endpoint to ask.
    fn claim_poll(&self, now_ms: u64) -> Option<usize> {
        let (active, link) = self.control()?;
        if !self.link.calls.is_empty() {
            return None;
        }
        let due = active
            .live
            .borrow()
            .synced_at_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= link.poll_interval_ms);
        if !due {
            return None;
        }
        let (state, cas) = self.poll_state();
        if !state.may_claim(now_ms) {
            return None;
        }
        let claimed = state.claimed(now_ms, link.timeout_ms);
        // With a CAS of an absent key two workers can both win once; two
        // polls are harmless.
        hostcalls::set_shared_data(&claim_key(link), Some(&claimed.encode()), cas).ok()?;
        Some(usize::try_from(state.endpoint).unwrap_or(0) % link.endpoints.len().max(1))
    }

    /// Ends this worker's poll: the next one is due after the poll interval
    /// if it got the revocations, else after the backoff, at the next
    /// endpoint.
    fn finish_poll(&self, now_ms: u64, ok: bool) {
        let Some((_, link)) = self.control() else {
            return;
        };
        let (interval, endpoints, jitter) = (link.poll_interval_ms, link.endpoints.len(), random());
        self.update_poll_state(|state| {
            if ok {
                state.succeeded()
            } else {
                state.failed(now_ms, interval, endpoints, jitter)
            }
        });
    }

    fn dispatch_get(&self, link: &ControlLink, endpoint: usize, path: &str) -> Result<u32, Status> {
        let auth = format!("Bearer {}", link.ingest_key);
        let endpoint = link.endpoints.get(endpoint).ok_or(Status::NotFound)?;
        hostcalls::dispatch_http_call(
            &endpoint.cluster,
            vec![
                (":method", "GET"),
                (":path", path),
                (":authority", &endpoint.authority),
                ("authorization", &auth),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            Duration::from_millis(link.timeout_ms),
        )
    }

    fn poll(&mut self, now_ms: u64) {
        let Some(endpoint) = self.claim_poll(now_ms) else {
            return;
        };
        let Some((active, link)) = self.control() else {
            return;
        };
        let (cursor, grants_cursor) = {
            let snapshot = hostcalls::get_shared_data(&snapshot_key(link))
                .ok()
                .and_then(|(b, _)| b)
                .and_then(|b| Snapshot::decode(&b))
                .unwrap_or_default();
            (snapshot.cursor, snapshot.grants_cursor)
        };
        let mut calls = Vec::new();
        let path = format!("/v1/revocations?since={}", sync::query_escape(&cursor));
        match self.dispatch_get(link, endpoint, &path) {
            Ok(token) => calls.push((token, Call::Revocations)),
            Err(status) => {
                self.sync_failed(now_ms, &format!("cannot call control endpoint {endpoint}: {status:?}"));
                self.finish_poll(now_ms, false);
                return;
            }
        }
        if active.cfg.identity_aware {
            let path = format!("/v1/proxy/grants?since={}", sync::query_escape(&grants_cursor));
            if let Ok(token) = self.dispatch_get(link, endpoint, &path) {
                calls.push((token, Call::Grants));
            }
        }
        self.link.calls = calls;
        self.link.revocations_ok = false;
    }

    fn sync_failed(&self, now_ms: u64, why: &str) {
        let Some((active, _)) = self.control() else {
            return;
        };
        if let Some(id) = active.metrics.link(Gauge::SyncFailures) {
            let _ = hostcalls::increment_metric(id, 1);
        }
        log(
            LogLevel::Debug,
            &format!("jitgate: revocation sync failed at {now_ms}: {why}"),
        );
    }

    /// Applies a poll response to the shared snapshot (compare-and-swap,
    /// retried) so every worker picks it up on its next tick.
    fn apply(&mut self, call: Call, body: &[u8], now_ms: u64) -> Result<(), sync::SyncError> {
        let Some((active, link)) = self.control() else {
            return Ok(());
        };
        let key = snapshot_key(link);
        let leeway = active.cfg.verifier.leeway();
        let parsed_revocations = match call {
            Call::Revocations => Some(sync::parse_revocations(body)?),
            Call::Grants => None,
        };
        let parsed_grants = match call {
            Call::Grants => Some(sync::parse_grants(body)?),
            Call::Revocations => None,
        };
        for _ in 0..8 {
            let (bytes, cas) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
            let mut snapshot = bytes.and_then(|b| Snapshot::decode(&b)).unwrap_or_default();
            if let Some((cursor, entries)) = &parsed_revocations {
                snapshot.revoked.merge(entries.iter().cloned())?;
                snapshot.revoked.prune(now_ms / 1000, leeway);
                snapshot.cursor.clone_from(cursor);
                snapshot.synced_at_ms = Some(now_ms);
            }
            if let Some((cursor, grants)) = &parsed_grants {
                snapshot.grants.clone_from(grants);
                snapshot.grants_cursor.clone_from(cursor);
            }
            match hostcalls::set_shared_data(&key, Some(&snapshot.encode()), cas) {
                Ok(()) => return Ok(()),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(sync::SyncError("shared data refused the snapshot")),
            }
        }
        Err(sync::SyncError("shared data kept changing"))
    }

    fn report(&mut self, now_ms: u64) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let Some(link) = active.cfg.control.as_ref() else {
            return;
        };
        let Some(reporter) = &active.reporter else {
            return;
        };
        let mut reporter = reporter.borrow_mut();
        if let Some(body) = reporter.next_batch(now_ms, &link.proxy_id) {
            let auth = format!("Bearer {}", link.ingest_key);
            let sent = hostcalls::dispatch_http_call(
                &link.cluster,
                vec![
                    (":method", "POST"),
                    (":path", "/v1/audit/events"),
                    (":authority", &link.authority),
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Some(&body),
                vec![],
                Duration::from_millis(link.timeout_ms),
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
                &mut self.link.reported_delivered,
            ),
            (Gauge::ReportsDropped, reporter.dropped, &mut self.link.reported_dropped),
        ] {
            if total > *seen {
                if let Some(id) = active.metrics.link(which) {
                    let _ = hostcalls::increment_metric(id, i64::try_from(total - *seen).unwrap_or(i64::MAX));
                }
                *seen = total;
            }
        }
    }

    fn observe(&mut self, now_ms: u64) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let Some(link) = active.cfg.control.as_ref() else {
            return;
        };
        let live = active.live.borrow();
        let staleness = live.synced_at_ms.map_or(u64::MAX, |t| now_ms.saturating_sub(t));
        if let Some(id) = active.metrics.link(Gauge::StalenessMs) {
            let _ = hostcalls::record_metric(id, staleness.min(i64::MAX as u64));
        }
        if let Some(id) = active.metrics.link(Gauge::Revocations) {
            let _ = hostcalls::record_metric(id, live.revoked.len() as u64);
        }
        let (state, _) = self.poll_state();
        if let Some(id) = active.metrics.link(Gauge::ConsecutiveFailures) {
            let _ = hostcalls::record_metric(id, u64::from(state.failures));
        }
        if let Some(id) = active.metrics.link(Gauge::BackoffMs) {
            let _ = hostcalls::record_metric(id, state.backoff_remaining_ms(now_ms));
        }
        let started = *self.link.started_ms.get_or_insert(now_ms);
        let since = live.synced_at_ms.unwrap_or(started);
        if stale_warning_due(since, now_ms, link.poll_interval_ms, self.link.last_warning_ms) {
            let age = if staleness == u64::MAX {
                "never synced".to_owned()
            } else {
                format!("{} ms old", staleness)
            };
            log(
                LogLevel::Warn,
                &format!(
                    "jitgate: revocation list is {age} (control cluster {}); {}",
                    link.cluster,
                    if staleness == u64::MAX && link.unsynced == config::Unsynced::Deny {
                        "protected requests are refused until the first sync"
                    } else if link.max_staleness_seconds.is_some() {
                        "valid grants keep working until max_staleness_seconds"
                    } else {
                        "valid grants keep working"
                    }
                ),
            );
            self.link.last_warning_ms = now_ms;
        }
    }
}

/// Makes a synced revocation list this worker's.
fn adopt_revocations(
    active: &Active,
    live: &mut Live,
    revoked: sync::RevocationSet,
    synced_at_ms: Option<u64>,
    now_ms: u64,
) {
    live.revoked = revoked;
    live.revoked.prune(now_ms / 1000, active.cfg.verifier.leeway());
    live.synced_at_ms = synced_at_ms;
}

/// While this worker has never synced, a request first looks at shared
/// data: the list another worker fetched counts at once rather than at this
/// worker's next tick, so the refusals before the first sync last no longer
/// than the first poll. (Only until then: afterwards requests read local
/// memory alone.)
fn adopt_first_sync(active: &Active, link: &ControlLink, now_ms: u64) {
    let Ok((Some(bytes), _)) = hostcalls::get_shared_data(&snapshot_key(link)) else {
        return;
    };
    if let Some(snapshot) = Snapshot::decode(&bytes).filter(|s| s.synced_at_ms.is_some()) {
        if let Ok(mut live) = active.live.try_borrow_mut() {
            adopt_revocations(active, &mut live, snapshot.revoked, snapshot.synced_at_ms, now_ms);
        }
    }
}

/// Whether the staleness warning is due: the list has not been synced for
/// three poll intervals since `since` (its last sync, or the first tick
/// when it was never synced: the first poll needs its time), and the last
/// warning is [`sync::STALE_WARNING_EVERY_MS`] old.
fn stale_warning_due(since_ms: u64, now_ms: u64, poll_interval_ms: u64, last_warning_ms: u64) -> bool {
    now_ms.saturating_sub(since_ms) > poll_interval_ms.saturating_mul(3)
        && now_ms.saturating_sub(last_warning_ms) >= sync::STALE_WARNING_EVERY_MS
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let now = now_ms();
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let ok = status.as_deref() == Some("200") || status.as_deref() == Some("202");
        let body = || {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
        };

        if let Some(at) = self.link.calls.iter().position(|(t, _)| *t == token_id) {
            let (_, call) = self.link.calls.swap_remove(at);
            let result = match (ok, body()) {
                (true, Some(body)) => self.apply(call, &body, now),
                _ => Err(sync::SyncError("control service answered with an error")),
            };
            if call == Call::Revocations {
                self.link.revocations_ok = result.is_ok();
                if let (Ok(()), Some(active)) = (&result, &self.active) {
                    if let Some(id) = active.metrics.link(Gauge::SyncSuccesses) {
                        let _ = hostcalls::increment_metric(id, 1);
                    }
                }
            }
            match result {
                Ok(()) => self.refresh_from_shared(now),
                Err(e) => self.sync_failed(now, &format!("{:?} {}", status, e.0)),
            }
            if self.link.calls.is_empty() {
                self.finish_poll(now, self.link.revocations_ok);
            }
            return;
        }
        if let Some(active) = &self.active {
            if let Some(reporter) = &active.reporter {
                let mut reporter = reporter.borrow_mut();
                if reporter.owns(token_id) {
                    reporter.finished(ok, now);
                }
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = match config::parse(&bytes) {
            Ok(cfg) => cfg,
            Err(e) => {
                // One line naming the field; returning false makes the host
                // refuse the plugin, so it can never run half-configured.
                log(LogLevel::Critical, &format!("jitgate: {e}"));
                return false;
            }
        };
        let ids: Result<Vec<u32>, _> = metrics::names(&cfg.resources.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
            .iter()
            .map(|name| {
                let kind = if metrics::is_gauge(name) {
                    MetricType::Gauge
                } else {
                    MetricType::Counter
                };
                hostcalls::define_metric(kind, name)
            })
            .collect();
        let Ok(ids) = ids else {
            log(LogLevel::Critical, "jitgate: the host refused to define metrics");
            return false;
        };
        let reporter = cfg
            .control
            .as_ref()
            .filter(|c| c.report)
            .map(|c| RefCell::new(Reporter::new(c.report_buffer, c.report_batch, c.report_interval_ms)));
        log(
            LogLevel::Info,
            &format!(
                "jitgate: configured issuer={} keys={} resources={} mode={} control={}",
                cfg.verifier.issuer(),
                cfg.verifier.keys().kids().collect::<Vec<_>>().join(","),
                cfg.resources.len(),
                if cfg.mode == Mode::Enforce {
                    "enforce"
                } else {
                    "dry-run"
                },
                cfg.control.as_ref().map_or("none", |c| c.cluster.as_str()),
            ),
        );
        let has_control = cfg.control.is_some();
        self.active = Some(Rc::new(Active {
            cfg,
            metrics: MetricIds::new(ids),
            live: RefCell::new(Live::default()),
            reporter,
            ticked_ms: Cell::new(None),
        }));
        self.link = Link::default();
        if has_control {
            // A new worker starts from what the others already synced, so it
            // enforces the current list before its first request.
            self.refresh_from_shared(now_ms());
        }
        // The tick also flushes the decision counters.
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        if let Some(active) = &self.active {
            active.ticked_ms.set(Some(now));
            active.metrics.flush(|id, n| {
                let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
            });
        }
        self.refresh_from_shared(now);
        self.poll(now);
        self.report(now);
        self.observe(now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            active: self.active.clone(),
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request.
struct Request {
    active: Option<Rc<Active>>,
    /// The decision report, waiting for the response status.
    pending: Option<(String, Option<u16>)>,
}

impl Context for Request {}

/// The client address as Envoy reports it, without the port, for decision
/// reports. Kept as text: formatting a parsed address would link the
/// standard library's IP formatting into the size-budgeted module.
fn source_address_text() -> Option<String> {
    let raw = hostcalls::get_property(vec!["source", "address"]).ok().flatten()?;
    let text = String::from_utf8(raw).ok()?;
    Some(crate::report::strip_port(&text).to_owned())
}

impl RequestHost for Request {
    fn source_address(&self) -> Option<IpAddr> {
        let raw = hostcalls::get_property(vec!["source", "address"]).ok().flatten()?;
        let text = core::str::from_utf8(&raw).ok()?;
        text.parse::<SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| text.parse::<IpAddr>())
            .ok()
    }

    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["connection", "uri_san_peer_certificate"])
            .ok()
            .flatten()
    }

    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        // Envoy gives the digest of the peer certificate as 64 hex digits;
        // anything else is no certificate, so a bound grant is refused.
        let hex = hostcalls::get_property(vec!["connection", "sha256_peer_certificate_digest"])
            .ok()
            .flatten()?;
        crate::check::parse_certificate_digest(&hex)
    }
}

impl Request {
    fn respond(&self, status: u16, headers: &[(&str, String)], body: &str) -> Action {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let _ = hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()));
        Action::Pause
    }

    fn unavailable(&self) -> Action {
        let json = [
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        self.respond(503, &json, check::UNAVAILABLE_BODY)
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return self.unavailable();
        };
        let Some(headers) = hostmap::request_headers() else {
            return self.unavailable();
        };
        let now = active.request_now_ms();
        // `try_borrow` throughout the request path: a re-entrant callback
        // finds the state busy and the request fails closed (503), where a
        // `borrow` would panic and trap the VM.
        if let Some(link) = &active.cfg.control {
            if active.live.try_borrow().is_ok_and(|l| l.synced_at_ms.is_none()) {
                adopt_first_sync(&active, link, now);
            }
        }
        let Ok(live) = active.live.try_borrow() else {
            return self.unavailable();
        };
        let eval = check::evaluate(&active.cfg, &headers, self, now, &live);
        let never_synced = live.synced_at_ms.is_none();
        drop(live);
        if eval.resource.is_some() && eval.verdict.passes() && active.cfg.control.is_some() && never_synced {
            // Only reachable with `unsynced: allow`.
            active.metrics.count_link(Gauge::UnsyncedAllowed);
        }
        let denied = !eval.verdict.passes();
        let dry_run_denied = denied && active.cfg.mode == Mode::DryRun;
        active.metrics.count(eval.verdict, eval.resource, dry_run_denied);
        if denied && matches!(hostcalls::get_log_level(), Ok(LogLevel::Trace | LogLevel::Debug)) {
            log(LogLevel::Debug, &check::describe_denial(&active.cfg, &eval));
        }
        let plan = check::plan(&active.cfg, &headers, &eval);
        if active.reporter.is_some() {
            let client = source_address_text();
            let g = eval.grant.as_ref();
            let event = Event {
                time_ms: now,
                outcome: eval.verdict.code(),
                resource: eval
                    .resource
                    .and_then(|i| active.cfg.resources.get(i))
                    .map(|r| r.id.as_str()),
                grant_id: g.map(|g| g.jti()),
                subject: g.map(|g| g.sub()),
                access_request_id: g.and_then(|g| g.req()),
                method: headers.single(b":method").unwrap_or(&[]),
                path: headers.single(b":path").unwrap_or(&[]),
                client: client.as_deref(),
                request_id: headers.single(b"x-request-id"),
            };
            let status = match &plan {
                Plan::Deny { status, .. } => Some(*status),
                Plan::Forward { .. } => None,
            };
            self.pending = Some((event.open_json(), status));
        }

        match plan {
            Plan::Forward { remove, add } => {
                // A header the host would not remove or add means the
                // upstream could see a grant or miss who is calling: refuse.
                if rewrite_headers(&remove, &add) {
                    Action::Continue
                } else {
                    self.unavailable()
                }
            }
            Plan::Deny { status, headers, body } => self.respond(status, &headers, &body),
        }
    }

    fn on_log(&mut self) {
        let Some((open, status)) = self.pending.take() else {
            return;
        };
        let Some(reporter) = self.active.as_ref().and_then(|a| a.reporter.as_ref()) else {
            return;
        };
        // The upstream's status for forwarded requests (0 if none came).
        let status = status.unwrap_or_else(|| {
            hostcalls::get_property(vec!["response", "code"])
                .ok()
                .flatten()
                .and_then(|b| b.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()))
                .map_or(0, |b| u16::try_from(u64::from_le_bytes(b)).unwrap_or(0))
        });
        if let Ok(mut reporter) = reporter.try_borrow_mut() {
            reporter.record(&open, status);
        }
    }
}

/// Carries out a forward plan's header changes, one host call per header.
/// (Replacing the whole map in one call was measured slower in Envoy: it
/// removes and re-adds every header.)
fn rewrite_headers(remove: &[&[u8]], add: &[(&str, Cow<'_, [u8]>)]) -> bool {
    remove.iter().all(|name| hostmap::remove_request_header(name))
        && add.iter().all(|(name, value)| hostmap::add_request_header(name, value))
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
