//! A skip as `scripts/test` sees it: each test here runs itself again as a
//! child process (the probe) that skips, and checks what the child left.

use std::process::{Command, Output};

use jitgate_test_skip::{skip, Lacking, NO_SKIPS_VAR, REQUIRE_POSTGRES_VAR, SKIP_LOG_VAR};

/// Set in the child: skip for this reason instead of running the check.
const PROBE_VAR: &str = "JITGATE_SKIP_PROBE";

/// Runs `test` of this binary in a child with `env`, the skip log at `log`.
fn run_child(test: &str, log: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--test-threads=1"])
        .env(PROBE_VAR, "postgres")
        .env(SKIP_LOG_VAR, log)
        .env_remove(NO_SKIPS_VAR)
        .env_remove(REQUIRE_POSTGRES_VAR);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn probe() -> bool {
    if std::env::var_os(PROBE_VAR).is_some() {
        skip(Lacking::Postgres, "no server at 127.0.0.1:5432\n(test)");
        return true;
    }
    false
}

fn log_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("jitgate-skip-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_skip_passes_and_is_recorded_with_the_test_name_and_reason() {
    if probe() {
        return;
    }
    let log = log_path("recorded");
    let out = run_child("a_skip_passes_and_is_recorded_with_the_test_name_and_reason", &log, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recorded = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        recorded,
        "skip_log::a_skip_passes_and_is_recorded_with_the_test_name_and_reason\tno server at 127.0.0.1:5432 (test)\n"
    );
}

#[test]
fn no_skips_turns_a_skip_into_a_failure() {
    if probe() {
        return;
    }
    for var in [NO_SKIPS_VAR, REQUIRE_POSTGRES_VAR] {
        let log = log_path("forbidden");
        let out = run_child("no_skips_turns_a_skip_into_a_failure", &log, &[(var, "1")]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{var}=1: the skip passed: {stdout}");
        assert!(stdout.contains(&format!("{var}=1 forbids skipping")), "{stdout}");
        assert!(!log.exists(), "{var}=1: a forbidden skip is not recorded as a skip");
    }
}
