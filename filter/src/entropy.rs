//! Random bits from the host, for names that must not collide: each
//! worker's reporter names itself with them, and the control service
//! writes a reporter's batches once by that name and a sequence number,
//! so two workers sharing a name would have one's batches taken for the
//! other's repeats and dropped. A clock reading is not enough: a fleet's
//! proxies start together in a rollout, and with one `proxy_id` the
//! chance that two of a thousand workers read the same nanosecond is
//! about 1 in 2,000 per rollout.
//!
//! The bits come from WASI's `random_get`, which proxy-wasm hosts
//! provide (Envoy's, and every host built on proxy-wasm-cpp-host). Called
//! directly rather than through std, whose random source panics (a trap)
//! when the host refuses: here a refusal is `None` and the caller falls
//! back to the clock.
#![allow(unsafe_code)]

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    /// WASI preview 1: fills `len` bytes at `buf`; 0 on success, else an errno.
    fn random_get(buf: *mut u8, len: usize) -> i32;
}

/// 64 random bits from the host, or `None` if it has none to give.
#[cfg(target_arch = "wasm32")]
pub fn random_u64() -> Option<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: the host writes at most `buf.len()` bytes into `buf`, which
    // lives across the call.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    (errno == 0).then(|| u64::from_le_bytes(buf))
}

/// Outside a Wasm host (the filter's native tests): std's seeded hasher,
/// whose keys come from the operating system's random source.
#[cfg(not(target_arch = "wasm32"))]
pub fn random_u64() -> Option<u64> {
    use std::hash::{BuildHasher, RandomState};
    Some(RandomState::new().hash_one(0u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_draw_is_new() {
        let draws: std::collections::BTreeSet<u64> = (0..64).filter_map(|_| random_u64()).collect();
        assert_eq!(draws.len(), 64);
    }
}
