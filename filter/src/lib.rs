//! The jitgate proxy-wasm filter: checks a just-in-time access grant on
//! every request, locally, with no call on the request path.
//!
//! - [`config`]: the plugin configuration, validated once;
//! - [`route`]: which protected resource a request belongs to;
//! - [`headers`] and `hostmap`: the request headers, read without trusting
//!   the host's bytes; `entropy`: random bits from the host;
//! - [`check`]: the decision and what to do with the request (pure Rust);
//! - [`cache`]: recently verified grants, per worker;
//! - [`metrics`]: counters per decision code;
//! - [`sync`] and [`poll`]: what is synced from the control service, and
//!   when and where it is polled;
//! - [`link`]: the control link a worker runs each tick (polls, snapshot
//!   merging, reports), over a small host trait so it is tested natively;
//! - [`plugin`]: the proxy-wasm contexts that connect the above to the host
//!   (feature `proxy-wasm`, on by default; the native Envoy module in
//!   `native/` uses everything else without it).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod cache;
pub mod check;
pub mod config;
#[cfg(feature = "proxy-wasm")]
mod entropy;
pub mod headers;
#[cfg(feature = "proxy-wasm")]
mod hostmap;
mod jsonw;
pub mod link;
pub mod metrics;
#[cfg(feature = "proxy-wasm")]
pub mod plugin;
pub mod poll;
pub mod report;
pub mod route;
pub mod sync;

/// The module's entry point, called by the host once the VM starts.
#[cfg(all(target_arch = "wasm32", feature = "proxy-wasm"))]
mod entry {
    #![allow(missing_docs)]
    proxy_wasm::main! {{
        // The host filters by its own log level; the filter logs nothing on
        // the success path and denials only at debug.
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::plugin::Root::default())
        });
    }}
}
