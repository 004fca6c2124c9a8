"""Decision reporting at fleet scale: what a fleet of proxies costs the
control service, per reporting mode, measured side by side in one run.

A fleet is N proxies, each allowing R requests per second under G active
grants (each grant used with one method under one scope rule, status 200).
For each backend (SQLite, PostgreSQL) and mode:

  each       every allowed request is a record: the proxies post batches of
             500 records. A fleet second at N x R is too many records to
             post here, so SAMPLE records are posted and the cost per
             record (control CPU, database bytes) is scaled to the fleet.
  aggregate  what the filter sends by default: per proxy, every
             count_interval (60 s, the filter's default;
             FLEET_COUNT_INTERVAL_S), one batch with G counts, which the
             service keeps as one audit record and G count rows (plus,
             once per grant and worker, the first request as a record,
             posted before the measurement). SECONDS (10 intervals) of the
             whole fleet's steady reports are posted, really.

Control CPU is the service process's user+system time (/proc) across the
posts; database growth is the SQLite file (and WAL, after a checkpoint) or
pg_database_size. Figures are per second of fleet traffic and per day.
Prints one table; nothing is asserted.

Usage: python3 bench/fleet.py BINARY [N,...] [R] [G]
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INGEST_KEY = "dev-ingest-key-0123456789"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/test"
SAMPLE = int(os.environ.get("FLEET_SAMPLE", "200000"))
COUNT_INTERVAL_S = int(os.environ.get("FLEET_COUNT_INTERVAL_S", "60"))
SECONDS = int(os.environ.get("FLEET_SECONDS", str(10 * COUNT_INTERVAL_S)))
SENDERS = 4


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def psql(sql, db="test"):
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


class Service:
    def __init__(self, binary, backend, work):
        self.backend, self.work = backend, work
        self.port = free_port()
        config = open(os.path.join(ROOT, "control/examples/jitgate.toml")).read()
        config = config.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        if backend == "postgres":
            self.db = f"fleet_{os.getpid()}_{int(time.time())}"
            psql(f"CREATE DATABASE {self.db}")
            config = config.replace("sqlite://jitgate.db", f"postgres://postgres@127.0.0.1:5432/{self.db}")
        with open(os.path.join(work, "jitgate.toml"), "w") as f:
            f.write(config)
        self.log = open(os.path.join(work, "serve.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "--config", "jitgate.toml"], cwd=work,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit(f"the service did not start (see {work}/serve.log)")

    def post(self, body):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/audit/events", data=json.dumps(body).encode(),
            headers={"authorization": f"Bearer {INGEST_KEY}", "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            if r.status != 202:
                raise SystemExit(f"ingest answered {r.status}")

    def size(self):
        if self.backend == "postgres":
            return int(psql(f"SELECT pg_database_size('{self.db}')"))
        db = os.path.join(self.work, "jitgate.db")
        subprocess.run(["python3", "-c", f"import sqlite3; sqlite3.connect('{db}').execute('PRAGMA wal_checkpoint(TRUNCATE)')"],
                       check=False)
        return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        if self.backend == "postgres":
            psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")


def event(proxy, grant, t, first=False):
    return {"time_ms": t, "outcome": "allowed", "resource": "payments-api", "grant_id": grant,
            "subject": "alice", "method": "GET", "path": f"/v1/invoices/INV-{t % 100000}",
            "status": 200, "client": "10.1.2.3", "request_id": f"{proxy}-{t}"}


def send_all(service, bodies):
    """Posts bodies from SENDERS threads, each proxy's batches in order by
    one thread (as a reporter does: the next batch after the last one's
    acknowledgement); returns (control CPU s, wall s)."""
    by_proxy = {}
    for b in bodies:
        by_proxy.setdefault(b["proxy"], []).append(b)
    queue = list(by_proxy.values())
    lock = threading.Lock()

    def sender():
        while True:
            with lock:
                if not queue:
                    return
                batches = queue.pop()
            for body in batches:
                service.post(body)

    before, start = cpu_seconds(service.proc.pid), time.time()
    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cpu_seconds(service.proc.pid) - before, time.time() - start


def each_mode(service, n, rate, grants):
    """SAMPLE records in batches of 500; scaled to n proxies at rate."""
    bodies, seq = [], {}
    # At least SENDERS reporters, so that the posts run in parallel.
    reporters = max(n, SENDERS)
    for i in range(0, SAMPLE, 500):
        proxy = f"proxy-{(i // 500) % reporters}"
        seq[proxy] = seq.get(proxy, 0) + 1
        events = [event(proxy, f"g-fleet-{(i + k) % grants}", 1_000_000 + i + k) for k in range(500)]
        bodies.append({"proxy": proxy, "batch": {"instance": proxy, "seq": seq[proxy]}, "events": events})
    size0 = service.size()
    cpu, wall = send_all(service, bodies)
    grown = service.size() - size0
    per_record_cpu, per_record_bytes = cpu / SAMPLE, grown / SAMPLE
    fleet_records_s = n * rate
    return per_record_cpu * fleet_records_s, per_record_bytes * fleet_records_s * 86400, fleet_records_s * 86400, 0, wall


def aggregate_mode(service, n, rate, grants):
    """SECONDS of the fleet's reports, posted for real."""
    bodies = []
    per_grant = rate * COUNT_INTERVAL_S // grants
    intervals = max(SECONDS // COUNT_INTERVAL_S, 1)
    for p in range(n):
        proxy = f"agg-{p}"
        for k in range(intervals + 1):
            t0 = 2_000_000 + k * COUNT_INTERVAL_S * 1000
            firsts = [event(proxy, f"g-fleet-{g}", t0, True) for g in range(grants)] if k == 0 else []
            counts = []
            for g in range(grants):
                c = event(proxy, f"g-fleet-{g}", t0 + 1)
                c.update({"calls": per_grant, "first_ms": t0 + 1, "last_ms": t0 + COUNT_INTERVAL_S * 1000 - 1, "rule": 0})
                counts.append(c)
            bodies.append({"proxy": proxy, "batch": {"instance": proxy, "seq": k + 1}, "events": firsts,
                           "counts": counts})
    # The first interval (with the first-request records, once per grant
    # and worker) is posted before measuring: the steady state is the
    # counts alone, one record per batch.
    send_all(service, [b for b in bodies if b["batch"]["seq"] == 1])
    steady = [b for b in bodies if b["batch"]["seq"] > 1]
    size0 = service.size()
    cpu, wall = send_all(service, steady)
    grown = service.size() - size0
    seconds = intervals * COUNT_INTERVAL_S
    per_day = 86400 / seconds
    counts = sum(len(b["counts"]) for b in steady)
    return cpu / seconds, grown * per_day, len(steady) * per_day, counts * per_day, wall


def human(b):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(b) < 1000:
            return f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} PB"


