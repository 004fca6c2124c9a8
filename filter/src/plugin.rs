//! The proxy-wasm glue: root and HTTP contexts that move data between the
//! host and [`crate::check`]. No decision is made here.

use core::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use grant::NoRevocations;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::check::{self, Plan, RequestHost, Verdict};
use crate::config::{self, FilterConfig, Mode};
use crate::hostmap;
use crate::metrics::{self, MetricIds};

/// Configuration and metric ids shared by every request of one VM.
struct Active {
    cfg: FilterConfig,
    metrics: MetricIds,
}

/// The root context: loads the configuration.
#[derive(Default)]
pub struct Root {
    active: Option<Rc<Active>>,
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
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
        let ids: Result<Vec<u32>, _> = metrics::names(
            &cfg.resources
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>(),
        )
        .iter()
        .map(|name| hostcalls::define_metric(MetricType::Counter, name))
        .collect();
        let Ok(ids) = ids else {
            log(
                LogLevel::Critical,
                "jitgate: the host refused to define metrics",
            );
            return false;
        };
        log(
            LogLevel::Info,
            &format!(
                "jitgate: configured issuer={} keys={} resources={} mode={}",
                cfg.verifier.issuer(),
                cfg.verifier.keys().kids().collect::<Vec<_>>().join(","),
                cfg.resources.len(),
                if cfg.mode == Mode::Enforce {
                    "enforce"
                } else {
                    "dry-run"
                },
            ),
        );
        self.active = Some(Rc::new(Active {
            cfg,
            metrics: MetricIds::new(ids),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            active: self.active.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request.
struct Request {
    active: Option<Rc<Active>>,
}

impl Context for Request {}

impl RequestHost for Request {
    fn source_address(&self) -> Option<IpAddr> {
        let raw = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()?;
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
}

impl Request {
    fn respond(&self, status: u16, headers: &[(&str, String)], body: &str) -> Action {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let _ = hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()));
        Action::Pause
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let unavailable = |this: &Self| {
            let json = [
                ("content-type", "application/json".to_owned()),
                ("cache-control", "no-store".to_owned()),
            ];
            this.respond(503, &json, r#"{"error":"gateway_unavailable","message":"The access gateway cannot check this request.","resource":null}"#)
        };
        let Some(active) = self.active.clone() else {
            return unavailable(self);
        };
        let Some(headers) = hostmap::request_headers() else {
            return unavailable(self);
        };
        let now = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());

        let eval = check::evaluate(&active.cfg, &headers, self, now, &NoRevocations);
        let denied = !eval.verdict.passes();
        let dry_run_denied = denied && active.cfg.mode == Mode::DryRun;
        for id in active
            .metrics
            .for_decision(eval.verdict, eval.resource, dry_run_denied)
        {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if denied
            && matches!(
                hostcalls::get_log_level(),
                Ok(LogLevel::Trace | LogLevel::Debug)
            )
        {
            log(
                LogLevel::Debug,
                &describe(
                    &active.cfg,
                    &eval.verdict,
                    eval.resource,
                    eval.grant.as_ref(),
                ),
            );
        }

        match check::plan(&active.cfg, &headers, &eval) {
            Plan::Forward { remove, set } => {
                for name in &remove {
                    if let Ok(name) = core::str::from_utf8(name) {
                        let _ = hostcalls::set_map_value_bytes(
                            proxy_wasm::types::MapType::HttpRequestHeaders,
                            name,
                            None,
                        );
                    }
                }
                for (name, value) in &set {
                    let _ = hostcalls::set_map_value_bytes(
                        proxy_wasm::types::MapType::HttpRequestHeaders,
                        name,
                        Some(value),
                    );
                }
                Action::Continue
            }
            Plan::Deny {
                status,
                headers,
                body,
            } => self.respond(status, &headers, &body),
        }
    }
}

fn describe(
    cfg: &FilterConfig,
    verdict: &Verdict,
    resource: Option<usize>,
    grant: Option<&grant::VerifiedGrant>,
) -> String {
    let resource = resource
        .and_then(|i| cfg.resources.get(i))
        .map_or("-", |r| r.id.as_str());
    match grant {
        Some(g) => format!(
            "jitgate: deny {} resource={resource} grant={} sub={}",
            verdict.code(),
            g.jti(),
            g.sub()
        ),
        None => format!("jitgate: deny {} resource={resource}", verdict.code()),
    }
}
