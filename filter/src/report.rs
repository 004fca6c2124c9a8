//! Decision reports: every decision, batched and posted to the control
//! service's `POST /v1/audit/events` off the request path.
//!
//! Each request appends one JSON object to a bounded in-memory buffer (no
//! I/O, no waiting). The root context's tick sends a batch when it is full
//! or due, keeps it until the control service acknowledges it, and retries
//! with exponential backoff. When the buffer is full, new events are
//! dropped and counted: reporting never blocks or slows requests.
//!
//! Every batch names this reporter (`instance`, random at start) and its
//! place in the sequence (`seq`, 1, 2, ...); a retry sends the same batch
//! with the same `seq`, and the next batch is formed only once the last one
//! was acknowledged. The control service records each reporter's last
//! `seq` with the batch's records, so a batch whose acknowledgement was
//! lost is written once, however often it is sent.
//!
//! Allowed requests under a grant are counted, not recorded one by one
//! (`report_allowed: aggregate`, the default): the first allowed request
//! of each grant at each worker stays a record of its own, so the trail
//! shows when access began; later ones are summed per grant, method, scope
//! rule and status, and sent every `count_interval_ms` as counts with the
//! first request's details and the first and last time. Denials are always
//! records of their own. A count is part of a batch like any record, so it
//! is acknowledged, retried and written exactly once with it.

use grant::VerifiedGrant;

use crate::config::ReportAllowed;
use crate::jsonw;

/// One decision, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    /// Decision code.
    pub outcome: &'a str,
    /// Resource id.
    pub resource: Option<&'a str>,
    /// Grant id (`jti`).
    pub grant_id: Option<&'a str>,
    /// Grant subject.
    pub subject: Option<&'a str>,
    /// Access-request id (`req`).
    pub access_request_id: Option<&'a str>,
    /// HTTP method.
    pub method: &'a [u8],
    /// Path without query.
    pub path: &'a [u8],
    /// Client address.
    pub client: Option<&'a str>,
    /// The proxy's request id (`x-request-id`).
    pub request_id: Option<&'a [u8]>,
}

/// Longest path reported; longer ones are cut (audit needs the shape, and a
/// 1 MB path must not fill the buffer).
const MAX_REPORTED_PATH: usize = 512;

impl<'a> Event<'a> {
    /// The event of one decision, as both adapters report it (`client`:
    /// the connection's address, when known).
    pub fn of_decision(
        cfg: &'a crate::config::FilterConfig,
        headers: &'a crate::headers::HeaderMap,
        eval: &'a crate::check::Evaluation,
        time_ms: u64,
        client: Option<&'a str>,
    ) -> Event<'a> {
        let g = eval.grant.as_ref();
        Event {
            time_ms,
            outcome: eval.verdict.code(),
            resource: eval.resource.and_then(|i| cfg.resources.get(i)).map(|r| r.id.as_str()),
            grant_id: g.map(|g| g.jti()),
            subject: g.map(|g| g.sub()),
            access_request_id: g.and_then(|g| g.req()),
            method: headers.single(b":method").unwrap_or(&[]),
            path: headers.single(b":path").unwrap_or(&[]),
            client,
            request_id: headers.single(b"x-request-id"),
        }
    }
}

impl Event<'_> {
    /// The event as a JSON object missing only its closing `"status":N}`,
    /// which is known once the response starts.
    pub fn open_json(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push('{');
        jsonw::push_key(&mut s, "time_ms");
        s.push_str(&self.time_ms.to_string());
        s.push(',');
        jsonw::push_key(&mut s, "outcome");
        jsonw::push_str(&mut s, self.outcome);
        for (name, value) in [
            ("resource", self.resource),
            ("grant_id", self.grant_id),
            ("subject", self.subject),
            ("access_request_id", self.access_request_id),
            ("client", self.client),
        ] {
            if let Some(v) = value {
                s.push(',');
                jsonw::push_key(&mut s, name);
                jsonw::push_str(&mut s, v);
            }
        }
        s.push(',');
        jsonw::push_key(&mut s, "method");
        jsonw::push_bytes(&mut s, self.method);
        s.push(',');
        jsonw::push_key(&mut s, "path");
        let path = self.path.split(|&b| b == b'?').next().unwrap_or(&[]);
        jsonw::push_bytes(&mut s, path.get(..MAX_REPORTED_PATH).unwrap_or(path));
        if let Some(id) = self.request_id {
            s.push(',');
            jsonw::push_key(&mut s, "request_id");
            jsonw::push_bytes(&mut s, id.get(..128).unwrap_or(id));
        }
        s.push(',');
        jsonw::push_key(&mut s, "status");
        s
    }
}

