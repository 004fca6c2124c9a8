//! Throughput under load: concurrent clients looping over the control API
//! for a warm-up and then a measured window.
//!
//! - [`cycles`]: access requests created and approved, one full cycle being
//!   `POST /v1/requests` as the requester then `POST .../approve` as an
//!   approver (which mints the grant);
//! - [`ingest`]: proxy decisions posted to `POST /v1/audit/events` in the
//!   filter's batches, then the stored count and the chain checked.
//!
//! Work that ends inside the window counts; the rate is that count over the
//! window's length.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::{self, Target};
use crate::stats::Samples;

/// How long and how hard to load.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Before measuring.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
}

impl Window {
    /// (start of measurement, end of measurement) from now.
    fn starting_now(&self) -> (Instant, Instant) {
        let start = Instant::now() + self.warmup;
        (start, start + self.duration)
    }
}

/// Measures the CPU time process `pid` uses between `start` and `end`
/// (ms), in a task of its own; `None` without a pid or `/proc`.
fn cpu_between(pid: Option<u32>, start: Instant, end: Instant) -> tokio::task::JoinHandle<Option<f64>> {
    tokio::spawn(async move {
        let pid = pid?;
        tokio::time::sleep_until(start.into()).await;
        let before = crate::stats::cpu_time(pid)?;
        tokio::time::sleep_until(end.into()).await;
        let after = crate::stats::cpu_time(pid)?;
        Some(crate::stats::ms(after.saturating_sub(before)))
    })
}

/// Errors seen by the clients: how many, and the first one.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    /// How many calls failed.
    pub count: u64,
    /// The first failure.
    pub first: Option<String>,
}

impl Errors {
    fn add(&mut self, e: String) {
        self.count += 1;
        self.first.get_or_insert(e);
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// The result of [`cycles`].
#[derive(Debug, Clone)]
pub struct Cycles {
    /// Full cycles completed per second in the window.
    pub per_second: f64,
    /// Cycles completed in the window.
    pub completed: usize,
    /// Median cycle latency (ms).
    pub p50_ms: f64,
    /// 99th percentile cycle latency (ms).
    pub p99_ms: f64,
    /// Failed calls (warm-up included).
    pub errors: Errors,
    /// CPU time the control service used per cycle in the window (ms).
    pub cpu_ms_per_cycle: Option<f64>,
    /// The id of one request approved during the run (its grant makes the
    /// ingest events realistic).
    pub sample: Option<String>,
}

/// `clients` concurrent clients, each on its own keep-alive connection,
/// looping create-then-approve.
pub async fn cycles(target: &Target, clients: usize, window: Window, pid: Option<u32>) -> Cycles {
    let (start, end) = window.starting_now();
    let cpu = cpu_between(pid, start, end);
    let body = api::new_request_body();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (target, body) = (target.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let http = api::client();
            let mut latencies = Samples::default();
            let mut errors = Errors::default();
            let mut sample = None;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let cycle = async {
                    let id = api::create_request(&http, &target, &body).await?;
                    api::approve(&http, &target, &id).await?;
                    Ok::<_, String>(id)
                };
                match cycle.await {
                    Ok(id) => {
                        let done = Instant::now();
                        if done >= start && done < end {
                            latencies.push(done - began);
                        }
                        sample.get_or_insert(id);
                    }
                    Err(e) => {
                        errors.add(e);
                        // Do not spin on a broken service.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (latencies, errors, sample)
        }));
    }
    let mut latencies = Samples::default();
    let mut errors = Errors::default();
    let mut sample = None;
    for task in tasks {
        match task.await {
            Ok((l, e, s)) => {
                latencies.extend(l);
                errors.merge(e);
                sample = sample.or(s);
            }
            Err(e) => errors.add(format!("client task failed: {e}")),
        }
    }
    latencies.sort();
    let cpu_ms = cpu.await.ok().flatten();
    Cycles {
        cpu_ms_per_cycle: cpu_ms
            .filter(|_| !latencies.is_empty())
            .map(|c| c / latencies.len() as f64),
        per_second: latencies.len() as f64 / window.duration.as_secs_f64(),
        completed: latencies.len(),
        p50_ms: latencies.median_ms(),
        p99_ms: latencies.percentile_ms(0.99),
        errors,
        sample,
    }
}

/// The result of [`ingest`].
#[derive(Debug, Clone)]
pub struct Ingest {
    /// Events acknowledged per second in the window.
    pub per_second: f64,
    /// Events acknowledged over the whole run (warm-up and tail included).
    pub acknowledged: u64,
    /// Records the chain gained over the run (should equal `acknowledged`).
    pub stored: i64,
    /// Whether `/v1/audit/verify` says the chain is intact afterwards.
    pub chain_intact: bool,
    /// Records the verification checked.
    pub chain_records: i64,
    /// CPU time the control service used per 1000 events in the window (ms).
    pub cpu_ms_per_1000_events: Option<f64>,
    /// How long the verification took (ms).
    pub verify_ms: f64,
    /// Median batch latency (ms).
    pub batch_p50_ms: f64,
    /// 99th percentile batch latency (ms).
    pub batch_p99_ms: f64,
    /// Failed posts.
    pub errors: Errors,
}

/// One batch as the filter posts it (`filter/src/report.rs`): `proxy` and
/// `events`, each event an allowed request of the granted scope.
fn batch_body(sender: usize, batch: usize, request_id: &str, grant_id: &str) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let events: Vec<_> = (0..batch)
        .map(|i| {
            json!({
                "time_ms": now_ms + i as u64,
                "outcome": "allowed",
                "resource": "payments-api",
                "grant_id": grant_id,
                "subject": api::REQUESTER,
                "access_request_id": request_id,
                "client": format!("10.1.{}.{}", sender % 250, i % 250),
                "method": "GET",
                "path": format!("/v1/invoices/INV-{sender}-{i}"),
                "request_id": format!("8d1c9c8e-4f7a-4b6e-9a53-{sender:04}{i:08}"),
                "status": 200
            })
        })
        .collect();
    json!({"proxy": format!("bench-{sender}"), "events": events})
        .to_string()
        .into_bytes()
}

