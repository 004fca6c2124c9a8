//! The C ABI of Envoy 1.40.0's dynamic modules, as far as this filter needs
//! it, and the exported event hooks.
//!
//! Written from `source/extensions/dynamic_modules/abi/abi.h` in Envoy's
//! public repository (the newest stored revision, which declares ABI
//! `v0.1.0`), checked against the Envoy 1.40.0 binary: it exports every
//! callback used here, and on load it logs "Dynamic module ABI version
//! v0.2.0 matched." for the version string below (with `v0.1.0` it warns
//! that the version is deprecated). The callbacks used are exercised
//! against that binary by `e2e/tests/native_filter.rs`. Only the
//! declarations used here are written out; Envoy refuses a module that
//! lacks a hook it requires, so the hooks this filter does not need are
//! exported as no-ops.
//!
//! With a control link, the configuration-level hooks
//! (`on_http_filter_config_scheduled`, `..._config_http_callout_done`) poll
//! revocations from and post decision reports to the control service from
//! Envoy's main thread; a small thread of the module commits a scheduler
//! event every tick (the poll or report interval, whichever is shorter).
//!
//! Structs passed by value (`module_buffer`, `envoy_buffer`: a pointer and a
//! length) are `#[repr(C)]` mirrors of the header's.
//!
//! Every hook runs its body under [`std::panic::catch_unwind`]: a panic never
//! crosses into Envoy. A panic while deciding a request answers 503 (fail
//! closed); a panic while creating a configuration returns null, so Envoy
//! refuses the configuration. This needs the `release-native` profile
//! (`panic = "unwind"`); under `panic = "abort"` a panic would end Envoy.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::ptr;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use filter::check::RequestHost;
use filter::headers::{HeaderMap, MAX_HEADERS};

use crate::glue::{self, Call, Config, PendingReport, Poll, Stream};

