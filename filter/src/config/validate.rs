//! Validating the configuration: each section read through
//! [`super::reader`] and checked into its typed form, or refused with the
//! field named. Nothing here falls back to "allow".

use grant::{KeySet, Verifier};

use super::reader::{choice, Fields, Value};
use super::types::*;

/// Validates the root object into a configuration.
pub(super) fn filter_config(mut root: Fields) -> Result<FilterConfig, ConfigError> {
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
        Some(Value::Arr(items)) => identity_headers(items)?,
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
    let key_set = key_set(&keys)?;
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
    let identity = identity
        .map(|fields| identity_source(fields, &grant_header))
        .transpose()?;
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

/// The `keys` section: kid to base64url secret, at least one.
fn key_set(keys: &Fields) -> Result<KeySet, ConfigError> {
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
    Ok(key_set)
}

/// The `identity` section: where a caller's identity comes from.
fn identity_source(mut fields: Fields, grant_header: &str) -> Result<IdentitySource, ConfigError> {
    let source = fields.required_string("source")?;
    let parsed = match source.as_str() {
        "peer_uri_san" => IdentitySource::PeerUriSan,
        "header" => {
            let name = fields.required_string("name")?.to_ascii_lowercase();
            if !is_header_name(&name) || name.starts_with("x-jit-") || name == grant_header || name == "authorization" {
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
    Ok(parsed)
}

/// From the configuration's list of names (`subject`, `grant_id`,
/// `request_id`), each at most once.
fn identity_headers(items: Vec<Value>) -> Result<IdentityHeaders, ConfigError> {
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
    let report_allowed = choice(
        "control.report_allowed",
        f.string("report_allowed")?,
        &[("aggregate", ReportAllowed::Aggregate), ("each", ReportAllowed::Each)],
    )?
    .unwrap_or_default();
    let count_interval_ms = f.integer("count_interval_ms", 60_000)?;
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
    if !(100..=300_000).contains(&count_interval_ms) {
        return Err(ConfigError::new("control.count_interval_ms", "must be 100 to 300000"));
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
        report_allowed,
        count_interval_ms,
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

pub(super) fn is_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) fn host_pattern(field: &str, host: &str) -> Result<HostPattern, ConfigError> {
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
