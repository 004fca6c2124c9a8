//! The `jitgate` command for people: asking, approving, fetching a grant,
//! reading the audit log, against a running control service.
//!
//! The profile comes from `~/.config/jitgate/config.toml`
//! (`url = "..."`, `token = "..."`), overridden by `JITGATE_URL` and
//! `JITGATE_TOKEN`. Output is a human table by default and JSON with
//! `--json`; errors are one sentence and a non-zero exit.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::text::shown;

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
        let path = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config/jitgate/config.toml"));
        #[derive(Deserialize, Default)]
        struct File {
            url: Option<String>,
            token: Option<String>,
        }
        let file: File = match path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            Some(text) => toml::from_str(&text).context("reading ~/.config/jitgate/config.toml")?,
            None => File::default(),
        };
        let url = std::env::var("JITGATE_URL").ok().or(file.url);
        let token = std::env::var("JITGATE_TOKEN").ok().or(file.token);
        match (url, token) {
            (Some(url), Some(token)) => Ok(Profile {
                url: url.trim_end_matches('/').to_owned(),
                token,
            }),
            _ => bail!("set JITGATE_URL and JITGATE_TOKEN, or url and token in ~/.config/jitgate/config.toml"),
        }
    }
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

    /// Calls the API; a problem document becomes one error sentence.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.profile.url))
            .bearer_auth(&self.profile.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot reach the control service at {}", self.profile.url))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let detail = value["detail"].as_str().unwrap_or("the request failed");
        let code = value["code"].as_str().unwrap_or("error");
        bail!("{detail} ({code}, HTTP {})", status.as_u16())
    }
}

/// Parses `30m`, `1h`, `90s` or plain seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 30m, 1h or 900s"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("{text:?} is not a duration like 30m, 1h or 900s"),
    };
    Ok(n * factor)
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
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
}

/// Creates a request; with `wait`, shows progress on stderr until it is
/// decided, then returns the grant token.
pub fn request(client: &Client, ask: Ask, wait: bool, json_out: bool) -> anyhow::Result<String> {
    let created = client.call(
        reqwest::Method::POST,
        "/v1/requests",
        Some(
            json!({"resource": ask.resource, "scope": [{"methods": ask.methods, "paths": ask.paths}],
                    "duration_seconds": ask.seconds, "reason": ask.reason, "ticket": ask.ticket}),
        ),
    )?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    if !wait {
        return Ok(if json_out {
            created.to_string()
        } else {
            format!("{id}\t{}", created["state"].as_str().unwrap_or(""))
        });
    }
    eprintln!("requested {id}; waiting for approval (Ctrl-C stops waiting; the request stays open)");
    let mut last = String::new();
    loop {
        let r = client.call(reqwest::Method::GET, &format!("/v1/requests/{id}"), None)?;
        let state = r["state"].as_str().unwrap_or("").to_owned();
        let votes = r["votes"]
            .as_array()
            .map_or(0, |v| v.iter().filter(|v| v["decision"] == "approve").count());
        let line = format!("{state}: {votes}/{} approvals", r["approvals_required"]);
        if line != last {
            eprintln!("  {line}");
            last = line;
        }
        match state.as_str() {
            "approved" => {
                let t = client.call(reqwest::Method::GET, &format!("/v1/requests/{id}/grant"), None)?;
                return Ok(if json_out {
                    t.to_string()
                } else {
                    t["token"].as_str().unwrap_or_default().to_owned()
                });
            }
            "pending" => std::thread::sleep(Duration::from_millis(500)),
            other => bail!("request {id} was {other}"),
        }
    }
}

/// Renders requests as a table.
pub fn table(requests: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<16} {:<14} {:<10} {:>8}  REASON",
        "ID", "RESOURCE", "REQUESTER", "STATE", "MINUTES"
    );
    for r in requests.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<26} {:<16} {:<14} {:<10} {:>8}  {}",
            r["id"].as_str().unwrap_or(""),
            r["resource"].as_str().unwrap_or(""),
            shown(r["requester"].as_str().unwrap_or("")),
            r["state"].as_str().unwrap_or(""),
            r["duration_seconds"].as_i64().unwrap_or(0) / 60,
            shown(r["reason"].as_str().unwrap_or("").lines().next().unwrap_or("")),
        );
    }
    out
}

/// Renders audit records, one per line.
pub fn audit_lines(records: &Value) -> String {
    let mut out = String::new();
    for r in records.as_array().into_iter().flatten() {
        let d = &r["details"];
        let why = d["outcome"]
            .as_str()
            .or(d["reason"].as_str())
            .or(d["comment"].as_str())
            .or(d["code"].as_str())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:>6} {} {:<24} {:<22} {:<14} {}",
            r["seq"],
            r["at"],
            shown(r["actor"].as_str().unwrap_or("")),
            r["action"].as_str().unwrap_or(""),
            r["resource"].as_str().unwrap_or("-"),
            shown(why)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("600").unwrap(), 600);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn stored_bidi_controls_are_shown_escaped_in_tables_and_audit_lines() {
        let requests = json!([{"id": "req_1", "resource": "payments-api", "requester": "alice", "state": "pending",
            "duration_seconds": 600, "reason": "refund \u{202E}7-CNI"}]);
        let table = table(&requests);
        assert!(
            table.contains("refund <U+202E>7-CNI") && !table.contains('\u{202E}'),
            "{table}"
        );
        let records = json!([{"seq": 1, "at": 0, "actor": "a\u{2066}", "action": "vote.approve",
            "details": {"comment": "ok\u{200B}"}}]);
        let lines = audit_lines(&records);
        assert!(lines.contains("a<U+2066>") && lines.contains("ok<U+200B>"), "{lines}");
    }
}
