//! The native adapter's logic, free of the ABI: configuration from the
//! plugin JSON, and per request: headers in, `filter::check::evaluate` and
//! `filter::check::plan` (the Wasm filter's own code), the plan carried out.
//!
//! With a `control` section, the revocation list (and in identity-aware
//! mode the grant set) is polled from the control service and decisions are
//! reported to it (the ABI layer times the calls and makes them; [`Synced`]
//! and the reporter are shared by all workers).
//!
//! Envoy is behind [`Stream`] and [`Metrics`], so this is tested without it.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use filter::check::{self, Plan, RequestHost};
use filter::config::{self, ControlLink, FilterConfig, Mode, ReportAllowed};
use filter::headers::HeaderMap;
use filter::metrics::{self, Gauge, MetricIds};
use filter::report::{Event, Reporter};
use filter::sync::{self, GrantIndex, Live, RevocationSet};

/// The `filter_name` of the production filter.
pub const FILTER_NAME: &str = "jitgate";
/// A `filter_name` for the fail-closed test only: such a filter panics
/// while deciding any request that carries [`PANIC_PROBE_HEADER`]. It is
/// chosen by Envoy's configuration, never by a client.
pub const PANIC_PROBE_NAME: &str = "jitgate-panic-probe";
/// The request header that triggers the probe's panic.
pub const PANIC_PROBE_HEADER: &str = "x-jitgate-panic-probe";

/// What the request-headers hook tells Envoy.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Forward the request (headers already rewritten).
    Continue,
    /// A local response was sent; stop.
    Stop,
}

/// One request in the host.
pub trait Stream: RequestHost {
    /// All request headers; `None` if the host cannot give them.
    fn request_headers(&self) -> Option<HeaderMap>;
    /// Removes every value of a request header.
    fn remove_request_header(&mut self, name: &[u8]) -> bool;
    /// Adds a request header.
    fn add_request_header(&mut self, name: &[u8], value: &[u8]) -> bool;
    /// Answers locally.
    fn send_response(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str);
    /// Adds one to a counter defined at configuration time.
    fn increment_counter(&mut self, id: usize);
    /// Logs a denial at debug level, if the host logs debug at all (the
    /// message is only built then).
    fn debug(&self, message: &dyn Fn() -> String);
}

/// Metric definition, at configuration time only.
pub trait Metrics {
    /// Defines a counter (or gauge); its id, or `None` if refused.
    fn define(&mut self, name: &str, gauge: bool) -> Option<usize>;
}

/// Distinguishes configurations in the per-worker state.
static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

/// How many configurations' worker state a thread keeps; older ones (from
/// replaced configurations) are dropped first.
const LIVE_PER_THREAD: usize = 4;

thread_local! {
    /// This worker's state per configuration: the grant cache (and, once the
    /// control link exists, what was synced). A worker's requests never run
    /// concurrently, so `Rc` is enough and no lock is taken per request.
    static LIVE: RefCell<Vec<(u64, Rc<RefCell<Worker>>)>> = const { RefCell::new(Vec::new()) };
}

/// A worker's view: its grant cache and its copy of the synced list.
#[derive(Default)]
struct Worker {
    live: Live,
    /// The [`Synced::generation`] `live` was copied at.
    generation: u64,
}

/// The revocation list (and grant set) as last synced, shared by all
/// workers. Workers copy
/// it into their own [`Live`] when [`Synced::generation`] moves (once per
/// poll), so a request takes the lock at most once per poll interval.
#[derive(Debug, Default)]
pub struct Synced {
    state: Mutex<SyncState>,
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct SyncState {
    revoked: RevocationSet,
    cursor: String,
    synced_at_ms: Option<u64>,
    /// Identity-aware mode: the active grants' tokens, and their cursor.
    grants: Vec<String>,
    grants_cursor: String,
}

/// Which control-service call an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `GET /v1/revocations`.
    Revocations,
    /// `GET /v1/proxy/grants` (identity-aware mode).
    Grants,
    /// `POST /v1/audit/events`.
    Report,
}

