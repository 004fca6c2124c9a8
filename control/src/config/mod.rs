//! The service configuration: one TOML file, validated once at start into
//! typed values, with errors that name the field.
//!
//! Every secret can be given inline (development), through an environment
//! variable (`*_env`) or a file (`*_file`), so production secrets stay out
//! of the file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use grant::scope::ScopeRule;
use grant::{KeySet, SigningKey};
use serde::Deserialize;

pub mod console;

pub use crate::error::ConfigError;

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A secret given inline, by environment variable, or by file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The secret itself (development only).
    pub value: Option<String>,
    /// Name of an environment variable holding it.
    pub env: Option<String>,
    /// Path of a file holding it (trailing whitespace trimmed).
    pub file: Option<PathBuf>,
}

impl SecretSource {
    fn resolve(&self, field: &str) -> Result<String, ConfigError> {
        let sources = [self.value.is_some(), self.env.is_some(), self.file.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(err(field, "give exactly one of value, env, file"));
        }
        if let Some(v) = &self.value {
            return Ok(v.clone());
        }
        if let Some(name) = &self.env {
            return std::env::var(name).map_err(|_| err(field, format!("environment variable {name} is not set")));
        }
        let path = self.file.as_deref().unwrap_or(Path::new(""));
        std::fs::read_to_string(path)
            .map(|s| s.trim_end().to_owned())
            .map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    #[serde(default = "default_database_url")]
    database_url: String,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_pending_timeout")]
    pending_timeout_seconds: u64,
    grants: RawGrants,
    keys: Vec<RawKey>,
    auth: RawAuth,
    ingest_key: SecretSource,
    resources: Vec<RawResource>,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    integrations: RawIntegrations,
    #[serde(default)]
    console: console::RawConsole,
    #[serde(default)]
    audit: RawAudit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    signing_key: Option<SecretSource>,
    #[serde(default = "default_checkpoint_records")]
    checkpoint_every_records: u64,
    #[serde(default = "default_checkpoint_seconds")]
    checkpoint_every_seconds: u64,
    witness_dir: Option<PathBuf>,
}

impl Default for RawAudit {
    fn default() -> RawAudit {
        RawAudit {
            signing_key: None,
            checkpoint_every_records: default_checkpoint_records(),
            checkpoint_every_seconds: default_checkpoint_seconds(),
            witness_dir: None,
        }
    }
}

fn default_checkpoint_records() -> u64 {
    1000
}
fn default_checkpoint_seconds() -> u64 {
    60
}

/// Signed checkpoints of the audit log (`[audit]`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The Ed25519 key that signs checkpoints (`signing_key`, a note-format
    /// private key from `jitgate audit keygen`); `None`: no checkpoints.
    pub signer: Option<crate::audit::checkpoint::CheckpointSigner>,
    /// Sign once this many records are unsigned...
    pub every_records: u64,
    /// ...or once the oldest unsigned record is this old.
    pub every_seconds: u64,
    /// The append-only directory every checkpoint is published to.
    pub witness_dir: Option<PathBuf>,
}

