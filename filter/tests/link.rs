//! The control link natively: workers of one proxy over a fake host with
//! real compare-and-swap shared data, recorded HTTP calls and metrics.
//! Covers claiming the poll, merging revocation and grant snapshots,
//! failover with backoff, and report batching with retry.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use grant::Revocations;
use jitgate_filter::config::{self, FilterConfig};
use jitgate_filter::link::{Level, Link, LinkHost, SharedDataError, Worker};
use jitgate_filter::metrics::{self, MetricIds};
use jitgate_filter::report::Event;

const KEY: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";
const INGEST: &str = "0123456789abcdef";
/// Milliseconds since the epoch at the start of each test.
const T0: u64 = 1_780_000_000_000;

/// One dispatched call.
#[derive(Debug, Clone)]
struct Sent {
    token: u32,
    cluster: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Sent {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }
}

/// The proxy as every worker sees it: shared data with proxy-wasm's CAS
/// semantics (a token per write; `None` writes unconditionally), calls
/// recorded in order, metrics by id.
#[derive(Default)]
struct FakeHost {
    shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    sent: RefCell<Vec<Sent>>,
    next_token: Cell<u32>,
    refuse_dispatch: Cell<bool>,
    /// Writes to refuse with a CAS mismatch before accepting (another
    /// worker winning the race).
    lose_cas: Cell<u32>,
    counters: RefCell<BTreeMap<u32, u64>>,
    gauges: RefCell<BTreeMap<u32, u64>>,
    logs: RefCell<Vec<(Level, String)>>,
}

impl LinkHost for FakeHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        let mut shared = self.shared.borrow_mut();
        if self.lose_cas.get() > 0 {
            self.lose_cas.set(self.lose_cas.get() - 1);
            // Another worker writes in between.
            let next = self.next_cas.get() + 1;
            self.next_cas.set(next);
            if let Some(entry) = shared.get_mut(key) {
                entry.1 = next;
            }
            return Err(SharedDataError::CasMismatch);
        }
        if let (Some(want), Some((_, have))) = (cas, shared.get(key)) {
            if want != *have {
                return Err(SharedDataError::CasMismatch);
            }
        }
        let next = self.next_cas.get() + 1;
        self.next_cas.set(next);
        shared.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        if self.refuse_dispatch.get() {
            return Err("BadArgument".into());
        }
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.sent.borrow_mut().push(Sent {
            token,
            cluster: cluster.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
        });
        Ok(token)
    }

    fn increment_metric(&self, id: u32, by: u64) {
        *self.counters.borrow_mut().entry(id).or_default() += by;
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.gauges.borrow_mut().insert(id, value);
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn random(&self) -> u64 {
        0
    }
}

impl FakeHost {
    fn take_sent(&self) -> Vec<Sent> {
        std::mem::take(&mut self.sent.borrow_mut())
    }

    fn counter(&self, id: u32) -> u64 {
        self.counters.borrow().get(&id).copied().unwrap_or(0)
    }

    fn gauge(&self, id: u32) -> Option<u64> {
        self.gauges.borrow().get(&id).copied()
    }

    fn logged(&self, level: Level, part: &str) -> bool {
        self.logs.borrow().iter().any(|(l, m)| *l == level && m.contains(part))
    }
}

fn cfg(control_extra: &str, root_extra: &str) -> FilterConfig {
    let json = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"payments-api"}}],
            "control":{{"cluster":"control","ingest_key":"{INGEST}"{control_extra}}}{root_extra}}}"#
    );
    config::parse(json.as_bytes()).unwrap()
}

/// One worker: its shared memory and its root context's link state.
struct Proc {
    worker: Worker,
    link: Link,
}

impl Proc {
    /// A worker with metric ids laid out as the host would assign them
    /// (id = position in the names table).
    fn new(cfg: FilterConfig) -> Proc {
        let n = metrics::names(&resource_ids(&cfg)).len() as u32;
        Proc {
            worker: Worker::new(cfg, MetricIds::new((0..n).collect()), 42),
            link: Link::default(),
        }
    }

    fn tick(&mut self, host: &FakeHost, now: u64) {
        self.link.tick(host, &self.worker, now);
    }

    fn answer(&mut self, host: &FakeHost, sent: &Sent, status: &str, body: &str, now: u64) {
        let body = body.as_bytes().to_vec();
        self.link
            .on_response(host, &self.worker, sent.token, Some(status), || Some(body), now);
    }

    fn metric(&self, name: &str) -> u32 {
        metrics::names(&resource_ids(&self.worker.cfg))
            .iter()
            .position(|n| n == name)
            .unwrap() as u32
    }