/// A control-service call for the ABI layer to make.
#[derive(Debug)]
pub struct Poll {
    /// The Envoy cluster.
    pub cluster: String,
    /// Request headers, pseudo-headers included.
    pub headers: Vec<(&'static str, String)>,
    /// Request body (empty for a GET).
    pub body: Vec<u8>,
    /// Timeout of the call.
    pub timeout_ms: u64,
}

/// A decision waiting for its response status (the Wasm filter's type:
/// counted or recorded when the stream completes).
pub type PendingReport = filter::report::Pending;

/// The process's decision reports, shared by all workers (a short lock per
/// request, only when reporting is on).
#[derive(Debug)]
struct Reports {
    reporter: Reporter,
    /// Totals already added to Envoy's counters.
    counted_delivered: u64,
    counted_dropped: u64,
}

/// A name for this process's reporter in batch ids: random (std's
/// hasher keys come from the operating system's random source), with the
/// clock, the process id and a counter hashed in (two configurations or
/// two Envoy processes with one `proxy_id` must not share one: the
/// control service would take one's batches for the other's repeats).
fn instance() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((nanos, std::process::id(), n))
}

/// One filter configuration, shared by all workers (read-only).
#[derive(Debug)]
pub struct Config {
    id: u64,
    cfg: FilterConfig,
    /// Host metric ids, laid out as `filter::metrics::names` lists them.
    metrics: Vec<usize>,
    panic_probe: bool,
    /// Present when the configuration has a control link.
    synced: Option<Synced>,
    /// Present when decisions are reported.
    reports: Option<Mutex<Reports>>,
}

