//! Reading the request header map straight from the host.
//!
//! The SDK's map reader panics on a header name that is not UTF-8; a panic
//! traps the VM. This asks the host for the serialized map through the same
//! ABI call and hands the bytes to [`crate::headers::HeaderMap`], which
//! checks every length.
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
    }
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
