//! A constant-rate HTTP/1.1 load generator for the proxy benchmark.
//!
//! Closed-loop tools (`wrk`) send the next request only when the previous
//! answer came back, so a stall delays the requests that would have seen it
//! and the stall vanishes from the percentiles ("coordinated omission").
//! This generator keeps a schedule instead, as wrk2 does: request `k` is due
//! at `start + k / rate`, and its latency is measured from that due time,
//! not from when a free connection finally sent it. A proxy that cannot keep
//! up therefore shows its queueing in the latency, and in `sent` falling
//! short of `scheduled`.
//!
//! One thread drives every connection with non-blocking sockets and
//! `ppoll`, whose nanosecond timeout (with the thread's timer slack set to
//! 1 ns) keeps the schedule at tens of thousands of requests per second
//! without spinning a core: the core is shared with the ext_authz
//! authorizer in the benchmark.
//!
//! ```text
//! jitgate-bench-load --rate 30000 --duration 5 --warmup 1 --connections 32 \
//!     --header 'x-jit-grant: eyJ...' http://127.0.0.1:10000/v1/invoices/INV-1
//! ```
//!
//! Prints one JSON object: the schedule, what was sent and answered, and
//! latency percentiles in microseconds over the measured (post-warm-up)
//! requests.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What to run, from the command line.
struct Args {
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    headers: Vec<String>,
    authority: String,
    path: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rate: 0.0,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        connections: 32,
        headers: Vec::new(),
        authority: String::new(),
        path: String::new(),
    };
    let mut it = std::env::args().skip(1);
    let seconds = |v: Option<String>, name: &str| -> Result<Duration, String> {
        let s: f64 = v
            .and_then(|v| v.parse().ok())
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or(format!("{name} takes a number of seconds"))?;
        Ok(Duration::from_secs_f64(s))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rate" => {
                args.rate = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|r: &f64| r.is_finite() && *r > 0.0)
                    .ok_or("--rate takes requests per second (> 0)")?;
            }
            "--duration" => args.duration = seconds(it.next(), "--duration")?,
            "--warmup" => args.warmup = seconds(it.next(), "--warmup")?,
            "--connections" => {
                args.connections = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|c: &usize| (1..=1024).contains(c))
                    .ok_or("--connections takes 1 to 1024")?;
            }
            "--header" => args.headers.push(it.next().ok_or("--header takes 'name: value'")?),
            url => {
                let rest = url
                    .strip_prefix("http://")
                    .ok_or(format!("not an http:// URL: {url}"))?;
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                args.authority = authority.to_owned();
                args.path = if path.is_empty() { "/".into() } else { path.into() };
            }
        }
    }
    if args.rate == 0.0 || args.authority.is_empty() {
        return Err("usage: jitgate-bench-load --rate R [--duration S] [--warmup S] [--connections C] [--header 'n: v']... http://host:port/path".into());
    }
    Ok(args)
}

/// One keep-alive connection with at most one request in flight.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Due time of the request in flight.
    inflight: Option<Instant>,
}

impl Conn {
    fn open(authority: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(authority)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            inflight: None,
        })
    }

    fn send(&mut self, request: &[u8], due: Instant) -> std::io::Result<()> {
        let mut written = 0;
        while written < request.len() {
            match self.stream.write(&request[written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                // A small request into an idle socket's buffer: the only
                // wait is for the kernel to drain it, which is short.
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
        self.inflight = Some(due);
        Ok(())
    }

    /// Reads what is there; `Some(status)` once a whole response arrived.
    fn receive(&mut self) -> std::io::Result<Option<u16>> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let Some((status, total)) = complete_response(&self.buf) else {
            return Ok(None);
        };
        self.buf.drain(..total);
        Ok(Some(status))
    }
}

/// The status and length of a whole response at the start of `buf`, if it
/// has all arrived (`content-length` framing; the proxy's answers have it).
fn complete_response(buf: &[u8]) -> Option<(u16, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some((status, head_end + length))
}

/// Sleeps until `deadline` or until one of `fds` is readable.
fn wait(fds: &mut [libc::pollfd], deadline: Option<Instant>) {
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
        }
    });
    let timeout_ptr = timeout
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the
    // duration of the call, and the timeout (if any) lives on this frame.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout_ptr,
            core::ptr::null(),
        );
    }
}

