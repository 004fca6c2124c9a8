//! The attack catalogue, continued: the cases an outside attack run found
//! (issue 13), one named test each, through real Envoy and the real control
//! service. Each ends in its documented, safe outcome. (The control
//! service's own tests of the same findings are in
//! `control/tests/attack_findings.rs`, on SQLite and PostgreSQL.)

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{decision_counter, Envoy, EnvoyOptions};
use jitgate_e2e::http::{call, get_with_grant, send_raw, Response};
use jitgate_e2e::upstream::Upstream;
use serde_json::{json, Value};

const K1: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

/// Cases that measure time or restart processes run one at a time, so they
/// do not starve each other of the machine's cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn grant_for(sub: &str) -> String {
    let t = now();
    mint(
        &GrantClaims {
            iss: "jit-control".into(),
            sub: sub.into(),
            aud: "payments-api".into(),
            jti: "g-finding".into(),
            iat: t,
            nbf: t,
            exp: t + 600,
            scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
            src: None,
            req: Some("r-finding".into()),
            cnf: None,
        },
        &SigningKey::from_base64url("k1", K1).unwrap(),
    )
    .unwrap()
}

/// Waits until `check` holds, or panics after `limit`.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {limit:?}");
}

/// Envoy protecting `payments.example` only, letting other hosts through
/// (`unmatched: allow`), with no control link.
fn shared_listener() -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","hosts":["payments.example"],"path_prefix":"/"}}],"unmatched":"allow"}}"#
    );
    let envoy = Envoy::start(EnvoyOptions::new(config, upstream.port));
    (envoy, upstream)
}

/// A GET whose host header lines are given as they are.
fn get_with_host_lines(envoy: &Envoy, host_lines: &str) -> Response {
    let raw = format!("GET /v1/invoices/7 HTTP/1.1\r\n{host_lines}connection: close\r\n\r\n");
    send_raw(envoy.port, raw.as_bytes())
}

fn assert_authority_rejected(host_lines: &str) {
    let (envoy, upstream) = shared_listener();
    let sane = get_with_host_lines(&envoy, "host: other.example\r\n");
    assert_eq!(sane.status, 200, "an unprotected host passes (unmatched: allow)");
    let before = upstream.count();
    let counted = envoy.decisions("authority_rejected");
    let r = get_with_host_lines(&envoy, host_lines);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "authority_rejected"),
        "{host_lines:?}"
    );
    assert_eq!(upstream.count(), before, "the upstream never sees it");
    // Counters reach /stats on the filter's tick: wait for this one.
    envoy.wait_for_counter(&decision_counter("authority_rejected"), counted + 1);
}

#[test]
fn host_with_two_trailing_dots_is_rejected_not_let_through() {
    assert_authority_rejected("host: payments.example..\r\n");
}

#[test]
fn host_with_userinfo_is_rejected_not_let_through() {
    assert_authority_rejected("host: alice@payments.example\r\n");
}

#[test]
fn host_with_two_ports_is_rejected_not_let_through() {
    assert_authority_rejected("host: payments.example:443:443\r\n");
}

#[test]
fn two_host_headers_are_rejected_not_let_through() {
    // Envoy joins them into `payments.example,hr.example`.
    assert_authority_rejected("host: payments.example\r\nhost: hr.example\r\n");
}

#[test]
fn c1_controls_and_edge_spaces_in_the_subject_are_percent_encoded_upstream() {
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}]}}"#
    );
    let envoy = Envoy::start(EnvoyOptions::new(config, upstream.port));
    let token = grant_for(" alice\u{85}x-evil: 1 ");
    let r = get_with_grant(envoy.port, "/v1/invoices/7", &token);
    assert_eq!(r.status, 200);
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header_bytes("x-jit-subject"),
        Some(&b"%20alice%C2%85x-evil: 1%20"[..])
    );
}

fn read_scope() -> serde_json::Value {
    json!([{"methods": ["GET"], "paths": ["/v1/invoices/*"]}])
}

