//! The cost of the Wasm runtime alone: a root and HTTP context, registered
//! under the same root id as the real filter (`jitgate`), that do nothing but
//! let every request continue.
//!
//! Two users: `scripts/bench` compares it with the jitgate filter (what the
//! filter's own work costs on top of the runtime), and the end-to-end harness
//! (`e2e/tests/harness.rs`) uses it to prove that Envoy loads a module from
//! the documented template independently of the filter's behaviour.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

/// Accepts any plugin configuration and hands out pass-through contexts.
struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Lets the request through untouched.
struct Pass;

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        Action::Continue
    }
}

/// The module's entry point (`_initialize`), called by the host once the VM
/// starts.
mod entry {
    #![allow(missing_docs)]
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::Root)
        });
    }}
}
