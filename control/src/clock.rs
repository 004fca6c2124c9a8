//! Time, injected: the service asks a [`Clock`] so tests can move time
//! (a request approved an hour later, a pending request timing out).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Seconds since the Unix epoch.
    fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// The system clock shifted by an offset that tests can advance.
#[derive(Debug, Default, Clone)]
pub struct TestClock {
    offset_ms: Arc<AtomicI64>,
}

impl TestClock {
    /// Moves time forward.
    pub fn advance(&self, seconds: i64) {
        self.offset_ms.fetch_add(seconds * 1000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// A time in seconds since the epoch as RFC 3339 in UTC
/// (`2026-12-02T20:45:00Z`); times before the epoch read as the epoch.
pub fn rfc3339(secs: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A random identifier with a prefix: 80 bits, hex (unguessable, so ids
/// reveal nothing about other requests).
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    getrandom::getrandom(&mut bytes).unwrap_or_else(|_| {
        // No OS randomness is a broken host; fall back to time so the
        // service keeps running, and say so.
        tracing::error!("no OS randomness; ids fall back to time");
        let t = SystemClock.now_ms().to_le_bytes();
        bytes[..8].copy_from_slice(&t);
    });
    let mut out = String::with_capacity(prefix.len() + 21);
    out.push_str(prefix);
    out.push('_');
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
