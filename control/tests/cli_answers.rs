//! The `jitgate` command never reports a success it did not get: against a
//! server that answers 200 with the wrong shape, or the jitgate gateway
//! instead of the control service, every command fails with a sentence
//! naming the URL and what came back. Also what a new user meets first:
//! the help, durations, `cancel`, `revoke`, `audit tail`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::json;

/// A server that answers every request with one status and body, and
/// remembers the request lines it saw.
struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn stub(status: u16, body: &'static str) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            log.lock().unwrap().push(line.trim().to_owned());
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body_in = vec![0; length];
            let _ = reader.read_exact(&mut body_in);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Stub { url, seen }
}

fn jitgate(url: &str, token: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(args)
        .env("JITGATE_URL", url)
        .env("JITGATE_TOKEN", token)
        .env("HOME", home.path())
        .output()
        .unwrap()
}

const COMMANDS: &[&[&str]] = &[
    &[
        "request",
        "payments-api",
        "--method",
        "GET",
        "--path",
        "/v1/invoices/*",
        "--for",
        "30m",
        "--reason",
        "INC-1",
    ],
    &["requests"],
    &["requests", "--pending"],
    &["approve", "req_x"],
    &["deny", "req_x", "-m", "no"],
    &["cancel", "req_x"],
    &["revoke", "g_x", "--reason", "done"],
    &["token", "req_x"],
    &["token", "req_x", "--env"],
    &["audit", "tail"],
    &["audit", "verify"],
    &["audit", "verify", "--full"],
    &["audit", "export"],
    &["audit", "export", "--from", "1", "--to", "2"],
];

