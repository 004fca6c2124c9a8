//! Starting and stopping real Envoy for a test.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root};

/// The Envoy binary: `JITGATE_ENVOY`, else the one `scripts/setup`
/// installed into `.venv/`.
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JITGATE_ENVOY") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv");
    let real = fs::read_dir(venv.join("lib"))
        .ok()
        .and_then(|mut dirs| dirs.find_map(|d| d.ok()))
        .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
        .filter(|p| p.exists());
    let path = real.unwrap_or_else(|| venv.join("bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run scripts/setup",
        path.display()
    );
    path
}

/// How to start Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// The Wasm module.
    pub wasm: PathBuf,
    /// The filter's plugin configuration (JSON).
    pub plugin_config: String,
    /// Worker threads.
    pub concurrency: u32,
    /// Port of the upstream.
    pub upstream_port: u16,
    /// Port of the control service (unused ports are fine).
    pub control_port: u16,
    /// Log level (`info` by default; `debug` shows denials).
    pub log_level: &'static str,
}

impl EnvoyOptions {
    /// Options for the built filter with this configuration.
    pub fn new(plugin_config: impl Into<String>, upstream_port: u16) -> Self {
        EnvoyOptions {
            wasm: crate::filter_wasm(),
            plugin_config: plugin_config.into(),
            concurrency: 1,
            upstream_port,
            control_port: free_port(),
            log_level: "info",
        }
    }
}

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    /// The listener port.
    pub port: u16,
    /// The admin port.
    pub admin_port: u16,
    dir: PathBuf,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// Renders the template with the given values.
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

impl Envoy {
    /// Starts Envoy and waits until its listener answers; panics with the
    /// log if it does not.
    pub fn start(options: EnvoyOptions) -> Envoy {
        Envoy::try_start(options).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
    }

    /// Starts Envoy; `Err` carries Envoy's log when it refuses the
    /// configuration or never becomes ready.
    pub fn try_start(options: EnvoyOptions) -> Result<Envoy, String> {
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("jitgate-e2e-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (port, admin_port) = (free_port(), free_port());
        let template = fs::read_to_string(workspace_root().join("envoy-config/envoy.template.yaml"))
            .map_err(|e| format!("template: {e}"))?;
        let config = render(
            &template,
            &[
                ("LISTEN_PORT", port.to_string()),
                ("ADMIN_PORT", admin_port.to_string()),
                ("UPSTREAM_PORT", options.upstream_port.to_string()),
                ("CONTROL_PORT", options.control_port.to_string()),
                ("WASM_PATH", options.wasm.display().to_string()),
                // A single-quoted YAML scalar: quotes are doubled.
                ("PLUGIN_CONFIG", options.plugin_config.replace('\'', "''")),
            ],
        );
        let config_path = dir.join("envoy.yaml");
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log_path = dir.join("envoy.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &options.concurrency.to_string()])
            .args(["--log-level", options.log_level])
            .arg("--disable-hot-restart")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn envoy: {e}"))?;
        let mut envoy = Envoy {
            child,
            port,
            admin_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!("Envoy exited with {status}:\n{}", envoy.log()));
            }
            if envoy.admin_get("/ready").is_some_and(|r| r.trim() == "LIVE")
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Ok(envoy);
            }
            if Instant::now() > deadline {
                return Err(format!("Envoy was not ready in 30 s:\n{}", envoy.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The directory holding this instance's config and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// GET on the admin interface; `None` if it does not answer 200.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        TcpStream::connect(("127.0.0.1", self.admin_port)).ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        let response = crate::http::send_raw(self.admin_port, request.as_bytes());
        (response.status == 200).then(|| String::from_utf8_lossy(&response.body).into_owned())
    }

    /// POST on the admin interface (for `/quitquitquit`, `/logging`).
    pub fn admin_post(&self, path: &str) -> Option<String> {
        let request = format!("POST {path} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let response = crate::http::send_raw(self.admin_port, request.as_bytes());
        (response.status == 200).then(|| String::from_utf8_lossy(&response.body).into_owned())
    }

    /// A counter or gauge from `/stats` (0 if absent). The filter flushes
    /// its counters on a 100 ms tick, so a zero is re-read for a moment.
    pub fn stat(&self, name: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_millis(600);
        loop {
            let v = self.stat_now(name);
            if v > 0 || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter or gauge from `/stats`, as it is right now.
    pub fn stat_now(&self, name: &str) -> u64 {
        self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .and_then(|body| {
                body.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// The filter's decision counter for a code (`wasmcustom.jitgate.decisions.<code>`).
    pub fn decisions(&self, code: &str) -> u64 {
        self.stat(&format!("wasmcustom.jitgate.decisions.{code}"))
    }

    /// Stops Envoy (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