impl RawAudit {
    fn validate(self) -> Result<AuditConfig, ConfigError> {
        let signer = match &self.signing_key {
            Some(source) => Some(
                crate::audit::checkpoint::CheckpointSigner::parse(&source.resolve("audit.signing_key")?)
                    .map_err(|e| err("audit.signing_key", e.to_string()))?,
            ),
            None => None,
        };
        if self.checkpoint_every_records == 0 {
            return Err(err("audit.checkpoint_every_records", "must be at least 1"));
        }
        if self.checkpoint_every_seconds == 0 {
            return Err(err("audit.checkpoint_every_seconds", "must be at least 1"));
        }
        if self.witness_dir.is_some() && signer.is_none() {
            return Err(err(
                "audit.witness_dir",
                "needs audit.signing_key (checkpoints are signed)",
            ));
        }
        Ok(AuditConfig {
            signer,
            every_records: self.checkpoint_every_records,
            every_seconds: self.checkpoint_every_seconds,
            witness_dir: self.witness_dir,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default = "default_expiring_soon")]
    expiring_soon_seconds: u64,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

fn default_expiring_soon() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    kind: TargetKind,
    url: String,
    secret: Option<SecretSource>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegrations {
    slack_signing_secret: Option<SecretSource>,
    callback_secret: Option<SecretSource>,
    #[serde(default)]
    users: Vec<RawChatUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChatUser {
    chat_id: String,
    user: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// What kind of notification target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A generic JSON webhook, signed.
    Webhook,
    /// A Slack-compatible incoming webhook with Approve / Deny buttons.
    Slack,
}

/// Events a target can receive.
pub const EVENTS: [&str; 7] = [
    "request.created",
    "request.reminder",
    "request.approved",
    "request.denied",
    "grant.revoked",
    "grant.expiring_soon",
    "grant.expired",
];

/// A notification target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name (shown in delivery state).
    pub name: String,
    /// Its kind.
    pub kind: TargetKind,
    /// Where to POST.
    pub url: String,
    /// Signing secret (webhooks).
    pub secret: Option<Vec<u8>>,
    /// Events it receives (empty: all).
    pub events: BTreeSet<String>,
    /// Resources it covers (empty: all).
    pub resources: BTreeSet<String>,
}

/// Signed audit checkpoints, sent only to webhook targets that list this
/// event explicitly (a target with no `events` list does not get them).
pub const AUDIT_CHECKPOINT_EVENT: &str = "audit.checkpoint";

impl Target {
    /// Whether this target is a witness of audit checkpoints.
    pub fn wants_checkpoints(&self) -> bool {
        self.kind == TargetKind::Webhook && self.events.contains(AUDIT_CHECKPOINT_EVENT)
    }

    /// Whether this target wants an event about a resource.
    pub fn wants(&self, event: &str, resource: &str) -> bool {
        (self.events.is_empty() || self.events.contains(event))
            && (self.resources.is_empty() || self.resources.contains(resource))
    }
}

/// A chat or ticket-tool identity mapped to a jitgate user.
#[derive(Debug, Clone)]
pub struct ChatUser {
    /// Slack user id, or the actor name a callback tool sends.
    pub chat_id: String,
    /// The jitgate user id.
    pub user: String,
    /// Email.
    pub email: Option<String>,
    /// Groups (approver groups matter here).
    pub groups: BTreeSet<String>,
}

/// Inbound approval channels.
#[derive(Debug, Clone, Default)]
pub struct Integrations {
    /// Slack's signing secret (enables `/v1/integrations/slack/actions`).
    pub slack_signing_secret: Option<Vec<u8>>,
    /// Secret of the generic signed callback (enables `/v1/integrations/callback`).
    pub callback_secret: Option<Vec<u8>>,
    /// Identity mapping.
    pub users: Vec<ChatUser>,
}

fn default_database_url() -> String {
    "sqlite://jitgate.db".to_owned()
}
fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_pending_timeout() -> u64 {
    24 * 3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default = "default_min_ttl")]
    min_ttl_seconds: u64,
    #[serde(default = "default_max_ttl")]
    max_ttl_seconds: u64,
    #[serde(default = "default_max_start_ahead")]
    max_start_ahead_seconds: u64,
}

/// How far ahead a scheduled request may start: 30 days.
fn default_max_start_ahead() -> u64 {
    30 * 24 * 3600
}

fn default_min_ttl() -> u64 {
    60
}
fn default_max_ttl() -> u64 {
    grant::DEFAULT_MAX_TTL
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: String,
    secret: SecretSource,
    #[serde(default)]
    active: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    issuer: String,
    audience: String,
    #[serde(default = "default_auth_leeway")]
    leeway_seconds: u64,
    #[serde(default = "default_user_claim")]
    user_claim: String,
    #[serde(default = "default_email_claim")]
    email_claim: String,
    user_match: Option<String>,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    hs256_secret: Option<SecretSource>,
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    admin_groups: Vec<String>,
    #[serde(default)]
    auditor_groups: Vec<String>,
    // OpenID Connect (validated in `auth::settings`).
    #[serde(default)]
    discovery: bool,
    jwks_uri: Option<String>,
    #[serde(default)]
    jwks_cache: crate::auth::settings::RawJwksCache,
    group_prefix: Option<String>,
    #[serde(default)]
    group_rename: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    workload: Vec<crate::auth::settings::RawWorkloadIssuer>,
}

