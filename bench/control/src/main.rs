//! `jitgate-bench-control`: a benchmark of the jitgate control service.
//!
//! It starts the real `jitgate` binary as deployed (`target/service/jitgate`,
//! from `cargo build --profile service -p jitgate-control`) on a fresh database,
//! SQLite and then PostgreSQL (a new database on the server at
//! 127.0.0.1:5432, dropped at the end; skipped with a message when the
//! server is not reachable), and measures:
//!
//! 1. access requests created and approved per second, by concurrent
//!    clients on keep-alive connections, with p50/p99 cycle latency;
//! 2. the audit ingest rate of proxy decisions in the filter's batch size,
//!    then checks that every acknowledged event is stored and the hash
//!    chain verifies;
//! 3. approve-to-usable latency through real Envoy with the built filter
//!    (`target/wasm32-wasip1/release/jitgate_filter.wasm`, from
//!    `scripts/build-wasm`);
//! 4. revoke-to-enforced latency at every Envoy worker, with the filter's
//!    control link at its default poll interval.
//!
//! It prints a table per backend, and with `--json <path>` writes every
//! figure (with units, backend, date and settings) for other scripts to
//! merge. Run it in release mode:
//!
//! ```sh
//! cargo build --profile service -p jitgate-control && scripts/build-wasm
//! cargo run --profile service -p jitgate-bench-control -- --json /tmp/control.json
//! ```

mod api;
mod latency;
mod load;
mod postgres;
mod stats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::upstream::Upstream;

/// The filter's default `control.poll_interval_ms` (`filter/src/config.rs`):
/// the benchmark leaves it unset so the filter uses it.
const FILTER_DEFAULT_POLL_MS: u64 = 1000;

/// The filter's default `control.report_batch` (`filter/src/config.rs`).
const FILTER_DEFAULT_REPORT_BATCH: usize = 500;

/// Envoy workers for the latency measurements (each runs its own Wasm VM).
const ENVOY_WORKERS: u32 = 2;

/// Target: request+approve cycles per second on SQLite.
const TARGET_CYCLES_PER_S: f64 = 1000.0;
/// Target: audit events ingested per second on SQLite.
const TARGET_EVENTS_PER_S: f64 = 20_000.0;
/// Target: worst revoke-to-enforced latency (ms), every backend.
const TARGET_REVOKE_MS: f64 = 1500.0;

/// Which databases to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backends {
    /// SQLite, then PostgreSQL.
    Both,
    /// SQLite only.
    Sqlite,
    /// PostgreSQL only.
    Postgres,
}

/// Command-line settings.
#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmark of the jitgate control service (SQLite and PostgreSQL)")]
struct Args {
    /// Seconds measured per throughput phase.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up before each throughput phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent clients creating and approving requests.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Concurrent proxies posting decision batches.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Decisions per batch (the filter's default `report_batch`).
    #[arg(long, default_value_t = FILTER_DEFAULT_REPORT_BATCH)]
    batch: usize,
    /// Repetitions of the approve-to-usable measurement.
    #[arg(long, default_value_t = 20)]
    usable_reps: usize,
    /// Repetitions of the revoke-to-enforced measurement.
    #[arg(long, default_value_t = 10)]
    revoke_reps: usize,
    /// Which backends to measure.
    #[arg(long, value_enum, default_value_t = Backends::Both)]
    backend: Backends,
    /// The PostgreSQL database to connect to first (a fresh one is created
    /// next to it for the run).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// The control binary (default: `JITGATE_CONTROL_BIN`, else
    /// `target/service/jitgate`).
    #[arg(long)]
    control_bin: Option<PathBuf>,
    /// Skip the measurements through Envoy (3 and 4).
    #[arg(long)]
    skip_envoy: bool,
    /// Threads of the benchmark's own client runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One figure: what, how much, in which unit.
#[derive(Debug, Clone)]
struct Figure {
    /// Stable machine name, e.g. `cycles_per_second`.
    name: &'static str,
    /// The value.
    value: f64,
    /// Its unit.
    unit: &'static str,
}

/// One target and whether it holds.
#[derive(Debug, Clone)]
struct TargetCheck {
    /// What is required, e.g. `SQLite request+approve cycles >= 1000/s`.
    name: String,
    /// The measured value.
    value: f64,
    /// Its unit.
    unit: String,
    /// Whether it holds.
    holds: bool,
}

/// Everything measured on one backend.
#[derive(Debug, Default, Clone)]
struct BackendRun {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    /// The figures, in order.
    figures: Vec<Figure>,
    /// Problems worth reporting (errors, mismatches).
    notes: Vec<String>,
    /// Targets checked on this backend.
    targets: Vec<TargetCheck>,
    /// Why the backend (or part of it) was skipped.
    skipped: Option<String>,
}

impl BackendRun {
    fn figure(&mut self, name: &'static str, value: f64, unit: &'static str) {
        self.figures.push(Figure { name, value, unit });
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.name == name).map(|f| f.value)
    }
}

