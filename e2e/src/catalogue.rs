//! The machinery of an attack catalogue: named cases, each sent once and
//! judged against one exact expectation, with what reached the upstream,
//! what the filter decided and what the control service audited
//! attributed to the case that caused it.
//!
//! Cases run one after another (never in parallel), so the upstream's
//! requests, the filter's decision counters and the audit records that
//! appear between a case's start and its end are that case's alone. Every
//! case runs, even after another failed or panicked; [`Report::assert_passed`]
//! then fails the test listing every failed case by name.
//!
//! ```no_run
//! use jitgate_e2e::catalogue::{case, run, Proxy, ProxyExpect};
//! use jitgate_e2e::http::request;
//! # let proxy: Proxy = unimplemented!();
//! let cases = vec![case("no grant is missing", ProxyExpect::denied(401, "grant_missing"), || {
//!     request(proxy.envoy.port, "GET", "/v1/invoices/1", &[])
//! })];
//! run(cases, |c| proxy.judge(c)).assert_passed(1);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::Value;

use crate::control::Control;
use crate::envoy::Envoy;
use crate::http::Response;
use crate::upstream::{Seen, Upstream};

/// One named case: how to send it and what must come of it.
pub struct Case<'a, E> {
    /// What the case tries and what must happen, as one sentence.
    pub name: &'static str,
    /// The expected outcome.
    pub expect: E,
    send: Box<dyn Fn() -> Response + 'a>,
}

/// A case named `name` that sends with `send` and expects `expect`.
pub fn case<'a, E>(name: &'static str, expect: E, send: impl Fn() -> Response + 'a) -> Case<'a, E> {
    Case {
        name,
        expect,
        send: Box::new(send),
    }
}

impl<E> Case<'_, E> {
    /// Sends the case's request and returns the answer.
    pub fn send(&self) -> Response {
        (self.send)()
    }
}

/// The outcome of every case, by name, in order.
#[derive(Debug)]
pub struct Report {
    /// (case name, `Err` with what went wrong).
    pub results: Vec<(&'static str, Result<(), String>)>,
}

/// Runs every case through `judge` (which sends it and checks it), one at a
/// time; a judge that panics fails its case only.
pub fn run<E>(cases: Vec<Case<'_, E>>, mut judge: impl FnMut(&Case<'_, E>) -> Result<(), String>) -> Report {
    let mut names = BTreeSet::new();
    let mut results = Vec::with_capacity(cases.len());
    for c in &cases {
        assert!(names.insert(c.name), "two cases are named {:?}", c.name);
        let result = catch_unwind(AssertUnwindSafe(|| judge(c))).unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("panicked: {text}"))
        });
        match &result {
            Ok(()) => println!("ok   - {}", c.name),
            Err(e) => println!("FAIL - {}: {e}", c.name),
        }
        results.push((c.name, result));
    }
    Report { results }
}

impl Report {
    /// Panics unless exactly `count` cases ran and every one passed, listing
    /// every failed case with what went wrong.
    pub fn assert_passed(&self, count: usize) {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("  {name}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} cases failed:\n{}",
            failed.len(),
            self.results.len(),
            failed.join("\n")
        );
        assert_eq!(self.results.len(), count, "cases run");
    }
}

/// Collects a case's mismatches, so a case reports everything that is
/// wrong with it, not only the first thing.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.0.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn result(self, response: &Response) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} (answer: {} {})",
                self.0.join("; "),
                response.status,
                String::from_utf8_lossy(&response.body)
            ))
        }
    }
}

/// The JSON body of an answer, if it has one.
fn json_body(r: &Response) -> Option<Value> {
    serde_json::from_slice(&r.body).ok()
}

