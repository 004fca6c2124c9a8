//! Prometheus counters of the service, rendered at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Access requests created.
    pub requests_created: Counter,
    /// Votes recorded.
    pub votes: Counter,
    /// Grants minted.
    pub grants_issued: Counter,
    /// Grants revoked.
    pub grants_revoked: Counter,
    /// Grant tokens fetched.
    pub tokens_fetched: Counter,
    /// Proxy decisions ingested.
    pub proxy_events: Counter,
    /// Requests refused for authentication.
    pub auth_failures: Counter,
    /// Responses with a 4xx status.
    pub client_errors: Counter,
    /// Responses with a 5xx status.
    pub server_errors: Counter,
    /// Notifications delivered.
    pub notifications_delivered: Counter,
    /// Notification attempts that failed (each is retried).
    pub notifications_failed: Counter,
    /// Audit checkpoints signed and published.
    pub audit_checkpoints_signed: Counter,
    /// Attempts to sign or publish an audit checkpoint that failed.
    pub audit_checkpoint_failures: Counter,
}

impl Metrics {
    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "jitgate_requests_created_total",
                "Access requests created.",
                &self.requests_created,
            ),
            ("jitgate_votes_total", "Approve and deny votes recorded.", &self.votes),
            ("jitgate_grants_issued_total", "Grants minted.", &self.grants_issued),
            ("jitgate_grants_revoked_total", "Grants revoked.", &self.grants_revoked),
            (
                "jitgate_grant_tokens_fetched_total",
                "Grant tokens fetched by requesters.",
                &self.tokens_fetched,
            ),
            (
                "jitgate_proxy_decisions_ingested_total",
                "Proxy decisions written to the audit log.",
                &self.proxy_events,
            ),
            (
                "jitgate_auth_failures_total",
                "API calls refused for authentication.",
                &self.auth_failures,
            ),
            (
                "jitgate_http_client_errors_total",
                "Responses with a 4xx status.",
                &self.client_errors,
            ),
            (
                "jitgate_http_server_errors_total",
                "Responses with a 5xx status.",
                &self.server_errors,
            ),
            (
                "jitgate_notifications_delivered_total",
                "Notifications delivered.",
                &self.notifications_delivered,
            ),
            (
                "jitgate_notification_failures_total",
                "Notification attempts that failed.",
                &self.notifications_failed,
            ),
            (
                "jitgate_audit_checkpoints_signed_total",
                "Audit checkpoints signed and published.",
                &self.audit_checkpoints_signed,
            ),
            (
                "jitgate_audit_checkpoint_failures_total",
                "Attempts to sign or publish an audit checkpoint that failed.",
                &self.audit_checkpoint_failures,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.get()
            ));
        }
        out
    }
}
