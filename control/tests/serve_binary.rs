//! The `jitgate` binary: `serve` on an empty directory creates and migrates
//! its SQLite database; `grant check` prints one line per vector.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serve_on_a_fresh_directory_creates_and_migrates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = include_str!("../examples/jitgate.toml").replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.path().join("jitgate.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["serve", "--config", "jitgate.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = None;
    while Instant::now() < deadline {
        if let Some(r) = get(port, "/readyz") {
            ready = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let openapi = get(port, "/openapi.json");
    let _ = child.kill();
    let _ = child.wait();
    let ready = ready.expect("the service answered /readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(dir.path().join("jitgate.db").exists(), "the SQLite file was created");
    let openapi = openapi.unwrap();
    assert!(
        openapi.contains("\"/v1/requests/{id}/approve\""),
        "OpenAPI is generated from the handlers"
    );
}

#[test]
fn grant_check_prints_one_line_per_case_with_its_outcome() {
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../grant/tests/data/grant-vectors.json");
    let out = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["grant", "check", vectors])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(vectors).unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cases = expected["cases"].as_array().unwrap();
    assert_eq!(lines.len(), cases.len());
    for (line, case) in lines.iter().zip(cases) {
        assert_eq!(
            *line,
            format!(
                "{}: {}",
                case["name"].as_str().unwrap(),
                case["expect"].as_str().unwrap()
            )
        );
    }
}