fn envoy_for(control: &Control, upstream: &Upstream, control_extra: &str) -> Envoy {
    let mut options = EnvoyOptions::new(
        control.filter_config("", &format!(r#","poll_interval_ms":200,"report":false{control_extra}"#)),
        upstream.port,
    );
    options.control_port = control.port;
    options.concurrency = 2;
    Envoy::start(options)
}

/// Revokes a grant, waits until Envoy enforces it, stops the control
/// service and restarts Envoy: the new Envoy has never synced.
fn restart_envoy_during_an_outage(control_extra: &str) -> (Envoy, Upstream, String) {
    let mut control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = envoy_for(&control, &upstream, control_extra);
    let (_, grant_id, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    eventually(Duration::from_secs(10), "the grant works", || {
        get_with_grant(envoy.port, "/v1/invoices/1", &token).status == 200
    });
    control.revoke("bob", &grant_id);
    eventually(Duration::from_secs(10), "the revocation is enforced", || {
        get_with_grant(envoy.port, "/v1/invoices/1", &token).error_code() == "grant_revoked"
    });
    control.kill();
    drop(envoy);
    let envoy = envoy_for(&control, &upstream, control_extra);
    (envoy, upstream, token)
}

#[test]
fn a_revoked_grant_stays_refused_when_envoy_restarts_while_control_is_down() {
    let _serial = serial();
    let (envoy, upstream, token) = restart_envoy_during_an_outage("");
    let before = upstream.count();
    for _ in 0..10 {
        let r = get_with_grant(envoy.port, "/v1/invoices/1", &token);
        assert_eq!((r.status, r.error_code().as_str()), (503, "revocations_stale"));
    }
    assert_eq!(upstream.count(), before);
}

#[test]
fn with_unsynced_allow_a_restart_during_an_outage_allows_and_counts() {
    let _serial = serial();
    let (envoy, _upstream, token) = restart_envoy_during_an_outage(r#","unsynced":"allow""#);
    // The documented trade-off: without a list the revoked grant passes,
    // and every such request is counted.
    for _ in 0..5 {
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
    }
    eventually(Duration::from_secs(5), "unsynced requests are counted", || {
        envoy.stat("wasmcustom.jitgate.revocations.unsynced_allowed") == 5
    });
}

/// A TCP listener standing in for a control service that is down: it
/// accepts each connection, counts it and closes it.
struct DownControl {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DownControl {
    fn start() -> DownControl {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                        let _ = stream.read(&mut [0u8; 1024]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DownControl { port, accepted, stop }
    }
}

impl Drop for DownControl {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn polls_back_off_while_control_is_down_instead_of_hammering_it() {
    let _serial = serial();
    let down = DownControl::start();
    let upstream = Upstream::start();
    let config = format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}],"control":{{"cluster":"jitgate_control","ingest_key":"dev-ingest-key-0123456789","poll_interval_ms":200,"report":false}}}}"#
    );
    let mut options = EnvoyOptions::new(config, upstream.port);
    options.control_port = down.port;
    options.concurrency = 2;
    let envoy = Envoy::start(options);
    // Let the backoff reach its cap (5 intervals: 1 s, of which at least
    // half is always waited): five failed polls take 1.5 to 3 s.
    eventually(Duration::from_secs(20), "the first failed polls", || {
        down.accepted.load(Ordering::SeqCst) >= 6
    });
    let start = down.accepted.load(Ordering::SeqCst);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let polls = down.accepted.load(Ordering::SeqCst) - start;
    let seconds = window.elapsed().as_secs_f64();
    // At most one poll per 0.5 s for the whole proxy (both workers), plus
    // one in flight at each end of the window. Without backoff every tick
    // of every worker polled: 10 or more a second.
    let most = (seconds / 0.5).ceil() as usize + 2;
    assert!(polls <= most, "{polls} polls in {seconds:.1} s (at most {most})");
    assert!(polls >= 1, "polling goes on during the outage");
    // The backoff is visible in the stats.
    assert!(envoy.stat("wasmcustom.jitgate.sync.consecutive_failures") >= 6);
    assert!(envoy.stat("wasmcustom.jitgate.sync.backoff_ms") <= 1000);
}

// --- the control service -----------------------------------------------------

const CALLBACK_SECRET: &str = "callback-secret-0123456789";

/// The control service with usernames as user ids (compared folded) and
/// signed callbacks, bob mapped as a callback actor.
fn control_with_usernames() -> (Control, control::config::AuthConfig) {
    let edit = |c: String| {
        format!(
            "{}\n[integrations]\ncallback_secret = {{ value = \"{CALLBACK_SECRET}\" }}\n\n\
             [[integrations.users]]\nchat_id = \"UBOB\"\nuser = \"bob\"\ngroups = [\"payments-approvers\"]\n",
            c.replace("user_claim = \"sub\"", "user_claim = \"preferred_username\"")
        )
    };
    let text = std::fs::read_to_string(jitgate_e2e::workspace_root().join("control/examples/jitgate.toml")).unwrap();
    let auth = control::config::Config::parse(&edit(text)).unwrap().auth;
    (Control::start(edit), auth)
}

fn bearer(auth: &control::config::AuthConfig, user: &str, groups: &[&str]) -> String {
    let t = control::auth::dev_token(auth, user, None, groups, 600, now() as i64).unwrap();
    format!("Bearer {t}")
}

fn pending_request(control: &Control, reason: &str) -> Response {
    control.as_user(
        "alice",
        "POST",
        "/v1/requests",
        Some(json!({"resource": "payments-api", "scope": read_scope(), "duration_seconds": 600, "reason": reason})),
    )
}

#[test]
fn a_look_alike_of_the_requester_cannot_approve_her_request() {
    let (control, auth) = control_with_usernames();
    let id = pending_request(&control, "INC-7").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for look_alike in ["Alice", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"] {
        let r = call(
            control.port,
            "POST",
            &format!("/v1/requests/{id}/approve"),
            &[("authorization", bearer(&auth, look_alike, &["payments-approvers"]))],
            Some(&json!({})),
        );
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (403, Some("self_approval")),
            "{look_alike}"
        );
    }
}

#[test]
fn a_reason_with_a_right_to_left_override_is_refused_naming_the_field() {
    let (control, _) = control_with_usernames();
    let r = pending_request(&control, "refund \u{202E}7-CNI");
    assert_eq!((r.status, r.json()["code"].as_str()), (422, Some("reason_invalid")));
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .starts_with("reason contains U+202E"));
}