fn default_auth_leeway() -> u64 {
    5
}
fn default_user_claim() -> String {
    "sub".to_owned()
}
fn default_email_claim() -> String {
    "email".to_owned()
}
fn default_groups_claim() -> String {
    "groups".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    methods: Vec<String>,
    paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoApprove {
    name: String,
    #[serde(default)]
    methods: Vec<String>,
    max_duration_seconds: u64,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    groups: Vec<String>,
    max_duration_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    id: String,
    #[serde(default)]
    description: String,
    scope: Vec<RawRule>,
    max_duration_seconds: u64,
    requesters: Vec<String>,
    approvers: Vec<String>,
    #[serde(default = "one")]
    approvals_required: u32,
    #[serde(default)]
    auto_approve: Vec<RawAutoApprove>,
    break_glass: Option<RawBreakGlass>,
    #[serde(default)]
    require_device_binding: bool,
    #[serde(default)]
    step_up: crate::auth::stepup::RawStepUp,
    openapi: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

pub use crate::auth::settings::AuthConfig;

/// An auto-approve rule.
#[derive(Debug, Clone)]
pub struct AutoApprove {
    /// Its name, recorded with the approval.
    pub name: String,
    /// Methods allowed (every requested method must be one of them).
    pub methods: BTreeSet<String>,
    /// Longest duration it approves.
    pub max_duration_seconds: u64,
    /// Requester groups it applies to (empty: any requester).
    pub groups: BTreeSet<String>,
}

/// Emergency access for a resource.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    /// Who may use it.
    pub groups: BTreeSet<String>,
    /// Longest emergency grant.
    pub max_duration_seconds: u64,
}

/// One protected API and its policy.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Id (the grants' `aud`).
    pub id: String,
    /// What it is, for people.
    pub description: String,
    /// What may be requested.
    pub scope: Vec<ScopeRule>,
    /// Longest grant.
    pub max_duration_seconds: u64,
    /// Groups that may request.
    pub requesters: BTreeSet<String>,
    /// Groups that may approve.
    pub approvers: BTreeSet<String>,
    /// Distinct approvals needed.
    pub approvals_required: u32,
    /// Auto-approve rules.
    pub auto_approve: Vec<AutoApprove>,
    /// Break-glass policy.
    pub break_glass: Option<BreakGlass>,
    /// Only grants bound to a client certificate (`cnf`, issue 16).
    pub require_device_binding: bool,
    /// What the caller's sign-in must show for each step.
    pub step_up: crate::auth::stepup::StepUp,
    /// The API's OpenAPI document (`openapi`, a file read at start), for
    /// previews of what a scope allows.
    pub api: Option<std::sync::Arc<crate::preview::ApiDocument>>,
}

impl Resource {
    /// What `scope` would allow in this resource's API, when it names an
    /// OpenAPI document.
    pub fn preview(&self, scope: &[ScopeRule]) -> Option<crate::preview::Preview> {
        self.api.as_deref().map(|doc| crate::preview::preview(doc, scope))
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The grants' `iss`.
    pub issuer: String,
    /// Database URL (`sqlite://...` or `postgres://...`).
    pub database_url: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body accepted on ordinary endpoints.
    pub max_body_bytes: usize,
    /// How long a request may stay pending.
    pub pending_timeout_seconds: u64,
    /// Shortest grant.
    pub min_ttl_seconds: u64,
    /// Longest grant (proxies' `max_ttl` must be at least this).
    pub max_ttl_seconds: u64,
    /// How far ahead a request's window may start (`starts_at`); 0: no
    /// scheduled requests.
    pub max_start_ahead_seconds: u64,
    /// The key that mints.
    pub signing_key: SigningKey,
    /// Every configured key.
    pub keys: KeySet,
    /// Caller authentication.
    pub auth: AuthConfig,
    /// The key proxies present.
    pub ingest_key: String,
    /// The protected resources.
    pub resources: Vec<Resource>,
    /// Notification targets.
    pub targets: Vec<Target>,
    /// Lead time of `grant.expiring_soon`.
    pub expiring_soon_seconds: u64,
    /// Inbound approval channels.
    pub integrations: Integrations,
    /// The web console.
    pub console: console::ConsoleConfig,
    /// Signed checkpoints of the audit log.
    pub audit: AuditConfig,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err("(file)", format!("{}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // serde_path_to_error gives the path of a value of the wrong type
        // (`resources[0].require_device_binding`) or of an unknown field;
        // errors at the top level name the field in the message.
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().message().trim().to_owned();
            let named = message.split('`').nth(1);
            let field = match (path.as_str(), named) {
                (".", Some(n)) => n.to_owned(),
                (".", None) => "(file)".to_owned(),
                (p, _) => p.to_owned(),
            };
            err(field, message)
        })?;
        raw.validate()
    }

