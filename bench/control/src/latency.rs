//! Latency through the whole loop: real Envoy with the built filter in
//! front of the e2e upstream, talking to the control service over its
//! control link at the filter's defaults.
//!
//! - [`approve_to_usable`]: from sending the approval to the first 200
//!   through Envoy (the client fetches the grant and calls with it);
//! - [`revoke_to_enforced`]: from sending the revocation until a run of
//!   requests on fresh connections, spread over every worker, is all denied
//!   with `grant_revoked` (the method of
//!   `e2e/tests/control_loop.rs::revocation_is_enforced_at_every_worker_within_two_poll_intervals`),
//!   each revocation sent at a random point of the poll interval.

use std::time::{Duration, Instant};

use crate::api::{self, Target};
use crate::stats::Samples;

/// Requests on fresh connections that must all be denied for a revocation
/// to count as enforced at every worker (as in the e2e test).
pub const ENFORCEMENT_PROBES: usize = 16;

/// Pause between two enforcement checks (as in the e2e test).
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Longest wait for a grant to work, or for a revocation to be enforced.
const GIVE_UP: Duration = Duration::from_secs(10);

/// A path inside the benchmark's scope (`GET /v1/invoices/*`).
const PATH: &str = "/v1/invoices/INV-7";

/// A client that opens a new connection for every request, so that
/// consecutive requests land on different Envoy workers.
pub fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

/// A GET through Envoy with a grant: (status, deny code).
async fn through_envoy(http: &reqwest::Client, envoy_port: u16, token: &str) -> Result<(u16, String), String> {
    let response = http
        .get(format!("http://127.0.0.1:{envoy_port}{PATH}"))
        .header("x-jit-grant", token)
        .send()
        .await
        .map_err(|e| format!("GET through Envoy: {e}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok((status, code))
}

/// A summary of repeated latency measurements.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Measurements.
    pub repetitions: usize,
    /// Median (ms).
    pub median_ms: f64,
    /// Worst (ms).
    pub worst_ms: f64,
}

impl Latencies {
    fn of(mut samples: Samples) -> Latencies {
        samples.sort();
        Latencies {
            repetitions: samples.len(),
            median_ms: samples.median_ms(),
            worst_ms: samples.max_ms(),
        }
    }
}

/// From sending the approval to the first 200 through Envoy, `reps` times.
pub async fn approve_to_usable(target: &Target, envoy_port: u16, reps: usize) -> Result<Latencies, String> {
    let control = api::client();
    let envoy = fresh_connections();
    let body = api::new_request_body();
    let mut samples = Samples::default();
    for _ in 0..reps {
        let id = api::create_request(&control, target, &body).await?;
        let sent = Instant::now();
        api::approve(&control, target, &id).await?;
        let (_, token) = api::fetch_grant(&control, target, &id).await?;
        loop {
            let (status, code) = through_envoy(&envoy, envoy_port, &token).await?;
            if status == 200 {
                break;
            }
            if sent.elapsed() > GIVE_UP {
                return Err(format!(
                    "a fresh grant was not usable within {GIVE_UP:?}: {status} {code}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(sent.elapsed());
    }
    Ok(Latencies::of(samples))
}

/// A pseudo-random pause in `[0, max)`: decorrelates each revocation from
/// the filter's poll schedule. Without it every revocation would follow
/// the previous one's enforcement (a poll) by the same few milliseconds,
/// and each would wait almost a full interval: the worst case every time.
fn random_pause(max: Duration, n: usize) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // splitmix64 of the time and the round.
    let mut z = u64::from(nanos) ^ ((n as u64) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let max_us = max.as_micros().max(1) as u64;
    Duration::from_micros(z % max_us)
}

/// From sending the revocation until it is enforced at every worker,
/// `reps` times, each revocation at a random point of the poll interval
/// `poll`.
pub async fn revoke_to_enforced(
    target: &Target,
    envoy_port: u16,
    reps: usize,
    poll: Duration,
) -> Result<Latencies, String> {
    let control = api::client();
    let envoy = fresh_connections();
    let body = api::new_request_body();
    let mut samples = Samples::default();
    for round in 0..reps {
        let id = api::create_request(&control, target, &body).await?;
        api::approve(&control, target, &id).await?;
        let (grant_id, token) = api::fetch_grant(&control, target, &id).await?;
        let (status, code) = through_envoy(&envoy, envoy_port, &token).await?;
        if status != 200 {
            return Err(format!("a fresh grant was refused through Envoy: {status} {code}"));
        }
        tokio::time::sleep(random_pause(poll, round)).await;
        let sent = Instant::now();
        api::revoke(&control, target, &grant_id).await?;
        loop {
            let mut all_denied = true;
            for _ in 0..ENFORCEMENT_PROBES {
                let (status, code) = through_envoy(&envoy, envoy_port, &token).await?;
                if status != 403 || code != "grant_revoked" {
                    all_denied = false;
                    break;
                }
            }
            if all_denied {
                break;
            }
            if sent.elapsed() > GIVE_UP {
                return Err(format!("a revocation was not enforced within {GIVE_UP:?}"));
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
        samples.push(sent.elapsed());
    }
    Ok(Latencies::of(samples))
}
