//! The real `jitgate` binary killed with SIGKILL after records were
//! acknowledged but before their checkpoint was published: once restarted,
//! its next checkpoint covers them, and the witness verifies every
//! acknowledged record with no gap.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use control::audit::checkpoint::CheckpointSigner;
use serde_json::{json, Value};

const INGEST_KEY: &str = "dev-ingest-key-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["serve", "--config", "jitgate.toml"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service did not become ready");
}

/// Posts `n` proxy decisions; returns the last seq acknowledged.
async fn ingest(http: &reqwest::Client, base: &str, n: usize) -> u64 {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"time_ms": 1_700_000_000_000i64 + i as i64, "outcome": "allow", "method": "GET", "path": format!("/v1/invoices/{i}"), "status": 200}))
        .collect();
    let r = http
        .post(format!("{base}/v1/audit/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"proxy": "envoy-1", "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    body["last_seq"].as_u64().unwrap()
}

fn largest_checkpoint(witness: &Path) -> u64 {
    std::fs::read_dir(witness)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".checkpoint")?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

async fn wait_for_checkpoint(witness: &Path, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while largest_checkpoint(witness) < size {
        assert!(Instant::now() < deadline, "no checkpoint of size {size} was published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn after_a_kill_between_commit_and_publication_the_next_checkpoint_covers_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness");
    let port = free_port();
    let signer = CheckpointSigner::generate("jit.test/audit", [5; 32]).unwrap();
    let config = format!(
        "{}\n[audit]\nsigning_key = {{ value = \"{}\" }}\nwitness_dir = \"{}\"\ncheckpoint_every_records = 1000000\ncheckpoint_every_seconds = 4\n",
        include_str!("../examples/jitgate.toml").replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")),
        signer.private_text(),
        witness.display()
    );
    std::fs::write(dir.path().join("jitgate.toml"), config).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut first = start(dir.path());
    wait_ready(&http, &base).await;
    let signed = ingest(&http, &base, 5).await;
    wait_for_checkpoint(&witness, signed).await;
    // Acknowledged, then killed well before the next checkpoint is due.
    let acknowledged = ingest(&http, &base, 7).await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(largest_checkpoint(&witness) < acknowledged, "killed before publication");

    let mut second = start(dir.path());
    wait_ready(&http, &base).await;
    wait_for_checkpoint(&witness, acknowledged).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let key = dir.path().join("audit.pub");
    std::fs::write(&key, signer.verifier().text()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["--json", "audit", "verify", "--full", "--witness"])
        .arg(&witness)
        .arg("--public-key")
        .arg(&key)
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert!(report["signed_size"].as_u64().unwrap() >= acknowledged, "{report}");
    assert_eq!(report["unsigned_records"], 0, "{report}");
}