/// The control binary to run, made known to the e2e harness through
/// `JITGATE_CONTROL_BIN`.
fn control_binary(args: &Args) -> Result<PathBuf, String> {
    let path = args
        .control_bin
        .clone()
        .or_else(|| std::env::var_os("JITGATE_CONTROL_BIN").map(PathBuf::from))
        .unwrap_or_else(|| jitgate_e2e::target_dir().join("service/jitgate"));
    std::fs::canonicalize(&path).map_err(|e| {
        format!(
            "{}: {e}: build it with cargo build --profile service -p jitgate-control",
            path.display()
        )
    })
}

/// The control configuration for a database URL (the development
/// configuration, as the e2e harness writes it).
fn with_database(url: Option<String>) -> impl FnOnce(String) -> String {
    move |text| match url {
        Some(url) => text.replace(
            "database_url = \"sqlite://jitgate.db\"",
            &format!("database_url = \"{url}\""),
        ),
        None => text,
    }
}

/// Runs every measurement against one started control service.
fn measure(args: &Args, rt: &tokio::runtime::Runtime, control: &Control, run: &mut BackendRun) {
    let target = api::Target::of(control);
    let window = load::Window {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
    };

    eprintln!("[{}] request+approve cycles: {} clients", run.backend, args.clients);
    let cycles = rt.block_on(load::cycles(&target, args.clients, window, control.pid()));
    run.figure("cycles_per_second", cycles.per_second, "cycles/s");
    run.figure("cycle_p50", cycles.p50_ms, "ms");
    run.figure("cycle_p99", cycles.p99_ms, "ms");
    run.figure("cycles_completed", cycles.completed as f64, "cycles");
    run.figure("cycle_errors", cycles.errors.count as f64, "calls");
    if let Some(cpu) = cycles.cpu_ms_per_cycle {
        run.figure("control_cpu_per_cycle", cpu, "ms");
    }
    if let Some(e) = &cycles.errors.first {
        run.notes
            .push(format!("{} failed cycle calls; first: {e}", cycles.errors.count));
    }

    // The ingest events name a real grant and request, as the filter's do.
    let sample = match cycles.sample {
        Some(id) => rt
            .block_on(api::fetch_grant(&api::client(), &target, &id))
            .map(|(grant, _)| (id, grant)),
        None => Err("no request was approved".to_owned()),
    };
    match sample {
        Ok((request_id, grant_id)) => {
            eprintln!(
                "[{}] audit ingest: {} senders, batches of {}",
                run.backend, args.senders, args.batch
            );
            match rt.block_on(load::ingest(
                &target,
                args.senders,
                args.batch,
                window,
                &request_id,
                &grant_id,
                control.pid(),
            )) {
                Ok(i) => {
                    run.figure("ingest_events_per_second", i.per_second, "events/s");
                    run.figure("ingest_batch_p50", i.batch_p50_ms, "ms");
                    run.figure("ingest_batch_p99", i.batch_p99_ms, "ms");
                    run.figure("ingest_acknowledged", i.acknowledged as f64, "events");
                    run.figure("ingest_stored", i.stored as f64, "events");
                    run.figure("ingest_errors", i.errors.count as f64, "calls");
                    run.figure("audit_chain_intact", f64::from(u8::from(i.chain_intact)), "bool");
                    run.figure("audit_chain_records", i.chain_records as f64, "records");
                    run.figure("audit_verify_time", i.verify_ms, "ms");
                    if let Some(cpu) = i.cpu_ms_per_1000_events {
                        run.figure("control_cpu_per_1000_events", cpu, "ms");
                    }
                    if i.stored != i.acknowledged as i64 {
                        run.notes.push(format!(
                            "MISMATCH: {} events acknowledged but the chain grew by {}",
                            i.acknowledged, i.stored
                        ));
                    }
                    if !i.chain_intact {
                        run.notes.push("the audit chain does NOT verify".into());
                    }
                    if let Some(e) = &i.errors.first {
                        run.notes.push(format!("{} failed posts; first: {e}", i.errors.count));
                    }
                }
                Err(e) => run.notes.push(format!("ingest failed: {e}")),
            }
        }
        Err(e) => run.notes.push(format!("ingest skipped: {e}")),
    }

    if args.skip_envoy {
        return;
    }
    eprintln!("[{}] through Envoy ({ENVOY_WORKERS} workers)", run.backend);
    let upstream = Upstream::start();
    let mut options = EnvoyOptions::new(control.filter_config("", ""), upstream.port);
    options.control_port = control.port;
    options.concurrency = ENVOY_WORKERS;
    let envoy = Envoy::start(options);
    // A fresh Envoy has an empty revocation list until its first poll
    // answers (within one poll interval): let the control link settle so
    // the measurements see it running.
    std::thread::sleep(Duration::from_millis(FILTER_DEFAULT_POLL_MS + 200));
    match rt.block_on(latency::approve_to_usable(&target, envoy.port, args.usable_reps)) {
        Ok(l) => {
            run.figure("approve_to_usable_repetitions", l.repetitions as f64, "repetitions");
            run.figure("approve_to_usable_median", l.median_ms, "ms");
            run.figure("approve_to_usable_worst", l.worst_ms, "ms");
        }
        Err(e) => run.notes.push(format!("approve-to-usable failed: {e}")),
    }
    match rt.block_on(latency::revoke_to_enforced(
        &target,
        envoy.port,
        args.revoke_reps,
        Duration::from_millis(FILTER_DEFAULT_POLL_MS),
    )) {
        Ok(l) => {
            run.figure("revoke_to_enforced_repetitions", l.repetitions as f64, "repetitions");
            run.figure("revoke_to_enforced_median", l.median_ms, "ms");
            run.figure("revoke_to_enforced_worst", l.worst_ms, "ms");
        }
        Err(e) => run.notes.push(format!("revoke-to-enforced failed: {e}")),
    }
    let (intact, records) = rt.block_on(api::verify(&api::client(), &target)).unwrap_or((false, -1));
    if !intact {
        run.notes.push(format!(
            "the audit chain does NOT verify at the end ({records} records)"
        ));
    }
}