/// The ABI version of Envoy 1.40.0 (its log confirms "matched").
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// The null buffer: for `set_header`, "remove the header".
    const NULL: ModuleBuffer = ModuleBuffer {
        ptr: ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

impl EnvoyBuffer {
    const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: ptr::null(),
        length: 0,
    };

    /// # Safety
    /// `ptr` must be null or valid for `length` bytes for `'a`.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees ptr is valid for length bytes.
            unsafe { core::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    key: EnvoyBuffer,
    value: EnvoyBuffer,
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
pub struct ModuleHeader {
    key: ModuleBuffer,
    value: ModuleBuffer,
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADER: u32 = 0;
/// `..._on_http_filter_request_headers_status_Continue` / `_StopIteration`
/// (the other `*_status` enums start with the same `Continue = 0`).
const CONTINUE: u32 = 0;
const STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_http_callout_init_result_Success` and
/// `envoy_dynamic_module_type_http_callout_result_Success` (both 0).
const CALLOUT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_log_level_Debug` and `_Error`.
const LOG_DEBUG: u32 = 1;
const LOG_WARN: u32 = 3;
const LOG_ERROR: u32 = 4;

/// `envoy_dynamic_module_type_attribute_id` values used here.
mod attribute {
    pub const RESPONSE_CODE: u32 = 15;
    pub const SOURCE_ADDRESS: u32 = 24;
    pub const URI_SAN_PEER_CERTIFICATE: u32 = 37;
    pub const SHA256_PEER_CERTIFICATE_DIGEST: u32 = 38;
}

#[cfg(not(test))]
extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config_envoy: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config_envoy: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_get_headers_size(filter_envoy: *mut c_void, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy: *mut c_void,
        kind: u32,
        result: *mut EnvoyHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter_envoy: *mut c_void,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy: *mut c_void,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy: *mut c_void,
        status: u32,
        headers: *mut ModuleHeader,
        headers_length: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy: *mut c_void,
        id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter_envoy: *mut c_void,
        id: u32,
        result: *mut u64,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config_envoy: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_length: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config_envoy: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config_envoy: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

#[cfg(test)]
use fake::*;

/// Logs one line at error level (configuration refusals only).
fn log_error(message: &str) {
    log(LOG_ERROR, message);
}

fn log(level: u32, message: &str) {
    // SAFETY: the buffer points at `message`, alive for the call; Envoy
    // copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// One request's stream in Envoy, valid for the hook it is made in.
struct EnvoyStream {
    ptr: *mut c_void,
}

impl EnvoyStream {
    fn attribute(&self, id: u32) -> Option<&[u8]> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: `ptr` is the stream Envoy passed to the running hook and
        // `out` a valid place for the result.
        let ok = unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_string(self.ptr, id, &mut out) };
        // SAFETY: Envoy's buffer stays valid until the hook returns, which
        // outlives the borrow of `self`.
        ok.then(|| unsafe { out.bytes() })
    }
}

impl RequestHost for EnvoyStream {
    fn source_address(&self) -> Option<IpAddr> {
        glue::parse_address(self.attribute(attribute::SOURCE_ADDRESS)?)
    }

    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        self.attribute(attribute::URI_SAN_PEER_CERTIFICATE).map(<[u8]>::to_vec)
    }

    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        filter::check::parse_certificate_digest(self.attribute(attribute::SHA256_PEER_CERTIFICATE_DIGEST)?)
    }
}

impl Stream for EnvoyStream {
    fn request_headers(&self) -> Option<HeaderMap> {
        // SAFETY: `ptr` is the live stream of the running hook.
        let count = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.ptr, REQUEST_HEADER) };
        if count > MAX_HEADERS {
            return None;
        }
        let mut raw = vec![
            EnvoyHeader {
                key: EnvoyBuffer::EMPTY,
                value: EnvoyBuffer::EMPTY,
            };
            count
        ];
        // SAFETY: `raw` holds exactly `count` entries, the size Envoy just
        // reported for this map, as the callback requires.
        let ok = unsafe { envoy_dynamic_module_callback_http_get_headers(self.ptr, REQUEST_HEADER, raw.as_mut_ptr()) };
        if !ok {
            return None;
        }
        // SAFETY: Envoy's key and value buffers stay valid until the hook
        // returns or a header is changed; they are copied right here.
        let pairs: Vec<(&[u8], &[u8])> = raw
            .iter()
            .map(|h| unsafe { (h.key.bytes(), h.value.bytes()) })
            .collect();
        Some(HeaderMap::from_pairs(&pairs))
    }

    fn remove_request_header(&mut self, name: &[u8]) -> bool {
        // SAFETY: live stream; the key buffer is alive for the call; a null
        // value asks Envoy to remove every value of the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::NULL,
            )
        }
    }

    fn add_request_header(&mut self, name: &[u8], value: &[u8]) -> bool {
        // SAFETY: live stream; both buffers are alive for the call (Envoy
        // copies them).
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        }
    }

    fn send_response(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut list: Vec<ModuleHeader> = headers
            .iter()
            .map(|(n, v)| ModuleHeader {
                key: ModuleBuffer::of(n.as_bytes()),
                value: ModuleBuffer::of(v.as_bytes()),
            })
            .collect();
        // SAFETY: live stream; `list`, `body` and `details` are alive for the
        // call and Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                list.as_mut_ptr(),
                list.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }

    fn debug(&self, message: &dyn Fn() -> String) {
        // SAFETY: plain query of Envoy's logger level.
        if unsafe { envoy_dynamic_module_callback_log_enabled(LOG_DEBUG) } {
            let line = message();
            // SAFETY: the buffer points at `line`, alive for the call.
            unsafe { envoy_dynamic_module_callback_log(LOG_DEBUG, ModuleBuffer::of(line.as_bytes())) }
        }
    }

    fn increment_counter(&mut self, id: usize) {
        // SAFETY: live stream; `id` was defined on the configuration that
        // created this stream; no labels.
        let _ =
            unsafe { envoy_dynamic_module_callback_http_filter_increment_counter(self.ptr, id, ptr::null_mut(), 0, 1) };
    }
}

/// Defines the configuration's metrics in Envoy (only possible while the
/// configuration is being created).
struct EnvoyConfig {
    ptr: *mut c_void,
}

