//! The path check and the matcher: never panic; a checked path has no
//! empty or dot segment; `**` patterns agree with their definition.
#![no_main]

use grant::path::check_request_path;
use grant::scope::{is_valid_pattern, pattern_covers, pattern_matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First line: a pattern; the rest: a request path.
    let (pattern, path) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"/**"[..], data),
    };
    let Ok(checked) = check_request_path(path).map(|p| p.as_bytes()) else { return };
    if checked != b"/" {
        for seg in checked[1..].split(|&b| b == b'/') {
            assert!(!seg.is_empty() && seg != b"." && seg != b"..");
        }
    }
    assert!(pattern_matches(b"/**", checked));
    if is_valid_pattern(pattern) {
        let matched = pattern_matches(pattern, checked);
        if let Ok(p) = std::str::from_utf8(pattern) {
            if matched {
                assert!(pattern_covers("/**", p));
            }
        }
    }
});