/// What an allowed request under a grant is counted under (with its
/// status).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CountKey {
    jti: Box<str>,
    method: Box<str>,
    rule: u16,
}

/// A decision waiting for the status of its response.
#[derive(Debug)]
pub struct Pending {
    /// The record, but for its status.
    open: String,
    /// The status when the filter answered itself.
    status: Option<u16>,
    time_ms: u64,
    /// Set when the request may be counted rather than recorded.
    count: Option<CountKey>,
}

impl Pending {
    /// The report of `event` (`grant`: the verified grant it carried;
    /// `status`: the filter's own answer, if it answered).
    pub fn new(
        event: &Event<'_>,
        grant: Option<&VerifiedGrant>,
        status: Option<u16>,
        allowed: ReportAllowed,
    ) -> Pending {
        let count = match (allowed, grant) {
            (ReportAllowed::Aggregate, Some(g)) if event.outcome == "allowed" => {
                let rule = grant::path::check_request_path(event.path)
                    .ok()
                    .and_then(|p| g.allowing_rule(event.method, p.as_bytes()))
                    .and_then(|r| u16::try_from(r).ok());
                match (rule, core::str::from_utf8(event.method)) {
                    (Some(rule), Ok(method)) => Some(CountKey {
                        jti: g.jti().into(),
                        method: method.into(),
                        rule,
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        Pending {
            open: event.open_json(),
            status,
            time_ms: event.time_ms,
            count,
        }
    }

    /// Whether the filter answered the request itself (its status is
    /// known; no upstream status is needed).
    pub fn answered(&self) -> bool {
        self.status.is_some()
    }
}

/// Allowed requests counted under one key since the last batch.
#[derive(Debug)]
struct Count {
    key: CountKey,
    status: u16,
    /// The first counted request's record, but for its status.
    open: String,
    calls: u64,
    first_ms: u64,
    last_ms: u64,
}

impl Count {
    fn order(&self, key: &CountKey, status: u16) -> core::cmp::Ordering {
        (&self.key, self.status).cmp(&(key, status))
    }
}

/// Grants whose first allowed request a worker remembers having recorded;
/// beyond it the memory starts over (one more record per grant, never a
/// lost one).
const MAX_SEEN: usize = 4096;
/// Keys counted at once; beyond it requests are recorded one by one.
const MAX_COUNTS: usize = 1024;

/// A batch formed and not yet acknowledged.
#[derive(Debug)]
struct Sending {
    body: Vec<u8>,
    /// Records in it.
    events: usize,
    /// Requests its counts stand for.
    calls: u64,
}

/// A batch handed to the host, awaiting acknowledgement.
#[derive(Debug)]
struct InFlight {
    token: u32,
    /// Decisions it reports (records and counted requests).
    events: u64,
}

/// The bounded buffer and its delivery state.
#[derive(Debug)]
pub struct Reporter {
    /// Events waiting, comma-separated JSON objects.
    pending: String,
    pending_count: usize,
    /// The batch being sent (kept so a failure sends it again unchanged).
    sending: Option<Sending>,
    count_every_ms: u64,
    /// Grant ids (sorted) whose first allowed request was recorded.
    seen: Vec<Box<str>>,
    /// Counts since the last batch that carried counts (sorted by key).
    counts: Vec<Count>,
    /// When the oldest of them was counted.
    counts_since_ms: u64,
    /// This reporter's name in batch ids (random at start).
    instance: u64,
    /// The `seq` of the last batch formed.
    seq: u64,
    in_flight: Option<InFlight>,
    max_events: usize,
    batch: usize,
    flush_every_ms: u64,
    last_flush_ms: u64,
    next_attempt_ms: u64,
    backoff_ms: u64,
    /// Events dropped because the buffer was full (since start).
    pub dropped: u64,
    /// Events acknowledged by the control service (since start).
    pub delivered: u64,
}

/// Longest backoff between retries.
const MAX_BACKOFF_MS: u64 = 30_000;

impl Reporter {
    /// A reporter holding at most `max_events`, sending `batch` at a time
    /// and at least every `flush_every_ms`; `instance` names it in batch
    /// ids (any random number: two reporters of one proxy must differ).
    pub fn new(max_events: usize, batch: usize, flush_every_ms: u64, instance: u64) -> Self {
        Reporter {
            pending: String::new(),
            pending_count: 0,
            sending: None,
            count_every_ms: 60_000,
            seen: Vec::new(),
            counts: Vec::new(),
            counts_since_ms: 0,
            instance,
            seq: 0,
            in_flight: None,
            max_events,
            batch: batch.max(1),
            flush_every_ms,
            last_flush_ms: 0,
            next_attempt_ms: 0,
            backoff_ms: 0,
            dropped: 0,
            delivered: 0,
        }
    }

    /// Sends what it counts ([`Pending::new`] with
    /// [`ReportAllowed::Aggregate`]) every `every_ms` (default 60 s).
    pub fn count_every(mut self, every_ms: u64) -> Self {
        self.count_every_ms = every_ms;
        self
    }

    /// Events held (pending and unacknowledged).
    pub fn held(&self) -> usize {
        self.pending_count + self.sending.as_ref().map_or(0, |s| s.events)
    }

    /// Finishes a decision with its response's status (`upstream`, used
    /// when the filter did not answer itself): counted, or recorded; false
    /// if the buffer was full and it was dropped.
    pub fn finish(&mut self, p: Pending, upstream: u16) -> bool {
        let Pending {
            open,
            status,
            time_ms,
            count,
        } = p;
        let status = status.unwrap_or(upstream);
        if let Some(key) = count {
            if !self.first_of_grant(&key.jti) {
                match self.counts.binary_search_by(|c| c.order(&key, status)) {
                    Ok(i) => {
                        if let Some(c) = self.counts.get_mut(i) {
                            c.calls += 1;
                            c.first_ms = c.first_ms.min(time_ms);
                            c.last_ms = c.last_ms.max(time_ms);
                        }
                        return true;
                    }
                    Err(i) if self.counts.len() < MAX_COUNTS => {
                        if self.counts.is_empty() {
                            self.counts_since_ms = time_ms;
                        }
                        self.counts.insert(
                            i,
                            Count {
                                key,
                                status,
                                open,
                                calls: 1,
                                first_ms: time_ms,
                                last_ms: time_ms,
                            },
                        );
                        return true;
                    }
                    // Too many keys at once: recorded one by one below.
                    Err(_) => {}
                }
            }
        }
        self.record(&open, status)
    }

    /// Whether this is the first allowed request of grant `jti` here (and
    /// remembers it).
    fn first_of_grant(&mut self, jti: &str) -> bool {
        match self.seen.binary_search_by(|s| (**s).cmp(jti)) {
            Ok(_) => false,
            Err(at) => {
                if self.seen.len() >= MAX_SEEN {
                    self.seen.clear();
                    self.seen.push(jti.into());
                } else {
                    self.seen.insert(at, jti.into());
                }
                true
            }
        }
    }

    /// Adds a finished event (`open_json` plus status); false if dropped.
    pub fn record(&mut self, open: &str, status: u16) -> bool {
        if self.held() >= self.max_events {
            self.dropped += 1;
            return false;
        }
        if self.pending_count > 0 {
            self.pending.push(',');
        }
        self.pending.push_str(open);
        self.pending.push_str(&status.to_string());
        self.pending.push('}');
        self.pending_count += 1;
        true
    }

    /// The body of the next batch to send, if one is due now: the records
    /// when the batch is full or `flush_every_ms` has passed, with the
    /// counts when `count_every_ms` has passed since the oldest.
    pub fn next_batch(&mut self, now_ms: u64, proxy_id: &str) -> Option<Vec<u8>> {
        if self.in_flight.is_some() || now_ms < self.next_attempt_ms {
            return None;
        }
        if self.sending.is_none() {
            let due = now_ms.saturating_sub(self.last_flush_ms) >= self.flush_every_ms;
            let events_due = self.pending_count > 0 && (self.pending_count >= self.batch || due);
            let counts_due =
                !self.counts.is_empty() && now_ms.saturating_sub(self.counts_since_ms) >= self.count_every_ms;
            if !events_due && !counts_due {
                return None;
            }
            // Send everything pending as one batch: a batch is bounded by
            // the buffer, and fewer posts cost less than evenly sized ones.
            let events = core::mem::take(&mut self.pending);
            let n = core::mem::take(&mut self.pending_count);
            let counts = if counts_due {
                core::mem::take(&mut self.counts)
            } else {
                Vec::new()
            };
            self.seq += 1;
            self.sending = Some(self.form(proxy_id, &events, n, &counts));
        }
        self.last_flush_ms = now_ms;
        self.sending.as_ref().map(|s| s.body.clone())
    }

    /// The body of batch `seq`: `{"proxy", "batch", "events", "counts"}`.
    fn form(&self, proxy_id: &str, events: &str, n: usize, counts: &[Count]) -> Sending {
        let mut body = String::with_capacity(events.len() + counts.len() * 320 + 128);
        body.push('{');
        jsonw::push_key(&mut body, "proxy");
        jsonw::push_str(&mut body, proxy_id);
        body.push(',');
        jsonw::push_key(&mut body, "batch");
        body.push('{');
        jsonw::push_key(&mut body, "instance");
        jsonw::push_str(&mut body, &format!("{:016x}", self.instance));
        body.push(',');
        jsonw::push_key(&mut body, "seq");
        body.push_str(&self.seq.to_string());
        body.push_str("},");
        jsonw::push_key(&mut body, "events");
        body.push('[');
        body.push_str(events);
        body.push(']');
        let mut calls = 0;
        if !counts.is_empty() {
            body.push(',');
            jsonw::push_key(&mut body, "counts");
            body.push('[');
            for (i, c) in counts.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&c.open);
                body.push_str(&c.status.to_string());
                for (name, value) in [
                    ("calls", c.calls),
                    ("first_ms", c.first_ms),
                    ("last_ms", c.last_ms),
                    ("rule", u64::from(c.key.rule)),
                ] {
                    body.push(',');
                    jsonw::push_key(&mut body, name);
                    body.push_str(&value.to_string());
                }
                body.push('}');
                calls += c.calls;
            }
            body.push(']');
        }
        body.push('}');
        Sending {
            body: body.into_bytes(),
            events: n,
            calls,
        }
    }

    /// The host accepted the call with this token.
    pub fn dispatched(&mut self, token: u32) {
        let events = self.sending.as_ref().map_or(0, |s| s.events as u64 + s.calls);
        self.in_flight = Some(InFlight { token, events });
    }

    /// Whether `token` is the batch in flight.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// The batch was acknowledged (true) or failed (false).
    pub fn finished(&mut self, ok: bool, now_ms: u64) {
        let events = self.in_flight.take().map_or(0, |f| f.events);
        if ok {
            self.sending = None;
            self.delivered += events;
            self.backoff_ms = 0;
            self.next_attempt_ms = 0;
        } else {
            self.failed(now_ms);
        }
    }

    /// The batch could not even be dispatched, or failed: keep it and wait.
    pub fn failed(&mut self, now_ms: u64) {
        self.in_flight = None;
        self.backoff_ms = if self.backoff_ms == 0 {
            500
        } else {
            (self.backoff_ms * 2).min(MAX_BACKOFF_MS)
        };
        self.next_attempt_ms = now_ms.saturating_add(self.backoff_ms);
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare address, as Envoy
/// spells `source.address`.
pub fn strip_port(address: &str) -> &str {
    if let Some(v6) = address.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match address.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_lose_only_their_port() {
        assert_eq!(strip_port("10.1.2.3:5678"), "10.1.2.3");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("10.1.2.3"), "10.1.2.3");
    }

    fn event(path: &[u8]) -> String {
        Event {
            time_ms: 1,
            outcome: "allowed",
            resource: Some("payments-api"),
            grant_id: Some("g-1"),
            subject: Some("alice"),
            access_request_id: None,
            method: b"GET",
            path,
            client: Some("10.0.0.1"),
            request_id: Some(b"abc"),
        }
        .open_json()
    }

    #[test]
    fn batches_are_valid_json_without_query_strings() {
        let mut r = Reporter::new(10, 2, 1000, 0xabc);
        assert!(r.record(&event(b"/v1/x?secret=1"), 200));
        assert!(r.next_batch(10, "envoy-1").is_none(), "not full, not due");
        assert!(r.record(&event(b"/v1/\xff\"y"), 403));
        let body = r.next_batch(10, "envoy-1").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["proxy"], "envoy-1");
        assert_eq!(
            v["batch"],
            serde_json::json!({"instance": "0000000000000abc", "seq": 1})
        );
        assert_eq!(v["events"][0]["path"], "/v1/x");
        assert_eq!(v["events"][0]["status"], 200);
        assert_eq!(v["events"][1]["path"], "/v1/\u{fffd}\"y");
        assert_eq!(v["events"][1]["request_id"], "abc");
    }

    #[test]
    fn failures_keep_the_batch_and_back_off() {
        let mut r = Reporter::new(10, 1, 0, 7);
        r.record(&event(b"/a"), 200);
        let first = r.next_batch(0, "p").unwrap();
        r.dispatched(7);
        assert!(r.owns(7));
        r.record(&event(b"/b"), 200);
        r.finished(false, 100);
        assert!(r.next_batch(200, "p").is_none(), "backing off");
        assert_eq!(r.next_batch(600, "p").unwrap(), first, "the same batch again, same seq");
        r.dispatched(8);
        r.finished(true, 700);
        assert_eq!(r.delivered, 1);
        let second: serde_json::Value = serde_json::from_slice(&r.next_batch(700, "p").unwrap()).unwrap();
        assert_eq!(second["events"][0]["path"], "/b");
        assert_eq!(second["batch"]["seq"], 2, "the next batch, the next seq");
        let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(first["batch"]["seq"], 1);
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        let mut r = Reporter::new(2, 100, 1_000_000, 7);
        assert!(r.record(&event(b"/a"), 200));
        assert!(r.record(&event(b"/b"), 200));
        assert!(!r.record(&event(b"/c"), 200));
        assert_eq!((r.held(), r.dropped), (2, 1));
    }

    fn grant(jti: &str) -> VerifiedGrant {
        let key = grant::SigningKey::new("k1", &[7; 32]).unwrap();
        let claims = grant::GrantClaims {
            iss: "i".into(),
            sub: "alice".into(),
            aud: "payments-api".into(),
            jti: jti.into(),
            iat: 1,
            nbf: 1,
            exp: 100,
            scope: vec![
                grant::ScopeRule::new(&["GET"], &["/v1/invoices/*"]),
                grant::ScopeRule::new(&["POST"], &["/v1/refunds"]),
            ],
            src: None,
            req: Some("req-1".into()),
            cnf: None,
        };
        let token = grant::mint(&claims, &key).unwrap();
        let mut keys = grant::KeySet::new();
        keys.add(key).unwrap();
        grant::Verifier::new("i", keys).verify(token.as_bytes(), 10).unwrap()
    }

    /// A decision at `time_ms` under `g`, reported as `allowed` says.
    fn decided(
        g: &VerifiedGrant,
        outcome: &str,
        method: &[u8],
        path: &[u8],
        time_ms: u64,
        allowed: ReportAllowed,
    ) -> Pending {
        let event = Event {
            time_ms,
            outcome,
            resource: Some("payments-api"),
            grant_id: Some(g.jti()),
            subject: Some(g.sub()),
            access_request_id: g.req(),
            method,
            path,
            client: None,
            request_id: None,
        };
        let own = (outcome != "allowed").then_some(403);
        Pending::new(&event, Some(g), own, allowed)
    }

    fn batch_of(r: &mut Reporter, now_ms: u64) -> serde_json::Value {
        serde_json::from_slice(&r.next_batch(now_ms, "p").expect("a batch is due")).unwrap()
    }

    #[test]
    fn the_first_allowed_request_of_a_grant_is_a_record_and_later_ones_are_counted() {
        use ReportAllowed::Aggregate;
        let (a, b) = (grant("g-a"), grant("g-b"));
        let mut r = Reporter::new(100, 100, 1000, 1).count_every(5000);
        assert!(r.finish(decided(&a, "allowed", b"GET", b"/v1/invoices/1", 10, Aggregate), 200));
        for (t, path, status) in [
            (20, &b"/v1/invoices/2"[..], 200),
            (30, b"/v1/invoices/3?x=1", 200),
            (40, b"/v1/invoices/4", 404),
        ] {
            assert!(r.finish(decided(&a, "allowed", b"GET", path, t, Aggregate), status));
        }
        assert!(r.finish(
            decided(&a, "request_out_of_scope", b"DELETE", b"/v1/invoices/1", 50, Aggregate),
            0
        ));
        assert!(r.finish(decided(&b, "allowed", b"POST", b"/v1/refunds", 60, Aggregate), 200));
        assert!(r.finish(decided(&b, "allowed", b"POST", b"/v1/refunds", 70, Aggregate), 200));
        assert_eq!(r.held(), 3, "records: a's first, the denial, b's first");

        // The records go at the report interval; the counts wait for theirs.
        let first = batch_of(&mut r, 1000);
        assert_eq!(first["events"].as_array().unwrap().len(), 3);
        assert_eq!(first["events"][0]["path"], "/v1/invoices/1");
        assert_eq!(first["events"][1]["outcome"], "request_out_of_scope");
        assert!(first.get("counts").is_none(), "{first}");
        r.dispatched(1);
        r.finished(true, 1000);

        let second = batch_of(&mut r, 5020);
        assert_eq!(second["events"], serde_json::json!([]));
        let counts = second["counts"].as_array().unwrap();
        let summary: Vec<(String, String, u64, u64, u64, u64, u64)> = counts
            .iter()
            .map(|c| {
                (
                    c["grant_id"].as_str().unwrap().to_owned(),
                    c["method"].as_str().unwrap().to_owned(),
                    c["rule"].as_u64().unwrap(),
                    c["status"].as_u64().unwrap(),
                    c["calls"].as_u64().unwrap(),
                    c["first_ms"].as_u64().unwrap(),
                    c["last_ms"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("g-a".into(), "GET".into(), 0, 200, 2, 20, 30),
                ("g-a".into(), "GET".into(), 0, 404, 1, 40, 40),
                ("g-b".into(), "POST".into(), 1, 200, 1, 70, 70),
            ]
        );
        assert_eq!(counts[0]["access_request_id"], "req-1");
        assert_eq!(
            counts[0]["path"], "/v1/invoices/2",
            "the first counted request's details"
        );
        assert_eq!(second["batch"]["seq"], 2);
        // A failed delivery sends the same counts again; delivered counts requests.
        r.dispatched(2);
        r.finished(false, 5100);
        assert_eq!(batch_of(&mut r, 6000), second);
        r.dispatched(3);
        r.finished(true, 6000);
        assert_eq!(r.delivered, 3 + 4);
    }

    #[test]
    fn each_allowed_request_is_a_record_when_asked_so() {
        let a = grant("g-a");
        let mut r = Reporter::new(100, 100, 1000, 1);
        for t in 0..3 {
            assert!(r.finish(
                decided(&a, "allowed", b"GET", b"/v1/invoices/1", t, ReportAllowed::Each),
                200
            ));
        }
        assert_eq!(r.held(), 3);
        assert!(batch_of(&mut r, 1000).get("counts").is_none());
    }
}