/// The figures printed at the end.
#[derive(Default)]
struct Tally {
    scheduled: u64,
    sent: u64,
    ok: u64,
    non_200: u64,
    errors: u64,
    latencies_ns: Vec<u64>,
}

fn run(args: &Args) -> Result<Tally, String> {
    let mut request = format!("GET {} HTTP/1.1\r\nhost: {}\r\n", args.path, args.authority);
    for h in &args.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = request.into_bytes();

    let mut conns = (0..args.connections)
        .map(|_| Conn::open(&args.authority))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot connect to {}: {e}", args.authority))?;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let stop_sending = measure_from + args.duration;
    // Requests still in flight this long after the schedule ends are
    // counted as errors rather than waited for.
    let give_up = stop_sending + Duration::from_secs(2);

    let mut tally = Tally::default();
    let mut next_due = start;
    let mut backlog: VecDeque<Instant> = VecDeque::new();
    let mut pollfds: Vec<libc::pollfd> = Vec::with_capacity(conns.len());
    let mut pollconn: Vec<usize> = Vec::with_capacity(conns.len());
    loop {
        let now = Instant::now();
        while next_due <= now && next_due < stop_sending {
            backlog.push_back(next_due);
            if next_due >= measure_from {
                tally.scheduled += 1;
            }
            next_due += interval;
        }
        for c in conns.iter_mut().filter(|c| c.inflight.is_none()) {
            let Some(due) = backlog.pop_front() else { break };
            if c.send(&request, due).is_err() {
                tally.errors += 1;
                *c = Conn::open(&args.authority).map_err(|e| format!("reconnect: {e}"))?;
                continue;
            }
            if due >= measure_from {
                tally.sent += 1;
            }
        }
        let busy = conns.iter().any(|c| c.inflight.is_some());
        if next_due >= stop_sending && (!busy || now >= give_up) {
            tally.errors += conns.iter().filter(|c| c.inflight.is_some()).count() as u64;
            return Ok(tally);
        }

        pollfds.clear();
        pollconn.clear();
        for (i, c) in conns.iter().enumerate().filter(|(_, c)| c.inflight.is_some()) {
            pollfds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            pollconn.push(i);
        }
        let deadline = if next_due < stop_sending {
            Some(next_due)
        } else {
            Some(give_up)
        };
        wait(&mut pollfds, deadline);
        for (pfd, &i) in pollfds.iter().zip(&pollconn) {
            if pfd.revents == 0 {
                continue;
            }
            let c = &mut conns[i];
            match c.receive() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let done = Instant::now();
                    let due = c.inflight.take().unwrap_or(done);
                    if due >= measure_from {
                        if status == 200 {
                            tally.ok += 1;
                            tally.latencies_ns.push(done.duration_since(due).as_nanos() as u64);
                        } else {
                            tally.non_200 += 1;
                        }
                    }
                }
                Err(_) => {
                    tally.errors += 1;
                    *c = Conn::open(&args.authority).map_err(|e| format!("reconnect: {e}"))?;
                }
            }
        }
    }
}

fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
    // slack; without it ppoll may wake up to 50 us late and the schedule
    // would drift at these rates.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let mut tally = match run(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("jitgate-bench-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    tally.latencies_ns.sort_unstable();
    let l = &tally.latencies_ns;
    let seconds = args.duration.as_secs_f64();
    println!(
        "{{\"rate\":{},\"seconds\":{},\"connections\":{},\"scheduled\":{},\"sent\":{},\"ok\":{},\"non_200\":{},\"errors\":{},\"achieved_rps\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
        args.rate,
        seconds,
        args.connections,
        tally.scheduled,
        tally.sent,
        tally.ok,
        tally.non_200,
        tally.errors,
        tally.ok as f64 / seconds,
        percentile_us(l, 50.0),
        percentile_us(l, 90.0),
        percentile_us(l, 99.0),
        percentile_us(l, 99.9),
        l.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_only_with_its_whole_body() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: envoy\r\n\r\nok";
        assert_eq!(complete_response(r), Some((200, r.len())));
        assert_eq!(complete_response(&r[..r.len() - 1]), None);
        assert_eq!(complete_response(b"HTTP/1.1 403 Forbidden\r\n"), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&v, 50.0), 50.0);
        assert_eq!(percentile_us(&v, 99.0), 99.0);
        assert_eq!(percentile_us(&v, 100.0), 100.0);
        assert!(percentile_us(&[], 50.0).is_nan());
    }
}