    /// A resource by id.
    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }
}

fn groups(field: &str, list: Vec<String>, allow_empty: bool) -> Result<BTreeSet<String>, ConfigError> {
    if list.is_empty() && !allow_empty {
        return Err(err(field, "list at least one group"));
    }
    if let Some(g) = list.iter().find(|g| g.trim().is_empty()) {
        return Err(err(field, format!("group name {g:?} is empty")));
    }
    Ok(list.into_iter().collect())
}

impl RawConfig {
    /// Validates each section in turn (each error names its field).
    fn validate(self) -> Result<Config, ConfigError> {
        let (database_url, listen) = service(&self)?;
        let (min_ttl, max_ttl) = self.grants.validate()?;
        let (keys, signing_key) = signing_keys(&self.keys)?;
        let auth = self.auth.validate()?;
        let ingest_key = ingest_key(&self.ingest_key)?;
        let resources = resources(self.resources, min_ttl, max_ttl)?;
        let expiring_soon_seconds = self.notify.expiring_soon_seconds;
        let targets = self.notify.targets(&resources)?;
        let integrations = self.integrations.validate(auth.user_match)?;
        let audit = self.audit.validate()?;
        let console = self.console.validate()?;
        Ok(Config {
            console,
            audit,
            targets,
            expiring_soon_seconds,
            integrations,
            issuer: self.issuer,
            database_url,
            listen,
            max_body_bytes: self.max_body_bytes,
            pending_timeout_seconds: self.pending_timeout_seconds,
            min_ttl_seconds: min_ttl,
            max_ttl_seconds: max_ttl,
            max_start_ahead_seconds: self.grants.max_start_ahead_seconds,
            signing_key,
            keys,
            auth,
            ingest_key,
            resources,
        })
    }
}

/// The service section (top-level keys): issuer, database, listener, body
/// size, pending timeout.
fn service(raw: &RawConfig) -> Result<(String, SocketAddr), ConfigError> {
    if raw.issuer.trim().is_empty() {
        return Err(err("issuer", "must not be empty"));
    }
    let database_url = if raw.database_url.starts_with("sqlite:") || raw.database_url.starts_with("postgres") {
        raw.database_url.clone()
    } else {
        return Err(err("database_url", "must start with sqlite: or postgres://"));
    };
    let listen = raw.listen.parse().map_err(|_| err("listen", "must be host:port"))?;
    if !(1024..=16 * 1024 * 1024).contains(&raw.max_body_bytes) {
        return Err(err("max_body_bytes", "must be 1 KiB to 16 MiB"));
    }
    if !(60..=30 * 24 * 3600).contains(&raw.pending_timeout_seconds) {
        return Err(err("pending_timeout_seconds", "must be 60 s to 30 days"));
    }
    Ok((database_url, listen))
}

impl RawGrants {
    /// `[grants]`: the TTL bounds and how far ahead a window may start.
    fn validate(&self) -> Result<(u64, u64), ConfigError> {
        let (min_ttl, max_ttl) = (self.min_ttl_seconds, self.max_ttl_seconds);
        if min_ttl == 0 || min_ttl > max_ttl || max_ttl > 7 * 24 * 3600 {
            return Err(err(
                "grants.max_ttl_seconds",
                "need 0 < min_ttl_seconds <= max_ttl_seconds <= 7 days",
            ));
        }
        if self.max_start_ahead_seconds > 365 * 24 * 3600 {
            return Err(err(
                "grants.max_start_ahead_seconds",
                "must be 0 (no scheduled requests) to 365 days",
            ));
        }
        Ok((min_ttl, max_ttl))
    }
}