impl Config {
    /// Parses and validates the plugin JSON (the Wasm filter's parser) and
    /// defines the metrics. `Err` is one line for Envoy's log.
    pub fn new(name: &[u8], json: &[u8], host: &mut dyn Metrics) -> Result<Config, String> {
        let panic_probe = match name {
            n if n == FILTER_NAME.as_bytes() => false,
            n if n == PANIC_PROBE_NAME.as_bytes() => true,
            other => {
                return Err(format!(
                    "jitgate: unknown filter_name {:?}; expected {FILTER_NAME:?}",
                    String::from_utf8_lossy(other)
                ))
            }
        };
        let cfg = config::parse(json).map_err(|e| format!("jitgate: {e}"))?;
        let ids: Vec<String> = cfg.resources.iter().map(|r| r.id.clone()).collect();
        let mut defined = Vec::new();
        for name in metrics::names(&ids) {
            let id = host
                .define(&name, metrics::is_gauge(&name))
                .ok_or_else(|| format!("jitgate: Envoy refused to define the metric {name}"))?;
            defined.push(id);
        }
        Ok(Config {
            id: NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed),
            metrics: defined,
            panic_probe,
            synced: cfg.control.as_ref().map(|_| Synced::default()),
            reports: cfg.control.as_ref().filter(|c| c.report).map(|c| {
                Mutex::new(Reports {
                    reporter: Reporter::new(c.report_buffer, c.report_batch, c.report_interval_ms, instance())
                        .count_every(c.count_interval_ms),
                    counted_delivered: 0,
                    counted_dropped: 0,
                })
            }),
            cfg,
        })
    }

    /// The control link, if configured.
    pub fn control(&self) -> Option<&ControlLink> {
        self.cfg.control.as_ref()
    }

    /// The polls due each poll interval (revocations; and the grant set in
    /// identity-aware mode), if there is a control link.
    pub fn polls(&self) -> Vec<(Call, Poll)> {
        let Some(link) = self.cfg.control.as_ref() else {
            return Vec::new();
        };
        let (cursor, grants_cursor) = self
            .synced
            .as_ref()
            .and_then(|s| {
                s.state
                    .lock()
                    .ok()
                    .map(|st| (st.cursor.clone(), st.grants_cursor.clone()))
            })
            .unwrap_or_default();
        let get = |path: String| Poll {
            cluster: link.cluster.clone(),
            headers: [
                (":method", "GET".to_owned()),
                (":path", path),
                (":authority", link.authority.clone()),
                ("authorization", format!("Bearer {}", link.ingest_key)),
                ("accept", "application/json".to_owned()),
            ]
            .into_iter()
            .chain(sync::poller_headers(&self.cfg, link))
            .collect(),
            body: Vec::new(),
            timeout_ms: link.timeout_ms,
        };
        let mut polls = vec![(
            Call::Revocations,
            get(format!("/v1/revocations?since={}", sync::query_escape(&cursor))),
        )];
        if self.cfg.identity_aware {
            polls.push((
                Call::Grants,
                get(format!("/v1/proxy/grants?since={}", sync::query_escape(&grants_cursor))),
            ));
        }
        polls
    }

    /// How often the ABI layer should wake to poll or report.
    pub fn tick_ms(&self) -> Option<u64> {
        let link = self.cfg.control.as_ref()?;
        let report = self.reports.as_ref().map_or(u64::MAX, |_| link.report_interval_ms);
        Some(link.poll_interval_ms.min(report).max(50))
    }

    /// The next batch of decision reports to post, if one is due.
    pub fn next_report(&self, now_ms: u64) -> Option<Poll> {
        let link = self.cfg.control.as_ref()?;
        let mut reports = self.reports.as_ref()?.lock().ok()?;
        let body = reports.reporter.next_batch(now_ms, &link.proxy_id)?;
        Some(Poll {
            cluster: link.cluster.clone(),
            headers: vec![
                (":method", "POST".to_owned()),
                (":path", "/v1/audit/events".to_owned()),
                (":authority", link.authority.clone()),
                ("authorization", format!("Bearer {}", link.ingest_key)),
                ("content-type", "application/json".to_owned()),
            ],
            body,
            timeout_ms: link.timeout_ms,
        })
    }

    /// The report batch was handed to Envoy (`true`) or could not be.
    pub fn report_dispatched(&self, started: bool, now_ms: u64) {
        if let Some(Ok(mut reports)) = self.reports.as_ref().map(Mutex::lock) {
            if started {
                reports.reporter.dispatched(0);
            } else {
                reports.reporter.failed(now_ms);
            }
        }
    }

    /// The control service answered the report batch (`status`: its
    /// `:status`, `None` if the call failed).
    pub fn report_done(&self, status: Option<&[u8]>, now_ms: u64) {
        let ok = matches!(status, Some(b"200" | b"202"));
        if let Some(Ok(mut reports)) = self.reports.as_ref().map(Mutex::lock) {
            reports.reporter.finished(ok, now_ms);
        }
    }

    /// Newly delivered and dropped reports since the last call, for
    /// Envoy's counters, with their counter ids.
    pub fn report_counts(&self) -> [(Option<usize>, u64); 2] {
        let Some(Ok(mut r)) = self.reports.as_ref().map(Mutex::lock) else {
            return [(None, 0), (None, 0)];
        };
        let delivered = r.reporter.delivered.saturating_sub(r.counted_delivered);
        let dropped = r.reporter.dropped.saturating_sub(r.counted_dropped);
        r.counted_delivered = r.reporter.delivered;
        r.counted_dropped = r.reporter.dropped;
        [
            (self.link_counter(Gauge::ReportsDelivered), delivered),
            (self.link_counter(Gauge::ReportsDropped), dropped),
        ]
    }

    /// Records a finished request's decision (`response_code`: the status
    /// the client got, when the filter did not answer itself).
    pub fn on_stream_complete(&self, pending: PendingReport, response_code: Option<u16>) {
        if let Some(Ok(mut reports)) = self.reports.as_ref().map(Mutex::lock) {
            reports.reporter.finish(pending, response_code.unwrap_or(0));
        }
    }

    /// Applies a poll's answer (`status` as Envoy gives `:status`; `None`
    /// if the call failed). `Err` means the sync failed: count it and keep
    /// the previous list.
    pub fn on_poll_response(&self, call: Call, status: Option<&[u8]>, body: &[u8], now_ms: u64) -> Result<(), String> {
        let Some(synced) = &self.synced else {
            return Ok(());
        };
        if status != Some(b"200".as_slice()) {
            return Err(format!("status {:?}", status.map(String::from_utf8_lossy)));
        }
        match call {
            Call::Revocations => {
                let (cursor, entries) = sync::parse_revocations(body).map_err(|e| e.0.to_owned())?;
                let mut state = synced.state.lock().map_err(|_| "sync state poisoned".to_owned())?;
                state.revoked.merge(entries).map_err(|e| e.0.to_owned())?;
                state.revoked.prune(now_ms / 1000, self.cfg.verifier.leeway());
                state.cursor = cursor;
                state.synced_at_ms = Some(now_ms);
            }
            Call::Grants => {
                let (cursor, grants) = sync::parse_grants(body).map_err(|e| e.0.to_owned())?;
                let mut state = synced.state.lock().map_err(|_| "sync state poisoned".to_owned())?;
                state.grants = grants;
                state.grants_cursor = cursor;
            }
            Call::Report => return Ok(()),
        }
        synced.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The link gauges as of now: (id, value) of `jitgate.revocations.staleness_ms`
    /// (`u64::MAX` if never synced) and `jitgate.revocations.entries`.
    pub fn link_gauges(&self, now_ms: u64) -> [(Option<usize>, u64); 2] {
        let (staleness, entries) = self
            .synced
            .as_ref()
            .and_then(|s| s.state.lock().ok())
            .map_or((u64::MAX, 0), |st| {
                let staleness = st.synced_at_ms.map_or(u64::MAX, |t| now_ms.saturating_sub(t));
                (staleness, st.revoked.len() as u64)
            });
        [
            (self.link_counter(Gauge::StalenessMs), staleness),
            (self.link_counter(Gauge::Revocations), entries),
        ]
    }

    /// The id of the `jitgate.sync.failures` counter.
    pub fn sync_failures_counter(&self) -> Option<usize> {
        self.link_counter(Gauge::SyncFailures)
    }

    fn link_counter(&self, which: Gauge) -> Option<usize> {
        let at = self.metrics.len().checked_sub(metrics::GAUGES.len())? + which as usize;
        self.metrics.get(at).copied()
    }

    /// This worker's state for this configuration, with the synced list
    /// copied in if it moved since this worker last looked.
    fn worker(&self) -> Rc<RefCell<Worker>> {
        let worker = self.worker_slot();
        if let (Some(synced), Ok(mut w)) = (&self.synced, worker.try_borrow_mut()) {
            let generation = synced.generation.load(Ordering::Acquire);
            if generation != w.generation {
                if let Ok(state) = synced.state.lock() {
                    w.live.revoked.clone_from(&state.revoked);
                    w.live.synced_at_ms = state.synced_at_ms;
                    if self.cfg.identity_aware {
                        // As the Wasm filter does per worker: verified once
                        // per change, then looked up per request.
                        let now = now_ms().unwrap_or(0) / 1000;
                        w.live.grants = GrantIndex::build(&self.cfg.verifier, &state.grants, now).0;
                    }
                    w.generation = generation;
                }
            }
        }
        worker
    }

    fn worker_slot(&self) -> Rc<RefCell<Worker>> {
        LIVE.with(|cell| {
            // Not re-entered on one thread; should it ever be, a fresh state
            // (an empty grant cache) is correct, only slower.
            let Ok(mut all) = cell.try_borrow_mut() else {
                return Rc::default();
            };
            if let Some((_, live)) = all.iter().find(|(id, _)| *id == self.id) {
                return Rc::clone(live);
            }
            if all.len() >= LIVE_PER_THREAD {
                all.remove(0);
            }
            let worker: Rc<RefCell<Worker>> = Rc::default();
            all.push((self.id, Rc::clone(&worker)));
            worker
        })
    }
}