impl glue::Metrics for EnvoyConfig {
    fn define(&mut self, name: &str, gauge: bool) -> Option<usize> {
        let mut id = 0usize;
        let name = ModuleBuffer::of(name.as_bytes());
        // SAFETY: `ptr` is the configuration Envoy passed to
        // `on_http_filter_config_new`, still running; `id` is a valid place.
        let result = unsafe {
            if gauge {
                envoy_dynamic_module_callback_http_filter_config_define_gauge(
                    self.ptr,
                    name,
                    ptr::null_mut(),
                    0,
                    &mut id,
                )
            } else {
                envoy_dynamic_module_callback_http_filter_config_define_counter(
                    self.ptr,
                    name,
                    ptr::null_mut(),
                    0,
                    &mut id,
                )
            }
        };
        (result == METRICS_SUCCESS).then_some(id)
    }
}

// ---------------------------------------------------------------------------
// Event hooks. Envoy looks each up by name; the types are the ABI's.
// ---------------------------------------------------------------------------

/// What `on_http_filter_config_new` hands Envoy: the configuration and,
/// with a control link, the thread that times the polls.
struct Module {
    config: Config,
    /// Held for its `Drop`, which stops and joins the thread.
    _poller: Option<Poller>,
    /// When the last poll started (ms since the epoch).
    last_poll_ms: AtomicU64,
    /// When a stale revocation list was last warned about.
    last_warning_ms: AtomicU64,
    /// Calls in flight, by callout id (polls never overlap; one report
    /// batch at a time).
    calls: Mutex<Vec<(u64, Call)>>,
}

/// Wakes Envoy's main thread every tick (through a config scheduler) to
/// call the control service. Envoy's callouts can only be made
/// from the main thread, so this thread only commits scheduler events.
struct Poller {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    scheduler: SendPtr,
}

/// Envoy's scheduler handle; its commit is meant to be called from any
/// thread.
#[derive(Clone, Copy)]
struct SendPtr(*mut c_void);
// SAFETY: the scheduler's only use off the main thread is commit, which
// Envoy documents as callable from any thread; it is deleted only after the
// thread has been joined.
unsafe impl Send for SendPtr {}

impl Poller {
    fn start(config_envoy: *mut c_void, interval: Duration) -> Option<Poller> {
        // SAFETY: called from on_http_filter_config_new with Envoy's live
        // configuration pointer.
        let scheduler =
            SendPtr(unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy) });
        if scheduler.0.is_null() {
            return None;
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("jitgate-poll".to_owned())
            .spawn(move || {
                let ptr = scheduler;
                let (lock, wake) = &*signal;
                let Ok(mut stopped) = lock.lock() else { return };
                while !*stopped {
                    // SAFETY: the scheduler lives until this thread is joined.
                    unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(ptr.0, 0) };
                    match wake.wait_timeout(stopped, interval) {
                        Ok((guard, _)) => stopped = guard,
                        Err(_) => return,
                    }
                }
            });
        match spawned {
            Ok(thread) => Some(Poller {
                stop,
                thread: Some(thread),
                scheduler,
            }),
            Err(_) => {
                // SAFETY: made above, never committed.
                unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler.0) };
                None
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // SAFETY: the only other user, the thread, has ended.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.scheduler.0) };
    }
}

/// Program init: returns the ABI version the module was built against.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// Creates the filter configuration from the plugin JSON; null refuses it.
///
/// # Safety
/// Envoy passes buffers valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy's buffers are valid for this call.
        let (name, json) = unsafe { (name.bytes(), config.bytes()) };
        let config = Config::new(name, json, &mut EnvoyConfig { ptr: config_envoy })?;
        let poller = match config.tick_ms() {
            Some(tick) => Some(
                Poller::start(config_envoy, Duration::from_millis(tick))
                    .ok_or_else(|| "jitgate: cannot start the control link's timer".to_owned())?,
            ),
            None => None,
        };
        Ok::<_, String>(Module {
            config,
            _poller: poller,
            last_poll_ms: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(0),
            calls: Mutex::new(Vec::new()),
        })
    }));
    match made {
        Ok(Ok(module)) => Box::into_raw(Box::new(module)).cast_const().cast(),
        Ok(Err(message)) => {
            log_error(&message);
            ptr::null()
        }
        Err(_) => {
            log_error("jitgate: internal error while loading the configuration; refused");
            ptr::null()
        }
    }
}