/// `senders` concurrent proxies posting batches of `batch` decisions, then
/// the stored count and the chain are checked.
pub async fn ingest(
    target: &Target,
    senders: usize,
    batch: usize,
    window: Window,
    request_id: &str,
    grant_id: &str,
    pid: Option<u32>,
) -> Result<Ingest, String> {
    let http = api::client();
    let (_, before) = api::verify(&http, target).await?;
    let (start, end) = window.starting_now();
    let cpu = cpu_between(pid, start, end);
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let target = target.clone();
        let body = batch_body(sender, batch, request_id, grant_id);
        tasks.push(tokio::spawn(async move {
            let http = api::client();
            let mut acknowledged = 0u64;
            let mut in_window = 0u64;
            let mut latencies = Samples::default();
            let mut errors = Errors::default();
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let r = http
                    .post(format!("{}/v1/audit/events", target.base))
                    .header("authorization", &target.ingest)
                    .header("content-type", "application/json")
                    .body(body.clone());
                match api::send(r, 202, "POST /v1/audit/events").await {
                    Ok(v) => {
                        let accepted = v["accepted"].as_u64().unwrap_or(0);
                        acknowledged += accepted;
                        let done = Instant::now();
                        if done >= start && done < end {
                            in_window += accepted;
                            latencies.push(done - began);
                        }
                    }
                    Err(e) => {
                        errors.add(e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (acknowledged, in_window, latencies, errors)
        }));
    }
    let (mut acknowledged, mut in_window) = (0u64, 0u64);
    let mut latencies = Samples::default();
    let mut errors = Errors::default();
    for task in tasks {
        let (a, w, l, e) = task.await.map_err(|e| format!("sender task failed: {e}"))?;
        acknowledged += a;
        in_window += w;
        latencies.extend(l);
        errors.merge(e);
    }
    latencies.sort();
    let cpu_ms = cpu.await.ok().flatten();
    let verify_started = Instant::now();
    let (chain_intact, after) = api::verify(&http, target).await?;
    let verify_ms = crate::stats::ms(verify_started.elapsed());
    Ok(Ingest {
        per_second: in_window as f64 / window.duration.as_secs_f64(),
        acknowledged,
        stored: after - before,
        chain_intact,
        chain_records: after,
        verify_ms,
        cpu_ms_per_1000_events: cpu_ms.filter(|_| in_window > 0).map(|c| c * 1000.0 / in_window as f64),
        batch_p50_ms: latencies.median_ms(),
        batch_p99_ms: latencies.percentile_ms(0.99),
        errors,
    })
}
