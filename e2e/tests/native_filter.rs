//! The native form (`libjitgate_native.so`, an Envoy dynamic module) inside
//! real Envoy 1.40: Envoy accepts its ABI, the core outcomes match the Wasm
//! filter's, the control link (revocations at every worker, strict mode,
//! decision reports) works against the real control service, a panic
//! inside the module fails closed, and a bad configuration makes Envoy
//! refuse it.
//!
//! The Wasm filter's suites also run against this form unchanged (as
//! `scripts/test` does): `JITGATE_E2E_FORM=native cargo test -p jitgate-e2e
//! --test filter_envoy --test attacks --test device_binding --test
//! control_loop`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grant::{mint, GrantClaims, ScopeRule, SigningKey};
use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{decision_counter, Envoy, EnvoyOptions, FilterForm, ListenerTls};
use jitgate_e2e::http::{get_with_grant, request};
use jitgate_e2e::tls::{get_invoice_over_tls, TestPki};
use jitgate_e2e::upstream::Upstream;
use jitgate_e2e::workspace_root;

const K1: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";
const OTHER: &str = "nHq6SY5Wn3UwzrlAcsFzq-0vAZ3uHFHVU13ZQvQAlIU";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn plugin_config(extra: &str) -> String {
    format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{K1}"}},"resources":[{{"id":"payments-api","hosts":["*"],"path_prefix":"/v1"}}]{extra}}}"#
    )
}

fn native(extra: &str, form: FilterForm) -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let envoy = Envoy::start(EnvoyOptions {
        form,
        ..EnvoyOptions::new(plugin_config(extra), upstream.port)
    });
    (envoy, upstream)
}

fn grant_signed(secret: &str, edit: impl FnOnce(&mut GrantClaims)) -> String {
    let t = now();
    let mut claims = GrantClaims {
        iss: "jit-control".into(),
        sub: "alice@example.com".into(),
        aud: "payments-api".into(),
        jti: "g-native-1".into(),
        iat: t - 5,
        nbf: t - 5,
        exp: t + 600,
        scope: vec![ScopeRule::new(&["GET"], &["/v1/invoices/*"])],
        src: None,
        req: Some("r-native-1".into()),
        cnf: None,
    };
    edit(&mut claims);
    mint(&claims, &SigningKey::from_base64url("k1", secret).unwrap()).unwrap()
}

fn grant(edit: impl FnOnce(&mut GrantClaims)) -> String {
    grant_signed(K1, edit)
}

fn get(envoy: &Envoy, path: &str, headers: &[(&str, &[u8])]) -> (u16, String) {
    let r = request(envoy.port, "GET", path, headers);
    let code = if r.status == 200 { String::new() } else { r.error_code() };
    (r.status, code)
}

#[test]
fn envoy_accepts_the_modules_abi_version() {
    let (envoy, _upstream) = native("", FilterForm::NATIVE);
    let log = envoy.log();
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "Envoy should confirm the ABI version:\n{}",
        envoy.log_tail(40)
    );
}

