//! The proxy-wasm glue: root and HTTP contexts that move data between the
//! host and the pure modules. No decision is made here.
//!
//! The root context (one per worker VM) loads the configuration and ticks
//! every 100 ms: it flushes the decision counters and, when a control link
//! is configured, hands the tick and the answers to its calls to
//! [`crate::link`], which owns the link's logic, through [`Host`] (the
//! proxy-wasm implementation of [`LinkHost`]). HTTP contexts only read the
//! worker's memory and append to the report buffer.

use core::net::{IpAddr, SocketAddr};
use std::borrow::Cow;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::check::{self, Plan, RequestHost};
use crate::config::{self, Mode};
use crate::hostmap;
use crate::link::{self, Link, LinkHost, SharedDataError, Worker};
use crate::metrics::{self, Gauge, MetricIds};
use crate::poll;
use crate::report::{Event, Pending};

/// How often the root context wakes up: to flush counters and, with a
/// control link, to sync and report.
const TICK: Duration = Duration::from_millis(100);

/// The root context.
#[derive(Default)]
pub struct Root {
    worker: Option<Rc<Worker>>,
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

/// The proxy-wasm host as the control link sees it.
struct Host;

impl LinkHost for Host {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => SharedDataError::CasMismatch,
            _ => SharedDataError::Refused,
        })
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            body,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn increment_metric(&self, id: u32, by: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn log(&self, level: link::Level, message: &str) {
        let level = match level {
            link::Level::Debug => LogLevel::Debug,
            link::Level::Warn => LogLevel::Warn,
        };
        log(level, message);
    }

    /// The host's random bits (see [`crate::entropy`]); the clock's
    /// nanoseconds, mixed, if it has none.
    fn random(&self) -> u64 {
        if let Some(bits) = crate::entropy::random_u64() {
            return bits;
        }
        let nanos = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        poll::mix(nanos)
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(worker) = &self.worker else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = || {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
        };
        self.link
            .on_response(&Host, worker, token_id, status.as_deref(), body, now_ms());
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
        let worker = Rc::new(Worker::new(cfg, MetricIds::new(ids), Host.random()));
        self.link = Link::default();
        // A new worker starts from what the others already synced, so it
        // enforces the current list before its first request.
        self.link.refresh_from_shared(&Host, &worker, now_ms());
        self.worker = Some(worker);
        // The tick also flushes the decision counters.
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        let Some(worker) = &self.worker else {
            return;
        };
        worker.ticked_ms.set(Some(now));
        worker.metrics.flush(|id, n| Host.increment_metric(id, n));
        self.link.tick(&Host, worker, now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            worker: self.worker.clone(),
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request.
struct Request {
    worker: Option<Rc<Worker>>,
    /// The decision report, waiting for the response status.
    pending: Option<Pending>,
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
        let Some(worker) = self.worker.clone() else {
            return self.unavailable();
        };
        let Some(headers) = hostmap::request_headers() else {
            return self.unavailable();
        };
        let now = worker.request_now_ms(now_ms);
        // `try_borrow` throughout the request path: a re-entrant callback
        // finds the state busy and the request fails closed (503), where a
        // `borrow` would panic and trap the VM.
        worker.adopt_first_sync(&Host, now);
        let Ok(live) = worker.live.try_borrow() else {
            return self.unavailable();
        };
        let eval = check::evaluate(&worker.cfg, &headers, self, now, &live);
        let never_synced = live.synced_at_ms.is_none();
        drop(live);
        if eval.resource.is_some() && eval.verdict.passes() && worker.cfg.control.is_some() && never_synced {
            // Only reachable with `unsynced: allow`.
            worker.metrics.count_link(Gauge::UnsyncedAllowed);
        }
        let denied = !eval.verdict.passes();
        let dry_run_denied = denied && worker.cfg.mode == Mode::DryRun;
        worker.metrics.count(eval.verdict, eval.resource, dry_run_denied);
        if denied && matches!(hostcalls::get_log_level(), Ok(LogLevel::Trace | LogLevel::Debug)) {
            log(LogLevel::Debug, &check::describe_denial(&worker.cfg, &eval));
        }
        let plan = check::plan(&worker.cfg, &headers, &eval);
        if worker.reporter.is_some() {
            let client = source_address_text();
            let event = Event::of_decision(&worker.cfg, &headers, &eval, now, client.as_deref());
            let status = match &plan {
                Plan::Deny { status, .. } => Some(*status),
                Plan::Forward { .. } => None,
            };
            let allowed = worker
                .cfg
                .control
                .as_ref()
                .map_or(config::ReportAllowed::Each, |c| c.report_allowed);
            self.pending = Some(Pending::new(&event, eval.grant.as_deref(), status, allowed));
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
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some(reporter) = self.worker.as_ref().and_then(|a| a.reporter.as_ref()) else {
            return;
        };
        // The upstream's status for forwarded requests (0 if none came).
        let upstream = if pending.answered() {
            0
        } else {
            hostcalls::get_property(vec!["response", "code"])
                .ok()
                .flatten()
                .and_then(|b| b.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()))
                .map_or(0, |b| u16::try_from(u64::from_le_bytes(b)).unwrap_or(0))
        };
        if let Ok(mut reporter) = reporter.try_borrow_mut() {
            reporter.finish(pending, upstream);
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