/// `[[keys]]`: the key set, and the one active key that mints.
fn signing_keys(keys: &[RawKey]) -> Result<(KeySet, SigningKey), ConfigError> {
    if keys.is_empty() {
        return Err(err("keys", "configure at least one signing key"));
    }
    let mut set = KeySet::new();
    let mut active = None;
    for (i, k) in keys.iter().enumerate() {
        let field = format!("keys[{i}]");
        let secret = k.secret.resolve(&format!("{field}.secret"))?;
        let key = SigningKey::from_base64url(&k.kid, &secret).map_err(|e| err(&field, e.to_string()))?;
        set.add(key.clone()).map_err(|e| err(&field, e.to_string()))?;
        if k.active {
            if active.is_some() {
                return Err(err(format!("{field}.active"), "only one key may be active"));
            }
            active = Some(key);
        }
    }
    let signing_key = active.ok_or_else(|| err("keys", "mark one key active = true (the one that mints)"))?;
    Ok((set, signing_key))
}

impl RawAuth {
    /// `[auth]`: how callers are authenticated and matched.
    fn validate(self) -> Result<AuthConfig, ConfigError> {
        let a = self;
        if a.issuer.is_empty() {
            return Err(err("auth.issuer", "must not be empty"));
        }
        if a.audience.is_empty() {
            return Err(err("auth.audience", "must not be empty"));
        }
        if a.leeway_seconds > 60 {
            return Err(err("auth.leeway_seconds", "keep it small: at most 60"));
        }
        let hs256_secret = a
            .hs256_secret
            .as_ref()
            .map(|s| s.resolve("auth.hs256_secret"))
            .transpose()?
            .map(String::into_bytes);
        if hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(err("auth.hs256_secret", "must be at least 32 bytes"));
        }
        let jwks = a
            .jwks_file
            .as_deref()
            .map(|path| crate::auth::settings::load_jwks_file("auth.jwks_file", path))
            .transpose()?;
        let oidc = crate::auth::settings::RawOidc {
            discovery: a.discovery,
            jwks_uri: a.jwks_uri,
            jwks_cache: a.jwks_cache,
            group_prefix: a.group_prefix,
            group_rename: a.group_rename,
            workload: a.workload,
        }
        .validate(&a.issuer)?;
        if hs256_secret.is_none() && jwks.is_none() && oidc.location.is_none() {
            return Err(err(
                "auth",
                "configure discovery = true or jwks_uri (OpenID provider), jwks_file (air-gapped) or hs256_secret (development)",
            ));
        }
        let user_match = match a.user_match.as_deref() {
            None => crate::identity::UserMatch::for_claim(&a.user_claim),
            Some("exact") => crate::identity::UserMatch::Exact,
            Some("folded") => crate::identity::UserMatch::Folded,
            Some(other) => {
                return Err(err(
                    "auth.user_match",
                    format!("{other:?} is not one of exact (opaque ids such as sub), folded (emails, usernames)"),
                ))
            }
        };
        Ok(AuthConfig {
            user_match,
            issuer: a.issuer,
            audience: a.audience,
            leeway_seconds: a.leeway_seconds,
            user_claim: a.user_claim,
            email_claim: a.email_claim,
            groups_claim: a.groups_claim,
            hs256_secret,
            jwks,
            admin_groups: groups("auth.admin_groups", a.admin_groups, true)?,
            auditor_groups: groups("auth.auditor_groups", a.auditor_groups, true)?,
            oidc,
        })
    }
}

/// `ingest_key`: the proxies' shared key.
fn ingest_key(source: &SecretSource) -> Result<String, ConfigError> {
    let ingest_key = source.resolve("ingest_key")?;
    if ingest_key.len() < 16 {
        return Err(err("ingest_key", "must be at least 16 characters"));
    }
    Ok(ingest_key)
}

