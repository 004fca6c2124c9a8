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

/// A batch handed to the host, awaiting acknowledgement.
#[derive(Debug)]
struct InFlight {
    token: u32,
    events: usize,
}

/// The bounded buffer and its delivery state.
#[derive(Debug)]
pub struct Reporter {
    /// Events waiting, comma-separated JSON objects.
    pending: String,
    pending_count: usize,
    /// The batch being sent (kept so a failure can put it back): its
    /// events, how many, and its `seq`.
    sending: Option<(String, usize, u64)>,
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

    /// Events held (pending and unacknowledged).
    pub fn held(&self) -> usize {
        self.pending_count + self.sending.as_ref().map_or(0, |(_, n, _)| *n)
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

    /// The body of the next batch to send, if one is due now.
    pub fn next_batch(&mut self, now_ms: u64, proxy_id: &str) -> Option<Vec<u8>> {
        if self.in_flight.is_some() || now_ms < self.next_attempt_ms {
            return None;
        }
        if self.sending.is_none() {
            let due = now_ms.saturating_sub(self.last_flush_ms) >= self.flush_every_ms;
            if self.pending_count == 0 || (self.pending_count < self.batch && !due) {
                return None;
            }
            // Send everything pending as one batch: a batch is bounded by
            // the buffer, and fewer posts cost less than evenly sized ones.
            let events = core::mem::take(&mut self.pending);
            self.seq += 1;
            self.sending = Some((events, core::mem::take(&mut self.pending_count), self.seq));
        }
        self.last_flush_ms = now_ms;
        let (events, _, seq) = self.sending.as_ref()?;
        let mut body = String::with_capacity(events.len() + 128);
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
        body.push_str(&seq.to_string());
        body.push_str("},");
        jsonw::push_key(&mut body, "events");
        body.push('[');
        body.push_str(events);
        body.push_str("]}");
        Some(body.into_bytes())
    }

    /// The host accepted the call with this token.
    pub fn dispatched(&mut self, token: u32) {
        let events = self.sending.as_ref().map_or(0, |(_, n, _)| *n);
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
            self.delivered += events as u64;
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
}
