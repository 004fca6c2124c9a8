//! The `jitgate` command for people: asking, approving, fetching a grant,
//! reading the audit log, against a running control service.
//!
//! The profile comes from `~/.config/jitgate/config.toml`
//! (`url = "..."`, `token = "..."`), overridden by `JITGATE_URL` and
//! `JITGATE_TOKEN`. Every answer is decoded into the type the command
//! expects; an answer of any other shape is an error that names the URL and
//! what came back, never a success (a proxy, a captive portal or the
//! jitgate gateway itself can answer 200 with JSON).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{Record, Verification};
use crate::requests::AccessRequest;
use crate::text::shown;

/// The sentence for an intact verification: how much was read, from where.
pub fn verification_line(v: &Verification) -> String {
    let from = if v.from == 0 {
        "from the first record".to_owned()
    } else {
        format!("after record {} (verified before; --full reads everything)", v.from)
    };
    format!(
        "ok: {} records checked {from}, {} signed checkpoints, chain intact",
        v.records, v.checkpoints
    )
}

/// Where the profile file lives, relative to `$HOME`.
pub const PROFILE_FILE: &str = ".config/jitgate/config.toml";

/// Where and as whom to call the API.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    /// Control service base URL.
    pub url: String,
    /// The user's bearer token.
    pub token: String,
}

impl Profile {
    /// Reads the profile file, then applies the environment.
    pub fn load() -> anyhow::Result<Profile> {
        let path = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(PROFILE_FILE));
        #[derive(Deserialize, Default)]
        struct File {
            url: Option<String>,
            token: Option<String>,
        }
        let file: File = match path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            Some(text) => toml::from_str(&text).with_context(|| format!("reading ~/{PROFILE_FILE}"))?,
            None => File::default(),
        };
        let url = std::env::var("JITGATE_URL").ok().or(file.url);
        let token = match std::env::var("JITGATE_TOKEN").ok().or(file.token) {
            Some(t) => Some(t),
            // The stored `jitgate login`, refreshed when it expires.
            None => super::login::current_token(crate::clock::Clock::now_s(&crate::clock::SystemClock))?,
        };
        match (url, token) {
            (Some(url), Some(token)) => Ok(Profile {
                url: url.trim_end_matches('/').to_owned(),
                token,
            }),
            _ => bail!(
                "set JITGATE_URL (or url in ~/{PROFILE_FILE}) and sign in with jitgate login (or set JITGATE_TOKEN)"
            ),
        }
    }
}

/// Why a call did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer at all.
    #[error("cannot reach the control service at {url}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The service refused, with a problem document.
    #[error("{detail} ({code}, HTTP {status})")]
    Problem {
        /// HTTP status.
        status: u16,
        /// The stable code.
        code: String,
        /// The service's sentence.
        detail: String,
    },
    /// The service wants a stronger or more recent sign-in (step-up).
    #[error("{detail} (step_up_required, HTTP 401)")]
    StepUp {
        /// The service's sentence (what is missing).
        detail: String,
        /// `acr_values` to ask the provider for.
        acr_values: Option<String>,
        /// `max_age` to ask the provider for.
        max_age: Option<u64>,
    },
    /// The jitgate filter in Envoy answered: JITGATE_URL points at the
    /// gateway in front of an API, not at the control service.
    #[error(
        "{url} answered like the jitgate gateway (the Envoy filter), not the control service: \
         {code}: {message} (HTTP {status}); set JITGATE_URL to the control service's address"
    )]
    Gateway {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The filter's decision code.
        code: String,
        /// The filter's sentence.
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error(
        "unexpected answer from {url} (HTTP {status}): {problem}; it began {excerpt:?} \
         (is JITGATE_URL the jitgate control service?)"
    )]
    Unexpected {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// What does not match.
        problem: String,
        /// The first characters of the body.
        excerpt: String,
    },
}

/// A blocking API client.
pub struct Client {
    profile: Profile,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for the profile.
    pub fn new(profile: Profile) -> anyhow::Result<Client> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client { profile, http })
    }

    /// `GET path`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(reqwest::Method::GET, path, None::<&()>)
    }

    /// `POST path` with a JSON body, decoded as `T`.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.profile.url);
        let mut req = self.http.request(method, &url).bearer_auth(&self.profile.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().map_err(|source| ClientError::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        decode_answer(&url, status.as_u16(), &text)
    }
}

