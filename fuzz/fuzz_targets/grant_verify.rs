//! Grant verification over arbitrary bytes: never panics, and anything it
//! accepts re-verifies identically.
#![no_main]

use grant::{KeySet, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> Verifier {
    let mut keys = KeySet::new();
    // The spec vectors' keys, so seeds from the vectors reach the MAC check.
    keys.insert_base64url("k1", "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs").unwrap();
    keys.insert_base64url("k2", "nHq6SY5Wn3UwzrlAcsFzq-0vAZ3uHFHVU13ZQvQAlIU").unwrap();
    Verifier::new("jit-control", keys)
}

fuzz_target!(|data: &[u8]| {
    let v = verifier();
    if let Ok(g) = v.verify(data, 1_780_000_000) {
        assert!(!g.sub().is_empty() && !g.jti().is_empty());
        let again = v.verify(data, 1_780_000_000).unwrap();
        assert_eq!(g, again);
        let _ = g.allows(b"GET", b"/v1/invoices/x");
        let _ = g.scope();
    }
    let _ = grant::token::decode_unverified(&String::from_utf8_lossy(data));
});