/// `[[resources]]`, within the grants' TTL bounds.
fn resources(raw: Vec<RawResource>, min_ttl: u64, max_ttl: u64) -> Result<Vec<Resource>, ConfigError> {
    if raw.is_empty() {
        return Err(err("resources", "configure at least one resource"));
    }
    let mut resources: Vec<Resource> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("resources[{i}].{name}");
        let valid_id = !r.id.is_empty()
            && r.id.len() <= 128
            && r.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid_id {
            return Err(err(f("id"), "must be 1 to 128 characters of A-Z a-z 0-9 . _ -"));
        }
        if resources.iter().any(|o| o.id == r.id) {
            return Err(err(f("id"), format!("{:?} is listed twice", r.id)));
        }
        if r.scope.is_empty() {
            return Err(err(f("scope"), "list what may be requested"));
        }
        let scope: Vec<ScopeRule> = r
            .scope
            .into_iter()
            .map(|rule| ScopeRule {
                methods: rule.methods,
                paths: rule.paths,
            })
            .collect();
        for (j, rule) in scope.iter().enumerate() {
            rule.validate()
                .map_err(|e| err(format!("resources[{i}].scope[{j}]"), e.to_string()))?;
        }
        if r.max_duration_seconds < min_ttl || r.max_duration_seconds > max_ttl {
            return Err(err(
                f("max_duration_seconds"),
                "must be within the grants' min and max TTL",
            ));
        }
        let approvers = groups(&f("approvers"), r.approvers, false)?;
        if r.approvals_required == 0 || r.approvals_required > 10 {
            return Err(err(f("approvals_required"), "must be 1 to 10"));
        }
        let mut auto = Vec::new();
        for (j, rule) in r.auto_approve.into_iter().enumerate() {
            let af = format!("resources[{i}].auto_approve[{j}]");
            for m in &rule.methods {
                grant::scope::validate_method(m).map_err(|e| err(format!("{af}.methods"), e.to_string()))?;
            }
            if rule.max_duration_seconds == 0 || rule.max_duration_seconds > r.max_duration_seconds {
                return Err(err(
                    format!("{af}.max_duration_seconds"),
                    "must be within the resource's maximum",
                ));
            }
            auto.push(AutoApprove {
                name: rule.name,
                methods: rule.methods.into_iter().collect(),
                max_duration_seconds: rule.max_duration_seconds,
                groups: groups(&format!("{af}.groups"), rule.groups, true)?,
            });
        }
        let break_glass = match r.break_glass {
            None => None,
            Some(bg) => {
                if bg.max_duration_seconds == 0 || bg.max_duration_seconds > r.max_duration_seconds {
                    return Err(err(
                        f("break_glass.max_duration_seconds"),
                        "must be within the resource's maximum",
                    ));
                }
                Some(BreakGlass {
                    groups: groups(&f("break_glass.groups"), bg.groups, false)?,
                    max_duration_seconds: bg.max_duration_seconds,
                })
            }
        };
        let api = match &r.openapi {
            None => None,
            Some(path) => Some(std::sync::Arc::new(
                crate::preview::ApiDocument::load(path).map_err(|e| err(f("openapi"), e.to_string()))?,
            )),
        };
        resources.push(Resource {
            api,
            id: r.id,
            description: r.description,
            scope,
            max_duration_seconds: r.max_duration_seconds,
            requesters: groups(&f("requesters"), r.requesters, false)?,
            approvers,
            approvals_required: r.approvals_required,
            auto_approve: auto,
            break_glass,
            require_device_binding: r.require_device_binding,
            step_up: r.step_up.validate(&f("step_up"))?,
        });
    }
    Ok(resources)
}