/// Decodes an answer: a 2xx into `T`, a problem document into
/// [`ClientError::Problem`], a filter deny body into
/// [`ClientError::Gateway`], anything else into [`ClientError::Unexpected`].
pub fn decode_answer<T: DeserializeOwned>(url: &str, status: u16, text: &str) -> Result<T, ClientError> {
    let unexpected = |problem: String| ClientError::Unexpected {
        url: url.to_owned(),
        status,
        problem,
        excerpt: text.chars().take(120).collect(),
    };
    if (200..300).contains(&status) {
        let mut de = serde_json::Deserializer::from_str(text);
        let decoded: Result<T, _> = serde_path_to_error::deserialize(&mut de);
        return match decoded {
            Ok(v) => match de.end() {
                Ok(()) => Ok(v),
                Err(e) => Err(unexpected(format!(
                    "not the expected JSON ({})",
                    without_position(&e.to_string())
                ))),
            },
            Err(e) if e.inner().is_syntax() || e.inner().is_eof() => Err(unexpected(format!(
                "not the expected JSON ({})",
                without_position(&e.inner().to_string())
            ))),
            Err(e) => Err(unexpected(format!(
                "{}: {}",
                e.path(),
                without_position(&e.inner().to_string())
            ))),
        };
    }
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    if let (Some(code), Some(detail)) = (field("code"), field("detail")) {
        if code == "step_up_required" {
            return Err(ClientError::StepUp {
                detail,
                acr_values: field("acr_values"),
                max_age: value.get("max_age").and_then(Value::as_u64),
            });
        }
        return Err(ClientError::Problem { status, code, detail });
    }
    // The filter's deny body: {"error", "message", "resource", "request_access"?}.
    if let (Some(code), Some(message)) = (field("error"), field("message")) {
        if value.get("resource").is_some() {
            return Err(ClientError::Gateway {
                url: url.to_owned(),
                status,
                code,
                message,
            });
        }
    }
    Err(unexpected("not a problem document".into()))
}

