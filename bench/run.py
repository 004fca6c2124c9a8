"""jitgate proxy benchmark: the same Envoy, route and load in five
configurations, in alternating rounds, medians reported.

Run through scripts/bench, which builds what is needed. Configurations:
  none       no filter (the physical limit of this route)
  wasm-noop  an empty proxy-wasm filter (the Wasm runtime alone)
  jitgate    the jitgate filter with a valid grant
  jwt_authn  Envoy's native JWT filter, HS256, same token, local JWKS
  ext_authz  Envoy's ext_authz calling a minimal authorizer per request

Method: Envoy runs with one worker pinned to CPU 0, wrk (and the ext_authz
authorizer) on CPU 1. Throughput: wrk -t1 -c32 for BENCH_SECONDS. CPU per
request: Envoy's utime+stime from /proc over the run divided by the requests
served. Latency: wrk -t1 -c1 --latency (closed loop, one connection: an
unloaded round trip, not a constant-rate measurement).
"""
import base64, hashlib, hmac, json, os, platform, re, signal, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = sys.argv[1]
JITGATE_WASM = sys.argv[2]
NOOP_WASM = sys.argv[3]
AUTHZ = sys.argv[4]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
KEY = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs"
CONFIGS = ["none", "wasm-noop", "jitgate", "jwt_authn", "ext_authz"]
CPUS = os.cpu_count() or 1


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def grant():
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "jit-grant+jwt", "kid": "k1"}, separators=(",", ":")).encode())
    claims = b64(json.dumps({"iss": "jit-control", "sub": "alice@example.com", "aud": "payments-api", "jti": "g-bench-0001",
                             "iat": now, "nbf": now, "exp": now + 3600, "req": "r-bench-0001",
                             "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}]}, separators=(",", ":")).encode())
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


def envoy_config(kind, port, admin, authz_port):
    filters = []
    clusters = []
    if kind == "wasm-noop":
        filters.append(wasm_filter(NOOP_WASM, "{}"))
    elif kind == "jitgate":
        cfg = {"issuer": "jit-control", "keys": {"k1": KEY}, "resources": [{"id": "payments-api", "path_prefix": "/v1"}]}
        filters.append(wasm_filter(JITGATE_WASM, json.dumps(cfg)))
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
    out = subprocess.run(taskset(1, ["wrk"] + args), capture_output=True, text=True).stdout
    return out


def parse_rps(out):
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    return (float(m.group(1)) if m else 0.0, int(n.group(1)) if n else 0)


def parse_latency(out, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1e6}[unit]


def run_one(kind, token, authz_port, workdir):
    port, admin = free_port(), free_port()
    path = os.path.join(workdir, f"{kind}.json")
    json.dump(envoy_config(kind, port, admin, authz_port), open(path, "w"))
    envoy = subprocess.Popen(taskset(0, [ENVOY, "-c", path, "--concurrency", "1", "--log-level", "error", "--disable-hot-restart"]),
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"{kind}.log"), "w"))
    try:
        url = f"http://127.0.0.1:{port}/v1/invoices/INV-1"
        for _ in range(200):
            try:
                r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"x-jit-grant: {token}", url],
                                   capture_output=True, text=True, timeout=2)
                if r.stdout == "200":
                    break
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit(f"{kind}: Envoy did not answer 200 (see {workdir}/{kind}.log)")
        header = ["-H", f"x-jit-grant: {token}"]
        wrk(["-t1", "-c32", "-d2s"] + header + [url])  # warm-up
        before = cpu_ticks(envoy.pid)
        out = wrk(["-t1", "-c32", f"-d{SECONDS}s"] + header + [url])
        ticks = cpu_ticks(envoy.pid) - before
        rps, total = parse_rps(out)
        cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(total, 1)
        lat = wrk(["-t1", "-c1", f"-d{max(2, SECONDS // 2)}s", "--latency"] + header + [url])
        return {"rps": rps, "cpu_us": cpu_us, "p50_us": parse_latency(lat, 50), "p99_us": parse_latency(lat, 99)}
    finally:
        envoy.send_signal(signal.SIGTERM)
        envoy.wait()