fn refusals(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["action"].as_str().is_some_and(|a| a.ends_with(".refused")))
        .map(|r| r["details"]["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_refused_self_approval_shows_in_the_requests_trail() {
    let (control, _) = control_with_usernames();
    let id = pending_request(&control, "INC-7").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = control.as_user("alice", "POST", &format!("/v1/requests/{id}/approve"), Some(json!({})));
    assert_eq!(r.status, 403);
    assert_eq!(refusals(&control.audit_for(&id)), ["self_approval"]);
}

#[test]
fn a_signed_callback_with_an_invalid_decision_is_in_the_requests_trail() {
    let (control, _) = control_with_usernames();
    let id = pending_request(&control, "INC-7").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"request_id": id, "decision": "maybe", "actor": "UBOB"});
    let ts = now().to_string();
    let text = body.to_string();
    let v1 = control::signature::hex_hmac(CALLBACK_SECRET.as_bytes(), &[ts.as_bytes(), b".", text.as_bytes()]);
    let r = call(
        control.port,
        "POST",
        "/v1/integrations/callback",
        &[("x-jitgate-signature", format!("t={ts},v1={v1}"))],
        Some(&body),
    );
    assert_eq!((r.status, r.json()["code"].as_str()), (422, Some("decision_invalid")));
    assert_eq!(refusals(&control.audit_for(&id)), ["decision_invalid"]);
}