impl RawNotify {
    /// `[[notify.targets]]`, each naming configured resources only.
    fn targets(self, resources: &[Resource]) -> Result<Vec<Target>, ConfigError> {
        let mut targets: Vec<Target> = Vec::new();
        for (i, t) in self.targets.into_iter().enumerate() {
            let f = |name: &str| format!("notify.targets[{i}].{name}");
            if t.name.is_empty() || targets.iter().any(|o| o.name == t.name) {
                return Err(err(f("name"), "give each target a distinct name"));
            }
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(err(f("url"), "must be an http(s) URL"));
            }
            if let Some(e) = t
                .events
                .iter()
                .find(|e| !EVENTS.contains(&e.as_str()) && *e != AUDIT_CHECKPOINT_EVENT)
            {
                return Err(err(
                    f("events"),
                    format!("{e:?} is not one of {}, {AUDIT_CHECKPOINT_EVENT}", EVENTS.join(", ")),
                ));
            }
            if t.kind != TargetKind::Webhook && t.events.iter().any(|e| e == AUDIT_CHECKPOINT_EVENT) {
                return Err(err(
                    f("events"),
                    format!("only webhook targets receive {AUDIT_CHECKPOINT_EVENT}"),
                ));
            }
            if let Some(r) = t.resources.iter().find(|r| !resources.iter().any(|x| &x.id == *r)) {
                return Err(err(f("resources"), format!("{r:?} is not a configured resource")));
            }
            let secret = t
                .secret
                .as_ref()
                .map(|s| s.resolve(&f("secret")))
                .transpose()?
                .map(String::into_bytes);
            if t.kind == TargetKind::Webhook && secret.as_ref().is_none_or(|s| s.len() < 16) {
                return Err(err(
                    f("secret"),
                    "webhooks are signed: give a secret of at least 16 bytes",
                ));
            }
            targets.push(Target {
                name: t.name,
                kind: t.kind,
                url: t.url,
                secret,
                events: t.events.into_iter().collect(),
                resources: t.resources.into_iter().collect(),
            });
        }
        Ok(targets)
    }
}

