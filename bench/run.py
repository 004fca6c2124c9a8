"""jitgate proxy benchmark: the same Envoy, route and load in five
configurations, in alternating rounds, medians reported.

Run through scripts/bench, which builds what is needed. Configurations:
  none             no filter (the physical limit of this route)
  wasm-noop        an empty proxy-wasm filter (the Wasm runtime alone)
  wasm-read        the empty filter reading the request header map, as
                   jitgate does (one host call and its allocation callback)
  wasm-read-write  ... and removing one header and adding three, as jitgate
                   does on an allowed request (four more host calls)
  jitgate          the jitgate filter with a valid grant
  jitgate-native   the same decision code as an Envoy dynamic module
                   (native/, needs --native-module), same grant
  jwt_authn        Envoy's native JWT filter, HS256, same token, local JWKS
  ext_authz        Envoy's ext_authz calling a minimal authorizer per request
The two middle steps show where jitgate's time goes: host calls versus its
own work in the VM (jitgate minus wasm-read-write).

Method. Envoy runs with one worker pinned to CPU 0; the load generators
(and the ext_authz authorizer) run on CPU 1.
  Throughput: wrk -t1 -c32 for BENCH_SECONDS (closed loop, saturating).
  CPU per request: Envoy's utime+stime from /proc/<pid>/stat over that run,
    divided by the requests served; steadier than req/s on a shared machine.
  Latency: bench/load at a constant rate of half the no-filter maximum
    (measured at the start of the run), latency counted from each request's
    scheduled time (no coordinated omission), BENCH_LATENCY_SECONDS per
    round. A configuration that cannot sustain that rate shows it as
    queueing (huge percentiles) and as achieved < offered.

Usage: run.py ENVOY JITGATE_WASM NOOP_WASM AUTHZ LOAD [--control JSON]
  [--criterion DIR] [--native-config JSON] [--native-module LIBJITGATE_NATIVE_SO]
The optional inputs are folded into the same results file: the control
service benchmark (bench/control) and Criterion's estimates.
"""
import argparse, base64, glob, hashlib, hmac, json, math, os, platform, re, signal, socket, statistics, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
LATENCY_SECONDS = int(os.environ.get("BENCH_LATENCY_SECONDS", "4"))
KEY = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"
ALL_CONFIGS = ["none", "wasm-noop", "wasm-read", "wasm-read-write", "jitgate", "jitgate-native", "jwt_authn", "ext_authz"]
# The empty module's plugin configuration for each step of the cost ladder.
NOOP_WORK = {"wasm-noop": "{}", "wasm-read": "read", "wasm-read-write": "read-write"}
CONFIGS = [c for c in os.environ.get("BENCH_CONFIGS", ",".join(ALL_CONFIGS)).split(",") if c]
CPUS = os.cpu_count() or 1
# The grant: as the control service mints it (header, claims, HS256), one
# scope rule; about 400 bytes, the size the targets are stated for.
CLAIMS_SCOPE = [{"methods": ["GET", "HEAD"], "paths": ["/v1/invoices/*", "/v1/reports/**"]}]

p = argparse.ArgumentParser()
p.add_argument("envoy")
p.add_argument("jitgate_wasm")
p.add_argument("noop_wasm")
p.add_argument("authz")
p.add_argument("load")
p.add_argument("--control", help="JSON written by jitgate-bench-control --json")
p.add_argument("--criterion", help="Criterion's output directory (target/criterion)")
p.add_argument("--instructions", type=int, metavar="N",
               help="instead of the timed runs: instructions per request under callgrind over N requests per configuration")
p.add_argument("--native-module", help="libjitgate_native.so (scripts/build-native), for jitgate-native")
ARGS = p.parse_args()
if "jitgate-native" in CONFIGS and not ARGS.native_module:
    raise SystemExit("jitgate-native needs --native-module target/release-native/libjitgate_native.so (scripts/build-native)")


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def grant():
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "jit-grant+jwt", "kid": "k1"}, separators=(",", ":")).encode())
    claims = b64(json.dumps({"iss": "jit-control", "sub": "alice@example.com", "aud": "payments-api",
                             "jti": "01J9Z8K3QW5T7Y2X4V6B8N0M1P", "iat": now, "nbf": now, "exp": now + 3600,
                             "req": "01J9Z8JZ4F2W6M8Q0R3T5V7X9A", "scope": CLAIMS_SCOPE},
                            separators=(",", ":")).encode())
    key = base64.urlsafe_b64decode(KEY + "=")
    sig = b64(hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    return f"{header}.{claims}.{sig}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wasm_filter(path, config):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "bench", "root_id": "jitgate", "fail_open": False,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
                   "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": path}}}}}}