/// Frees a configuration made by `on_http_filter_config_new`.
///
/// # Safety
/// `config` came from `on_http_filter_config_new` and is destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !config.is_null() {
            // SAFETY: made by Box::into_raw in config_new; Envoy destroys it
            // once, after every filter made from it. Dropping it stops and
            // joins the poller first.
            drop(unsafe { Box::from_raw(config.cast_mut().cast::<Module>()) });
        }
    }));
}

/// The per-request filter: only the configuration it belongs to (Envoy
/// keeps the configuration alive while any of its filters lives).
struct Filter {
    config: *const Module,
    /// The decision, until the stream completes (reporting only).
    report: Option<PendingReport>,
}

/// Creates the per-request filter; null closes the stream.
///
/// # Safety
/// `config` came from `on_http_filter_config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    catch_unwind(|| {
        if config.is_null() {
            return ptr::null();
        }
        Box::into_raw(Box::new(Filter {
            config: config.cast(),
            report: None,
        }))
        .cast_const()
        .cast()
    })
    .unwrap_or(ptr::null())
}

/// Decides the request. A panic anywhere in the decision answers 503.
///
/// # Safety
/// Envoy passes the live stream and a filter from `on_http_filter_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let mut stream = EnvoyStream { ptr: filter_envoy };
    let decided = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the filter came from on_http_filter_new (a Box this
        // module owns, used only on this stream's worker) and lives until
        // on_http_filter_destroy; its configuration outlives it.
        let filter = unsafe { filter.cast_mut().cast::<Filter>().as_mut() };
        match filter {
            // SAFETY: as above, the configuration outlives the filter.
            Some(f) => match unsafe { f.config.as_ref() } {
                Some(m) => glue::on_request_headers(&m.config, &mut stream, &mut f.report),
                None => glue::unavailable(&mut stream),
            },
            None => glue::unavailable(&mut stream),
        }
    }));
    match decided {
        Ok(glue::Next::Continue) => CONTINUE,
        Ok(glue::Next::Stop) => STOP_ITERATION,
        Err(_) => {
            // Fail closed. A second panic here is caught as well; the
            // stream then stays stopped, which still lets nothing through.
            let _ = catch_unwind(AssertUnwindSafe(|| glue::unavailable(&mut stream)));
            STOP_ITERATION
        }
    }
}

/// Frees the per-request filter.
///
/// # Safety
/// `filter` came from `on_http_filter_new` and is destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !filter.is_null() {
            // SAFETY: made by Box::into_raw in on_http_filter_new.
            drop(unsafe { Box::from_raw(filter.cast_mut().cast::<Filter>()) });
        }
    }));
}

// The hooks below are required by Envoy but have nothing to do for this
// filter: they continue (or return nothing). They do no work that could
// panic, so they need no unwinding guard.

/// Request body: passes through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    CONTINUE
}

/// Request trailers: pass through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    CONTINUE
}

/// Response headers: pass through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _: *mut c_void,
    _: *const c_void,
    _: bool,
) -> u32 {
    CONTINUE
}

/// Response body: passes through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    CONTINUE
}

/// Response trailers: pass through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    CONTINUE
}

/// Stream complete: records the decision report, with the status the client
/// got.
///
/// # Safety
/// Envoy passes the live stream and a filter from `on_http_filter_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: *mut c_void,
    filter: *const c_void,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in on_http_filter_request_headers.
        let Some(f) = (unsafe { filter.cast_mut().cast::<Filter>().as_mut() }) else {
            return;
        };
        let Some(report) = f.report.take() else { return };
        // SAFETY: the configuration outlives the filter.
        let Some(module) = (unsafe { f.config.as_ref() }) else {
            return;
        };
        let mut code = 0u64;
        // SAFETY: live stream; `code` is a valid place.
        let known = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(
                filter_envoy,
                attribute::RESPONSE_CODE,
                &mut code,
            )
        };
        let code = known.then(|| u16::try_from(code).ok()).flatten();
        module.config.on_stream_complete(report, code);
    }));
}

/// HTTP callouts: this filter starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: *mut c_void,
    _: *const c_void,
    _: u64,
    _: u32,
    _: *mut EnvoyHeader,
    _: usize,
    _: *mut EnvoyBuffer,
    _: usize,
) {
}

