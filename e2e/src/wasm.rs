//! Where the Wasm modules the tests load into Envoy are: the release builds
//! that `scripts/build-wasm` leaves under the cargo target directory. The
//! tests never build them themselves (a wasm32 release build inside a test
//! would be slow and would hide a broken build behind a test failure).

use std::path::PathBuf;

use crate::target_dir;

/// The release build of a wasm32-wasip1 cdylib named `file`; panics with what
/// to run when it is missing.
fn built_module(file: &str) -> PathBuf {
    let path = target_dir().join("wasm32-wasip1/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: build it first: scripts/build-wasm",
        path.display()
    );
    path
}

/// The jitgate filter, `target/wasm32-wasip1/release/jitgate_filter.wasm`
/// (honours `CARGO_TARGET_DIR`); panics with "build it first:
/// scripts/build-wasm" if it is missing.
pub fn filter_wasm_path() -> PathBuf {
    built_module("jitgate_filter.wasm")
}

/// The no-op filter (`bench/noop-filter`, root id `jitgate`, lets every
/// request continue): the harness's proof that Envoy loads a module, and the
/// benchmark's "Wasm runtime alone" baseline. Panics like
/// [`filter_wasm_path`] if it is missing.
pub fn noop_filter_wasm_path() -> PathBuf {
    built_module("jitgate_noop_filter.wasm")
}
