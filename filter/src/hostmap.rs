//! The request header map, read and changed straight through the host ABI.
//!
//! The SDK's map reader panics on a header name that is not UTF-8, and its
//! writers panic on any status but `Ok`; a panic traps the VM. These call
//! the same ABI functions and hand back the status instead: the serialized
//! map goes to [`crate::headers::HeaderMap`], which checks every length.
#![allow(unsafe_code)]

use crate::headers::HeaderMap;

#[cfg(target_arch = "wasm32")]
mod ffi {
    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
        pub fn proxy_remove_header_map_value(map_type: MapType, key_data: *const u8, key_size: usize) -> Status;
        pub fn proxy_add_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> Status;
    }
}

/// Removes every value of the request header `name`; `false` if the host
/// refused.
#[cfg(target_arch = "wasm32")]
pub fn remove_request_header(name: &[u8]) -> bool {
    use proxy_wasm::types::{MapType, Status};
    // SAFETY: the pointer and length describe `name`, which outlives the
    // call; the host only reads them.
    let status = unsafe { ffi::proxy_remove_header_map_value(MapType::HttpRequestHeaders, name.as_ptr(), name.len()) };
    status == Status::Ok
}

/// Adds a request header value (the caller has removed any earlier one);
/// `false` if the host refused.
#[cfg(target_arch = "wasm32")]
pub fn add_request_header(name: &str, value: &[u8]) -> bool {
    use proxy_wasm::types::{MapType, Status};
    // SAFETY: both pointer and length pairs describe borrowed slices that
    // outlive the call; the host only reads them.
    let status = unsafe {
        ffi::proxy_add_header_map_value(
            MapType::HttpRequestHeaders,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == Status::Ok
}

/// The request headers, or `None` if the host failed or sent an unreadable
/// map (the caller then denies).
#[cfg(target_arch = "wasm32")]
pub fn request_headers() -> Option<HeaderMap> {
    use proxy_wasm::types::{MapType, Status};
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes that it allocated
    // through this module's exported allocator (the SDK's
    // `proxy_on_memory_allocate`, which allocates a boxed slice of exactly
    // that length), so taking ownership as a Vec with that length and
    // capacity matches how the memory was allocated.
    unsafe {
        match ffi::proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
            Status::Ok if data.is_null() => Some(HeaderMap::default()),
            Status::Ok => HeaderMap::from_serialized(Vec::from_raw_parts(data, size, size)),
            _ => None,
        }
    }
}

/// Outside WebAssembly there is no host; the glue never runs there.
#[cfg(not(target_arch = "wasm32"))]
pub fn request_headers() -> Option<HeaderMap> {
    None
}

/// Outside WebAssembly there is no host; the glue never runs there.
#[cfg(not(target_arch = "wasm32"))]
pub fn remove_request_header(_name: &[u8]) -> bool {
    false
}

/// Outside WebAssembly there is no host; the glue never runs there.
#[cfg(not(target_arch = "wasm32"))]
pub fn add_request_header(_name: &str, _value: &[u8]) -> bool {
    false
}