def main():
    workdir = os.path.join(ROOT, "bench", "results", "raw")
    os.makedirs(workdir, exist_ok=True)
    token = grant()
    authz_port = free_port()
    authz = subprocess.Popen(taskset(1, [AUTHZ, str(authz_port)]))
    results = {k: [] for k in CONFIGS}
    try:
        for r in range(ROUNDS):
            for kind in (CONFIGS if r % 2 == 0 else list(reversed(CONFIGS))):
                res = run_one(kind, token, authz_port, workdir)
                results[kind].append(res)
                print(f"  round {r + 1}/{ROUNDS} {kind:<10} {res['rps']:>10.0f} req/s  {res['cpu_us']:6.2f} us CPU/req  "
                      f"p50 {res['p50_us']:.0f} us  p99 {res['p99_us']:.0f} us", flush=True)
    finally:
        authz.terminate()
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "cpu_us", "p50_us", "p99_us")} for k, v in results.items()}
    base, jit, noop = med["none"]["rps"], med["jitgate"]["rps"], med["wasm-noop"]["rps"]
    envoy_version = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip().split("version:")[-1].strip()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# jitgate proxy benchmark, {date}", "",
             f"Machine: {CPUS} CPUs, {cpu_model}; Envoy {envoy_version}; {ROUNDS} rounds x {SECONDS} s, medians.",
             "Envoy: 1 worker on CPU 0; wrk and the ext_authz authorizer on CPU 1; direct-response route.",
             "Latency: wrk -c1 --latency (closed loop, one connection).", "",
             "| configuration | req/s | Envoy CPU us/req | p50 us | p99 us | vs no filter | vs jitgate |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k in CONFIGS:
        m = med[k]
        lines.append(f"| {k} | {m['rps']:.0f} | {m['cpu_us']:.2f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | "
                     f"{m['rps'] / base:.2f} | {m['rps'] / jit:.2f} |")
    added_cpu = med["jitgate"]["cpu_us"] - med["wasm-noop"]["cpu_us"]
    targets = [
        ("jitgate >= 0.92 x empty Wasm filter (req/s)", jit / noop, jit / noop >= 0.92),
        ("jitgate added Envoy CPU over empty Wasm <= 5 us/req", added_cpu, added_cpu <= 5),
        ("jitgate >= 1.5 x jwt_authn (req/s)", jit / med["jwt_authn"]["rps"], jit / med["jwt_authn"]["rps"] >= 1.5),
        ("jitgate >= 4 x ext_authz (req/s)", jit / med["ext_authz"]["rps"], jit / med["ext_authz"]["rps"] >= 4),
        ("jitgate p99 added over empty Wasm < 20 us", med["jitgate"]["p99_us"] - med["wasm-noop"]["p99_us"],
         med["jitgate"]["p99_us"] - med["wasm-noop"]["p99_us"] < 20),
    ]
    lines += ["", f"jitgate / no filter: {jit / base:.2f}", "", "| target | measured | holds |", "|---|---:|---|"]
    for name, value, ok in targets:
        lines.append(f"| {name} | {value:.2f} | {'yes' if ok else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = os.path.join(ROOT, "bench", "results", stamp)
    open(out + ".md", "w").write(text)
    json.dump({"date": date, "cpus": CPUS, "cpu_model": cpu_model, "envoy": envoy_version, "rounds": ROUNDS,
               "seconds": SECONDS, "medians": med, "raw": results,
               "targets": [{"name": n, "value": v, "holds": o} for n, v, o in targets]}, open(out + ".json", "w"), indent=2)
    print(f"written: bench/results/{stamp}.md and .json")


main()