/// Streamed callouts: this filter starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: *mut c_void,
    _: *const c_void,
    _: u64,
    _: *mut EnvoyHeader,
    _: usize,
    _: bool,
) {
}

/// Streamed callouts: this filter starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: *mut c_void,
    _: *const c_void,
    _: u64,
    _: *const EnvoyBuffer,
    _: usize,
    _: bool,
) {
}

/// Streamed callouts: this filter starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: *mut c_void,
    _: *const c_void,
    _: u64,
    _: *mut EnvoyHeader,
    _: usize,
) {
}

/// Streamed callouts: this filter starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_: *mut c_void, _: *const c_void, _: u64) {}

/// Streamed callouts: this filter starts none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: *mut c_void,
    _: *const c_void,
    _: u64,
    _: u32,
) {
}

/// A poll is due (on Envoy's main thread): call the control service.
///
/// # Safety
/// Envoy passes its configuration and the module's, both alive.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: *mut c_void,
    module: *const c_void,
    _event_id: u64,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the module pointer came from config_new and is alive.
        let Some(module) = (unsafe { module.cast::<Module>().as_ref() }) else {
            return;
        };
        let Ok(mut calls) = module.calls.lock() else { return };
        let now = glue::now_ms().unwrap_or(0);
        let interval = module.config.control().map_or(u64::MAX, |l| l.poll_interval_ms);
        let due = now.saturating_sub(module.last_poll_ms.load(Ordering::Acquire)) >= interval;
        let polling = calls.iter().any(|(_, c)| *c != Call::Report);
        if due && !polling {
            module.last_poll_ms.store(now, Ordering::Release);
            for (call, poll) in module.config.polls() {
                match callout(config_envoy, &poll) {
                    Some(id) => calls.push((id, call)),
                    None => sync_failed(config_envoy, module),
                }
            }
        }
        if let Some(batch) = module.config.next_report(now) {
            let started = callout(config_envoy, &batch);
            if let Some(id) = started {
                calls.push((id, Call::Report));
            }
            module.config.report_dispatched(started.is_some(), now);
        }
        drop(calls);
        count_reports(config_envoy, module);
        observe(config_envoy, module, now);
    }));
}

/// Makes one call to the control service; its callout id if Envoy took it.
fn callout(config_envoy: *mut c_void, call: &Poll) -> Option<u64> {
    let mut headers: Vec<ModuleHeader> = call
        .headers
        .iter()
        .map(|(n, v)| ModuleHeader {
            key: ModuleBuffer::of(n.as_bytes()),
            value: ModuleBuffer::of(v.as_bytes()),
        })
        .collect();
    let mut id = 0u64;
    // SAFETY: main thread (config hooks only), live configuration; every
    // buffer is alive for the call and Envoy copies them.
    let started = unsafe {
        envoy_dynamic_module_callback_http_filter_config_http_callout(
            config_envoy,
            &mut id,
            ModuleBuffer::of(call.cluster.as_bytes()),
            headers.as_mut_ptr(),
            headers.len(),
            ModuleBuffer::of(&call.body),
            call.timeout_ms,
        )
    };
    (started == CALLOUT_SUCCESS).then_some(id)
}

/// Sets the link gauges and warns (at most every 10 s) while the revocation
/// list is older than three polls, as the Wasm filter does.
fn observe(config_envoy: *mut c_void, module: &Module, now: u64) {
    for (id, value) in module.config.link_gauges(now) {
        if let Some(id) = id {
            // SAFETY: main thread, live configuration; the gauge was defined
            // on it; no labels.
            let _ = unsafe {
                envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    config_envoy,
                    id,
                    ptr::null_mut(),
                    0,
                    value.min(i64::MAX as u64),
                )
            };
        }
    }
    let last = module.last_warning_ms.load(Ordering::Acquire);
    if now.saturating_sub(last) < filter::sync::STALE_WARNING_EVERY_MS {
        return;
    }
    let staleness = module.config.link_gauges(now)[0].1;
    let warning = module
        .config
        .control()
        .and_then(|link| filter::sync::staleness_warning(link, staleness));
    if let Some(warning) = warning {
        log(LOG_WARN, &warning);
        module.last_warning_ms.store(now, Ordering::Release);
    }
}

