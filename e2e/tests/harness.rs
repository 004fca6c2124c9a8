//! The harness and the documented Envoy template on their own, with the
//! no-op module in the filter's place: Envoy loads a Wasm module from the
//! template and proxies HTTP/1.1 and HTTP/2 to a recording upstream, and the
//! template's own security settings hold before any filter logic runs. When
//! these fail, the filter tests cannot mean anything.

use std::process::Command;

use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::{request, send_raw};
use jitgate_e2e::upstream::Upstream;

fn start_noop(concurrency: u32) -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let envoy = Envoy::start(EnvoyOptions {
        concurrency,
        ..EnvoyOptions::noop(upstream.port)
    });
    (envoy, upstream)
}

#[test]
fn envoy_loads_noop_wasm_and_proxies_to_upstream() {
    let (envoy, upstream) = start_noop(2);

    let r = request(envoy.port, "GET", "/v1/ping?x=1", &[("x-probe", b"\xffraw bytes")]);
    assert_eq!(r.status, 200, "{}", envoy.log_tail(30));
    assert_eq!(r.json()["path"], "/v1/ping?x=1");

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v1/ping?x=1")
    );
    assert_eq!(
        seen[0].header_bytes("x-probe"),
        Some(&b"\xffraw bytes"[..]),
        "header bytes pass as sent"
    );

    // The module is really loaded: one V8 VM per worker, besides the one
    // the main thread uses to check the configuration.
    let vms = envoy.counter("wasm.envoy.wasm.runtime.v8.active").unwrap_or(0);
    assert!(vms >= 2, "expected a VM per worker, stats say {vms}");
    assert_eq!(envoy.counter("http.api.downstream_rq_2xx"), Some(1));
    assert!(envoy.stats().contains_key("http.api.downstream_rq_total"));
}

#[test]
fn envoy_is_the_release_scripts_setup_installs() {
    let (envoy, _upstream) = start_noop(1);
    let info = envoy.admin_get("/server_info").unwrap_or_default();
    assert!(info.contains("/1.40.0/"), "expected Envoy 1.40.0:\n{info}");
}

#[test]
fn http2_cleartext_is_accepted_and_forwarded() {
    let (envoy, upstream) = start_noop(1);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(envoy.url("/v1/over-h2"))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e} (scripts/setup installs it)"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(upstream.last().map(|s| s.path), Some("/v1/over-h2".to_owned()));
}

#[test]
fn underscore_headers_are_rejected_by_the_template() {
    let (envoy, upstream) = start_noop(1);
    let r = request(envoy.port, "GET", "/v1/ping", &[("x_jit_subject", b"mallory")]);
    assert_eq!(r.status, 400);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn escaped_slashes_are_rejected_by_the_template() {
    let (envoy, upstream) = start_noop(1);
    for target in ["/v1/a%2Fb", "/v1/a%2fb", "/v1/a%5Cb"] {
        let r = request(envoy.port, "GET", target, &[]);
        assert_eq!(r.status, 400, "{target}");
    }
    assert_eq!(upstream.count(), 0);
}

#[test]
fn the_upstream_receives_the_normalized_path() {
    let (envoy, upstream) = start_noop(1);
    for (sent, forwarded) in [
        ("/v1/invoices/../admin", "/v1/admin"),
        ("/v1/./invoices/7", "/v1/invoices/7"),
        ("//v1///invoices//7", "/v1/invoices/7"),
    ] {
        let r = request(envoy.port, "GET", sent, &[]);
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(upstream.last().map(|s| s.path), Some(forwarded.to_owned()), "{sent}");
    }
}

#[test]
fn chunked_request_bodies_reach_the_upstream_whole() {
    let (envoy, upstream) = start_noop(1);
    let r = send_raw(
        envoy.port,
        b"POST /v1/refunds HTTP/1.1\r\nhost: api.local\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = upstream
        .last()
        .unwrap_or_else(|| panic!("nothing reached the upstream"));
    assert_eq!(
        (seen.method.as_str(), seen.body.as_slice()),
        ("POST", &b"hello world"[..])
    );
}

#[test]
fn try_start_returns_the_log_when_envoy_refuses_the_module() {
    let upstream = Upstream::start();
    let dir = std::env::temp_dir().join(format!("jitgate-e2e-notwasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let not_wasm = dir.join("not.wasm");
    std::fs::write(&not_wasm, b"this is not a wasm module").unwrap_or_else(|e| panic!("{e}"));

    let result = Envoy::try_start(EnvoyOptions {
        wasm: not_wasm,
        ..EnvoyOptions::noop(upstream.port)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let log = match result {
        Ok(envoy) => panic!("Envoy started with a module that is not Wasm:\n{}", envoy.log()),
        Err(log) => log,
    };
    assert!(log.contains("Envoy exited"), "{log}");
    assert!(
        log.to_ascii_lowercase().contains("wasm"),
        "the log names the Wasm failure:\n{log}"
    );
    assert_eq!(upstream.count(), 0);
}
