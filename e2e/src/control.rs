//! Starting the real control service (the `jitgate` binary that
//! `cargo test --workspace` builds) on a free port with a fresh SQLite
//! database, and acting as its users.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{call, Response};
use crate::{free_port, target_dir, workspace_root};

/// The ingest key of the development configuration.
pub const INGEST_KEY: &str = "dev-ingest-key-0123456789";

/// The `jitgate` binary: `JITGATE_CONTROL_BIN` if set (the control
/// benchmark points it at the release build), else the debug build in the
/// target directory. Panics with what to build if it is missing.
pub fn control_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JITGATE_CONTROL_BIN") {
        let path = PathBuf::from(path);
        assert!(path.exists(), "JITGATE_CONTROL_BIN={} does not exist", path.display());
        return path;
    }
    let path = target_dir().join("debug/jitgate");
    assert!(
        path.exists(),
        "{} is missing: run cargo build -p jitgate-control (scripts/test does)",
        path.display()
    );
    path
}

/// A running control service, killed when dropped.
pub struct Control {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile_dir::Dir,
    cfg: control::config::Config,
}

mod tempfile_dir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Groups of the test users (as in the control tests).
pub fn groups_of(user: &str) -> &'static [&'static str] {
    match user {
        "alice" | "eve" => &["dev"],
        "bob" | "carol" => &["payments-approvers"],
        "ada" => &["jit-admins", "auditors"],
        _ => &[],
    }
}

impl Control {
    /// Starts the service with the development configuration, edited.
    pub fn start(edit: impl FnOnce(String) -> String) -> Control {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("jitgate-e2e-control-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let text = fs::read_to_string(workspace_root().join("control/examples/jitgate.toml")).unwrap_or_default();
        let text = edit(text.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")));
        fs::write(dir.join("jitgate.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let cfg = control::config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut c = Control {
            child: None,
            port,
            dir: tempfile_dir::Dir(dir),
            cfg,
        };
        c.restart();
        c
    }

    /// (Re)starts the process on the same port and database.
    pub fn restart(&mut self) {
        let log = fs::File::create(self.dir.0.join("control.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(control_binary())
            .args(["serve", "--config", "jitgate.toml"])
            .current_dir(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn jitgate: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if call(self.port, "GET", "/readyz", &[], None).status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "control did not become ready:\n{}",
            fs::read_to_string(self.dir.0.join("control.log")).unwrap_or_default()
        );
    }

    /// The process id, while it runs (for measuring its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (`kill -9`).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A bearer token for a test user.
    pub fn token(&self, user: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        control::auth::dev_token(&self.cfg.auth, user, None, groups_of(user), 3600, now).unwrap_or_default()
    }

    /// Calls the API as a user.
    pub fn as_user(&self, user: &str, method: &str, path: &str, body: Option<Value>) -> Response {
        call(
            self.port,
            method,
            path,
            &[("authorization", format!("Bearer {}", self.token(user)))],
            body.as_ref(),
        )
    }

    /// Requests access as `user`, has `approver` approve it, and returns
    /// (request id, grant id, token).
    pub fn approved_grant(&self, user: &str, approver: &str, scope: Value, seconds: u64) -> (String, String, String) {
        let r = self.as_user(
            user,
            "POST",
            "/v1/requests",
            Some(json!({"resource": "payments-api", "scope": scope, "duration_seconds": seconds, "reason": "e2e"})),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
        let a = self.as_user(
            approver,
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(json!({"comment": "ok"})),
        );
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let t = self.as_user(user, "GET", &format!("/v1/requests/{id}/grant"), None);
        assert_eq!(t.status, 200, "{}", String::from_utf8_lossy(&t.body));
        let t = t.json();
        (
            id,
            t["grant_id"].as_str().unwrap_or_default().to_owned(),
            t["token"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// A sync call as a proxy naming itself (`x-jitgate-proxy`), the grant
    /// spec it implements and the resources it serves; returns the status.
    pub fn sync_as_proxy(&self, proxy: &str, grant_spec: &str, resources: &str) -> u16 {
        call(
            self.port,
            "GET",
            "/v1/revocations",
            &[
                ("authorization", format!("Bearer {INGEST_KEY}")),
                ("x-jitgate-proxy", proxy.to_owned()),
                ("x-jitgate-grant-spec", grant_spec.to_owned()),
                ("x-jitgate-resources", resources.to_owned()),
            ],
            None,
        )
        .status
    }

    /// Revokes a grant as `user`.
    pub fn revoke(&self, user: &str, grant_id: &str) {
        let r = self.as_user(
            user,
            "POST",
            &format!("/v1/grants/{grant_id}/revoke"),
            Some(json!({"reason": "e2e revoke"})),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    /// Audit records about a request, oldest first.
    pub fn audit_for(&self, request_id: &str) -> Vec<Value> {
        let r = self.as_user(
            "ada",
            "GET",
            &format!("/v1/audit?request_id={request_id}&limit=1000"),
            None,
        );
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// The allowed requests the proxies counted under a request's grants
    /// (`GET /v1/audit/counts`, as ada).
    pub fn counts_for(&self, request_id: &str) -> Vec<Value> {
        let r = self.as_user(
            "ada",
            "GET",
            &format!("/v1/audit/counts?request_id={request_id}&limit=1000"),
            None,
        );
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// The filter's plugin configuration for this control service.
    pub fn filter_config(&self, extra: &str, control_extra: &str) -> String {
        let keys: Vec<String> = [
            ("k1", "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"),
            ("k2", "nHq6SY5Wn3UwzrlAcsFzq-0vAZ3uHFHVU13ZQvQAlIU"),
        ]
        .iter()
        .map(|(k, s)| format!("\"{k}\":\"{s}\""))
        .collect();
        format!(
            r#"{{"issuer":"jit-control","keys":{{{}}},"resources":[{{"id":"payments-api","path_prefix":"/v1"}}],"control":{{"cluster":"jitgate_control","ingest_key":"{INGEST_KEY}","proxy_id":"envoy-e2e"{control_extra}}}{extra}}}"#,
            keys.join(",")
        )
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill();
    }
}