/// serde_json's message without its ` at line 1 column 8`.
fn without_position(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

/// What `jitgate request` asks for.
pub struct Ask {
    /// Resource.
    pub resource: String,
    /// Methods.
    pub methods: Vec<String>,
    /// Path patterns.
    pub paths: Vec<String>,
    /// Seconds.
    pub seconds: u64,
    /// When the window starts (seconds since the epoch); `None`: at approval.
    pub starts_at: Option<i64>,
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// The `x5t#S256` of the client certificate to bind the grant to.
    pub cnf_x5t_s256: Option<String>,
}

impl Ask {
    fn scope(&self) -> Value {
        json!([{"methods": self.methods, "paths": self.paths}])
    }
}

/// `GET /v1/requests/{id}/grant`.
pub type Token = crate::grants::TokenResponse;

/// `POST /v1/preview`.
pub type ScopePreview = crate::api::preview::ScopePreview;

/// `jitgate request ... --dry-run`: what the scope would allow, with the
/// same checks as a request, creating nothing.
pub fn dry_run(client: &Client, ask: &Ask, json_out: bool) -> anyhow::Result<String> {
    let answer: ScopePreview = client.post("/v1/preview", &json!({"resource": ask.resource, "scope": ask.scope()}))?;
    if json_out {
        return Ok(serde_json::to_string(&answer)?);
    }
    Ok(match &answer.preview {
        // The document's text is shown escaped, like every stored text.
        Some(p) => crate::preview::render(p)
            .iter()
            .map(|l| shown(l))
            .collect::<Vec<_>>()
            .join("\n"),
        None => format!(
            "{}: the scope can be requested; the resource names no OpenAPI document to preview it against",
            answer.resource
        ),
    })
}

/// `GET /v1/insights`.
pub type Insights = crate::insight::report::Insights;

/// `jitgate insights`: per resource, grants never used, what was used and
/// the suggested narrower scope (never applied).
pub fn insights(client: &Client, since_s: Option<i64>, json_out: bool) -> anyhow::Result<String> {
    let path = since_s.map_or_else(|| "/v1/insights".to_owned(), |s| format!("/v1/insights?since_s={s}"));
    let report: Insights = client.get(&path)?;
    if json_out {
        return Ok(serde_json::to_string(&report)?);
    }
    let mut out = String::new();
    for r in &report.resources {
        let _ = writeln!(
            out,
            "{}: {} grants, {} never used",
            r.resource,
            r.grants,
            r.never_used.len()
        );
        for u in &r.used {
            let _ = writeln!(
                out,
                "  used {} {} ({} calls, {} grants)",
                u.method,
                shown(&u.operation),
                u.calls,
                u.grants
            );
        }
        if let Some(s) = &r.suggestion {
            for rule in &s.scope {
                let _ = writeln!(
                    out,
                    "  suggest {} {}",
                    rule.methods.join(","),
                    shown(&rule.paths.join(" "))
                );
            }
            if s.read_only {
                let _ = writeln!(out, "  suggest: read-only, a candidate for an auto-approve rule");
            }
            let _ = writeln!(out, "  (from {})", s.derived_from);
        }
    }
    for d in &report.denials {
        let _ = writeln!(
            out,
            "denied {} {} {} {}: {}",
            d.resource,
            d.method,
            shown(&d.operation),
            d.outcome,
            d.calls
        );
    }
    for a in &report.approval_times {
        let _ = writeln!(
            out,
            "approval time {} ({}): {} approved, p50 {} s, p90 {} s",
            a.resource,
            a.approver_groups.join(", "),
            a.approved,
            a.p50_seconds,
            a.p90_seconds
        );
    }
    for r in report.requesters.iter().filter(|r| r.rarely_uses) {
        let _ = writeln!(
            out,
            "rarely uses grants: {} ({} requests, {} of {} grants used)",
            shown(&r.requester),
            r.requests,
            r.used_grants,
            r.grants
        );
    }
    Ok(out.trim_end().to_owned())
}

/// Creates a request; with `wait`, shows progress on stderr until it is
/// decided, then returns the grant token.
pub fn request(client: &Client, ask: Ask, wait: bool, json_out: bool) -> anyhow::Result<String> {
    let created: AccessRequest = client.post(
        "/v1/requests",
        &json!({"resource": ask.resource, "scope": ask.scope(),
                "duration_seconds": ask.seconds, "starts_at": ask.starts_at, "reason": ask.reason,
                "ticket": ask.ticket, "cnf_x5t_s256": ask.cnf_x5t_s256}),
    )?;
    let id = created.id.clone();
    if !wait {
        return Ok(if json_out {
            serde_json::to_string(&created)?
        } else {
            request_line(&created)
        });
    }
    eprintln!("requested {id}; waiting for approval (Ctrl-C stops waiting; the request stays open)");
    let mut last = String::new();
    loop {
        let r: AccessRequest = client.get(&format!("/v1/requests/{id}"))?;
        let votes = r
            .votes
            .iter()
            .filter(|v| v.decision == crate::states::VoteDecision::Approve)
            .count();
        let line = format!("{}: {votes}/{} approvals", r.state, r.approvals_required);
        if line != last {
            eprintln!("  {line}");
            last = line;
        }
        match r.state.as_str() {
            "approved" => {
                let t: Token = client.get(&format!("/v1/requests/{id}/grant"))?;
                eprintln!(
                    "grant {} (revoke with: jitgate revoke {} --reason ...)",
                    t.grant_id, t.grant_id
                );
                return Ok(if json_out { serde_json::to_string(&t)? } else { t.token });
            }
            "pending" => std::thread::sleep(Duration::from_millis(500)),
            other => bail!("request {id} was {other}"),
        }
    }
}

/// One request on one line: id, state, and the grant id once there is one
/// (what `jitgate revoke` takes).
pub fn request_line(r: &AccessRequest) -> String {
    let mut line = match &r.grant {
        Some(g) => format!("{}\t{}\tgrant {}", r.id, r.state, g.id),
        None => format!("{}\t{}", r.id, r.state),
    };
    if let Some(at) = r.starts_at {
        let _ = write!(line, "\tstarts {}", crate::clock::rfc3339(at));
    }
    line
}

/// Renders requests as a table.
pub fn table(requests: &[AccessRequest]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<16} {:<14} {:<10} {:>8}  {:<24} REASON",
        "ID", "RESOURCE", "REQUESTER", "STATE", "MINUTES", "GRANT"
    );
    for r in requests {
        let _ = writeln!(
            out,
            "{:<26} {:<16} {:<14} {:<10} {:>8}  {:<24} {}",
            r.id,
            r.resource,
            shown(&r.requester),
            r.state,
            r.duration_seconds / 60,
            r.grant.as_ref().map_or("-", |g| g.id.as_str()),
            shown(r.reason.lines().next().unwrap_or("")),
        );
    }
    out
}

