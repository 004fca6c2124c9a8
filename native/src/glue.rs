//! The native adapter's logic, free of the ABI: configuration from the
//! plugin JSON, and per request: headers in, `filter::check::evaluate` and
//! `filter::check::plan` (the Wasm filter's own code), the plan carried out.
//!
//! Envoy is behind [`Stream`] and [`Metrics`], so this is tested without it.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use filter::check::{self, Plan, RequestHost};
use filter::config::{self, FilterConfig, Mode};
use filter::headers::HeaderMap;
use filter::metrics::{self, MetricIds};
use filter::sync::Live;

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
    static LIVE: RefCell<Vec<(u64, Rc<Live>)>> = const { RefCell::new(Vec::new()) };
}

/// One filter configuration, shared by all workers (read-only).
#[derive(Debug)]
pub struct Config {
    id: u64,
    cfg: FilterConfig,
    /// Host metric ids, laid out as `filter::metrics::names` lists them.
    metrics: Vec<usize>,
    panic_probe: bool,
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
        if cfg.control.is_some() {
            // Fail closed: silently ignoring the section would leave
            // revocations unenforced and decisions unreported.
            return Err(
                "jitgate: invalid plugin configuration: field `control`: the native module has no control link yet; use the Wasm filter for revocation sync and decision reports".to_owned(),
            );
        }
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
            cfg,
            metrics: defined,
            panic_probe,
        })
    }

    /// This worker's state for this configuration.
    fn live(&self) -> Rc<Live> {
        LIVE.with(|cell| {
            // Not re-entered on one thread; should it ever be, a fresh state
            // (an empty grant cache) is correct, only slower.
            let Ok(mut all) = cell.try_borrow_mut() else {
                return Rc::new(Live::default());
            };
            if let Some((_, live)) = all.iter().find(|(id, _)| *id == self.id) {
                return Rc::clone(live);
            }
            if all.len() >= LIVE_PER_THREAD {
                all.remove(0);
            }
            let live = Rc::new(Live::default());
            all.push((self.id, Rc::clone(&live)));
            live
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

fn now_ms() -> Option<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Decides one request and carries the plan out.
pub fn on_request_headers(config: &Config, stream: &mut dyn Stream) -> Next {
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
    let live = config.live();
    let eval = check::evaluate(cfg, &headers, &*stream, now, &live);
    let denied = !eval.verdict.passes();
    let dry_run_denied = denied && cfg.mode == Mode::DryRun;
    // Counted directly: a native call costs little, unlike a VM exit.
    for i in MetricIds::indices(config.metrics.len(), eval.verdict, eval.resource, dry_run_denied) {
        if let Some(id) = config.metrics.get(i) {
            stream.increment_counter(*id);
        }
    }
    match check::plan(cfg, &headers, &eval) {
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