/// Checks the targets that apply to a backend's figures.
fn check_targets(run: &mut BackendRun) {
    let sqlite = run.backend == "sqlite";
    if let (true, Some(v)) = (sqlite, run.get("cycles_per_second")) {
        run.targets.push(TargetCheck {
            name: format!("SQLite request+approve cycles >= {TARGET_CYCLES_PER_S}/s"),
            value: v,
            unit: "cycles/s".into(),
            holds: v >= TARGET_CYCLES_PER_S,
        });
    }
    if let (true, Some(v)) = (sqlite, run.get("ingest_events_per_second")) {
        run.targets.push(TargetCheck {
            name: format!("SQLite audit ingest >= {TARGET_EVENTS_PER_S}/s"),
            value: v,
            unit: "events/s".into(),
            holds: v >= TARGET_EVENTS_PER_S,
        });
    }
    if let (Some(a), Some(s)) = (run.get("ingest_acknowledged"), run.get("ingest_stored")) {
        let intact = run.get("audit_chain_intact") == Some(1.0);
        run.targets.push(TargetCheck {
            name: format!("{}: every acknowledged event stored, chain intact", run.backend),
            value: s,
            unit: format!(
                "events stored of {a} acknowledged, chain {}",
                if intact { "intact" } else { "BROKEN" }
            ),
            holds: a == s && intact,
        });
    }
    if let Some(v) = run.get("revoke_to_enforced_worst") {
        run.targets.push(TargetCheck {
            name: format!("{}: revoke-to-enforced worst < {TARGET_REVOKE_MS} ms", run.backend),
            value: v,
            unit: "ms".into(),
            holds: v < TARGET_REVOKE_MS,
        });
    }
}

/// Starts the control service on a backend, measures, and cleans up.
fn run_backend(args: &Args, rt: &tokio::runtime::Runtime, backend: &'static str) -> BackendRun {
    let mut run = BackendRun {
        backend,
        ..BackendRun::default()
    };
    let database = if backend == "postgres" {
        match rt.block_on(postgres::FreshDatabase::create(&args.postgres_url)) {
            Ok(db) => Some(db),
            Err(e) => {
                println!("SKIPPED: the PostgreSQL part is skipped: {e}");
                run.skipped = Some(e);
                return run;
            }
        }
    } else {
        None
    };
    {
        let control = Control::start(with_database(database.as_ref().map(postgres::FreshDatabase::url)));
        measure(args, rt, &control, &mut run);
    }
    if let Some(db) = database {
        let name = db.name.clone();
        if let Err(e) = rt.block_on(db.drop_database()) {
            run.notes.push(format!("could not drop database {name}: {e}"));
        }
    }
    check_targets(&mut run);
    run
}