# The plugin configuration of both forms of jitgate.
JITGATE_CONFIG = {"issuer": "jit-control", "keys": {"k1": KEY}, "resources": [{"id": "payments-api", "path_prefix": "/v1"}]}


def envoy_config(kind, port, admin, authz_port):
    filters = []
    clusters = []
    if kind in NOOP_WORK:
        filters.append(wasm_filter(ARGS.noop_wasm, NOOP_WORK[kind]))
    elif kind == "jitgate":
        filters.append(wasm_filter(ARGS.jitgate_wasm, json.dumps(JITGATE_CONFIG)))
    elif kind == "jitgate-native":
        # Envoy loads libjitgate_native.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH (set in Envoy.__init__).
        filters.append({"name": "envoy.filters.http.dynamic_modules", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": "jitgate_native", "metrics_namespace": "wasmcustom"},
            "filter_name": "jitgate",
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(JITGATE_CONFIG)}}})
    elif kind == "jwt_authn":
        jwks = {"keys": [{"kty": "oct", "alg": "HS256", "kid": "k1", "k": KEY}]}
        filters.append({"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": {"issuer": "jit-control", "audiences": ["payments-api"], "forward": False,
                                    "from_headers": [{"name": "x-jit-grant"}],
                                    "local_jwks": {"inline_string": json.dumps(jwks)}}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}})
    elif kind == "ext_authz":
        filters.append({"name": "envoy.filters.http.ext_authz", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "failure_mode_allow": False,
            "http_service": {"server_uri": {"uri": f"http://127.0.0.1:{authz_port}", "cluster": "authz", "timeout": "1s"}}}})
        clusters.append({"name": "authz", "type": "STATIC", "connect_timeout": "1s",
                         "load_assignment": {"cluster_name": "authz", "endpoints": [{"lb_endpoints": [
                             {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": authz_port}}}}]}]}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{"name": "bench", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "bench", "normalize_path": True, "merge_slashes": True,
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                "http_filters": filters}}]}]}],
            "clusters": clusters}}


def taskset(cpu, cmd):
    return (["taskset", "-c", str(cpu)] + cmd) if CPUS >= 2 else cmd


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wrk(args):
    return subprocess.run(taskset(1, ["wrk"] + args), capture_output=True, text=True).stdout


def parse_rps(out):
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"wrk saw {bad.group(1)} non-2xx answers: the benchmark is not measuring allowed requests")
    return (float(m.group(1)) if m else 0.0, int(n.group(1)) if n else 0)


def envoy_env():
    env = dict(os.environ)
    if ARGS.native_module:
        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = os.path.dirname(os.path.abspath(ARGS.native_module))
    return env


class Envoy:
    """One Envoy in one configuration, started and ready, killed on exit."""

    def __init__(self, kind, token, authz_port, workdir):
        self.kind, self.token = kind, token
        self.port, admin = free_port(), free_port()
        path = os.path.join(workdir, f"{kind}.json")
        json.dump(envoy_config(kind, self.port, admin, authz_port), open(path, "w"))
        self.log = os.path.join(workdir, f"{kind}.log")
        self.proc = subprocess.Popen(taskset(0, [ARGS.envoy, "-c", path, "--concurrency", "1", "--log-level", "error",
                                                 "--disable-hot-restart"]),
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), env=envoy_env())
        self.url = f"http://127.0.0.1:{self.port}/v1/invoices/INV-1"
        self.header = ["-H", f"x-jit-grant: {token}"]
        for _ in range(200):
            try:
                r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"x-jit-grant: {token}",
                                    self.url], capture_output=True, text=True, timeout=2)
                if r.stdout == "200":
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{kind}: Envoy did not answer 200 (see {self.log})")

    def throughput(self, seconds):
        wrk(["-t1", "-c32", "-d1s"] + self.header + [self.url])  # warm-up (and V8 tier-up)
        before = cpu_ticks(self.proc.pid)
        rps, total = parse_rps(wrk(["-t1", "-c32", f"-d{seconds}s"] + self.header + [self.url]))
        ticks = cpu_ticks(self.proc.pid) - before
        return {"rps": rps, "cpu_us": ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(total, 1)}

    def latency(self, rate, seconds):
        out = subprocess.run(taskset(1, [ARGS.load, "--rate", str(rate), "--duration", str(seconds), "--warmup", "0.5",
                                         "--connections", "32", "--header", f"x-jit-grant: {self.token}", self.url]),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{self.kind}: load generator failed: {out.stderr.strip()}")
        r = json.loads(out.stdout)
        if r["non_200"]:
            raise SystemExit(f"{self.kind}: {r['non_200']} non-200 answers at constant rate")
        return {"p50_us": r["p50_us"], "p99_us": r["p99_us"], "p999_us": r["p999_us"],
                "achieved_rps": r["achieved_rps"], "sustained": r["achieved_rps"] >= 0.95 * rate and r["errors"] == 0}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def fmt(v, digits=0):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}"


