//! The loop between proxy and control: real Envoy with the filter, the real
//! control service, and the promises between them: revocation at every
//! worker, decisions in the audit log, work without the control service,
//! identity-aware access and expiry.
//!
//! Waits are for conditions, with bounds generous enough for a loaded
//! machine ([`SETTLE`]); how fast revocation is enforced is measured by the
//! control benchmark (`bench/control`, revoke-to-enforced), not asserted
//! here.

use std::time::{Duration, Instant};

use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::{get_with_grant, request};
use jitgate_e2e::upstream::Upstream;
use serde_json::{json, Value};

/// The bound for a condition the proxy and the control service reach within
/// a few poll intervals (1 s) or report intervals (200 ms) when the machine
/// is idle.
const SETTLE: Duration = Duration::from_secs(15);

/// These tests wait on polls and ticks and start several processes; run
/// them one at a time so they do not starve each other of the machine's
/// two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_scope() -> Value {
    json!([{"methods": ["GET", "HEAD"], "paths": ["/v1/invoices/*"]}])
}

/// Envoy with the filter linked to `control`, reporting as a proxy does by
/// default (`report_allowed: aggregate`: a grant's first allowed request
/// at a worker and every denial are records, the other allowed requests
/// counts) every 200 ms unless `control_extra` says otherwise.
fn start_envoy(control: &Control, upstream: &Upstream, extra: &str, control_extra: &str, workers: u32) -> Envoy {
    let mut control_extra = control_extra.to_owned();
    if !control_extra.contains("report_interval_ms") {
        control_extra.push_str(r#","report_interval_ms":200"#);
    }
    if !control_extra.contains("count_interval_ms") {
        control_extra.push_str(r#","count_interval_ms":200"#);
    }
    let mut options = EnvoyOptions::new(control.filter_config(extra, &control_extra), upstream.port);
    options.control_port = control.port;
    options.concurrency = workers;
    Envoy::start(options)
}

/// Allowed requests the proxy reported for a request: individual records
/// and counted calls, and the counted calls alone.
fn reported_allowed(control: &Control, request_id: &str) -> (i64, i64) {
    let records = control.audit_for(request_id);
    let one_by_one = records
        .iter()
        .filter(|r| r["action"] == "proxy.decision" && r["details"]["outcome"] == "allowed")
        .count() as i64;
    let counted: i64 = control
        .counts_for(request_id)
        .iter()
        .map(|c| c["calls"].as_i64().unwrap_or(0))
        .sum();
    (one_by_one + counted, counted)
}

/// With `report_allowed: aggregate` (the default) a grant's first allowed
/// request at a worker is a record and the rest arrive as counts, linked
/// to the request; denials stay records. A proxy restarted mid-interval
/// loses only what it had not sent (counts held in memory), counts nothing
/// twice, and its new worker starts with a record again.
#[test]
fn allowed_requests_are_counted_exactly_across_a_proxy_restart() {
    let _serial = serial();
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let counted = r#","report_allowed":"aggregate","count_interval_ms":1000"#;
    let envoy = start_envoy(&control, &upstream, "", counted, 1);
    let (request_id, _, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    for i in 0..21 {
        assert_eq!(
            get_with_grant(envoy.port, &format!("/v1/invoices/INV-{i}"), &token).status,
            200
        );
    }
    let denied = request(
        envoy.port,
        "POST",
        "/v1/invoices/INV-1",
        &[("x-jit-grant", token.as_bytes())],
    );
    assert_eq!(denied.error_code(), "request_out_of_scope");
    eventually(SETTLE, "21 allowed requests reported", || {
        reported_allowed(&control, &request_id).0 == 21
    });
    let records = control.audit_for(&request_id);
    let one_by_one: Vec<String> = actions(&records)
        .into_iter()
        .filter(|a| a.starts_with("proxy.decision:"))
        .collect();
    assert_eq!(
        one_by_one,
        ["proxy.decision:allowed", "proxy.decision:request_out_of_scope"]
    );
    assert_eq!(reported_allowed(&control, &request_id).1, 20, "the rest counted");

    // Three more, and the proxy dies before its next counts are due.
    for _ in 0..3 {
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/INV-X", &token).status, 200);
    }
    drop(envoy);
    let envoy = start_envoy(&control, &upstream, "", counted, 1);
    for _ in 0..5 {
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/INV-Y", &token).status, 200);
    }
    eventually(SETTLE, "the restarted proxy's requests reported", || {
        reported_allowed(&control, &request_id).0 >= 26
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (total, _) = reported_allowed(&control, &request_id);
    assert_eq!(
        total, 26,
        "nothing twice; only the 3 counted in the killed proxy's memory are gone"
    );
    let after: Vec<String> = actions(&control.audit_for(&request_id))
        .into_iter()
        .filter(|a| a == "proxy.decision:allowed")
        .collect();
    assert_eq!(after.len(), 2, "the new worker's first request is a record again");
    let verify = control.as_user("ada", "GET", "/v1/audit/verify", None).json();
    assert_eq!(verify["ok"], true, "{verify}");
}

/// Waits until `check` holds, or panics after `limit`.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {limit:?}");
}

fn actions(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let a = r["action"].as_str().unwrap_or_default();
            match r["details"]["outcome"].as_str() {
                Some(o) => format!("{a}:{o}"),
                None => a.to_owned(),
            }
        })
        .collect()
}

#[test]
fn the_seed_flow_is_enforced_and_audited_end_to_end() {
    let _serial = serial();
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = start_envoy(&control, &upstream, "", "", 2);

    let (request_id, grant_id, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    // Each step waits until its record is in the log, so the log's order
    // is the order of the steps (workers report independently).
    let logged = |n: usize| {
        eventually(SETTLE, "the decision reaches the audit log", || {
            control.audit_for(&request_id).len() >= n
        });
    };
    let ok = get_with_grant(envoy.port, "/v1/invoices/INV-9", &token);
    assert_eq!(ok.status, 200);
    assert_eq!(
        upstream.last().unwrap().header("x-jit-request-id").as_deref(),
        Some(request_id.as_str())
    );
    logged(5);
    let out = request(
        envoy.port,
        "POST",
        "/v1/invoices/INV-9",
        &[("x-jit-grant", token.as_bytes())],
    );
    assert_eq!((out.status, out.error_code().as_str()), (403, "request_out_of_scope"));
    logged(6);
    control.revoke("bob", &grant_id);
    // Until the worker that answers has the revocation the grant still
    // passes (each such pass is audited too); then it is denied.
    let mut allowed_meanwhile = 0;
    eventually(SETTLE, "the revocation is enforced", || {
        let r = get_with_grant(envoy.port, "/v1/invoices/INV-9", &token);
        match (r.status, r.error_code().as_str()) {
            (403, "grant_revoked") => true,
            (200, _) => {
                allowed_meanwhile += 1;
                false
            }
            other => panic!("while the revocation spreads: {other:?}"),
        }
    });
    let want = [
        "request.created",
        "vote.approve",
        "grant.issued",
        "grant.token_fetched",
        "proxy.decision:allowed",
        "proxy.decision:request_out_of_scope",
        "grant.revoked",
    ];
    // Every allowed request is reported, as a record or in a count.
    eventually(SETTLE, "every allowed request is reported", || {
        reported_allowed(&control, &request_id).0 == 1 + allowed_meanwhile as i64
            && actions(&control.audit_for(&request_id)).contains(&"proxy.decision:grant_revoked".to_owned())
    });
    let got = actions(&control.audit_for(&request_id));
    assert_eq!(got[..want.len()], want, "{got:?}");
    // Workers report on their own schedules: the last decisions in any
    // order, the denial and at most the other worker's first allowed one
    // as records (the rest were counted).
    let last = &got[want.len()..];
    assert_eq!(
        last.iter().filter(|a| *a == "proxy.decision:grant_revoked").count(),
        1,
        "{got:?}"
    );
    assert!(
        last.iter()
            .all(|a| a == "proxy.decision:grant_revoked" || a == "proxy.decision:allowed")
            && last.len() <= 2,
        "{got:?}"
    );
    let records = control.audit_for(&request_id);
    let first_allowed = records.iter().find(|r| r["details"]["outcome"] == "allowed").unwrap();
    assert_eq!(first_allowed["grant_id"], grant_id.as_str());
    assert_eq!(first_allowed["actor"], "proxy:envoy-e2e");
    assert_eq!(first_allowed["details"]["path"], "/v1/invoices/INV-9");
    let verify = control.as_user("ada", "GET", "/v1/audit/verify", None).json();
    assert_eq!(verify["ok"], true, "{verify}");
}

#[test]
fn revocation_is_enforced_at_every_worker_while_the_proxy_polls() {
    let _serial = serial();
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = start_envoy(&control, &upstream, "", "", 2);
    let poll = Duration::from_millis(1000);
    let rounds = std::env::var("JITGATE_REVOCATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let (_, grant_id, token) = control.approved_grant("alice", "bob", read_scope(), 600);
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
        control.revoke("bob", &grant_id);
        let revoked_at = Instant::now();
        // Enforced once a run of requests on fresh connections (spread over
        // both workers) is all denied.
        eventually(SETTLE, "revocation at every worker", || {
            (0..16).all(|_| get_with_grant(envoy.port, "/v1/invoices/1", &token).error_code() == "grant_revoked")
        });
        latencies.push(revoked_at.elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    // For information: the target (two poll intervals) is checked by the
    // control benchmark, on a quiet machine.
    println!(
        "revoke-to-enforced over {rounds} revocations, 2 workers, {poll:?} poll: median {median:?}, worst {worst:?}"
    );
}

#[test]
fn without_the_control_service_valid_grants_work_and_decisions_wait() {
    let _serial = serial();
    let mut control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = start_envoy(&control, &upstream, "", "", 1);
    let (request_id, _grant_id, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    control.kill();
    for _ in 0..20 {
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
    }
    envoy.wait_for_counter("wasmcustom.jitgate.sync.failures", 1);
    control.restart();
    eventually(
        Duration::from_secs(40),
        "buffered decisions and counts arrive after the restart",
        || reported_allowed(&control, &request_id).0 == 20,
    );
    assert_eq!(envoy.stat("wasmcustom.jitgate.reports.dropped"), 0);
}

#[test]
fn a_full_report_buffer_drops_and_counts_instead_of_blocking() {
    let _serial = serial();
    let mut control = Control::start(|c| c);
    let upstream = Upstream::start();
    // Records fill the buffer (allowed requests reported one by one here:
    // counted ones take one entry per grant, method, rule and status).
    let envoy = start_envoy(
        &control,
        &upstream,
        "",
        r#","report_batch":5,"report_buffer":5,"report_allowed":"each""#,
        1,
    );
    let (_, _, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    control.kill();
    let started = Instant::now();
    for _ in 0..12 {
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
    }
    // Generous: requests never wait for the report buffer (no figure is
    // asserted; a request that waited on the dead control service would
    // take the HTTP call's timeout).
    assert!(started.elapsed() < SETTLE, "requests are not held back");
    // Five held for the control service, the other seven dropped.
    assert_eq!(envoy.wait_for_counter("wasmcustom.jitgate.reports.dropped", 7), 7);
}

#[test]
fn strict_mode_denies_once_the_revocation_list_is_too_old() {
    let _serial = serial();
    let mut control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = start_envoy(&control, &upstream, "", r#","max_staleness_seconds":2"#, 1);
    let (_, _, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    eventually(SETTLE, "first sync", || {
        get_with_grant(envoy.port, "/v1/invoices/1", &token).status == 200
    });
    control.kill();
    eventually(SETTLE, "strict mode denies", || {
        let r = get_with_grant(envoy.port, "/v1/invoices/1", &token);
        r.status == 503 && r.error_code() == "revocations_stale"
    });
}

#[test]
fn identity_aware_mode_allows_the_bound_identity_without_a_token() {
    let _serial = serial();
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = start_envoy(
        &control,
        &upstream,
        r#","identity":{"source":"header","name":"x-user"},"identity_aware":true"#,
        "",
        2,
    );
    let (_, grant_id, _token) = control.approved_grant("alice", "bob", read_scope(), 600);
    let as_user = |user: &str| request(envoy.port, "GET", "/v1/invoices/1", &[("x-user", user.as_bytes())]);
    // Every worker has the grant set once a run of fresh connections (spread
    // over both workers) is all allowed.
    eventually(SETTLE, "the grant set reaches every worker", || {
        (0..8).all(|_| as_user("alice").status == 200)
    });
    assert_eq!(
        upstream.last().unwrap().header("x-jit-subject").as_deref(),
        Some("alice")
    );
    assert_ne!(as_user("bob").status, 200, "another identity is denied");
    let out = request(envoy.port, "POST", "/v1/invoices/1", &[("x-user", b"alice")]);
    assert_eq!(out.error_code(), "request_out_of_scope");
    control.revoke("bob", &grant_id);
    eventually(SETTLE, "revocation ends identity-bound access", || {
        as_user("alice").status != 200
    });
}

#[test]
fn a_short_grant_is_denied_once_expired_without_asking_the_control_service() {
    let _serial = serial();
    let mut control = Control::start(|c| c.replace("min_ttl_seconds = 60", "min_ttl_seconds = 1"));
    let upstream = Upstream::start();
    let envoy = start_envoy(&control, &upstream, r#","leeway":0"#, "", 1);
    let (_, _, token) = control.approved_grant("alice", "bob", read_scope(), 3);
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
    control.kill();
    eventually(SETTLE, "expiry", || {
        get_with_grant(envoy.port, "/v1/invoices/1", &token).error_code() == "grant_expired"
    });
}

#[test]
fn a_proxy_that_cannot_reach_control_warns_after_three_poll_intervals() {
    let _serial = serial();
    let mut control = Control::start(|c| c);
    let upstream = Upstream::start();
    control.kill();
    let envoy = start_envoy(&control, &upstream, "", "", 1);
    eventually(Duration::from_secs(8), "the never-synced warning", || {
        envoy.log().contains("revocation list is never synced")
    });
}

/// A TCP relay in front of the control service that, while `drop` is set,
/// passes requests on but throws the answers away: the control service
/// writes a batch and the proxy never hears so. Counts the decision
/// batches it passes on.
struct LossyRelay {
    port: u16,
    drop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    batches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LossyRelay {
    fn start(control_port: u16) -> LossyRelay {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let drop = Arc::new(AtomicBool::new(false));
        let batches = Arc::new(AtomicUsize::new(0));
        let (d, b) = (drop.clone(), batches.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", control_port)) else {
                    continue;
                };
                let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counted = b.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        if buf[..n].windows(22).any(|w| w == b"POST /v1/audit/events ") {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                let (mut s_in, mut c_out, dropping) = (server, client, d.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = s_in.read(&mut buf) {
                        if !dropping.load(Ordering::SeqCst) && c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        LossyRelay { port, drop, batches }
    }
}

/// A batch whose acknowledgement is lost is sent again, unchanged, and the
/// control service writes it once: each decision is one audit record.
#[test]
fn a_decision_batch_whose_acknowledgement_is_lost_is_written_once() {
    use std::sync::atomic::Ordering;
    let _serial = serial();
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let relay = LossyRelay::start(control.port);
    let (_, _, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    let mut options = EnvoyOptions::new(
        control.filter_config(
            "",
            r#","report_interval_ms":200,"timeout_ms":500,"report_allowed":"each""#,
        ),
        upstream.port,
    );
    options.control_port = relay.port;
    let envoy = Envoy::start(options);
    // Synced first (a proxy that never synced refuses, `unsynced: deny`).
    eventually(SETTLE, "the proxy has synced through the relay", || {
        get_with_grant(envoy.port, "/v1/invoices/WARM-UP", &token).status == 200
    });

    relay.drop.store(true, Ordering::SeqCst);
    let sent_before = relay.batches.load(Ordering::SeqCst);
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/LOST-ACK", &token).status, 200);
    let written = |c: &Control| {
        c.as_user("ada", "GET", "/v1/audit?action=proxy.decision&limit=1000", None)
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|r| r["details"]["path"] == "/v1/invoices/LOST-ACK")
            .count()
    };
    eventually(SETTLE, "the batch is written while its answer is lost", || {
        written(&control) == 1
    });
    // The proxy times out (500 ms) and sends the same batch again, at least once more.
    eventually(SETTLE, "the batch is sent again", || {
        relay.batches.load(Ordering::SeqCst) >= sent_before + 2
    });
    relay.drop.store(false, Ordering::SeqCst);
    // Once an answer gets through, later decisions flow as usual.
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/AFTER", &token).status, 200);
    eventually(SETTLE, "the next decision is written", || {
        control
            .as_user("ada", "GET", "/v1/audit?action=proxy.decision&limit=1000", None)
            .json()
            .to_string()
            .contains("/v1/invoices/AFTER")
    });
    assert_eq!(written(&control), 1, "the repeated batch was written once");
    let verify = control.as_user("ada", "GET", "/v1/audit/verify", None).json();
    assert_eq!(verify["ok"], true, "{verify}");
    drop(envoy);
}