/// Adds newly delivered and dropped reports to Envoy's counters.
fn count_reports(config_envoy: *mut c_void, module: &Module) {
    for (id, n) in module.config.report_counts() {
        if let (Some(id), true) = (id, n > 0) {
            // SAFETY: main thread, live configuration; the counter was
            // defined on it; no labels.
            let _ = unsafe {
                envoy_dynamic_module_callback_http_filter_config_increment_counter(
                    config_envoy,
                    id,
                    ptr::null_mut(),
                    0,
                    n,
                )
            };
        }
    }
}

/// The control service answered (or the call failed): apply the list.
///
/// # Safety
/// Envoy passes live pointers; the headers and chunks are valid for the
/// call.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the ABI's signature
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: *mut c_void,
    module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *mut EnvoyHeader,
    headers_length: usize,
    chunks: *mut EnvoyBuffer,
    chunks_length: usize,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the module pointer came from config_new and is alive.
        let Some(module) = (unsafe { module.cast::<Module>().as_ref() }) else {
            return;
        };
        // SAFETY: Envoy's arrays are valid for this call (or null, empty).
        let (headers, chunks) = unsafe { (slice_of(headers, headers_length), slice_of(chunks, chunks_length)) };
        // SAFETY: as above, each buffer is valid for this call.
        let status = (result == CALLOUT_SUCCESS)
            .then(|| headers.iter().find(|h| unsafe { h.key.bytes() } == b":status"))
            .flatten()
            .map(|h| unsafe { h.value.bytes() });
        let mut body = Vec::new();
        for chunk in chunks {
            // SAFETY: as above.
            body.extend_from_slice(unsafe { chunk.bytes() });
        }
        let now = glue::now_ms().unwrap_or(0);
        let call = module.calls.lock().ok().and_then(|mut calls| {
            let at = calls.iter().position(|(id, _)| *id == callout_id)?;
            Some(calls.swap_remove(at).1)
        });
        match call {
            Some(Call::Report) => {
                module.config.report_done(status, now);
                count_reports(config_envoy, module);
            }
            Some(call) if module.config.on_poll_response(call, status, &body, now).is_err() => {
                sync_failed(config_envoy, module);
            }
            Some(_) | None => {}
        }
    }));
}

/// # Safety
/// `ptr` is null or valid for `len` elements for `'a`.
unsafe fn slice_of<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }
}

fn sync_failed(config_envoy: *mut c_void, module: &Module) {
    if let Some(id) = module.config.sync_failures_counter() {
        // SAFETY: main thread, live configuration; the counter was defined
        // on it; no labels.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(config_envoy, id, ptr::null_mut(), 0, 1)
        };
    }
}

/// Scheduled events: this filter schedules none.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: *mut c_void, _: *const c_void, _: u64) {}

/// Watermarks concern terminal filters only.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: *mut c_void,
    _: *const c_void,
) {
}

/// Watermarks concern terminal filters only.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: *mut c_void,
    _: *const c_void,
) {
}

/// Stand-ins for Envoy's callbacks so that the hooks run in unit tests: the
/// "stream" pointer is a [`fake::FakeStream`].
#[cfg(test)]
#[allow(clippy::missing_safety_doc, missing_docs)]
pub mod fake {
    use super::*;

    /// What a test request looks like and what the hooks did to it.
    #[derive(Default)]
    pub struct FakeStream {
        pub headers: Vec<(Vec<u8>, Vec<u8>)>,
        pub response: Option<(u32, Vec<u8>)>,
        pub counters: Vec<usize>,
        /// The host refuses header changes (as a broken host might).
        pub refuse_writes: bool,
    }

    pub unsafe fn envoy_dynamic_module_callback_log(_: u32, _: ModuleBuffer) {}

    pub unsafe fn envoy_dynamic_module_callback_log_enabled(_: u32) -> bool {
        true
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        _: *mut c_void,
        _: ModuleBuffer,
        _: *mut ModuleBuffer,
        _: usize,
        id: *mut usize,
    ) -> u32 {
        // SAFETY: the hook passes a valid place.
        unsafe { *id = 7 };
        METRICS_SUCCESS
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        a: *mut c_void,
        b: ModuleBuffer,
        c: *mut ModuleBuffer,
        d: usize,
        id: *mut usize,
    ) -> u32 {
        // SAFETY: forwarded as received.
        unsafe { envoy_dynamic_module_callback_http_filter_config_define_counter(a, b, c, d, id) }
    }

