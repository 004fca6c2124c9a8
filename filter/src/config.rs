//! The filter's plugin configuration: parsed once, validated into a typed
//! [`FilterConfig`], or refused with an error that names the field.
//!
//! A configuration that cannot be fully understood is refused (unknown
//! fields included): the plugin then does not start and the host keeps it
//! out of the request path, which with `fail_open: false` means requests
//! are refused. Nothing here ever falls back to "allow".

use std::fmt;

use grant::json::{self, Chars, Cursor, Token};
use grant::{KeySet, Verifier};

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
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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

impl IdentityHeaders {
    /// From the configuration's list of names (`subject`, `grant_id`,
    /// `request_id`), each at most once.
    fn parse(items: Vec<Value>) -> Result<IdentityHeaders, ConfigError> {
        let mut chosen = IdentityHeaders {
            subject: false,
            grant_id: false,
            request_id: false,
        };
        for (i, item) in items.into_iter().enumerate() {
            let field = format!("identity_headers[{i}]");
            let slot = match &item {
                Value::Str(name) if name == "subject" => &mut chosen.subject,
                Value::Str(name) if name == "grant_id" => &mut chosen.grant_id,
                Value::Str(name) if name == "request_id" => &mut chosen.request_id,
                _ => return Err(ConfigError::new(field, "must be one of subject, grant_id, request_id")),
            };
            if *slot {
                return Err(ConfigError::new(field, "is listed twice"));
            }
            *slot = true;
        }
        Ok(chosen)
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
    /// This proxy's name in reports.
    pub proxy_id: String,
}

/// A parsed JSON value; strings decoded. Only used while loading.
#[derive(Debug)]
enum Value {
    Str(String),
    Num(u64),
    OtherNum,
    Bool(bool),
    Null,
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Num(_) | Value::OtherNum => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null => "null",
            Value::Arr(_) => "an array",
            Value::Obj(_) => "an object",
        }
    }
}

fn decode(raw: &[u8]) -> String {
    Chars::new(raw).collect()
}

fn read_value(c: &mut Cursor<'_>) -> Option<Value> {
    Some(match c.token()? {
        Token::Str(raw) => Value::Str(decode(raw)),
        Token::Num(raw) => json::parse_time_integer(raw).map_or(Value::OtherNum, Value::Num),
        Token::Bool(b) => Value::Bool(b),
        Token::Null => Value::Null,
        Token::Array => {
            let mut items = Vec::new();
            while c.next_element() {
                items.push(read_value(c)?);
            }
            Value::Arr(items)
        }
        Token::Object => {
            let mut members = Vec::new();
            while let Some(key) = c.next_key() {
                members.push((decode(key), read_value(c)?));
            }
            Value::Obj(members)
        }
    })
}

/// An object being read: takes members by name and reports, at the end,
/// any member nobody asked for.
struct Fields {
    path: String,
    members: Vec<(String, Value)>,
}

impl Fields {
    fn new(path: &str, value: Value) -> Result<Fields, ConfigError> {
        match value {
            Value::Obj(members) => Ok(Fields {
                path: path.to_owned(),
                members,
            }),
            other => Err(ConfigError::new(
                root_name(path),
                format!("must be an object, not {}", other.kind()),
            )),
        }
    }