#[test]
fn every_command_fails_clearly_on_a_success_of_the_wrong_shape() {
    let server = stub(200, r#"{"ok": false}"#);
    for args in COMMANDS {
        let out = jitgate(&server.url, "t", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} reported success: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("unexpected answer from") && stderr.contains(&server.url),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(r#"{\"ok\": false}"#),
            "{args:?} says what came back: {stderr}"
        );
        assert!(
            !stderr.contains("seq null"),
            "{args:?}: no false tamper alarm: {stderr}"
        );
    }
}

#[test]
fn every_command_explains_an_answer_from_the_gateway() {
    let server = stub(
        403,
        r#"{"error":"no_resource","message":"no protected resource matches this request","resource":null}"#,
    );
    for args in COMMANDS {
        let out = jitgate(&server.url, "t", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("jitgate gateway") && stderr.contains("no_resource") && stderr.contains("JITGATE_URL"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn durations_that_overflow_or_have_no_unit_are_refused_before_any_call() {
    let server = stub(201, "{}");
    for (duration, says) in [
        ("573898704515408273h", "too long"),
        ("600", "--for 30m"),
        ("1.5s", "whole number of seconds"),
    ] {
        let out = jitgate(
            &server.url,
            "t",
            &[
                "request",
                "payments-api",
                "--method",
                "GET",
                "--path",
                "/x",
                "--for",
                duration,
                "--reason",
                "r",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{duration}");
        assert!(stderr.contains(says), "{duration}: {stderr}");
    }
    assert!(server.seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[test]
fn the_help_names_the_environment_and_the_profile_file() {
    let out = jitgate("http://unused", "t", &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "JITGATE_URL",
        "JITGATE_TOKEN",
        "~/.config/jitgate/config.toml",
        "cancel",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn revoke_requires_a_reason() {
    let server = stub(200, "{}");
    let out = jitgate(&server.url, "t", &["revoke", "g_x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    assert!(server.seen.lock().unwrap().is_empty());
}

#[test]
fn audit_tail_asks_for_the_newest_records_and_prints_readable_times() {
    let server = stub(
        200,
        r#"[{"seq": 41, "at": 1700000000123, "actor": "bob", "action": "vote.approve", "resource": "payments-api",
             "request_id": "req_1", "grant_id": null, "channel": "api", "details": {"comment": "ok"},
             "prev_hash": "00", "hash": "11"}]"#,
    );
    let out = jitgate(&server.url, "t", &["audit", "tail", "-n", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("2023-11-14T22:13:20Z") && stdout.contains("vote.approve"),
        "{stdout}"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["GET /v1/audit?order=desc&limit=5 HTTP/1.1"],
        "no chain verification"
    );
}

#[test]
fn audit_verify_reads_new_records_by_default_and_everything_with_full() {
    let server = stub(
        200,
        r#"{"ok": true, "records": 7, "from": 120, "checkpoints": 1, "first_broken": null}"#,
    );
    let incremental = jitgate(&server.url, "t", &["audit", "verify"]);
    let full = jitgate(&server.url, "t", &["audit", "verify", "--full"]);
    assert!(incremental.status.success() && full.status.success());
    assert_eq!(
        String::from_utf8_lossy(&incremental.stdout),
        "ok: 7 records checked after record 120 (verified before; --full reads everything), 1 signed checkpoints, chain intact\n"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "GET /v1/audit/verify HTTP/1.1",
            "GET /v1/audit/verify?full=true HTTP/1.1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_says_already_revoked_the_second_time_and_cancel_withdraws() {
    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let req = app.request_access("alice", "payments-api", 600).await;
    let id = req["id"].as_str().unwrap().to_owned();
    let (status, approved) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(status, 200, "{approved}");
    let grant = approved["grant"]["id"].as_str().unwrap().to_owned();
    let (base, bob, alice) = (app.base.clone(), app.token("bob"), app.token("alice"));
    let cli = tokio::task::spawn_blocking(move || {
        let listed = jitgate(&base, &alice, &["requests", "--mine"]);
        let first = jitgate(&base, &bob, &["revoke", &grant, "--reason", "done"]);
        let second = jitgate(&base, &bob, &["revoke", &grant, "--reason", "done"]);
        (grant, listed, first, second)
    });
    let (grant, listed, first, second) = cli.await.unwrap();
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text(&listed).contains(&grant),
        "the table shows the grant id: {}",
        text(&listed)
    );
    assert_eq!(text(&first).trim(), format!("revoked {grant}"));
    assert!(text(&second).contains("already revoked"), "{}", text(&second));

    let pending = app.request_access("alice", "payments-api", 600).await;
    let pending_id = pending["id"].as_str().unwrap().to_owned();
    let (base, alice) = (app.base.clone(), app.token("alice"));
    let to_cancel = pending_id.clone();
    let cancelled = tokio::task::spawn_blocking(move || jitgate(&base, &alice, &["cancel", &to_cancel]))
        .await
        .unwrap();
    assert_eq!(text(&cancelled).trim(), format!("{pending_id}\tcancelled"));
    app.finish().await;
}

#[test]
fn request_dry_run_prints_the_preview_and_creates_nothing() {
    let server = stub(
        200,
        r#"{"resource": "payments-api", "preview": {"api_title": "Payments API", "api_version": "1.0",
            "total_operations": 2,
            "covered": [{"method": "GET", "template": "/v1/invoices/{id}", "pattern": "/v1/invoices/*",
                         "operation_id": "getInvoice", "summary": "One invoice", "coverage": "all", "rules": [0]}],
            "not_covered": [{"method": "DELETE", "template": "/v1/invoices/{id}", "pattern": "/v1/invoices/*",
                             "operation_id": "voidInvoice", "summary": null}],
            "findings": []}}"#,
    );
    let out = jitgate(
        &server.url,
        "t",
        &[
            "request",
            "payments-api",
            "--method",
            "GET",
            "--path",
            "/v1/invoices/*",
            "--for",
            "30m",
            "--reason",
            "INC-7",
            "--dry-run",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout,
        "Payments API 1.0: 1 of 2 operations allowed\n  + GET /v1/invoices/{id} [getInvoice] One invoice\n  - DELETE /v1/invoices/{id} [voidInvoice]\n"
    );
    assert_eq!(server.seen.lock().unwrap().clone(), ["POST /v1/preview HTTP/1.1"]);
}