    fn stream<'a>(p: *mut c_void) -> &'a mut FakeStream {
        // SAFETY: tests pass a live FakeStream.
        unsafe { &mut *p.cast::<FakeStream>() }
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_increment_counter(
        p: *mut c_void,
        id: usize,
        _: *mut ModuleBuffer,
        _: usize,
        _: u64,
    ) -> u32 {
        stream(p).counters.push(id);
        METRICS_SUCCESS
    }

    pub unsafe fn envoy_dynamic_module_callback_http_get_headers_size(p: *mut c_void, _: u32) -> usize {
        stream(p).headers.len()
    }

    pub unsafe fn envoy_dynamic_module_callback_http_get_headers(
        p: *mut c_void,
        _: u32,
        out: *mut EnvoyHeader,
    ) -> bool {
        for (i, (k, v)) in stream(p).headers.iter().enumerate() {
            let h = EnvoyHeader {
                key: EnvoyBuffer {
                    ptr: k.as_ptr(),
                    length: k.len(),
                },
                value: EnvoyBuffer {
                    ptr: v.as_ptr(),
                    length: v.len(),
                },
            };
            // SAFETY: the caller sized `out` by get_headers_size.
            unsafe { out.add(i).write(h) };
        }
        true
    }

    fn owned(b: ModuleBuffer) -> Vec<u8> {
        // SAFETY: the module passes live buffers.
        unsafe {
            EnvoyBuffer {
                ptr: b.ptr,
                length: b.length,
            }
            .bytes()
            .to_vec()
        }
    }

    pub unsafe fn envoy_dynamic_module_callback_http_add_header(
        p: *mut c_void,
        _: u32,
        k: ModuleBuffer,
        v: ModuleBuffer,
    ) -> bool {
        if stream(p).refuse_writes {
            return false;
        }
        stream(p).headers.push((owned(k), owned(v)));
        true
    }

    pub unsafe fn envoy_dynamic_module_callback_http_set_header(
        p: *mut c_void,
        _: u32,
        k: ModuleBuffer,
        v: ModuleBuffer,
    ) -> bool {
        if stream(p).refuse_writes {
            return false;
        }
        let key = owned(k);
        stream(p).headers.retain(|(n, _)| *n != key);
        if !v.ptr.is_null() {
            stream(p).headers.push((key, owned(v)));
        }
        true
    }

    pub unsafe fn envoy_dynamic_module_callback_http_send_response(
        p: *mut c_void,
        status: u32,
        _: *mut ModuleHeader,
        _: usize,
        body: ModuleBuffer,
        _: ModuleBuffer,
    ) {
        stream(p).response = Some((status, owned(body)));
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        _: *mut c_void,
        _: u32,
        _: *mut u64,
    ) -> bool {
        false
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(_: *mut c_void) -> *mut c_void {
        ptr::null_mut()
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(_: *mut c_void, _: u64) {}

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(_: *mut c_void) {}

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        _: *mut c_void,
        _: *mut u64,
        _: ModuleBuffer,
        _: *mut ModuleHeader,
        _: usize,
        _: ModuleBuffer,
        _: u64,
    ) -> u32 {
        1
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        _: *mut c_void,
        _: usize,
        _: *mut ModuleBuffer,
        _: usize,
        _: u64,
    ) -> u32 {
        METRICS_SUCCESS
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        _: *mut c_void,
        _: usize,
        _: *mut ModuleBuffer,
        _: usize,
        _: u64,
    ) -> u32 {
        METRICS_SUCCESS
    }

    pub unsafe fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        _: *mut c_void,
        _: u32,
        _: *mut EnvoyBuffer,
    ) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeStream;
    use super::*;

    const KEY: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

    fn config_json() -> String {
        format!(
            r#"{{"issuer":"https://jit.example","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"api","hosts":["api.example"],"path_prefix":"/"}}]}}"#
        )
    }

    fn new_config(name: &str, json: &str) -> *const c_void {
        let b = |s: &str| EnvoyBuffer {
            ptr: s.as_ptr(),
            length: s.len(),
        };
        // SAFETY: the buffers are alive for the call.
        unsafe { envoy_dynamic_module_on_http_filter_config_new(ptr::null_mut(), b(name), b(json)) }
    }

    fn run(config: *const c_void, stream: &mut FakeStream) -> u32 {
        let envoy = (stream as *mut FakeStream).cast::<c_void>();
        // SAFETY: config came from config_new; the fake stream lives for the call.
        unsafe {
            let filter = envoy_dynamic_module_on_http_filter_new(config, envoy);
            let status = envoy_dynamic_module_on_http_filter_request_headers(envoy, filter, true);
            envoy_dynamic_module_on_http_filter_destroy(filter);
            status
        }
    }

    fn request(extra: &[(&str, &str)]) -> FakeStream {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = [(":method", "GET"), (":path", "/x"), (":authority", "api.example")]
            .iter()
            .chain(extra)
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        headers.shrink_to_fit();
        FakeStream {
            headers,
            ..FakeStream::default()
        }
    }

    #[test]
    fn a_bad_configuration_is_refused_with_null() {
        assert!(new_config("jitgate", "{}").is_null());
        assert!(new_config("jitgate", "not json").is_null());
        assert!(new_config("something-else", &config_json()).is_null());
    }

    #[test]
    fn a_missing_grant_is_answered_locally_and_counted() {
        let config = new_config("jitgate", &config_json());
        assert!(!config.is_null());
        let mut stream = request(&[("x-jit-subject", "spoofed")]);
        assert_eq!(run(config, &mut stream), STOP_ITERATION);
        let (status, body) = stream.response.take().expect("a local response");
        assert_eq!(status, 401);
        assert!(String::from_utf8_lossy(&body).contains("grant_missing"));
        assert!(!stream.counters.is_empty(), "the decision is counted");
        // SAFETY: made by config_new above, destroyed once.
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config) };
    }

    #[test]
    fn an_allowed_request_whose_grant_header_cannot_be_removed_is_refused_with_503() {
        let config = new_config("jitgate", &config_json());
        let key = grant::SigningKey::from_base64url("k1", KEY).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = grant::mint(
            &grant::GrantClaims {
                iss: "https://jit.example".into(),
                sub: "alice".into(),
                aud: "api".into(),
                jti: "g1".into(),
                iat: now - 5,
                nbf: now - 5,
                exp: now + 600,
                scope: vec![grant::ScopeRule::new(&["GET"], &["/**"])],
                src: None,
                req: None,
                cnf: None,
            },
            &key,
        )
        .unwrap();
        let mut allowed = request(&[("x-jit-grant", &token)]);
        assert_eq!(run(config, &mut allowed), CONTINUE);
        assert!(allowed.response.is_none());
        assert!(allowed.headers.iter().all(|(n, _)| n != b"x-jit-grant"));
        assert!(allowed
            .headers
            .iter()
            .any(|(n, v)| n == b"x-jit-subject" && v == b"alice"));
        let mut refused = FakeStream {
            refuse_writes: true,
            ..request(&[("x-jit-grant", &token)])
        };
        assert_eq!(run(config, &mut refused), STOP_ITERATION);
        assert_eq!(refused.response.map(|r| r.0), Some(503));
        // SAFETY: made by config_new above, destroyed once.
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config) };
    }

    #[test]
    fn a_panic_while_deciding_answers_503_and_the_next_request_is_decided_normally() {
        let config = new_config("jitgate-panic-probe", &config_json());
        assert!(!config.is_null());
        let mut probe = request(&[(glue::PANIC_PROBE_HEADER, "1")]);
        assert_eq!(run(config, &mut probe), STOP_ITERATION);
        assert_eq!(probe.response.map(|r| r.0), Some(503));
        let mut normal = request(&[]);
        assert_eq!(run(config, &mut normal), STOP_ITERATION);
        assert_eq!(normal.response.map(|r| r.0), Some(401));
        // SAFETY: made by config_new above, destroyed once.
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config) };
    }
}
