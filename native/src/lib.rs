//! jitgate as an Envoy dynamic module: the Wasm filter's decision code
//! (`filter::config`, `filter::check`) loaded natively by Envoy 1.40.0's
//! `envoy.extensions.filters.http.dynamic_modules` filter, with no VM.
//!
//! - [`glue`]: configuration and the per-request decision, host behind a
//!   trait (safe Rust, tested without Envoy);
//! - `abi`: the C ABI (types, Envoy's callbacks, the exported hooks), the
//!   only place with `unsafe`.
//!
//! Differences from the Wasm form: the synced lists and the report buffer
//! are per process (workers copy the lists once per poll) instead of per
//! worker through proxy-wasm shared data.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod abi;
pub mod glue;
