//! The `jitgate` command drives the whole flow against a running control
//! service: a request waiting in one process, an approval from another,
//! and the printed grant passing through Envoy.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jitgate_e2e::control::{control_binary, Control};
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::get_with_grant;
use jitgate_e2e::upstream::Upstream;

fn jitgate(control: &Control, user: &str) -> Command {
    let mut cmd = Command::new(control_binary());
    cmd.env("JITGATE_URL", format!("http://127.0.0.1:{}", control.port))
        .env("JITGATE_TOKEN", control.token(user))
        // No profile file: the environment is the profile.
        .env("HOME", std::env::temp_dir());
    cmd
}

fn run(mut cmd: Command) -> (bool, String, String) {
    let out = cmd.output().expect("run jitgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn request_wait_approve_elsewhere_and_the_printed_grant_passes_envoy() {
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let mut options = EnvoyOptions::new(control.filter_config("", ""), upstream.port);
    options.control_port = control.port;
    let envoy = Envoy::start(options);

    let mut waiting = jitgate(&control, "alice")
        .args([
            "request",
            "payments-api",
            "--method",
            "GET",
            "--path",
            "/v1/invoices/*",
            "--for",
            "30m",
        ])
        .args(["--reason", "INC-7: reconcile invoices", "--ticket", "INC-7", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jitgate request --wait");

    // Bob finds it among pending requests and approves it from another process.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let mut list = jitgate(&control, "bob");
        list.args(["requests", "--pending", "--json"]);
        let (ok, out, err) = run(list);
        assert!(ok, "{err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        if let Some(id) = list.as_array().and_then(|a| a.first()).and_then(|r| r["id"].as_str()) {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "the request never appeared");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut table = jitgate(&control, "bob");
    table.args(["requests", "--pending"]);
    let (_, out, _) = run(table);
    assert!(out.contains(&id) && out.contains("INC-7: reconcile invoices"), "{out}");
    let mut approve = jitgate(&control, "bob");
    approve.args(["approve", &id, "-m", "ok"]);
    let (ok, out, err) = run(approve);
    assert!(ok && out.contains("approved"), "{out}{err}");

    // The waiting process ends once it sees the approval (it polls); bounded,
    // so a process that never notices fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = waiting.try_wait().expect("the waiting request runs") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = waiting.kill();
            panic!("jitgate request --wait did not end within 60 s of the approval");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut token = String::new();
    waiting.stdout.take().unwrap().read_to_string(&mut token).unwrap();
    let mut progress = String::new();
    waiting.stderr.take().unwrap().read_to_string(&mut progress).unwrap();
    assert!(status.success(), "{progress}");
    assert!(
        progress.contains("pending: 0/1 approvals"),
        "live progress is shown: {progress}"
    );
    let token = token.trim();
    assert_eq!(get_with_grant(envoy.port, "/v1/invoices/INV-7", token).status, 200);

    // The same grant from `jitgate token`, and errors as one sentence.
    let mut again = jitgate(&control, "alice");
    again.args(["token", &id, "--env"]);
    let (ok, out, _) = run(again);
    assert!(ok && out.trim() == format!("export JITGATE_GRANT={token}"), "{out}");
    let mut not_mine = jitgate(&control, "bob");
    not_mine.args(["token", &id]);
    let (ok, _, err) = run(not_mine);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    assert!(err.contains("not_the_requester"), "{err}");

    let mut verify = jitgate(&control, "ada");
    verify.args(["audit", "verify"]);
    let (ok, out, err) = run(verify);
    assert!(ok && out.starts_with("ok:"), "{out}{err}");
    let mut tail = jitgate(&control, "ada");
    tail.args(["audit", "tail", "-n", "50"]);
    let (_, out, _) = run(tail);
    assert!(out.contains("grant.issued") && out.contains("vote.approve"), "{out}");
}

#[test]
fn keys_generate_prints_both_config_forms() {
    let mut cmd = Command::new(control_binary());
    cmd.args(["keys", "generate", "--kid", "k-2026-11"]);
    let (ok, out, _) = run(cmd);
    assert!(ok);
    assert!(out.contains("kid = \"k-2026-11\""), "{out}");
    let secret = out.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap();
    assert!(grant::SigningKey::from_base64url("k-2026-11", secret).is_ok());
    assert!(out.contains(&format!("\"k-2026-11\": \"{secret}\"")));
}

#[test]
fn request_with_a_start_schedules_the_window_and_a_bad_start_is_one_sentence() {
    let control = Control::start(|c| c);
    let ask = |start: &str| {
        let mut cmd = jitgate(&control, "alice");
        cmd.args([
            "--json",
            "request",
            "payments-api",
            "--method",
            "GET",
            "--path",
            "/v1/invoices/*",
        ])
        .args(["--for", "30m", "--reason", "month-end close", "--start", start]);
        run(cmd)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (ok, out, err) = ask("+2h");
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let starts_at = created["starts_at"].as_i64().expect("starts_at");
    assert!((now + 7200..now + 7210).contains(&starts_at), "{created}");
    let (ok, out, err) = ask("2126-01-01T00:00:00Z");
    assert!(
        !ok && out.is_empty() && err.contains("starts_at_invalid"),
        "too far ahead: {err}"
    );
    let (ok, _, err) = ask("yesterday");
    assert!(
        !ok && err.trim().lines().count() == 1 && err.contains("--start"),
        "{err}"
    );
}