impl RawIntegrations {
    /// `[integrations]`: chat and callback secrets, chat users.
    fn validate(self, user_match: crate::identity::UserMatch) -> Result<Integrations, ConfigError> {
        let resolve = |s: &Option<SecretSource>, field: &str| -> Result<Option<Vec<u8>>, ConfigError> {
            let v = s
                .as_ref()
                .map(|s| s.resolve(field))
                .transpose()?
                .map(String::into_bytes);
            if v.as_ref().is_some_and(|v| v.len() < 16) {
                return Err(err(field, "must be at least 16 bytes"));
            }
            Ok(v)
        };
        Ok(Integrations {
            slack_signing_secret: resolve(&self.slack_signing_secret, "integrations.slack_signing_secret")?,
            callback_secret: resolve(&self.callback_secret, "integrations.callback_secret")?,
            users: self
                .users
                .into_iter()
                .map(|u| ChatUser {
                    chat_id: u.chat_id,
                    user: crate::identity::canonical_user(&u.user, user_match),
                    email: u.email.as_deref().map(crate::identity::canonical_email),
                    groups: u.groups.into_iter().collect(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const DEV: &str = include_str!("../../examples/jitgate.toml");

    #[test]
    fn the_audit_section_defaults_to_no_checkpoints_and_names_its_fields() {
        let c = Config::parse(DEV).unwrap();
        assert!(c.audit.signer.is_none());
        assert_eq!((c.audit.every_records, c.audit.every_seconds), (1000, 60));
        let key = crate::audit::checkpoint::CheckpointSigner::generate("jit.test/audit", [3; 32]).unwrap();
        let with = |audit: &str| Config::parse(&format!("{DEV}\n[audit]\n{audit}\n"));
        let c = with(&format!(
            "signing_key = {{ value = \"{}\" }}\nwitness_dir = \"/w\"",
            key.private_text()
        ))
        .unwrap();
        assert_eq!(c.audit.signer.map(|s| s.verifier()), Some(key.verifier()));
        for (audit, field) in [
            (
                "signing_key = { value = \"PRIVATE+KEY+x+00000000+AQ==\" }",
                "audit.signing_key",
            ),
            ("witness_dir = \"/w\"", "audit.witness_dir"),
            ("checkpoint_every_records = 0", "audit.checkpoint_every_records"),
            ("checkpoint_every_seconds = 0", "audit.checkpoint_every_seconds"),
        ] {
            assert_eq!(with(audit).unwrap_err().field, field, "{audit}");
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = Config::parse(DEV).unwrap();
        assert_eq!(c.signing_key.kid(), "k2");
        assert_eq!(c.keys.len(), 2);
        assert!(c.resource("payments-api").is_some());
    }

    #[test]
    fn errors_name_the_field() {
        let bad = DEV.replace("approvals_required = 1", "approvals_required = 0");
        assert_eq!(
            Config::parse(&bad).unwrap_err().field,
            "resources[0].approvals_required"
        );
        let bad = DEV.replace("issuer = \"jit-control\"", "issuer = \"jit-control\"\nsurprise = 1");
        assert_eq!(Config::parse(&bad).unwrap_err().field, "surprise");
        let bad = DEV.replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\"");
        assert_eq!(Config::parse(&bad).unwrap_err().field, "listen");
        let bad = DEV.replace("active = true", "active = false");
        assert_eq!(Config::parse(&bad).unwrap_err().field, "keys");
    }

    #[test]
    fn device_binding_is_off_unless_a_resource_requires_it() {
        let c = Config::parse(DEV).unwrap();
        assert!(c.resources.iter().all(|r| !r.require_device_binding));
        let on = DEV.replace(
            "approvals_required = 1",
            "approvals_required = 1\nrequire_device_binding = true",
        );
        assert!(Config::parse(&on).unwrap().resources[0].require_device_binding);
        let bad = DEV.replace(
            "approvals_required = 1",
            "approvals_required = 1\nrequire_device_binding = \"yes\"",
        );
        assert_eq!(
            Config::parse(&bad).unwrap_err().field,
            "resources[0].require_device_binding"
        );
    }

    #[test]
    fn each_section_names_its_own_field() {
        let cases = [
            ("issuer = \"jit-control\"", "issuer = \" \"", "issuer"),
            ("min_ttl_seconds = 60", "min_ttl_seconds = 0", "grants.max_ttl_seconds"),
            (
                "max_start_ahead_seconds = 2592000",
                "max_start_ahead_seconds = 31622400",
                "grants.max_start_ahead_seconds",
            ),
            ("leeway_seconds = 5", "leeway_seconds = 61", "auth.leeway_seconds"),
            (
                "ingest_key = { value = \"dev-ingest-key-0123456789\" }",
                "ingest_key = { value = \"short\" }",
                "ingest_key",
            ),
            (
                "max_duration_seconds = 28800",
                "max_duration_seconds = 1",
                "resources[0].max_duration_seconds",
            ),
        ];
        for (from, to, field) in cases {
            assert!(DEV.contains(from), "{from}");
            assert_eq!(Config::parse(&DEV.replace(from, to)).unwrap_err().field, field, "{to}");
        }
        let target =
            format!("{DEV}\n[notify]\n[[notify.targets]]\nname = \"t\"\nkind = \"webhook\"\nurl = \"ftp://x\"\n");
        assert_eq!(Config::parse(&target).unwrap_err().field, "notify.targets[0].url");
        let chat = format!("{DEV}\n[integrations]\ncallback_secret = {{ value = \"short\" }}\n");
        assert_eq!(Config::parse(&chat).unwrap_err().field, "integrations.callback_secret");
    }

    #[test]
    fn secrets_come_from_env_or_file() {
        let bad = DEV.replace(
            "ingest_key = { value = \"dev-ingest-key-0123456789\" }",
            "ingest_key = { env = \"JITGATE_TEST_MISSING_VAR\" }",
        );
        let e = Config::parse(&bad).unwrap_err();
        assert_eq!(e.field, "ingest_key");
        assert!(e.message.contains("JITGATE_TEST_MISSING_VAR"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest");
        std::fs::write(&path, "file-ingest-key-0123456789\n").unwrap();
        let good = DEV.replace(
            "ingest_key = { value = \"dev-ingest-key-0123456789\" }",
            &format!("ingest_key = {{ file = {:?} }}", path.display().to_string()),
        );
        assert_eq!(Config::parse(&good).unwrap().ingest_key, "file-ingest-key-0123456789");
    }
}
