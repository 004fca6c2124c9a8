//! The cost of the Wasm runtime alone, and of the host calls the jitgate
//! filter makes: a root and HTTP context, registered under the same root id
//! as the real filter (`jitgate`), that let every request continue.
//!
//! Its plugin configuration picks how much it does per request, so that the
//! benchmark can show where the filter's time goes, step by step:
//! - anything else (`{}`): nothing; the runtime's own callbacks only;
//! - `read`: also fetch the request header map, the one read the filter
//!   makes (`proxy_get_header_map_pairs`, with its allocation callback);
//! - `read-write`: also remove one header and add three, the writes the
//!   filter makes on an allowed request (grant out; subject, grant id and
//!   request id in).
//!
//! The difference between `read-write` and the jitgate filter is then the
//! filter's own work inside the VM (finding, verifying and matching the
//! grant), measured with the same host calls on both sides.
//!
//! Two users: `scripts/bench` compares it with the jitgate filter, and the
//! end-to-end harness (`e2e/tests/harness.rs`) uses it to prove that Envoy
//! loads a module from the documented template independently of the
//! filter's behaviour.
#![allow(unsafe_code)]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

/// What each request does, from the plugin configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Nothing,
    Read,
    ReadWrite,
}

/// Accepts any plugin configuration and hands out pass-through contexts.
struct Root {
    work: Work,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.work = match config.as_slice() {
            b"read" => Work::Read,
            b"read-write" => Work::ReadWrite,
            _ => Work::Nothing,
        };
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass { work: self.work }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Lets the request through, after the configured host calls.
struct Pass {
    work: Work,
}

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.work != Work::Nothing {
            let map = host::request_header_map();
            if self.work == Work::ReadWrite {
                // Names as the filter writes them; values of its typical size.
                host::remove(b"x-jit-grant");
                host::add("x-jit-subject", b"alice@example.com");
                host::add("x-jit-grant-id", b"01J9Z8K3QW5T7Y2X4V6B8N0M1P");
                host::add("x-jit-request-id", b"01J9Z8JZ4F2W6M8Q0R3T5V7X9A");
            }
            drop(map);
        }
        Action::Continue
    }
}

/// The same ABI calls the jitgate filter makes (`filter/src/hostmap.rs`),
/// without its parsing.
#[cfg(target_arch = "wasm32")]
mod host {
    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> Status;
        fn proxy_remove_header_map_value(map_type: MapType, key: *const u8, key_size: usize) -> Status;
        fn proxy_add_header_map_value(
            map_type: MapType,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> Status;
    }

    /// The serialized request header map, owned (freed on drop).
    pub fn request_header_map() -> Option<Vec<u8>> {
        let mut data: *mut u8 = core::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host allocates `size` bytes through the SDK's
        // `proxy_on_memory_allocate` (a boxed slice of exactly that length),
        // so owning it as a Vec of that length and capacity matches.
        unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                Status::Ok if !data.is_null() => Some(Vec::from_raw_parts(data, size, size)),
                _ => None,
            }
        }
    }

    /// Removes a request header.
    pub fn remove(name: &[u8]) {
        // SAFETY: a borrowed slice that outlives the call; the host reads it.
        unsafe {
            proxy_remove_header_map_value(MapType::HttpRequestHeaders, name.as_ptr(), name.len());
        }
    }

    /// Adds a request header.
    pub fn add(name: &str, value: &[u8]) {
        // SAFETY: borrowed slices that outlive the call; the host reads them.
        unsafe {
            proxy_add_header_map_value(
                MapType::HttpRequestHeaders,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
    }
}

/// Outside WebAssembly there is no host (the module only builds there for
/// `cargo test --workspace`).
#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub fn request_header_map() -> Option<Vec<u8>> {
        None
    }
    pub fn remove(_: &[u8]) {}
    pub fn add(_: &str, _: &[u8]) {}
}

/// The module's entry point (`_initialize`), called by the host once the VM
/// starts.
mod entry {
    #![allow(missing_docs)]
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::Root { work: crate::Work::Nothing })
        });
    }}
}