    fn name(&self, key: &str) -> String {
        // An empty or odd member name is quoted so the error still names it.
        let key = if key.is_empty() || key.chars().any(|c| c.is_control() || c == '`') {
            format!("{key:?}")
        } else {
            key.to_owned()
        };
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.members.iter().position(|(k, _)| k == key)?;
        Some(self.members.swap_remove(at).1).filter(|v| !matches!(v, Value::Null))
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be a string, not {}", other.kind()),
            )),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| ConfigError::new(self.name(key), "is required"))
    }

    fn integer(&mut self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some(Value::Num(n)) => Ok(n),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be a whole number of seconds, not {}", other.kind()),
            )),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<bool, ConfigError> {
        match self.take(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be true or false, not {}", other.kind()),
            )),
        }
    }

    fn array(&mut self, key: &str) -> Result<Vec<Value>, ConfigError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Arr(items)) => Ok(items),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be an array, not {}", other.kind()),
            )),
        }
    }

    fn object(&mut self, key: &str) -> Result<Option<Fields>, ConfigError> {
        let name = self.name(key);
        self.take(key).map(|v| Fields::new(&name, v)).transpose()
    }

    /// Refuses members that were not read: a misspelt option must not be
    /// silently ignored.
    fn finish(self) -> Result<(), ConfigError> {
        match self.members.first() {
            Some((key, _)) => Err(ConfigError::new(self.name(key), "is not a known option")),
            None => Ok(()),
        }
    }
}

fn root_name(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

fn choice<T: Copy>(field: &str, value: Option<String>, options: &[(&str, T)]) -> Result<Option<T>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, t)| Some(*t))
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ConfigError::new(field, format!("{value:?} is not one of {}", names.join(", ")))
        })
}

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    if bytes.len() > MAX_CONFIG_LEN {
        return Err(ConfigError::new("(root)", "configuration is larger than 256 KiB"));
    }
    // The grant dialect's rules suit configuration too: one UTF-8 JSON
    // object, no duplicate names (which one would win?), bounded depth.
    let bytes = json::validate_object(bytes).map_err(|_| {
        ConfigError::new(
            "(root)",
            "must be one JSON object in UTF-8, with no repeated member names and at most 16 levels of nesting",
        )
    })?;
    let value = read_value(&mut Cursor::new(bytes)).ok_or_else(|| ConfigError::new("(root)", "is not readable"))?;
    let mut root = Fields::new("", value)?;
    let issuer = root.required_string("issuer")?;
    let keys = match root.object("keys")? {
        Some(keys) => keys,
        None => return Err(ConfigError::new("keys", "is required")),
    };
    let leeway = root.integer("leeway", grant::DEFAULT_LEEWAY)?;
    let max_ttl = root.integer("max_ttl", grant::DEFAULT_MAX_TTL)?;
    let grant_header = root.string("grant_header")?.unwrap_or_else(|| "x-jit-grant".to_owned());
    let accept_bearer = root.boolean("accept_bearer")?;
    let resources = root.array("resources")?;
    let unmatched = choice(
        "unmatched",
        root.string("unmatched")?,
        &[("deny", Unmatched::Deny), ("allow", Unmatched::Allow)],
    )?
    .unwrap_or_default();
    let mode = choice(
        "mode",
        root.string("mode")?,
        &[("enforce", Mode::Enforce), ("dry-run", Mode::DryRun)],
    )?
    .unwrap_or_default();
    let identity = root.object("identity")?;
    let request_access_url = root.string("request_access_url")?;
    let control = root.object("control")?.map(control_link).transpose()?;
    let identity_aware = root.boolean("identity_aware")?;
    // Absent: all three; an explicit list (possibly empty): exactly those.
    let identity_headers = match root.take("identity_headers") {
        None => IdentityHeaders::default(),
        Some(Value::Arr(items)) => IdentityHeaders::parse(items)?,
        Some(other) => {
            return Err(ConfigError::new(
                "identity_headers",
                format!("must be an array, not {}", other.kind()),
            ))
        }
    };
    root.finish()?;

    let issuer = issuer.trim();
    if issuer.is_empty() {
        return Err(ConfigError::new("issuer", "must not be empty"));
    }
    if keys.members.is_empty() {
        return Err(ConfigError::new("keys", "at least one key is required"));
    }
    let mut key_set = KeySet::new();
    for (kid, secret) in &keys.members {
        let field = format!("keys.{kid}");
        let Value::Str(secret) = secret else {
            return Err(ConfigError::new(field, "must be a base64url secret string"));
        };
        key_set
            .insert_base64url(kid, secret)
            .map_err(|e| ConfigError::new(field, e.to_string()))?;
    }
    if leeway > MAX_LEEWAY {
        return Err(ConfigError::new(
            "leeway",
            format!("must be at most {MAX_LEEWAY} seconds"),
        ));
    }
    if max_ttl == 0 || max_ttl > MAX_MAX_TTL {
        return Err(ConfigError::new(
            "max_ttl",
            format!("must be 1 to {MAX_MAX_TTL} seconds"),
        ));
    }
    let grant_header = grant_header.to_ascii_lowercase();
    if !is_header_name(&grant_header) || matches!(grant_header.as_str(), "authorization" | "host" | "cookie") {
        return Err(ConfigError::new(
            "grant_header",
            "must be a header name other than authorization, host or cookie (use accept_bearer for Authorization)",
        ));
    }
    if resources.is_empty() {
        return Err(ConfigError::new("resources", "at least one resource is required"));
    }
    let mut parsed: Vec<Resource> = Vec::with_capacity(resources.len());
    for (i, r) in resources.into_iter().enumerate() {
        parsed.push(resource(i, r, &parsed)?);
    }
    let identity = match identity {
        None => None,
        Some(mut fields) => {
            let source = fields.required_string("source")?;
            let parsed = match source.as_str() {
                "peer_uri_san" => IdentitySource::PeerUriSan,
                "header" => {
                    let name = fields.required_string("name")?.to_ascii_lowercase();
                    if !is_header_name(&name)
                        || name.starts_with("x-jit-")
                        || name == grant_header
                        || name == "authorization"
                    {
                        return Err(ConfigError::new(
                            "identity.name",
                            "must be a header name, not x-jit-*, authorization or the grant header",
                        ));
                    }
                    IdentitySource::Header(name)
                }
                other => {
                    return Err(ConfigError::new(
                        "identity.source",
                        format!("{other:?} is not one of header, peer_uri_san"),
                    ))
                }
            };
            fields.finish()?;
            Some(parsed)
        }
    };
    if let Some(url) = &request_access_url {
        let printable = url
            .bytes()
            .all(|b| (0x21..0x7F).contains(&b) && b != b'"' && b != b'\\');
        if !(url.starts_with("http://") || url.starts_with("https://")) || !printable || url.len() > 2048 {
            return Err(ConfigError::new("request_access_url", "must be an http(s) URL"));
        }
    }
    if identity_aware && (identity.is_none() || control.is_none()) {
        return Err(ConfigError::new(
            "identity_aware",
            "needs an identity source (identity) and a control link (control) to sync grants from",
        ));
    }
    Ok(FilterConfig {
        verifier: Verifier::new(issuer, key_set).with_leeway(leeway).with_max_ttl(max_ttl),
        grant_header,
        accept_bearer,
        resources: parsed,
        unmatched,
        identity,
        mode,
        request_access_url,
        control,
        identity_aware,
        identity_headers,
    })
}