/// A figure as the table shows it.
fn show(run: &BackendRun, name: &str, digits: usize) -> String {
    run.get(name)
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// Prints one backend's table.
fn print_table(args: &Args, run: &BackendRun) {
    println!();
    println!("== control service on {} ==", run.backend);
    if let Some(why) = &run.skipped {
        println!("skipped: {why}");
        return;
    }
    println!(
        "{:<36} {:>14} {:>12} {:>12}",
        "measurement", "rate", "p50 / median", "p99 / worst"
    );
    println!(
        "{:<36} {:>10} c/s {:>9} ms {:>9} ms",
        format!("request+approve ({} clients)", args.clients),
        show(run, "cycles_per_second", 0),
        show(run, "cycle_p50", 2),
        show(run, "cycle_p99", 2)
    );
    println!(
        "{:<36} {:>10} e/s {:>9} ms {:>9} ms",
        format!("audit ingest ({}x{} batches)", args.senders, args.batch),
        show(run, "ingest_events_per_second", 0),
        show(run, "ingest_batch_p50", 2),
        show(run, "ingest_batch_p99", 2)
    );
    println!(
        "{:<36} {:>14} {:>9} ms {:>9} ms",
        format!("approve-to-usable ({}x)", args.usable_reps),
        "",
        show(run, "approve_to_usable_median", 2),
        show(run, "approve_to_usable_worst", 2)
    );
    println!(
        "{:<36} {:>14} {:>9} ms {:>9} ms",
        format!("revoke-to-enforced ({}x)", args.revoke_reps),
        "",
        show(run, "revoke_to_enforced_median", 0),
        show(run, "revoke_to_enforced_worst", 0)
    );
    println!(
        "cycles completed {}, failed calls {}; ingest acknowledged {}, stored {}, failed posts {}; chain {} ({} records, verified in {} ms)",
        show(run, "cycles_completed", 0),
        show(run, "cycle_errors", 0),
        show(run, "ingest_acknowledged", 0),
        show(run, "ingest_stored", 0),
        show(run, "ingest_errors", 0),
        if run.get("audit_chain_intact") == Some(1.0) { "intact" } else { "NOT verified" },
        show(run, "audit_chain_records", 0),
        show(run, "audit_verify_time", 0),
    );
    println!(
        "control service CPU: {} ms per cycle, {} ms per 1000 events ingested (of {} cores, shared with the clients)",
        show(run, "control_cpu_per_cycle", 3),
        show(run, "control_cpu_per_1000_events", 1),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for t in &run.targets {
        println!(
            "target {}: {} ({:.0} {})",
            if t.holds { "holds" } else { "MISSED" },
            t.name,
            t.value,
            t.unit
        );
    }
    for n in &run.notes {
        println!("note: {n}");
    }
}

/// A Markdown table of every backend's figures, one column per backend
/// (for the results file `bench/run.py` writes).
fn markdown(args: &Args, runs: &[BackendRun]) -> String {
    let pair = |r: &BackendRun, a: &str, b: &str, digits: usize| {
        if r.skipped.is_some() {
            "skipped".to_owned()
        } else {
            format!("{} / {}", show(r, a, digits), show(r, b, digits))
        }
    };
    let one = |r: &BackendRun, a: &str, digits: usize| {
        if r.skipped.is_some() {
            "skipped".to_owned()
        } else {
            show(r, a, digits)
        }
    };
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            format!("request+approve cycles/s ({} clients)", args.clients),
            runs.iter().map(|r| one(r, "cycles_per_second", 0)).collect(),
        ),
        (
            "cycle latency p50 / p99 (ms)".into(),
            runs.iter().map(|r| pair(r, "cycle_p50", "cycle_p99", 1)).collect(),
        ),
        (
            "control CPU per cycle (ms)".into(),
            runs.iter().map(|r| one(r, "control_cpu_per_cycle", 2)).collect(),
        ),
        (
            format!(
                "audit ingest events/s ({} senders, batches of {})",
                args.senders, args.batch
            ),
            runs.iter().map(|r| one(r, "ingest_events_per_second", 0)).collect(),
        ),
        (
            "batch latency p50 / p99 (ms)".into(),
            runs.iter()
                .map(|r| pair(r, "ingest_batch_p50", "ingest_batch_p99", 1))
                .collect(),
        ),
        (
            "control CPU per 1000 events (ms)".into(),
            runs.iter().map(|r| one(r, "control_cpu_per_1000_events", 1)).collect(),
        ),
        (
            "events acknowledged / stored".into(),
            runs.iter()
                .map(|r| pair(r, "ingest_acknowledged", "ingest_stored", 0))
                .collect(),
        ),
        (
            "audit chain verified: records / ms".into(),
            runs.iter()
                .map(|r| pair(r, "audit_chain_records", "audit_verify_time", 0))
                .collect(),
        ),
    ];
    if !args.skip_envoy {
        rows.push((
            format!("approve-to-usable median / worst (ms, {}x)", args.usable_reps),
            runs.iter()
                .map(|r| pair(r, "approve_to_usable_median", "approve_to_usable_worst", 1))
                .collect(),
        ));
        rows.push((
            format!(
                "revoke-to-enforced median / worst (ms, {}x, {ENVOY_WORKERS} workers, {FILTER_DEFAULT_POLL_MS} ms poll)",
                args.revoke_reps
            ),
            runs.iter()
                .map(|r| pair(r, "revoke_to_enforced_median", "revoke_to_enforced_worst", 0))
                .collect(),
        ));
    }
    let mut out = format!(
        "| measurement | {} |\n|---|{}\n",
        runs.iter().map(|r| r.backend).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(runs.len())
    );
    for (name, cells) in rows {
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time (the format of
/// `bench/results/*.json`).
fn utc_date(unix_seconds: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The JSON document of a run.
fn to_json(args: &Args, control_bin: &std::path::Path, date: &str, runs: &[BackendRun], seconds: f64) -> Value {
    let figures: Vec<Value> = runs
        .iter()
        .flat_map(|r| {
            r.figures
                .iter()
                .map(|f| json!({"backend": r.backend, "name": f.name, "value": f.value, "unit": f.unit}))
        })
        .collect();
    let targets: Vec<Value> = runs
        .iter()
        .flat_map(|r| &r.targets)
        .map(|t| json!({"name": t.name, "value": t.value, "unit": t.unit, "holds": t.holds}))
        .collect();
    let skipped: Vec<Value> = runs
        .iter()
        .filter_map(|r| {
            r.skipped
                .as_ref()
                .map(|why| json!({"backend": r.backend, "reason": why}))
        })
        .collect();
    let notes: Vec<Value> = runs
        .iter()
        .flat_map(|r| r.notes.iter().map(|n| json!({"backend": r.backend, "note": n})))
        .collect();
    json!({
        "benchmark": "control",
        "date": date,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "control_binary": control_bin.display().to_string(),
        "run_seconds": seconds,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "ingest_senders": args.senders,
            "ingest_batch": args.batch,
            "usable_repetitions": args.usable_reps,
            "revoke_repetitions": args.revoke_reps,
            "envoy_workers": ENVOY_WORKERS,
            "filter_poll_interval_ms": FILTER_DEFAULT_POLL_MS,
            "enforcement_probes": latency::ENFORCEMENT_PROBES,
            "client_threads": args.client_threads,
            "skip_envoy": args.skip_envoy,
        },
        "markdown": markdown(args, runs),
        "figures": figures,
        "targets": targets,
        "skipped": skipped,
        "notes": notes,
    })
}

fn main() {
    let args = Args::parse();
    let control_bin = match control_binary(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // The e2e harness starts this binary. Set before any thread starts.
    std::env::set_var("JITGATE_CONTROL_BIN", &control_bin);
    if !args.skip_envoy {
        let wasm = jitgate_e2e::target_dir().join("wasm32-wasip1/release/jitgate_filter.wasm");
        if !wasm.exists() {
            eprintln!(
                "error: {} is missing: build it with scripts/build-wasm (or pass --skip-envoy)",
                wasm.display()
            );
            std::process::exit(2);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    let started = Instant::now();
    let date = utc_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    );
    let backends: &[&'static str] = match args.backend {
        Backends::Both => &["sqlite", "postgres"],
        Backends::Sqlite => &["sqlite"],
        Backends::Postgres => &["postgres"],
    };
    let runs: Vec<BackendRun> = backends.iter().map(|b| run_backend(&args, &rt, b)).collect();
    println!();
    println!(
        "jitgate control benchmark, {date}; {} s measured after {} s warm-up per phase; control: {}",
        args.duration,
        args.warmup,
        control_bin.display()
    );
    for run in &runs {
        print_table(&args, run);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!();
    println!("whole run: {seconds:.0} s");
    if let Some(path) = &args.json {
        let doc = to_json(&args, &control_bin, &date, &runs, seconds);
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("written: {}", path.display());
    }
    let problems = runs.iter().any(|r| {
        r.notes
            .iter()
            .any(|n| n.contains("MISMATCH") || n.contains("NOT verify"))
    });
    if problems {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(1_732_485_941), "2024-11-24 22:05 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
    }
}