def criterion_estimates(path):
    """Median ns per iteration of each Criterion benchmark under `path`."""
    out = {}
    if not path or not os.path.isdir(path):
        return out
    for name in sorted(os.listdir(path)):
        est = os.path.join(path, name, "new", "estimates.json")
        if os.path.exists(est):
            e = json.load(open(est))
            out[name] = e["median"]["point_estimate"]
    return out


def send_keepalive(port, token, n):
    """n GETs of the benchmark URL over one HTTP/1.1 connection; each must be 200."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=120)
    req = (f"GET /v1/invoices/INV-1 HTTP/1.1\r\nhost: bench\r\nx-jit-grant: {token}\r\n\r\n").encode()
    buf = b""
    for _ in range(n):
        conn.sendall(req)
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(65536)
        head, buf = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"not 200: {head[:200]!r}")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        while len(buf) < length:
            buf += conn.recv(65536)
        buf = buf[length:]
    conn.close()


def callgrind_ir_per_request(kind, token, n, workdir):
    """Envoy in one configuration under callgrind: instructions executed by
    the whole process while it serves n requests (after as many to warm up
    and let V8 tier up), divided by n. Counts repeat exactly whatever else
    the machine runs, unlike CPU time."""
    port, admin = free_port(), free_port()
    path = os.path.join(workdir, f"{kind}.instructions.json")
    json.dump(envoy_config(kind, port, admin, free_port()), open(path, "w"))
    out = os.path.join(workdir, f"{kind}.callgrind.out")
    for old in glob.glob(out + "*"):
        os.remove(old)
    # Instrumentation off until the measured window (startup runs at a few
    # times native speed instead of fifty); --smc-check=all for V8's code.
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--smc-check=all", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", ARGS.envoy, "-c", path, "--concurrency", "1",
                             "--log-level", "error", "--disable-hot-restart"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"{kind}.callgrind.log"), "w"))
    try:
        deadline = time.time() + 600
        while True:
            try:
                send_keepalive(port, token, 1)
                break
            except (OSError, SystemExit):
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{kind}: Envoy under callgrind did not answer 200")
                time.sleep(1)
        send_keepalive(port, token, n)  # warm-up, V8 tier-up
        control = lambda *a: subprocess.run(["callgrind_control", *a, str(proc.pid)], check=True, capture_output=True)
        control("-i", "on")
        control("-z")
        send_keepalive(port, token, n)
        control("-d")  # a dump of exactly the window
        control("-i", "off")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    # The explicit dump (`<out>.1`) holds exactly the window; the file written
    # at exit holds only what ran after it.
    totals = [int(l.split()[1]) for l in open(out + ".1") if l.startswith("totals:")]
    return totals[0] / n


def instruction_ladder(n):
    workdir = os.path.join(ROOT, "bench", "results", "raw")
    os.makedirs(workdir, exist_ok=True)
    token = grant()
    kinds = [k for k in CONFIGS if k in ("none", "wasm-noop", "wasm-read", "wasm-read-write", "jitgate")]
    ir = {}
    for kind in kinds:
        ir[kind] = callgrind_ir_per_request(kind, token, n, workdir)
        print(f"  {kind:<16} {ir[kind]:>12,.0f} instructions/request", flush=True)
    lines = [f"Instructions per request (callgrind, whole Envoy process, {n} requests after {n} of warm-up, "
             f"one worker, keep-alive):", "", "| configuration | instructions/req | over previous step |", "|---|---:|---:|"]
    prev = None
    for kind in kinds:
        step = "" if prev is None else f"{ir[kind] - ir[prev]:+,.0f}"
        lines.append(f"| {kind} | {ir[kind]:,.0f} | {step} |")
        prev = kind
    if {"wasm-read-write", "jitgate"} <= set(ir):
        lines += ["", f"jitgate's own work in the VM (jitgate minus wasm-read-write): "
                      f"{ir['jitgate'] - ir['wasm-read-write']:+,.0f} instructions/request"]
    print("\n".join(lines))


def main():
    if ARGS.instructions:
        return instruction_ladder(ARGS.instructions)
    workdir = os.path.join(ROOT, "bench", "results", "raw")
    os.makedirs(workdir, exist_ok=True)
    token = grant()
    authz_port = free_port()
    authz = subprocess.Popen(taskset(1, [ARGS.authz, str(authz_port)]))
    results = {k: [] for k in CONFIGS}
    try:
        # The constant rate of the latency runs: half of what Envoy with no
        # filter serves at most, as measured now on this machine.
        e = Envoy("none", token, authz_port, workdir)
        try:
            calibration = e.throughput(max(3, SECONDS // 2))["rps"]
        finally:
            e.stop()
        rate = round(calibration / 2)
        print(f"  no-filter maximum {calibration:,.0f} req/s: latency measured at {rate:,} req/s", flush=True)
        for r in range(ROUNDS):
            for kind in (CONFIGS if r % 2 == 0 else list(reversed(CONFIGS))):
                e = Envoy(kind, token, authz_port, workdir)
                try:
                    res = e.throughput(SECONDS)
                    res.update(e.latency(rate, LATENCY_SECONDS))
                finally:
                    e.stop()
                results[kind].append(res)
                print(f"  round {r + 1}/{ROUNDS} {kind:<10} {res['rps']:>8.0f} req/s {res['cpu_us']:6.2f} us CPU/req | "
                      f"at {rate} req/s: p50 {res['p50_us']:.0f} us p99 {res['p99_us']:.0f} us"
                      f"{'' if res['sustained'] else ' (not sustained)'}", flush=True)
    finally:
        authz.terminate()

    metrics = ("rps", "cpu_us", "p50_us", "p99_us", "p999_us", "achieved_rps")
    med = {k: {m: statistics.median(x[m] for x in v) for m in metrics} for k, v in results.items()}
    for k, v in results.items():
        med[k]["sustained"] = all(x["sustained"] for x in v)
        med[k]["cpu_us_min"] = min(x["cpu_us"] for x in v)
        med[k]["cpu_us_max"] = max(x["cpu_us"] for x in v)
    envoy_version = subprocess.run([ARGS.envoy, "--version"], capture_output=True, text=True).stdout.strip().split("version:")[-1].strip()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    base = med.get("none", {}).get("rps")
    jit = med.get("jitgate", {}).get("rps")
    ladder = []
    if {"wasm-noop", "wasm-read", "wasm-read-write", "jitgate"} <= set(CONFIGS):
        cpu = {k: med[k]["cpu_us"] for k in ("none", "wasm-noop", "wasm-read", "wasm-read-write", "jitgate") if k in med}
        steps = [("the Wasm runtime (empty filter over no filter)", "none", "wasm-noop"),
                 ("reading the header map (1 host call + allocation callback)", "wasm-noop", "wasm-read"),
                 ("1 header removed, 3 added (4 host calls)", "wasm-read", "wasm-read-write"),
                 ("jitgate's own work in the VM (find, verify, match)", "wasm-read-write", "jitgate")]
        ladder = [(name, cpu[b] - cpu[a]) for name, a, b in steps if a in cpu and b in cpu]
    lines = [f"# jitgate benchmark, {date}", "",
             f"Machine: {CPUS} CPUs, {cpu_model}, Linux {platform.release()}; Envoy {envoy_version}.",
             f"Proxy: {ROUNDS} rounds x {SECONDS} s per configuration in alternating order, medians; 1 Envoy worker on CPU 0,",
             "load generators and the ext_authz authorizer on CPU 1; direct-response route; grant "
             f"{len(token)} bytes.",
             f"Throughput: wrk -t1 -c32 (closed loop). Latency: constant {rate:,} req/s (half the no-filter maximum of "
             f"{calibration:,.0f}) over 32 connections for {LATENCY_SECONDS} s, measured from each request's scheduled "
             "time (bench/load; no coordinated omission).", "",
             "| configuration | req/s | Envoy CPU us/req (range over rounds) | p50 us | p99 us | p99.9 us | vs no filter | vs jitgate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k in CONFIGS:
        m = med[k]
        lat = "" if m["sustained"] else f" (overloaded: {m['achieved_rps']:,.0f} of {rate:,} req/s served)"
        lines.append(f"| {k} | {fmt(m['rps'])} | {fmt(m['cpu_us'], 2)} ({fmt(m['cpu_us_min'], 1)}-{fmt(m['cpu_us_max'], 1)}) | "
                     f"{fmt(m['p50_us'])} | {fmt(m['p99_us'])}{lat} | "
                     f"{fmt(m['p999_us'])} | {fmt(m['rps'] / base if base else None, 2)} | "
                     f"{fmt(m['rps'] / jit if jit else None, 2)} |")

    if ladder:
        lines += ["", "Where jitgate's Envoy CPU per request goes (differences of the medians above):", "",
                  "| step | us/req |", "|---|---:|"]
        lines += [f"| {name} | {v:+.2f} |" for name, v in ladder]

    targets = []

    def target(name, value, holds, unit=""):
        targets.append({"name": name, "value": value, "unit": unit, "holds": bool(holds)})

    if {"jitgate", "wasm-noop"} <= set(CONFIGS):
        noop = med["wasm-noop"]
        target("jitgate throughput >= 0.92 x empty Wasm filter", jit / noop["rps"], jit / noop["rps"] >= 0.92, "x")
        added = med["jitgate"]["cpu_us"] - noop["cpu_us"]
        target("jitgate Envoy CPU over empty Wasm <= 5 us/req", added, added <= 5, "us")
        added_p99 = med["jitgate"]["p99_us"] - noop["p99_us"]
        target(f"jitgate p99 over empty Wasm < 20 us at {rate:,} req/s", added_p99,
               added_p99 < 20 and med["jitgate"]["sustained"], "us")
    if {"jitgate-native", "none"} <= set(CONFIGS):
        nat = med["jitgate-native"]
        v = nat["rps"] / med["none"]["rps"]
        target("jitgate-native throughput >= 0.9 x no filter", v, v >= 0.9, "x")
        added = nat["cpu_us"] - med["none"]["cpu_us"]
        target("jitgate-native Envoy CPU over no filter <= 5 us/req", added, added <= 5, "us")
        lines.append("")
        for other in ("jitgate", "jwt_authn", "ext_authz"):
            if other in CONFIGS:
                lines.append(f"jitgate-native / {other}: {nat['rps'] / med[other]['rps']:.2f} (throughput), "
                             f"{med[other]['cpu_us'] / nat['cpu_us']:.2f} (inverse CPU per request).")
    if {"jitgate", "jwt_authn"} <= set(CONFIGS):
        v = jit / med["jwt_authn"]["rps"]
        target("jitgate throughput >= 1.5 x jwt_authn", v, v >= 1.5, "x")
    if {"jitgate", "ext_authz"} <= set(CONFIGS):
        v = jit / med["ext_authz"]["rps"]
        target("jitgate throughput >= 4 x ext_authz", v, v >= 4, "x")
    if base and jit:
        lines += ["", f"jitgate / no filter: {jit / base:.2f} (throughput), "
                      f"{med['none']['cpu_us'] / med['jitgate']['cpu_us']:.2f} (inverse CPU per request)."]

    wasm_size = os.path.getsize(ARGS.jitgate_wasm)
    target("release .wasm <= 300 KB", wasm_size / 1000, wasm_size <= 300_000, "KB")

    crit = criterion_estimates(ARGS.criterion)
    if crit:
        lines += ["", "Native grant verification (Criterion, median ns per call):", "",
                  "| benchmark | ns |", "|---|---:|"]
        for name, ns in crit.items():
            lines.append(f"| {name} | {ns:,.0f} |")
        if "verify_400b" in crit:
            target("native verify of a 400-byte grant < 2 us", crit["verify_400b"] / 1000, crit["verify_400b"] < 2000, "us")

    control = json.load(open(ARGS.control)) if ARGS.control and os.path.exists(ARGS.control) else None
    if control:
        lines += ["", "Control service (bench/control):", ""]
        lines += control.get("markdown", "").rstrip("\n").split("\n")
        for t in control.get("targets", []):
            target(t["name"], t["value"], t["holds"], t.get("unit", ""))

    lines += ["", "| target | measured | holds |", "|---|---:|---|"]
    for t in targets:
        lines.append(f"| {t['name']} | {t['value']:,.2f} {t['unit']} | {'yes' if t['holds'] else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = os.path.join(ROOT, "bench", "results", stamp)
    open(out + ".md", "w").write(text)
    json.dump({"date": date, "cpus": CPUS, "cpu_model": cpu_model, "kernel": platform.release(), "envoy": envoy_version,
               "rounds": ROUNDS, "seconds": SECONDS, "latency_seconds": LATENCY_SECONDS, "latency_rate": rate,
               "no_filter_calibration_rps": calibration, "grant_bytes": len(token), "wasm_bytes": wasm_size,
               "medians": med, "raw": results, "cpu_ladder_us": dict(ladder), "criterion_median_ns": crit, "control": control, "targets": targets},
              open(out + ".json", "w"), indent=2)
    print(f"written: bench/results/{stamp}.md and .json")


main()