// The configuration is shared by every worker thread.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Config>();
};

/// Parses Envoy's `source.address` (`ip:port`, or a bare IP).
pub fn parse_address(raw: &[u8]) -> Option<IpAddr> {
    let text = core::str::from_utf8(raw).ok()?;
    text.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> Option<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Decides one request and carries the plan out; with reporting on, leaves
/// the decision in `report` for [`Config::on_stream_complete`].
pub fn on_request_headers(config: &Config, stream: &mut dyn Stream, report: &mut Option<PendingReport>) -> Next {
    let Some(headers) = stream.request_headers() else {
        return unavailable(stream);
    };
    if config.panic_probe && headers.single(PANIC_PROBE_HEADER.as_bytes()).is_some() {
        #[allow(clippy::panic)]
        {
            panic!("jitgate panic probe");
        }
    }
    let Some(now) = now_ms() else {
        return unavailable(stream);
    };
    let cfg = &config.cfg;
    let worker = config.worker();
    let Ok(worker) = worker.try_borrow() else {
        return unavailable(stream);
    };
    let eval = check::evaluate(cfg, &headers, &*stream, now, &worker.live);
    let denied = !eval.verdict.passes();
    let dry_run_denied = denied && cfg.mode == Mode::DryRun;
    if denied {
        stream.debug(&|| check::describe_denial(cfg, &eval));
    }
    // Counted directly: a native call costs little, unlike a VM exit.
    for i in MetricIds::indices(config.metrics.len(), eval.verdict, eval.resource, dry_run_denied) {
        if let Some(id) = config.metrics.get(i) {
            stream.increment_counter(*id);
        }
    }
    let plan = check::plan(cfg, &headers, &eval);
    if config.reports.is_some() {
        let client = stream.source_address().map(|ip| ip.to_string());
        let event = Event::of_decision(cfg, &headers, &eval, now, client.as_deref());
        let status = match &plan {
            Plan::Deny { status, .. } => Some(*status),
            Plan::Forward { .. } => None,
        };
        let allowed = cfg.control.as_ref().map_or(ReportAllowed::Each, |c| c.report_allowed);
        *report = Some(PendingReport::new(&event, eval.grant.as_deref(), status, allowed));
    }
    match plan {
        Plan::Forward { remove, add } => {
            // A header the host would not remove or add means the upstream
            // could see a grant or miss who is calling: refuse.
            let removed = remove.iter().all(|name| stream.remove_request_header(name));
            let added = removed
                && add
                    .iter()
                    .all(|(name, value)| stream.add_request_header(name.as_bytes(), value));
            if added {
                Next::Continue
            } else {
                unavailable(stream)
            }
        }
        Plan::Deny { status, headers, body } => {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            stream.send_response(status, &headers, body.as_bytes(), eval.verdict.code());
            Next::Stop
        }
    }
}

/// The fail-closed answer: 503, nothing reaches the upstream.
pub fn unavailable(stream: &mut dyn Stream) -> Next {
    let headers = [("content-type", "application/json"), ("cache-control", "no-store")];
    stream.send_response(503, &headers, check::UNAVAILABLE_BODY.as_bytes(), "jitgate_unavailable");
    Next::Stop
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoMetrics;

    impl Metrics for NoMetrics {
        fn define(&mut self, _: &str, _: bool) -> Option<usize> {
            Some(0)
        }
    }

    fn linked() -> Config {
        let json = r#"{"issuer":"i","keys":{"k1":"AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"},"resources":[{"id":"api","path_prefix":"/"}],"control":{"cluster":"jitgate_control","ingest_key":"dev-ingest-key-0123456789","report":false}}"#;
        Config::new(b"jitgate", json.as_bytes(), &mut NoMetrics).unwrap()
    }

    fn path(config: &Config) -> String {
        let polls = config.polls();
        let (_, poll) = polls.first().unwrap();
        poll.headers.iter().find(|(n, _)| *n == ":path").unwrap().1.clone()
    }

    #[test]
    fn a_synced_list_reaches_the_worker_and_the_cursor_the_next_poll() {
        let config = linked();
        assert_eq!(path(&config), "/v1/revocations?since=");
        let now = 1_780_000_000_000;
        let body = br#"{"cursor":"c 1","revoked":[{"jti":"g-1","exp":1780000600}]}"#;
        config
            .on_poll_response(Call::Revocations, Some(b"200"), body, now)
            .unwrap();
        assert_eq!(path(&config), "/v1/revocations?since=c%201");
        let worker = config.worker();
        let worker = worker.borrow();
        assert_eq!(worker.live.revoked.len(), 1);
        assert_eq!(worker.live.synced_at_ms, Some(now));
    }

    #[test]
    fn a_failed_or_malformed_answer_keeps_the_previous_list() {
        let config = linked();
        let now = 1_780_000_000_000;
        let good = br#"{"cursor":"c1","revoked":[{"jti":"g-1","exp":1780000600}]}"#;
        config
            .on_poll_response(Call::Revocations, Some(b"200"), good, now)
            .unwrap();
        assert!(config
            .on_poll_response(Call::Revocations, Some(b"503"), good, now + 1)
            .is_err());
        assert!(config.on_poll_response(Call::Revocations, None, b"", now + 2).is_err());
        assert!(config
            .on_poll_response(Call::Revocations, Some(b"200"), b"{\"revoked\":[]}", now + 3)
            .is_err());
        let worker = config.worker();
        assert_eq!(
            worker.borrow().live.synced_at_ms,
            Some(now),
            "only a good answer counts as a sync"
        );
        assert_eq!(path(&config), "/v1/revocations?since=c1");
    }

    #[test]
    fn identity_aware_mode_also_polls_the_grant_set() {
        let json = r#"{"issuer":"i","keys":{"k1":"AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"},"resources":[{"id":"api","path_prefix":"/"}],"control":{"cluster":"c","ingest_key":"dev-ingest-key-0123456789"},"identity":{"source":"header","name":"x-user"},"identity_aware":true}"#;
        let config = Config::new(b"jitgate", json.as_bytes(), &mut NoMetrics).unwrap();
        let calls: Vec<Call> = config.polls().into_iter().map(|(c, _)| c).collect();
        assert_eq!(calls, [Call::Revocations, Call::Grants]);
        assert_eq!(
            linked().polls().len(),
            1,
            "without identity-aware mode, revocations only"
        );
    }
}