    fn revoked(&self, jti: &str) -> bool {
        self.worker.live.borrow().revoked.is_revoked(jti)
    }

    fn synced_at(&self) -> Option<u64> {
        self.worker.live.borrow().synced_at_ms
    }
}

fn resource_ids(cfg: &FilterConfig) -> Vec<String> {
    cfg.resources.iter().map(|r| r.id.clone()).collect()
}

/// A `GET /v1/revocations` answer revoking `jtis` for an hour.
fn revocations(cursor: &str, jtis: &[&str]) -> String {
    let exp = T0 / 1000 + 3600;
    let entries: Vec<String> = jtis.iter().map(|j| format!(r#"{{"jti":"{j}","exp":{exp}}}"#)).collect();
    format!(r#"{{"cursor":"{cursor}","revoked":[{}]}}"#, entries.join(","))
}

#[test]
fn one_worker_claims_the_poll_and_every_worker_adopts_what_it_fetched() {
    let host = FakeHost::default();
    let (mut a, mut b) = (Proc::new(cfg("", "")), Proc::new(cfg("", "")));

    a.tick(&host, T0);
    b.tick(&host, T0 + 10);
    let sent = host.take_sent();
    assert_eq!(sent.len(), 1, "the second worker finds the poll claimed: {sent:?}");
    let poll = &sent[0];
    assert_eq!(poll.cluster, "control");
    assert_eq!(poll.header(":method"), "GET");
    assert_eq!(poll.header(":path"), "/v1/revocations?since=");
    assert_eq!(poll.header("authorization"), format!("Bearer {INGEST}"));
    assert_eq!(poll.header("x-jitgate-proxy"), "envoy");
    assert_eq!(poll.header("x-jitgate-grant-spec"), "1.1");
    assert_eq!(poll.header("x-jitgate-resources"), "payments-api");

    a.answer(&host, poll, "200", &revocations("c 1", &["g-1"]), T0 + 20);
    assert!(a.revoked("g-1"), "the polling worker adopts at once");
    assert!(!b.revoked("g-1"), "the other worker only on its tick");
    assert_eq!(b.synced_at(), None);

    // Within the poll interval nobody polls; the other worker copies.
    b.tick(&host, T0 + 100);
    a.tick(&host, T0 + 100);
    assert!(host.take_sent().is_empty(), "not due yet");
    assert!(b.revoked("g-1"));
    assert_eq!(b.synced_at(), Some(T0 + 20));
    assert_eq!(host.counter(a.metric("jitgate.sync.successes")), 1);

    // The next poll (by whichever worker ticks first) sends the cursor,
    // escaped, and the answer is merged into the list, not replacing it.
    b.tick(&host, T0 + 1_100);
    let sent = host.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header(":path"), "/v1/revocations?since=c%201");
    b.answer(&host, &sent[0], "200", &revocations("c2", &["g-2"]), T0 + 1_120);
    a.tick(&host, T0 + 1_200);
    for w in [&a, &b] {
        assert!(w.revoked("g-1") && w.revoked("g-2"));
    }
}

#[test]
fn a_new_worker_enforces_the_shared_list_before_its_first_tick() {
    let host = FakeHost::default();
    let mut a = Proc::new(cfg("", ""));
    a.tick(&host, T0);
    let poll = host.take_sent().remove(0);
    a.answer(&host, &poll, "200", &revocations("1", &["g-9"]), T0 + 5);
    // A request on a worker that has not ticked yet looks at shared data.
    let fresh = Proc::new(cfg("", ""));
    fresh.worker.adopt_first_sync(&host, T0 + 6);
    assert!(fresh.revoked("g-9"));
    // Even with its memory busy (a nested callback), it does not panic.
    let other = Proc::new(cfg("", ""));
    let busy = other.worker.live.borrow_mut();
    other.worker.adopt_first_sync(&host, T0 + 6);
    drop(busy);
    assert!(!other.revoked("g-9"));
}

#[test]
fn a_revocation_merge_survives_another_worker_winning_the_compare_and_swap() {
    let host = FakeHost::default();
    let mut a = Proc::new(cfg("", ""));
    a.tick(&host, T0);
    let poll = host.take_sent().remove(0);
    host.lose_cas.set(3);
    a.answer(&host, &poll, "200", &revocations("1", &["g-1"]), T0 + 5);
    assert!(a.revoked("g-1"), "retried until the write held");

    // A write that never holds fails the poll rather than looping.
    a.tick(&host, T0 + 1_100);
    let poll = host.take_sent().remove(0);
    host.lose_cas.set(100);
    a.answer(&host, &poll, "200", &revocations("2", &["g-2"]), T0 + 1_105);
    host.lose_cas.set(0);
    assert!(!a.revoked("g-2"));
    assert_eq!(host.counter(a.metric("jitgate.sync.failures")), 1);
    assert!(host.logged(Level::Debug, "kept changing"));
}

#[test]
fn failed_polls_back_off_and_fail_over_to_the_next_endpoint() {
    let host = FakeHost::default();
    let failover = r#","fallback_clusters":["mirror"]"#;
    let (mut a, mut b) = (Proc::new(cfg(failover, "")), Proc::new(cfg(failover, "")));

    a.tick(&host, T0);
    let poll = host.take_sent().remove(0);
    assert_eq!(poll.cluster, "control");
    a.answer(&host, &poll, "503", "", T0 + 10);
    assert_eq!(host.counter(a.metric("jitgate.sync.failures")), 1);

    // Backing off (one poll interval at the least jitter, halved: 500 ms)
    // for every worker of the proxy, not just the one that failed.
    for now in [T0 + 100, T0 + 400] {
        a.tick(&host, now);
        b.tick(&host, now);
    }
    assert!(host.take_sent().is_empty(), "no poll during the backoff");
    assert_eq!(host.gauge(b.metric("jitgate.sync.consecutive_failures")), Some(1));
    assert_eq!(host.gauge(b.metric("jitgate.sync.backoff_ms")), Some(110));

    b.tick(&host, T0 + 510);
    let poll = host.take_sent().remove(0);
    assert_eq!(poll.cluster, "mirror", "the next endpoint after a failure");
    assert_eq!(poll.header(":authority"), "mirror");
    b.answer(&host, &poll, "200", &revocations("1", &[]), T0 + 520);

    // The endpoint that answered stays; failures are forgotten.
    a.tick(&host, T0 + 1_600);
    let poll = host.take_sent().remove(0);
    assert_eq!(poll.cluster, "mirror");
    assert_eq!(host.gauge(a.metric("jitgate.sync.consecutive_failures")), Some(0));

    // A call the host refuses to dispatch is a failure too.
    a.answer(&host, &poll, "200", &revocations("2", &[]), T0 + 1_610);
    host.refuse_dispatch.set(true);
    a.tick(&host, T0 + 2_700);
    assert_eq!(host.counter(a.metric("jitgate.sync.failures")), 2);
}

#[test]
fn a_malformed_answer_forgets_no_revocation() {
    let host = FakeHost::default();
    let mut a = Proc::new(cfg("", ""));
    a.tick(&host, T0);
    let poll = host.take_sent().remove(0);
    a.answer(&host, &poll, "200", &revocations("1", &["g-1"]), T0 + 5);
    a.tick(&host, T0 + 1_100);
    let poll = host.take_sent().remove(0);
    a.answer(&host, &poll, "200", r#"{"cursor":"2","revoked":{}}"#, T0 + 1_105);
    a.tick(&host, T0 + 1_200);
    assert!(a.revoked("g-1"));
    assert_eq!(a.synced_at(), Some(T0 + 5), "not confirmed by a bad answer");
}

fn mint(jti: &str, sub: &str) -> String {
    let key = grant::SigningKey::from_base64url("k1", KEY).unwrap();
    let (iat, scope) = (T0 / 1000, vec![grant::ScopeRule::new(&["GET"], &["/**"])]);
    let claims = grant::GrantClaims {
        iss: "jit-control".into(),
        sub: sub.into(),
        aud: "payments-api".into(),
        jti: jti.into(),
        iat,
        nbf: iat,
        exp: iat + 3600,
        scope,
        src: None,
        req: None,
        cnf: None,
    };
    grant::mint(&claims, &key).unwrap()
}

#[test]
fn identity_aware_workers_replace_the_grant_set_and_skip_unverifiable_tokens() {
    let host = FakeHost::default();
    let identity = r#","identity_aware":true,"identity":{"source":"header","name":"x-user"}"#;
    let (mut a, mut b) = (Proc::new(cfg("", identity)), Proc::new(cfg("", identity)));
    a.tick(&host, T0);
    let sent = host.take_sent();
    assert_eq!(
        sent.iter().map(|s| s.header(":path")).collect::<Vec<_>>(),
        ["/v1/revocations?since=", "/v1/proxy/grants?since="]
    );
    let grants = format!(
        r#"{{"cursor":"g1","grants":["{}","{}","forged.x.y"]}}"#,
        mint("a-1", "alice"),
        mint("b-1", "bob")
    );
    a.answer(&host, &sent[1], "200", &grants, T0 + 5);
    assert_eq!(a.worker.live.borrow().grants.len(), 2);
    assert!(host.logged(Level::Warn, "1 synced grants failed verification"));
    a.answer(&host, &sent[0], "200", &revocations("r1", &[]), T0 + 6);

    b.tick(&host, T0 + 100);
    assert_eq!(b.worker.live.borrow().grants.lookup(b"bob", "payments-api").len(), 1);

    // The next set replaces the last one as a whole.
    b.tick(&host, T0 + 1_100);
    let sent = host.take_sent();
    assert_eq!(sent[1].header(":path"), "/v1/proxy/grants?since=g1");
    let grants = format!(r#"{{"cursor":"g2","grants":["{}"]}}"#, mint("a-2", "alice"));
    b.answer(&host, &sent[1], "200", &grants, T0 + 1_105);
    b.answer(&host, &sent[0], "200", &revocations("r2", &[]), T0 + 1_106);
    a.tick(&host, T0 + 1_200);
    for w in [&a, &b] {
        let live = w.worker.live.borrow();
        assert!(live.grants.lookup(b"bob", "payments-api").is_empty());
        assert_eq!(live.grants.lookup(b"alice", "payments-api")[0].jti(), "a-2");
    }
}

fn record(p: &Proc, path: &str) {
    let event = Event {
        time_ms: 1,
        outcome: "allowed",
        resource: Some("payments-api"),
        grant_id: None,
        subject: None,
        access_request_id: None,
        method: b"GET",
        path: path.as_bytes(),
        client: None,
        request_id: None,
    };
    let reporter = p.worker.reporter.as_ref().unwrap();
    reporter.borrow_mut().record(&event.open_json(), 200);
}

fn reports(sent: &[Sent]) -> Vec<&Sent> {
    sent.iter().filter(|s| s.header(":method") == "POST").collect()
}

fn events(sent: &Sent) -> Vec<serde_json::Value> {
    let body: serde_json::Value = serde_json::from_slice(sent.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["proxy"], "edge-1");
    body["events"].as_array().unwrap().clone()
}

#[test]
fn reports_go_in_batches_and_a_failed_batch_is_resent_after_a_backoff() {
    let host = FakeHost::default();
    let reporting = r#","report_batch":2,"report_buffer":3,"report_interval_ms":60000,"proxy_id":"edge-1""#;
    let mut a = Proc::new(cfg(reporting, ""));
    a.tick(&host, T0);
    let poll = host.take_sent().remove(0);
    a.answer(&host, &poll, "200", &revocations("1", &[]), T0 + 1);

    record(&a, "/one");
    record(&a, "/two");
    a.tick(&host, T0 + 200);
    let sent = host.take_sent();
    let batch = reports(&sent);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].header(":path"), "/v1/audit/events");
    assert_eq!(batch[0].header("content-type"), "application/json");
    assert_eq!(events(batch[0]).len(), 2);
    let first = batch[0].clone();

    // Refused: kept, and sent again only after the backoff.
    a.answer(&host, &first, "503", "", T0 + 300);
    record(&a, "/three");
    record(&a, "/dropped");
    a.tick(&host, T0 + 400);
    assert!(reports(&host.take_sent()).is_empty(), "backing off");
    a.tick(&host, T0 + 800);
    let sent = host.take_sent();
    let again = reports(&sent);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, first.body, "the same batch again");
    assert_eq!(
        host.counter(a.metric("jitgate.reports.dropped")),
        1,
        "the buffer held three"
    );

    a.answer(&host, again[0], "202", "", T0 + 900);
    a.tick(&host, T0 + 1_000);
    assert_eq!(host.counter(a.metric("jitgate.reports.delivered")), 2);
    assert!(reports(&host.take_sent()).is_empty(), "one event left, not due");
    a.tick(&host, T0 + 61_000);
    let sent = host.take_sent();
    assert_eq!(events(reports(&sent)[0])[0]["path"], "/three");
}

#[test]
fn a_never_synced_list_is_warned_about_after_three_poll_intervals() {
    let host = FakeHost::default();
    let mut a = Proc::new(cfg("", ""));
    a.tick(&host, T0);
    host.take_sent();
    a.tick(&host, T0 + 2_900);
    assert!(!host.logged(Level::Warn, ""));
    a.tick(&host, T0 + 3_100);
    assert!(host.logged(Level::Warn, "never synced"));
    assert!(host.logged(Level::Warn, "refused until the first sync"));
    assert_eq!(
        host.gauge(a.metric("jitgate.revocations.staleness_ms")),
        Some(i64::MAX as u64)
    );
}