fn control_link(mut f: Fields) -> Result<ControlLink, ConfigError> {
    let cluster = f.required_string("cluster")?;
    let ingest_key = f.required_string("ingest_key")?;
    let poll_interval_ms = f.integer("poll_interval_ms", 1000)?;
    let timeout_ms = f.integer("timeout_ms", 2000)?;
    let max_staleness_seconds = match f.integer("max_staleness_seconds", 0)? {
        0 => None,
        n => Some(n),
    };
    let unsynced = choice(
        "control.unsynced",
        f.string("unsynced")?,
        &[("deny", Unsynced::Deny), ("allow", Unsynced::Allow)],
    )?
    .unwrap_or_default();
    let fallback_clusters = f.array("fallback_clusters")?;
    let explicit_authority = f.string("authority")?;
    let report = match f.take("report") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(ConfigError::new(
                "control.report",
                format!("must be true or false, not {}", other.kind()),
            ))
        }
    };
    let report_batch = f.integer("report_batch", 500)?;
    let report_buffer = f.integer("report_buffer", 20_000)?;
    let report_interval_ms = f.integer("report_interval_ms", 1000)?;
    let proxy_id = f.string("proxy_id")?.unwrap_or_else(|| "envoy".to_owned());
    f.finish()?;
    let authority = explicit_authority.clone().unwrap_or_else(|| cluster.clone());
    let printable = |s: &str| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| (0x21..0x7F).contains(&b));
    if !printable(&cluster) {
        return Err(ConfigError::new("control.cluster", "must name an Envoy cluster"));
    }
    let mut endpoints = vec![Endpoint {
        cluster: cluster.clone(),
        authority: authority.clone(),
    }];
    for (i, fallback) in fallback_clusters.into_iter().enumerate() {
        let field = format!("control.fallback_clusters[{i}]");
        let Value::Str(name) = fallback else {
            return Err(ConfigError::new(field, "must name an Envoy cluster"));
        };
        if !printable(&name) || endpoints.iter().any(|e| e.cluster == name) {
            return Err(ConfigError::new(field, "must name another Envoy cluster"));
        }
        endpoints.push(Endpoint {
            authority: explicit_authority.clone().unwrap_or_else(|| name.clone()),
            cluster: name,
        });
    }
    if endpoints.len() > 8 {
        return Err(ConfigError::new("control.fallback_clusters", "list at most 7"));
    }
    if !printable(&authority) {
        return Err(ConfigError::new("control.authority", "must be a host name"));
    }
    if ingest_key.len() < 16 || !printable(&ingest_key) {
        return Err(ConfigError::new(
            "control.ingest_key",
            "must be at least 16 printable characters",
        ));
    }
    if !(100..=60_000).contains(&poll_interval_ms) {
        return Err(ConfigError::new("control.poll_interval_ms", "must be 100 to 60000"));
    }
    if !(100..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new("control.timeout_ms", "must be 100 to 60000"));
    }
    if max_staleness_seconds.is_some_and(|s| s * 1000 < poll_interval_ms * 2) {
        return Err(ConfigError::new(
            "control.max_staleness_seconds",
            "must allow at least two poll intervals",
        ));
    }
    if report_batch == 0 || report_batch > 10_000 {
        return Err(ConfigError::new("control.report_batch", "must be 1 to 10000"));
    }
    if report_buffer < report_batch || report_buffer > 1_000_000 {
        return Err(ConfigError::new(
            "control.report_buffer",
            "must be at least report_batch and at most 1000000",
        ));
    }
    if !(100..=60_000).contains(&report_interval_ms) {
        return Err(ConfigError::new("control.report_interval_ms", "must be 100 to 60000"));
    }
    if !printable(&proxy_id) {
        return Err(ConfigError::new("control.proxy_id", "must be printable"));
    }
    Ok(ControlLink {
        cluster,
        authority,
        ingest_key,
        poll_interval_ms,
        timeout_ms,
        max_staleness_seconds,
        unsynced,
        endpoints,
        report,
        report_batch: report_batch as usize,
        report_buffer: report_buffer as usize,
        report_interval_ms,
        proxy_id,
    })
}

