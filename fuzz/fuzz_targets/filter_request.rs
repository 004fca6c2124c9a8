//! A whole request through the filter's decision: the host's serialized
//! header map (as bytes) is decoded and evaluated; never panics, and only
//! an allowed grant or unprotected traffic passes.
#![no_main]

use jitgate_filter::check::{evaluate, plan, Plan, RequestHost};
use jitgate_filter::headers::HeaderMap;
use libfuzzer_sys::fuzz_target;

struct NoHost;

impl RequestHost for NoHost {
    fn source_address(&self) -> Option<std::net::IpAddr> {
        None
    }
    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        None
    }
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        None
    }
}

const CONFIG: &str = r#"{"issuer":"jit-control","keys":{"k1":"AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"},"accept_bearer":true,"resources":[{"id":"payments-api","path_prefix":"/v1"}]}"#;

fuzz_target!(|data: &[u8]| {
    let cfg = jitgate_filter::config::parse(CONFIG.as_bytes()).unwrap();
    let Some(headers) = HeaderMap::from_serialized(data.to_vec()) else { return };
    let eval = evaluate(&cfg, &headers, &NoHost, 1_780_000_000_000, &jitgate_filter::sync::Live::default());
    let passes = eval.verdict.passes();
    match plan(&cfg, &headers, &eval) {
        Plan::Forward { .. } => assert!(passes),
        Plan::Deny { status, .. } => assert!(!passes && status >= 400),
    }
});