#[test]
fn an_allowed_request_reaches_upstream_with_identity_headers_and_without_grant_or_spoofs() {
    let (envoy, upstream) = native("", FilterForm::NATIVE);
    let t = grant(|_| {});
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/7",
        &[
            ("x-jit-grant", t.as_bytes()),
            ("x-jit-subject", b"mallory@example.com"),
            ("x-jit-other", b"1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = upstream.last().expect("upstream saw the request");
    assert_eq!(seen.all("x-jit-subject"), vec!["alice@example.com".to_owned()]);
    assert_eq!(seen.header("x-jit-grant-id").as_deref(), Some("g-native-1"));
    assert_eq!(seen.header("x-jit-request-id").as_deref(), Some("r-native-1"));
    assert!(
        seen.all("x-jit-grant").is_empty(),
        "the grant never reaches the upstream"
    );
    assert!(seen.all("x-jit-other").is_empty(), "incoming x-jit-* are removed");
    // Same counter names as the Wasm filter; counted without a tick.
    assert_eq!(envoy.wait_for_counter(&decision_counter("allowed"), 1), 1);
    assert_eq!(
        envoy.wait_for_counter("wasmcustom.jitgate.resource.payments-api.allowed", 1),
        1
    );
}

#[test]
fn each_core_outcome_is_denied_with_its_status_and_code_and_never_reaches_upstream() {
    let (envoy, upstream) = native("", FilterForm::NATIVE);
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        ("no grant", "/v1/invoices/1", None, 401, "grant_missing"),
        (
            "other key",
            "/v1/invoices/1",
            Some(grant_signed(OTHER, |_| {})),
            401,
            "grant_bad_signature",
        ),
        (
            "expired",
            "/v1/invoices/1",
            Some(grant(|c| {
                c.iat = now() - 900;
                c.nbf = c.iat;
                c.exp = now() - 60;
            })),
            401,
            "grant_expired",
        ),
        (
            "out of scope",
            "/v1/refunds/1",
            Some(grant(|_| {})),
            403,
            "request_out_of_scope",
        ),
        (
            "wrong audience",
            "/v1/invoices/1",
            Some(grant(|c| c.aud = "hr-api".into())),
            403,
            "grant_wrong_audience",
        ),
        (
            "dot-dot",
            "/v1/invoices/..%3bx/admin",
            Some(grant(|_| {})),
            400,
            "path_rejected",
        ),
        ("no resource", "/admin", Some(grant(|_| {})), 403, "no_resource"),
    ];
    for (name, path, token, status, code) in &cases {
        let headers: Vec<(&str, &[u8])> = token.iter().map(|t| ("x-jit-grant", t.as_bytes())).collect();
        assert_eq!(
            get(&envoy, path, &headers),
            (*status, (*code).to_owned()),
            "case {name}"
        );
    }
    assert_eq!(upstream.count(), 0, "no denied request may reach the upstream");
}

#[test]
fn denials_are_logged_at_debug_level_in_both_forms_and_allowed_requests_are_not() {
    for form in [FilterForm::Wasm, FilterForm::NATIVE] {
        let upstream = Upstream::start();
        let envoy = Envoy::start(EnvoyOptions {
            form,
            log_level: "debug",
            ..EnvoyOptions::new(plugin_config(""), upstream.port)
        });
        let t = grant(|_| {});
        assert_eq!(get(&envoy, "/v1/invoices/1", &[("x-jit-grant", t.as_bytes())]).0, 200);
        assert_eq!(get(&envoy, "/v1/invoices/1", &[]).0, 401);
        let line = "jitgate: deny grant_missing resource=payments-api";
        let deadline = Instant::now() + Duration::from_secs(5);
        while !envoy.log().contains(line) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = envoy.log();
        assert!(log.contains(line), "{form:?}: {}", envoy.log_tail(30));
        assert_eq!(
            log.matches("jitgate: deny").count(),
            1,
            "{form:?}: only the denial is logged"
        );
    }
}

#[test]
fn a_source_restricted_grant_passes_only_from_an_allowed_address() {
    // Shows the source address really is read from Envoy (a missing
    // address would deny both).
    let (envoy, _upstream) = native("", FilterForm::NATIVE);
    let inside = grant(|c| c.src = Some(vec!["127.0.0.0/8".into()]));
    let outside = grant(|c| c.src = Some(vec!["10.0.0.0/8".into()]));
    assert_eq!(
        get(&envoy, "/v1/invoices/1", &[("x-jit-grant", inside.as_bytes())]).0,
        200
    );
    assert_eq!(
        get(&envoy, "/v1/invoices/1", &[("x-jit-grant", outside.as_bytes())]),
        (403, "source_not_allowed".to_owned())
    );
}

#[test]
fn dry_run_forwards_a_denied_request_without_spoofed_headers_and_counts_it() {
    let (envoy, upstream) = native(r#","mode":"dry-run""#, FilterForm::NATIVE);
    let r = request(envoy.port, "GET", "/v1/invoices/1", &[("x-jit-subject", b"mallory")]);
    assert_eq!(r.status, 200);
    let seen = upstream.last().expect("dry-run forwards");
    assert!(
        seen.all("x-jit-subject").is_empty(),
        "spoofs are removed in dry-run too"
    );
    assert_eq!(envoy.wait_for_counter("wasmcustom.jitgate.dry_run.would_deny", 1), 1);
}

#[test]
fn a_panic_inside_the_module_answers_503_and_envoy_keeps_serving() {
    let probe = FilterForm::Native {
        filter_name: "jitgate-panic-probe",
    };
    let (envoy, upstream) = native("", probe);
    let t = grant(|_| {});
    let r = request(
        envoy.port,
        "GET",
        "/v1/invoices/1",
        &[("x-jit-grant", t.as_bytes()), ("x-jitgate-panic-probe", b"1")],
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "gateway_unavailable");
    assert_eq!(upstream.count(), 0, "a panic must not let the request through");
    // Envoy is still up and the same worker decides the next request.
    assert_eq!(get(&envoy, "/v1/invoices/1", &[("x-jit-grant", t.as_bytes())]).0, 200);
    assert_eq!(get(&envoy, "/v1/invoices/1", &[]), (401, "grant_missing".to_owned()));
}

/// The control-service tests start several processes: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Envoy with the native module linked to `control` (reports every 200 ms,
/// every decision a record of its own), `workers` workers.
fn native_with_control(control: &Control, upstream: &Upstream, control_extra: &str, workers: u32) -> Envoy {
    let mut options = EnvoyOptions {
        form: FilterForm::NATIVE,
        ..EnvoyOptions::new(
            control.filter_config(
                "",
                &format!(r#","report_interval_ms":200,"report_allowed":"each"{control_extra}"#),
            ),
            upstream.port,
        )
    };
    options.control_port = control.port;
    options.concurrency = workers;
    Envoy::start(options)
}

/// Waits until `check` holds, or panics after 15 s (a few 1 s polls on a
/// loaded machine).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within 15 s");
}

fn read_scope() -> serde_json::Value {
    serde_json::json!([{"methods": ["GET"], "paths": ["/v1/invoices/*"]}])
}

#[test]
fn a_revocation_from_the_control_service_is_enforced_at_every_worker() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = native_with_control(&control, &upstream, "", 2);
    let (_, grant_id, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    let (_, _, other) = control.approved_grant("alice", "bob", read_scope(), 600);
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
    control.revoke("bob", &grant_id);
    // Enforced once a run of requests on fresh connections (spread over
    // both workers) is all denied.
    eventually("revocation at every worker", || {
        (0..16).all(|_| get_with_grant(envoy.port, "/v1/invoices/1", &token).error_code() == "grant_revoked")
    });
    assert_eq!(
        get_with_grant(envoy.port, "/v1/invoices/1", &other).status,
        200,
        "another grant is unaffected"
    );
    assert_eq!(envoy.stat("wasmcustom.jitgate.sync.failures"), 0);
    assert!(envoy.wait_for_counter("wasmcustom.jitgate.revocations.entries", 1) >= 1);
}

#[test]
fn decisions_reach_the_control_services_audit_log() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = native_with_control(&control, &upstream, "", 2);
    let (request_id, _, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    for _ in 0..3 {
        assert_eq!(get_with_grant(envoy.port, "/v1/invoices/1", &token).status, 200);
    }
    assert_eq!(
        get_with_grant(envoy.port, "/v1/refunds/1", &token).error_code(),
        "request_out_of_scope"
    );
    eventually("the decisions in the audit log", || {
        let records = control.audit_for(&request_id);
        let count = |outcome: &str| records.iter().filter(|r| r["details"]["outcome"] == outcome).count();
        count("allowed") == 3 && count("request_out_of_scope") == 1
    });
    assert_eq!(envoy.wait_for_counter("wasmcustom.jitgate.reports.delivered", 4), 4);
    assert_eq!(envoy.stat("wasmcustom.jitgate.reports.dropped"), 0);
}

#[test]
fn strict_mode_denies_once_the_control_service_is_gone() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut control = Control::start(|c| c);
    let upstream = Upstream::start();
    let envoy = native_with_control(&control, &upstream, r#","max_staleness_seconds":2"#, 1);
    let (_, _, token) = control.approved_grant("alice", "bob", read_scope(), 600);
    eventually("first sync", || {
        get_with_grant(envoy.port, "/v1/invoices/1", &token).status == 200
    });
    control.kill();
    eventually("strict mode denies", || {
        let r = get_with_grant(envoy.port, "/v1/invoices/1", &token);
        r.status == 503 && r.error_code() == "revocations_stale"
    });
    envoy.wait_for_counter("wasmcustom.jitgate.sync.failures", 1);
    // The gauge is set on the module's timer tick (1 s here), so it may
    // lag the moment strict mode starts denying.
    eventually("the staleness gauge past the limit", || {
        envoy.stat("wasmcustom.jitgate.revocations.staleness_ms") > 2_000
    });
    eventually("a warning about the stale list", || {
        envoy.log().contains("jitgate: revocation list is")
    });
}

#[test]
fn envoy_refuses_a_bad_configuration_or_an_unknown_filter_name_saying_why() {
    let upstream = Upstream::start();
    let field = |f: &str| format!("jitgate: invalid plugin configuration: field `{f}`");
    let cases = [
        (plugin_config(r#","leeway":3600"#), FilterForm::NATIVE, field("leeway")),
        ("not json".to_owned(), FilterForm::NATIVE, field("(root)")),
        (
            plugin_config(""),
            FilterForm::Native {
                filter_name: "jitgate2",
            },
            "jitgate: unknown filter_name \"jitgate2\"".to_owned(),
        ),
    ];
    for (config, form, line) in cases {
        let options = EnvoyOptions {
            form,
            ..EnvoyOptions::new(config, upstream.port)
        };
        let log = match Envoy::try_start(options) {
            Ok(envoy) => panic!("Envoy started with a bad configuration:\n{}", envoy.log()),
            Err(log) => log,
        };
        assert!(log.contains(&line), "log should say {line}:\n{log}");
    }
    assert_eq!(upstream.count(), 0);
}

#[test]
fn the_peer_uri_san_is_the_identity_in_both_forms() {
    let dir = std::env::temp_dir().join(format!("jitgate-native-san-{}", std::process::id()));
    let pki = TestPki::generate(&dir, &[]);
    let alice = pki.client_with_uri_san("alice-workload", "spiffe://example.org/alice");
    let bob = pki.client_with_uri_san("bob-workload", "spiffe://example.org/bob");
    let token = grant(|c| c.sub = "spiffe://example.org/alice".into());
    for form in [FilterForm::Wasm, FilterForm::NATIVE] {
        let upstream = Upstream::start();
        let envoy = Envoy::start(EnvoyOptions {
            form,
            listener_tls: Some(ListenerTls {
                cert: pki.server.cert.clone(),
                key: pki.server.key.clone(),
                ca: pki.ca.clone(),
            }),
            ..EnvoyOptions::new(plugin_config(r#","identity":{"source":"peer_uri_san"}"#), upstream.port)
        });
        let (status, body) = get_invoice_over_tls(&envoy, &pki.ca, Some(&alice), &token);
        assert_eq!(status, 200, "{form:?}, the grant's subject as URI SAN: {body}");
        let (status, body) = get_invoice_over_tls(&envoy, &pki.ca, Some(&bob), &token);
        assert_eq!(status, 403, "{form:?}, another URI SAN: {body}");
        assert!(body.contains("identity_mismatch"), "{form:?}: {body}");
        assert_eq!(
            upstream.count(),
            1,
            "{form:?}: only the matching identity reaches the upstream"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_native_template_differs_from_the_wasm_template_only_in_the_filter_entry() {
    let read = |f: &str| std::fs::read_to_string(workspace_root().join("envoy-config").join(f)).unwrap();
    // The body from `admin:` on, with the http filter entry cut out.
    let body = |text: &str| {
        let from = text.find("\nadmin:").expect("an admin section");
        let start = text
            .find("          - name: envoy.filters.http.")
            .expect("a filter entry");
        let end = text
            .find("          - name: envoy.filters.http.router")
            .expect("the router");
        assert!(from < start && start < end);
        format!("{}{}", &text[from..start], &text[end..])
    };
    assert_eq!(
        body(&read("envoy.native.template.yaml")),
        body(&read("envoy.template.yaml")),
        "copy the listener and cluster changes of envoy.template.yaml into envoy.native.template.yaml"
    );
}