/// What must come of a request sent through Envoy with the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyExpect {
    /// The filter denies with this status and `error` code; the filter
    /// decided exactly once, with that code; nothing reached the upstream.
    Denied(u16, &'static str),
    /// Envoy itself answers, before the filter runs, with this status and
    /// body (Envoy's own local reply, not a filter deny body); the filter
    /// decided nothing and nothing reached the upstream.
    Envoy(u16, &'static str),
    /// Allowed: 200 from the upstream, which received exactly one request
    /// carrying exactly these `x-jit-*` headers (each once); the filter
    /// decided `allowed` exactly once.
    Allowed(Vec<(&'static str, String)>),
}

impl ProxyExpect {
    /// A denial by the filter.
    pub fn denied(status: u16, code: &'static str) -> Self {
        assert!(!code.is_empty(), "a denial names its code");
        ProxyExpect::Denied(status, code)
    }
}

/// An Envoy with the filter (one worker) in front of a recording upstream,
/// and a marker request the filter always decides, used to show that a
/// request Envoy answered itself never reached the filter.
pub struct Proxy {
    /// The Envoy under test. It must run one worker: the marker's decision
    /// is then counted after any decision of the case before it.
    pub envoy: Envoy,
    /// The upstream behind it.
    pub upstream: Upstream,
    /// Sends the marker request.
    pub marker: Box<dyn Fn(&Envoy) -> Response>,
    /// The filter's code for the marker request.
    pub marker_code: &'static str,
}

impl Proxy {
    /// Sends a case and checks it against its expectation: the answer, what
    /// reached the upstream and what the filter decided.
    pub fn judge(&self, case: &Case<'_, ProxyExpect>) -> Result<(), String> {
        let upstream_before = self.upstream.count();
        let decisions_before = self.envoy.decision_counts();
        let response = case.send();
        let reached: Vec<Seen> = self.upstream.requests().split_off(upstream_before);
        let mut m = Mismatches::default();
        let one = |code: &str| BTreeMap::from([(code.to_owned(), 1u64)]);
        match &case.expect {
            ProxyExpect::Denied(status, code) => {
                m.check("status", response.status, *status);
                let error = json_body(&response).and_then(|b| b["error"].as_str().map(str::to_owned));
                m.check("error code", error.as_deref(), Some(*code));
                m.check("requests at the upstream", reached.len(), 0);
                m.check(
                    "filter decisions",
                    self.envoy.decisions_since(&decisions_before, 1),
                    one(code),
                );
            }
            ProxyExpect::Envoy(status, body) => {
                m.check("status", response.status, *status);
                m.check("body", String::from_utf8_lossy(&response.body).as_ref(), *body);
                m.check("requests at the upstream", reached.len(), 0);
                // Decisions are counted in order on the one worker: if the
                // case had reached the filter, its decision would show with
                // (or before) the marker's.
                let marker = (self.marker)(&self.envoy);
                m.check(
                    "filter decisions (with the marker request)",
                    self.envoy.decisions_since(&decisions_before, 1),
                    one(self.marker_code),
                );
                m.check("marker answered", marker.status != 0, true);
            }
            ProxyExpect::Allowed(identity) => {
                m.check("status", response.status, 200);
                m.check("requests at the upstream", reached.len(), 1);
                if let Some(seen) = reached.first() {
                    let mut jit: Vec<(String, String)> = seen
                        .headers
                        .iter()
                        .filter(|(n, _)| n.starts_with("x-jit-"))
                        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                        .collect();
                    jit.sort();
                    let mut want: Vec<(String, String)> =
                        identity.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
                    want.sort();
                    m.check("x-jit-* headers at the upstream", jit, want);
                    m.check("authorization at the upstream", seen.all("authorization"), Vec::new());
                }
                m.check(
                    "filter decisions",
                    self.envoy.decisions_since(&decisions_before, 1),
                    one("allowed"),
                );
            }
        }
        m.result(&response)
    }
}

/// One audit record as a case expects it: action, actor and the `code` in
/// its details (`None` when the record has none).
pub type AuditExpect = (&'static str, &'static str, Option<&'static str>);

/// What must come of a call to the control service: the status, the
/// problem document's `code`, and exactly the audit records written
/// (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlExpect {
    /// HTTP status.
    pub status: u16,
    /// The problem document's `code`.
    pub code: &'static str,
    /// Every audit record the call wrote, oldest first.
    pub audit: Vec<AuditExpect>,
}

impl ControlExpect {
    /// A refusal with this status and code that writes these records.
    pub fn refused(status: u16, code: &'static str, audit: Vec<AuditExpect>) -> Self {
        assert!(!code.is_empty(), "a refusal names its code");
        ControlExpect { status, code, audit }
    }
}

/// The control service under attack, read through an auditor's account.
pub struct ControlTarget<'c> {
    /// The service.
    pub control: &'c Control,
    /// A user allowed to read the audit log.
    pub auditor: &'static str,
}

impl ControlTarget<'_> {
    /// The highest audit seq so far (0 for an empty log).
    pub fn audit_head(&self) -> i64 {
        let mut head = 0;
        loop {
            let page = self.audit_after(head);
            match page.last().and_then(|r| r["seq"].as_i64()) {
                Some(seq) => head = seq,
                None => return head,
            }
        }
    }

    /// Audit records after `seq`, oldest first (at most 1000).
    pub fn audit_after(&self, seq: i64) -> Vec<Value> {
        let r = self
            .control
            .as_user(self.auditor, "GET", &format!("/v1/audit?after={seq}&limit=1000"), None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// Sends a case and checks the answer and the audit records it wrote.
    pub fn judge(&self, case: &Case<'_, ControlExpect>) -> Result<(), String> {
        let head = self.audit_head();
        let response = case.send();
        let mut m = Mismatches::default();
        m.check("status", response.status, case.expect.status);
        let code = json_body(&response).and_then(|b| b["code"].as_str().map(str::to_owned));
        m.check("problem code", code.as_deref(), Some(case.expect.code));
        let written: Vec<(String, String, Option<String>)> = self
            .audit_after(head)
            .iter()
            .map(|r| {
                (
                    r["action"].as_str().unwrap_or_default().to_owned(),
                    r["actor"].as_str().unwrap_or_default().to_owned(),
                    r["details"]["code"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let want: Vec<(String, String, Option<String>)> = case
            .expect
            .audit
            .iter()
            .map(|(a, who, c)| ((*a).to_owned(), (*who).to_owned(), c.map(str::to_owned)))
            .collect();
        m.check("audit records (action, actor, code)", written, want);
        m.result(&response)
    }
}
