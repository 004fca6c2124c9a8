//! Failed authentication, kept as a security signal without letting
//! anonymous callers write to the audit log at will.
//!
//! Every failure is counted in the metrics at once, but the audit log gets
//! one `auth.failed` record per source address and reason per window, with
//! the count, written when the window closes (by the sweeper, and at
//! shutdown). Nothing is written to the database on the request path, so
//! an unauthenticated flood costs memory bounded by [`MAX_BUCKETS`] and at
//! most one append per source and reason per [`WINDOW_MS`], instead of one
//! append per request through SQLite's single writer.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use crate::audit::{self, Entry};
use crate::App;

/// How long failures from one source for one reason are aggregated.
pub const WINDOW_MS: i64 = 60_000;

/// Most (source, reason) pairs tracked at once; failures beyond them are
/// aggregated under the source `other`.
pub const MAX_BUCKETS: usize = 10_000;

/// What one failure was.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The caller's address (`unknown` when the transport gives none).
    pub source: &'a str,
    /// The stable code of the refusal (`auth_missing`, `ingest_key_invalid`...).
    pub reason: &'static str,
    /// `api`, `proxy`, `slack`, `callback`.
    pub channel: &'static str,
    /// The method of the first call of the window.
    pub method: &'a str,
    /// The path of the first call of the window.
    pub path: &'a str,
}

#[derive(Debug)]
struct Bucket {
    channel: &'static str,
    first_ms: i64,
    last_ms: i64,
    count: u64,
    method: String,
    path: String,
}

/// Failures counted since their window opened, per (source, reason).
#[derive(Debug, Default)]
pub struct AuthFailures {
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

impl AuthFailures {
    /// Counts one failure (no I/O).
    pub fn record(&self, f: Failure<'_>, now_ms: i64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut key = (f.source.to_owned(), f.reason);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_BUCKETS {
            key.0 = "other".into();
        }
        let bucket = buckets.entry(key).or_insert_with(|| Bucket {
            channel: f.channel,
            first_ms: now_ms,
            last_ms: now_ms,
            count: 0,
            method: f.method.chars().take(16).collect(),
            path: f.path.chars().take(256).collect(),
        });
        bucket.count += 1;
        bucket.last_ms = bucket.last_ms.max(now_ms);
    }

    /// Takes the buckets whose window has closed (all of them with
    /// `everything`), as audit entries.
    fn take_due(&self, now_ms: i64, everything: bool) -> Vec<Entry> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due: Vec<(String, &'static str)> = buckets
            .iter()
            .filter(|(_, b)| everything || now_ms - b.first_ms >= WINDOW_MS)
            .map(|(k, _)| k.clone())
            .collect();
        let mut entries: Vec<Entry> = due
            .into_iter()
            .filter_map(|k| buckets.remove(&k).map(|b| (k, b)))
            .map(|((source, reason), b)| Entry {
                actor: "anonymous".into(),
                action: "auth.failed".into(),
                channel: Some(b.channel.into()),
                details: json!({"code": reason, "source": source, "count": b.count,
                                "first_at": b.first_ms, "last_at": b.last_ms,
                                "method": b.method, "path": b.path}),
                ..Entry::default()
            })
            .collect();
        entries.sort_by_key(|e| (e.details["first_at"].as_i64(), e.details["code"].to_string()));
        entries
    }
}

/// Writes one `auth.failed` record per (source, reason) whose window has
/// closed (every open one with `everything`, at shutdown); returns how many.
pub async fn flush(app: &App, everything: bool) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let entries = app.auth_failures.take_due(now, everything);
    if !entries.is_empty() {
        audit::append_alone(&app.db, now, &entries).await?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure<'a>(source: &'a str, reason: &'static str) -> Failure<'a> {
        Failure {
            source,
            reason,
            channel: "api",
            method: "GET",
            path: "/v1/requests",
        }
    }

    #[test]
    fn failures_aggregate_per_source_and_reason_until_the_window_closes() {
        let f = AuthFailures::default();
        for i in 0..1000 {
            f.record(failure("10.0.0.1", "auth_missing"), i);
        }
        f.record(failure("10.0.0.1", "auth_expired"), 5);
        f.record(failure("10.0.0.2", "auth_missing"), 7);
        assert!(f.take_due(WINDOW_MS - 1, false).is_empty(), "the window is still open");
        let entries = f.take_due(WINDOW_MS + 10, false);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].details["count"], 1000);
        assert_eq!(entries[0].details["source"], "10.0.0.1");
        assert!(f.take_due(10 * WINDOW_MS, true).is_empty(), "taken once");
    }

    #[test]
    fn the_number_of_buckets_is_bounded() {
        let f = AuthFailures::default();
        for i in 0..(MAX_BUCKETS + 500) {
            f.record(failure(&format!("10.{i}"), "auth_missing"), 0);
        }
        let entries = f.take_due(0, true);
        assert_eq!(entries.len(), MAX_BUCKETS + 1);
        let other = entries.iter().find(|e| e.details["source"] == "other").unwrap();
        assert_eq!(other.details["count"], 500);
    }
}
