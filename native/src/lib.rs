//! jitgate as an Envoy dynamic module: the Wasm filter's decision code
//! (`filter::config`, `filter::check`) loaded natively by Envoy 1.40.0's
//! `envoy.extensions.filters.http.dynamic_modules` filter, with no VM.
//!
//! - [`glue`]: configuration and the per-request decision, host behind a
//!   trait (safe Rust, tested without Envoy);
//! - `abi`: the C ABI (types, Envoy's callbacks, the exported hooks), the
//!   only place with `unsafe`.
//!
//! Differences from the Wasm form: no control link yet (a `control`
//! section is refused, see [`glue::Config::new`]), so no revocation sync,
//! identity-aware grants or decision reports; denials are not logged.

mod abi;
pub mod glue;