def main():
    binary = os.path.abspath(sys.argv[1])
    fleets = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,10,100").split(",")]
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    grants = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    backends = ["sqlite", "postgres"]
    print(f"fleet: N proxies x {rate} allowed requests/s each under {grants} grants; "
          f"each: {SAMPLE} records posted and scaled; aggregate: {SECONDS} s of reports posted, "
          f"counts every {COUNT_INTERVAL_S} s")
    print(f"{'backend':9} {'N':>4} {'mode':9} {'control cores':>13} {'DB growth/day':>14} {'records/day':>13} {'counts/day':>11} {'posted in':>9}")
    rows = []
    for backend in backends:
        for n in fleets:
            for mode in ("each", "aggregate"):
                work = tempfile.mkdtemp(prefix="jitgate-fleet-")
                service = Service(binary, backend, work)
                try:
                    run = each_mode if mode == "each" else aggregate_mode
                    cores, bytes_day, records_day, counts_day, wall = run(service, n, rate, grants)
                finally:
                    service.stop()
                    shutil.rmtree(work, ignore_errors=True)
                rows.append((backend, n, mode, cores, bytes_day))
                print(f"{backend:9} {n:>4} {mode:9} {cores:>13.3f} {human(bytes_day):>14} {records_day:>13.3g} {counts_day:>11.3g} {wall:>8.1f}s",
                      flush=True)
    for backend in backends:
        for n in fleets:
            e = next(r for r in rows if r[:3] == (backend, n, "each"))
            a = next(r for r in rows if r[:3] == (backend, n, "aggregate"))
            cpu = f"{e[3] / a[3]:.0f}x" if a[3] >= 0.001 else "n/a (aggregate below the CPU clock's resolution)"
            print(f"ratio each/aggregate ({backend}, N={n}): CPU {cpu}, database {e[4] / max(a[4], 1):.0f}x")


if __name__ == "__main__":
    main()
