//! The filter's plugin configuration parser: never panics; any error names
//! a field on one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = jitgate_filter::config::parse(data) {
        assert!(!e.field.is_empty());
        assert!(!e.to_string().contains('\n'), "the error must be one log line");
    }
});