fn resource(i: usize, value: Value, earlier: &[Resource]) -> Result<Resource, ConfigError> {
    let mut r = Fields::new(&format!("resources[{i}]"), value)?;
    let field = |name: &str| format!("resources[{i}].{name}");
    let id = r.required_string("id")?;
    let hosts = r.array("hosts")?;
    let prefix = r.string("path_prefix")?.unwrap_or_else(|| "/".to_owned());
    r.finish()?;
    if !is_resource_id(&id) {
        return Err(ConfigError::new(
            field("id"),
            "must be 1 to 128 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    if earlier.iter().any(|other| other.id == id) {
        return Err(ConfigError::new(field("id"), format!("{id:?} is listed twice")));
    }
    let hosts = if hosts.is_empty() {
        vec![HostPattern::Any]
    } else {
        hosts
            .iter()
            .map(|h| match h {
                Value::Str(h) => host_pattern(&field("hosts"), h),
                other => Err(ConfigError::new(
                    field("hosts"),
                    format!("must list strings, not {}", other.kind()),
                )),
            })
            .collect::<Result<_, _>>()?
    };
    let trimmed = prefix.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    if !prefix.starts_with('/')
        || grant::path::check_request_path(trimmed.as_bytes()).map(|p| p.as_bytes()) != Ok(trimmed.as_bytes())
    {
        return Err(ConfigError::new(
            field("path_prefix"),
            "must be a plain path starting with '/'",
        ));
    }
    Ok(Resource {
        id,
        hosts,
        path_prefix: trimmed.to_owned(),
    })
}

/// Whether `name` is a valid lower-case HTTP header field name.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn host_pattern(field: &str, host: &str) -> Result<HostPattern, ConfigError> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    };
    if h == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = h.strip_prefix("*.") {
        if valid(suffix) {
            return Ok(HostPattern::Suffix(format!(".{suffix}")));
        }
    } else if valid(&h) {
        return Ok(HostPattern::Exact(h));
    }
    Err(ConfigError::new(
        field,
        format!("{host:?} is not a host name, `*.domain` or `*`"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

    fn with(extra: &str) -> String {
        format!(
            r#"{{"issuer":"jit-control","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"payments-api","hosts":["Payments.Example.com."],"path_prefix":"/v1/"}}]{extra}}}"#
        )
    }

    fn err(json: &str) -> ConfigError {
        parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = parse(with("").as_bytes()).unwrap();
        assert_eq!(c.grant_header, "x-jit-grant");
        assert!(!c.accept_bearer);
        assert_eq!(c.unmatched, Unmatched::Deny);
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.verifier.leeway(), 30);
        assert_eq!(c.verifier.max_ttl(), 43_200);
        assert_eq!(
            c.resources[0].hosts,
            vec![HostPattern::Exact("payments.example.com".into())]
        );
        assert_eq!(c.resources[0].path_prefix, "/v1");
    }

    #[test]
    fn control_link_denies_before_the_first_sync_and_lists_fallbacks_after_the_primary() {
        let c = parse(
            with(r#","control":{"cluster":"primary","ingest_key":"0123456789abcdef","fallback_clusters":["mirror"]}"#)
                .as_bytes(),
        )
        .unwrap();
        let link = c.control.unwrap();
        assert_eq!(link.unsynced, Unsynced::Deny);
        let clusters: Vec<(&str, &str)> = link
            .endpoints
            .iter()
            .map(|e| (e.cluster.as_str(), e.authority.as_str()))
            .collect();
        assert_eq!(clusters, [("primary", "primary"), ("mirror", "mirror")]);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(&with(r#","mode":"audit""#)).field, "mode");
        assert_eq!(err(&with(r#","leeway":"30""#)).field, "leeway");
        assert_eq!(err(&with(r#","accept_bearer":"yes""#)).field, "accept_bearer");
        assert_eq!(
            err(&with(r#","identity":{"source":"header","name":"x-user","extra":1}"#)).field,
            "identity.extra"
        );
        assert_eq!(err(&with(r#","leeway":30,"leeway":0"#)).field, "(root)");
        assert_eq!(err(&with(r#","leeway":3600"#)).field, "leeway");
        assert_eq!(err(&with(r#","surprise":1"#)).field, "surprise");
        assert_eq!(err(&with(r#","grant_header":"Authorization""#)).field, "grant_header");
        assert_eq!(
            err(&with(r#","identity":{"source":"header","name":"x-jit-subject"}"#)).field,
            "identity.name"
        );
        assert_eq!(
            err(&with(r#","request_access_url":"javascript:alert(1)""#)).field,
            "request_access_url"
        );
        assert_eq!(
            err(r#"{"issuer":"i","keys":{"k1":"c2hvcnQ"},"resources":[{"id":"a"}]}"#).field,
            "keys.k1"
        );
        assert_eq!(
            err(r#"{"issuer":"i","keys":{"../x":"c2hvcnQ"},"resources":[{"id":"a"}]}"#).field,
            "keys.../x"
        );
        assert_eq!(
            err(&format!(r#"{{"issuer":"i","keys":{{"k1":"{KEY}"}},"resources":[]}}"#)).field,
            "resources"
        );
        assert_eq!(
            err(&format!(
                r#"{{"issuer":"i","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"a b"}}]}}"#
            ))
            .field,
            "resources[0].id"
        );
        assert_eq!(
            err(&format!(
                r#"{{"issuer":"i","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"a","path_prefix":"/a/../b"}}]}}"#
            ))
            .field,
            "resources[0].path_prefix"
        );
        assert_eq!(err(r#"{"keys":{},"resources":[]}"#).field, "issuer");
        assert_eq!(err("not json").field, "(root)");
        assert_eq!(
            err(&with(r#","control":{"cluster":"c","ingest_key":"short"}"#)).field,
            "control.ingest_key"
        );
        assert_eq!(
            err(&with(
                r#","control":{"cluster":"c","ingest_key":"0123456789abcdef","poll_interval_ms":5}"#
            ))
            .field,
            "control.poll_interval_ms"
        );
        assert_eq!(err(&with(r#","identity_aware":true"#)).field, "identity_aware");
        let link = |extra: &str| {
            with(&format!(
                r#","control":{{"cluster":"c","ingest_key":"0123456789abcdef"{extra}}}"#
            ))
        };
        assert_eq!(err(&link(r#","unsynced":"maybe""#)).field, "control.unsynced");
        assert_eq!(
            err(&link(r#","fallback_clusters":["m",1]"#)).field,
            "control.fallback_clusters[1]"
        );
        assert_eq!(
            err(&link(r#","fallback_clusters":["c"]"#)).field,
            "control.fallback_clusters[0]"
        );
        // Found by fuzzing (fuzz/artifacts/filter_config): an empty member
        // name gave an error naming no field.
        assert_eq!(err(&with(r#","":1"#)).field, r#""""#);
        // Found by fuzzing: a kid with an escaped newline broke the one-line
        // error into two log lines.
        let e = err(r#"{"issuer":"i","keys":{"k\n1":"x"},"resources":[{"id":"a"}]}"#);
        assert!(!e.to_string().contains('\n'), "{e}");
        assert_eq!(err("").field, "(root)");
    }

    #[test]
    fn identity_headers_default_to_all_three_and_take_an_exact_list() {
        assert_eq!(
            parse(with("").as_bytes()).unwrap().identity_headers,
            IdentityHeaders::default()
        );
        let only_subject = parse(with(r#","identity_headers":["subject"]"#).as_bytes()).unwrap();
        assert_eq!(
            only_subject.identity_headers,
            IdentityHeaders {
                subject: true,
                grant_id: false,
                request_id: false
            }
        );
        let none = parse(with(r#","identity_headers":[]"#).as_bytes()).unwrap();
        assert!(!none.identity_headers.subject && !none.identity_headers.grant_id && !none.identity_headers.request_id);
        assert_eq!(
            err(&with(r#","identity_headers":["subject","subject"]"#)).field,
            "identity_headers[1]"
        );
        assert_eq!(
            err(&with(r#","identity_headers":["email"]"#)).field,
            "identity_headers[0]"
        );
        assert_eq!(err(&with(r#","identity_headers":"subject""#)).field, "identity_headers");
    }

    #[test]
    fn display_is_one_line_naming_the_field() {
        let e = err(&with(r#","leeway":3600"#));
        let line = e.to_string();
        assert!(
            line.starts_with("invalid plugin configuration: field `leeway`"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
