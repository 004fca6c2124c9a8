//! The configuration's types: what a validated plugin configuration is,
//! and the error that names a field. No reading or checking here.

use std::fmt;

use grant::Verifier;

/// Largest plugin configuration accepted, in bytes.
pub const MAX_CONFIG_LEN: usize = 256 * 1024;

/// Longest leeway accepted, in seconds. Larger skews mean a broken clock,
/// and would let expired grants live on.
pub const MAX_LEEWAY: u64 = 300;

/// Longest grant lifetime a proxy may be configured to accept (7 days).
pub const MAX_MAX_TTL: u64 = 7 * 24 * 3600;

/// A configuration error naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as a dotted path (`keys.k1`, `resources[0].id`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        // Names come from the configuration itself: escape control
        // characters so the error stays one log line.
        let one_line = |s: String| {
            if s.chars().any(char::is_control) {
                s.chars()
                    .map(|c| {
                        if c.is_control() {
                            c.escape_default().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            } else {
                s
            }
        };
        ConfigError {
            field: one_line(field.into()),
            message: one_line(message.into()),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Whether requests are denied, or only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Deny what the grant does not allow.
    #[default]
    Enforce,
    /// Decide and record, but let every request through: for roll-out.
    DryRun,
}

/// What happens to requests that match no configured resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// Refuse them (`no_resource`, 403). The default: a gateway placed in
    /// front of sensitive APIs should not pass traffic it was not told about,
    /// and a typo in a prefix must not silently open an API.
    #[default]
    Deny,
    /// Let them through unchecked (the filter then guards only the listed
    /// resources on a shared listener).
    Allow,
}

/// Where the caller's identity comes from, when the grant's `sub` must
/// match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header set by a trusted authenticator in front of this
    /// filter (for example `jwt_authn`'s `claim_to_headers`).
    Header(String),
    /// The URI SAN of the client's mTLS certificate.
    PeerUriSan,
}

/// How a host name is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Any host.
    Any,
    /// This host exactly (lower case, no port, no trailing dot).
    Exact(String),
    /// Any subdomain of this suffix (`*.example.com` stores `.example.com`).
    Suffix(String),
}

/// One protected resource: which requests belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The resource id; grants name it in `aud`.
    pub id: String,
    /// Hosts it is served on.
    pub hosts: Vec<HostPattern>,
    /// Path prefix, segment-aligned, without a trailing slash (but `/`).
    pub path_prefix: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Checks grants.
    pub verifier: Verifier,
    /// The grant header, lower case.
    pub grant_header: String,
    /// Whether `Authorization: Bearer` may carry the grant.
    pub accept_bearer: bool,
    /// The protected resources, first match wins.
    pub resources: Vec<Resource>,
    /// Policy for requests that match no resource.
    pub unmatched: Unmatched,
    /// The identity source, if `sub` must match one.
    pub identity: Option<IdentitySource>,
    /// Enforce or dry-run.
    pub mode: Mode,
    /// Where to request access, shown in deny bodies.
    pub request_access_url: Option<String>,
    /// The link to the control service, if any.
    pub control: Option<ControlLink>,
    /// Whether a request with no grant may be matched to a synced grant of
    /// its caller's identity.
    pub identity_aware: bool,
    /// Which identity headers an allowed request carries upstream.
    pub identity_headers: IdentityHeaders,
}

/// The identity headers set on an allowed request (`identity_headers`):
/// each costs a host call per request, so an upstream that reads only the
/// subject can ask for only that. Incoming `x-jit-*` headers are removed
/// whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// `x-jit-subject`: the grant's `sub`.
    pub subject: bool,
    /// `x-jit-grant-id`: the grant's `jti`.
    pub grant_id: bool,
    /// `x-jit-request-id`: the grant's `req`, when it has one.
    pub request_id: bool,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            subject: true,
            grant_id: true,
            request_id: true,
        }
    }
}

/// What protected requests get before the revocation list has been synced
/// once since the proxy started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unsynced {
    /// Refuse them (`revocations_stale`, 503): a proxy (re)started while
    /// the control service is down does not know which grants were
    /// revoked, and would otherwise honour them all.
    #[default]
    Deny,
    /// Check grants without a revocation list (counted in
    /// `jitgate.revocations.unsynced_allowed`): available through a control
    /// outage, at the cost of honouring revoked grants until the first sync.
    Allow,
}

/// How allowed requests under a grant are reported (denials are always
/// reported one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportAllowed {
    /// The first allowed request of each grant at each worker as a record
    /// of its own (the trail shows when access began); the others counted
    /// per grant, method, scope rule and status, and sent as counts with
    /// their first and last time every `count_interval_ms`: the reports'
    /// volume follows the grants in use, not the traffic.
    #[default]
    Aggregate,
    /// Every allowed request as a record of its own.
    Each,
}

/// One control service endpoint: an Envoy cluster and the authority sent
/// to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The Envoy cluster.
    pub cluster: String,
    /// The `:authority` to send.
    pub authority: String,
}

/// How the filter talks to the control service: never on the request path,
/// only from the root context's tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLink {
    /// The Envoy cluster of the control service.
    pub cluster: String,
    /// The `:authority` to send.
    pub authority: String,
    /// The key proxies authenticate with (`Authorization: Bearer`).
    pub ingest_key: String,
    /// How often to poll revocations (and the grant set).
    pub poll_interval_ms: u64,
    /// Timeout of each call.
    pub timeout_ms: u64,
    /// Strict mode: deny (`revocations_stale`, 503) once the revocation
    /// list is older than this. `None`: keep serving valid grants.
    pub max_staleness_seconds: Option<u64>,
    /// Before the first sync since start: deny or allow.
    pub unsynced: Unsynced,
    /// Where revocations are polled: `cluster` first, then each of
    /// `fallback_clusters` (a replica or read-only mirror) in turn after a
    /// failed poll.
    pub endpoints: Vec<Endpoint>,
    /// Whether decisions are reported.
    pub report: bool,
    /// Events per batch.
    pub report_batch: usize,
    /// Events held at most before new ones are dropped (and counted).
    pub report_buffer: usize,
    /// Longest wait before a partial batch is sent.
    pub report_interval_ms: u64,
    /// How allowed requests under a grant are reported.
    pub report_allowed: ReportAllowed,
    /// How often counted requests are sent (`report_allowed: aggregate`).
    pub count_interval_ms: u64,
    /// This proxy's name in reports.
    pub proxy_id: String,
}
