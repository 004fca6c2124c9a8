//! A PostgreSQL server of the test's own (Debian's `initdb` and `pg_ctl`
//! into a temporary directory, on a free port), for tests that stop or
//! break the database: the machine's server is left as it was found.

use std::path::PathBuf;
use std::process::Command;

use crate::free_port;

/// A private PostgreSQL cluster, stopped and removed on drop.
pub struct LocalPostgres {
    dir: PathBuf,
    /// Its port.
    pub port: u16,
}

fn as_postgres(args: &[&str]) -> std::io::Result<std::process::Output> {
    // initdb refuses to run as root; the Debian packages create `postgres`.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c.args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.output()
}

impl LocalPostgres {
    /// Creates and starts a cluster; `None` (a recorded skip, see
    /// `jitgate_test_skip`) when the PostgreSQL binaries are missing.
    pub fn start() -> Option<LocalPostgres> {
        let have = Command::new("initdb")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            jitgate_test_skip::skip(
                jitgate_test_skip::Lacking::Postgres,
                "PostgreSQL binaries (initdb, pg_ctl) not found",
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!("jitgate-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).ok()?;
        let _ = Command::new("chown")
            .args(["postgres:postgres", &dir.display().to_string()])
            .output();
        let data = dir.join("data");
        let out = as_postgres(&[
            "initdb",
            "-D",
            &data.display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ])
        .unwrap_or_else(|e| panic!("initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = LocalPostgres { dir, port: free_port() };
        pg.ctl("start");
        Some(pg)
    }

    fn ctl(&self, action: &str) {
        self.ctl_with(action, "fast");
    }

    fn ctl_with(&self, action: &str, mode: &str) {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("pg.log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let mut args = vec!["pg_ctl", "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", action];
        if action != "start" {
            args.extend(["-m", mode]);
        }
        let out = as_postgres(&args).unwrap_or_else(|e| panic!("pg_ctl {action}: {e}"));
        assert!(
            out.status.success(),
            "pg_ctl {action} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Stops the server as a crash would (immediate shutdown: no
    /// checkpoint, so the next start runs crash recovery from the WAL).
    pub fn crash(&self) {
        self.ctl_with("stop", "immediate");
    }

    /// Starts it again.
    pub fn resume(&self) {
        self.ctl("start");
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = as_postgres(&["pg_ctl", "-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