/// A time in milliseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn readable_time(ms: i64) -> String {
    crate::clock::rfc3339(ms.div_euclid(1000))
}

/// Renders audit records, one per line.
pub fn audit_lines(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        let d = &r.details;
        let why = d["outcome"]
            .as_str()
            .or(d["reason"].as_str())
            .or(d["comment"].as_str())
            .or(d["code"].as_str())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:>6} {} {:<24} {:<22} {:<14} {}",
            r.seq,
            readable_time(r.at),
            shown(&r.actor),
            r.action,
            r.resource.as_deref().unwrap_or("-"),
            shown(why)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Verification;

    fn err<T: DeserializeOwned + std::fmt::Debug>(status: u16, body: &str) -> String {
        decode_answer::<T>("http://x/v1/y", status, body)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_success_of_the_wrong_shape_is_an_error_naming_the_url_and_the_answer() {
        let e = err::<AccessRequest>(200, r#"{"ok": true}"#);
        assert!(e.contains("http://x/v1/y") && e.contains("missing field `id`"), "{e}");
        assert!(e.contains(r#"{\"ok\": true}"#), "{e}");
        let e = err::<Verification>(200, r#"{"ok": false}"#);
        assert!(e.contains("missing field `records`"), "{e}");
        let e = err::<Vec<AccessRequest>>(200, "<html>welcome</html>");
        assert!(e.contains("not the expected JSON"), "{e}");
    }

    #[test]
    fn a_problem_document_is_one_sentence_with_its_code() {
        let e = err::<AccessRequest>(
            403,
            r#"{"type":"x","title":"Forbidden","status":403,"code":"self_approval","detail":"you cannot decide on your own request"}"#,
        );
        assert_eq!(e, "you cannot decide on your own request (self_approval, HTTP 403)");
    }

    #[test]
    fn a_deny_body_from_the_gateway_is_recognised_and_explained() {
        let e = err::<AccessRequest>(
            403,
            r#"{"error":"no_resource","message":"no protected resource matches this request","resource":null}"#,
        );
        assert!(e.contains("jitgate gateway") && e.contains("no_resource"), "{e}");
        assert!(e.contains("JITGATE_URL"), "{e}");
    }

    #[test]
    fn times_are_readable() {
        assert_eq!(readable_time(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn stored_bidi_controls_are_shown_escaped_in_tables_and_audit_lines() {
        let requests: Vec<AccessRequest> = serde_json::from_value(json!([{"id": "req_1", "resource": "payments-api",
            "requester": "alice", "scope": [], "duration_seconds": 600, "reason": "refund \u{202E}7-CNI",
            "ticket": null, "source_cidrs": null, "state": "pending", "approvals_required": 1, "votes": [],
            "break_glass": false, "review_state": null, "reviewed_by": null, "auto_approved_by": null,
            "extends": null, "grant": null, "created_at": 0, "pending_until": 0, "resolved_at": null}]))
        .unwrap();
        let table = table(&requests);
        assert!(
            table.contains("refund <U+202E>7-CNI") && !table.contains('\u{202E}'),
            "{table}"
        );
        let records: Vec<Record> = serde_json::from_value(json!([{"seq": 1, "at": 0, "actor": "a\u{2066}",
            "action": "vote.approve", "resource": null, "request_id": null, "grant_id": null, "channel": null,
            "details": {"comment": "ok\u{200B}"}, "prev_hash": "", "hash": ""}]))
        .unwrap();
        let lines = audit_lines(&records);
        assert!(lines.contains("a<U+2066>") && lines.contains("ok<U+200B>"), "{lines}");
    }
}
