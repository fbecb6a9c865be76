#!/usr/bin/env python3
"""raft_bench.py - Gureum's Raft control plane against etcd 3.4, on the same machine in the same
run: 3 members each, on loopback addresses (Gureum 127.0.3.N, etcd 127.0.2.N).

Not a test: it measures and prints a table (see bench/README.md for how to read it). For each
system it measures
  latency    write latency p50/p99 and writes/s for small values (16 bytes) with 1 and with 32
             concurrent clients, each client a Python thread with its own keep-alive HTTP
             session, writing for --duration s (after a short untimed warm-up) to the leader;
  failover   time from SIGKILL of the leader until a write sent to a surviving member is
             acknowledged, median of --trials trials. The client gives each attempt
             --attempt-timeout s (default 0.25) and retries at once, as a client with a
             deadline would; otherwise a first write stuck on the dead leader decides the
             figure (etcd holds one for its 7 s request timeout). Each trial runs on a
             fresh 3-member cluster (started, 20 writes of history, then the kill).
Both are driven by the same Python client with the same style of requests, HTTP + JSON:
  Gureum: PUT /v1/state/bench/kN (body = value), answered {"revision": N};
  etcd:   POST /v3/kv/put {"key": base64, "value": base64} on its gRPC gateway (etcd 3.4).
So absolute numbers are bound by the client (the GIL, requests' per-call overhead) and only the
comparison between the two means much. Both run with their defaults (election timeout 1000 ms,
heartbeat 100 ms for both; etcd 3.4 has pre-vote off, Gureum on), data dirs on the same disk.
Every loop is bounded in time; every process is killed on exit, Ctrl-C included.

usage: raft_bench.py [--only gureum|etcd] [--trials 5] [--duration 5] [--clients 1,32]
                     [--attempt-timeout 0.25] [--json FILE] [--keep]
"""
import argparse
import atexit
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402  (cluster-test/harness.py: the gureum Node class, wait_for)

import requests  # noqa: E402

ETCD = os.environ.get("ETCD_BIN", shutil.which("etcd") or "/usr/bin/etcd")
VALUE = "v" * 16        # "small values"
WARMUP_S = 1.0          # untimed writes before each latency measurement
KEYSPACE = 10000        # keys bench/k0..k9999, rewritten round-robin
FAILOVER_LIMIT_S = 30   # give up on a failover trial after this long
NETS = {"gureum": 3, "etcd": 2}  # 127.0.<net>.N

PROCS = []  # every process we started, for the exit cleanup


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _track(proc):
    PROCS.append(proc)
    return proc


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except ProcessLookupError:
                pass
    for p in PROCS:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


_local = threading.local()


def session(addr):
    """One keep-alive session per thread and member."""
    s = getattr(_local, "s", None)
    if s is None:
        s = _local.s = {}
    if addr not in s:
        s[addr] = requests.Session()
    return s[addr]


def wait_for(cond, timeout, what):
    return harness.wait_for(cond, timeout, what, interval=0.05)


# --- the two systems -----------------------------------------------------------------------------

class GureumCluster:
    name = "gureum"

    def __init__(self, workdir):
        ips = [f"127.0.{NETS['gureum']}.{i + 1}" for i in range(3)]
        self.nodes = [harness.Node(workdir, f"g{i + 1}", ip, seeds=[] if i == 0 else
                                   [f"{ips[0]}:7071"]) for i, ip in enumerate(ips)]

    def start(self):
        for n in self.nodes:
            self.start_member(n)
        self.wait_whole(60)

    def start_member(self, n):
        n.start()
        _track(n.proc)

    def proc(self, n):
        return n.proc

    def label(self, n):
        return n.name

    def status(self, n):
        r = session(n.admin).get(f"http://{n.admin}/v1/raft/status", timeout=1)
        r.raise_for_status()
        return r.json()

    def leader(self, nodes=None):
        """The member every one of `nodes` names as leader, or None."""
        nodes = nodes or self.nodes
        sts = [self.status(n) for n in nodes]
        names = {s["leader"] for s in sts}
        if len(names) != 1 or "" in names:
            return None
        return next((n for n in self.nodes if n.name == names.pop()), None)

    def wait_whole(self, timeout):
        """All 3 answer, agree on the leader, and its configuration has all 3 as voters."""
        def whole():
            ld = self.leader()
            if not ld:
                return None
            voters = {m["name"] for m in self.status(ld)["members"] if m["role"] == "voter"}
            return ld if voters == {n.name for n in self.nodes} else None
        return wait_for(whole, timeout, "gureum: a leader with 3 voters")

    def put(self, n, key, timeout=10):
        """True when acknowledged."""
        r = session(n.admin).put(f"http://{n.admin}/v1/state/{key}", data=VALUE, timeout=timeout)
        return r.status_code == 200

    def stop(self):
        """SIGTERM to all at once, then reap; SIGKILL what is still up after 12 s (a node's
        own shutdown deadline is 10 s), and say so."""
        for n in self.nodes:
            if n.alive():
                n.signal(signal.SIGTERM)
        deadline = time.monotonic() + 12
        for n in self.nodes:
            if n.proc:
                try:
                    n.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log(f"  warning: {n.name} did not exit within 12 s of SIGTERM; killed")
                    n.kill()


class EtcdMember:
    def __init__(self, workdir, name, ip):
        self.name, self.ip = name, ip
        self.client = f"{ip}:2379"
        self.data = os.path.join(workdir, name)
        self.log = os.path.join(workdir, f"{name}.log")
        self.proc = None
        self.member_id = None


class EtcdCluster:
    name = "etcd"

    def __init__(self, workdir):
        self.nodes = [EtcdMember(workdir, f"e{i + 1}", f"127.0.{NETS['etcd']}.{i + 1}")
                      for i in range(3)]
        self.initial = ",".join(f"{m.name}=http://{m.ip}:2380" for m in self.nodes)

    def start(self):
        for m in self.nodes:
            self.start_member(m)
        self.wait_whole(60)

    def start_member(self, m):
        args = [ETCD, "--name", m.name, "--data-dir", m.data,
                "--listen-client-urls", f"http://{m.ip}:2379",
                "--advertise-client-urls", f"http://{m.ip}:2379",
                "--listen-peer-urls", f"http://{m.ip}:2380",
                "--initial-advertise-peer-urls", f"http://{m.ip}:2380",
                "--initial-cluster", self.initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "gureum-bench", "--logger", "zap",
                "--log-level", "warn"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(m.log, "ab") as f:
            m.proc = _track(subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env))

    def proc(self, m):
        return m.proc

    def label(self, m):
        return m.name

    def _post(self, m, path, body, timeout):
        return session(m.client).post(f"http://{m.client}{path}", data=json.dumps(body),
                                      timeout=timeout)

    def status(self, m):
        r = self._post(m, "/v3/maintenance/status", {}, 1)
        r.raise_for_status()
        j = r.json()
        m.member_id = j["header"]["member_id"]
        return j

    def leader(self, nodes=None):
        nodes = nodes or self.nodes
        sts = [self.status(m) for m in nodes]
        ids = {s.get("leader") for s in sts}
        if len(ids) != 1 or None in ids or "0" in ids:
            return None
        lid = ids.pop()
        return next((m for m in self.nodes if m.member_id == lid), None)

    def wait_whole(self, timeout):
        def whole():
            for m in self.nodes:
                self.status(m)
            ld = self.leader()
            # A write through every member proves each is connected to the leader.
            return ld if ld and all(self.put(m, "bench/probe", timeout=2) for m in self.nodes) \
                else None
        return wait_for(whole, timeout, "etcd: 3 members agreeing on a leader")

    def put(self, m, key, timeout=10):
        body = {"key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(VALUE.encode()).decode()}
        r = self._post(m, "/v3/kv/put", body, timeout)
        return r.status_code == 200 and "error" not in r.json()

    def stop(self):
        for m in self.nodes:
            if m.proc and m.proc.poll() is None:
                m.proc.terminate()
        for m in self.nodes:
            if m.proc:
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()


SYSTEMS = {"gureum": GureumCluster, "etcd": EtcdCluster}


# --- measurements --------------------------------------------------------------------------------

def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def measure_latency(system, target, clients, duration):
    """`clients` threads write to `target` for WARMUP_S untimed, then `duration` s timed.
    Returns (p50 ms, p99 ms, writes/s, errors)."""
    lat = [[] for _ in range(clients)]
    errors = [0] * clients
    phase = {"timed": False, "stop": False}

    def client(c):
        i = c
        while not phase["stop"]:
            key = f"bench/k{i % KEYSPACE}"
            i += clients
            t0 = time.perf_counter()
            try:
                ok = system.put(target, key, timeout=10)
            except requests.RequestException:
                ok = False
            dt = time.perf_counter() - t0
            if phase["timed"] and not phase["stop"]:
                if ok:
                    lat[c].append(dt)
                else:
                    errors[c] += 1

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    time.sleep(WARMUP_S)  # the warm-up window itself
    phase["timed"] = True
    t0 = time.monotonic()
    time.sleep(duration)  # the measurement window itself
    phase["stop"] = True
    elapsed = time.monotonic() - t0
    for t in threads:
        t.join(15)
    alls = sorted(x for per in lat for x in per)
    return pct(alls, 50) * 1000, pct(alls, 99) * 1000, len(alls) / elapsed, sum(errors)


def measure_failover(name, workdir, trial, attempt_timeout):
    """On a fresh cluster: SIGKILL the leader, time until a write through a survivor is
    acknowledged."""
    d = os.path.join(workdir, f"failover-{trial + 1}")
    os.makedirs(d)
    system = SYSTEMS[name](d)
    try:
        t_up = time.monotonic()
        system.start()
        leader = system.wait_whole(60)
        t_up = time.monotonic() - t_up
        for i in range(20):  # a little history, and warm connections
            assert system.put(leader, f"bench/warm{i}"), "warm-up write failed"
        survivor = next(n for n in system.nodes if n is not leader)
        assert system.put(survivor, "bench/warm-survivor"), "warm-up write via survivor failed"
        p = system.proc(leader)
        p.kill()
        t0 = time.monotonic()
        p.wait()
        attempts = 0
        while True:
            attempts += 1
            try:
                if system.put(survivor, f"bench/failover{trial}", timeout=attempt_timeout):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() - t0 > FAILOVER_LIMIT_S:
                raise RuntimeError(f"{name}: no write acknowledged {FAILOVER_LIMIT_S}s after "
                                   f"killing the leader")
            time.sleep(0.005)
        took = time.monotonic() - t0
        log(f"  failover {trial + 1}: killed {system.label(leader)}, write via "
            f"{system.label(survivor)} acknowledged after {took:.3f}s ({attempts} attempts; "
            f"cluster was up in {t_up:.1f}s)")
        return took
    finally:
        system.stop()


def run_system(name, args, workdir):
    result = {"system": name, "latency": {}}
    t_start = time.monotonic()
    try:
        system = SYSTEMS[name](os.path.join(workdir, "latency"))
        os.makedirs(os.path.join(workdir, "latency"))
        try:
            system.start()
            leader = system.wait_whole(60)
            log(f"{name}: 3 members up, leader {system.label(leader)}")
            for clients in args.clients:
                leader = system.wait_whole(30)
                p50, p99, rate, errs = measure_latency(system, leader, clients, args.duration)
                result["latency"][clients] = {"p50_ms": p50, "p99_ms": p99, "writes_s": rate,
                                              "errors": errs}
                log(f"  {clients:>2} clients: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                    f"{rate:.0f} writes/s" + (f", {errs} errors" if errs else ""))
        finally:
            system.stop()
        times = [measure_failover(name, workdir, t, args.attempt_timeout)
                 for t in range(args.trials)]
        result.update(failover_median=statistics.median(times), failover_min=min(times),
                      failover_max=max(times), failover_all=times)
    except Exception as e:
        result["error"] = f"{e.__class__.__name__}: {e}"
        log(f"{name}: FAILED: {result['error']}")
    finally:
        log(f"{name}: done in {time.monotonic() - t_start:.0f}s")
    return result


# --- report --------------------------------------------------------------------------------------

def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def print_table(results, args):
    cols = ["system"]
    for c in args.clients:
        cols += [f"{c}c p50 ms", f"{c}c p99 ms", f"{c}c writes/s"]
    cols += ["failover med s", "min s", "max s"]
    rows = []
    for r in results:
        row = [r["system"]]
        for c in args.clients:
            lat = r["latency"].get(c, {})
            row += [fmt(lat.get("p50_ms"), ".2f"), fmt(lat.get("p99_ms"), ".2f"),
                    fmt(lat.get("writes_s"), ".0f")]
        row += [fmt(r.get("failover_median"), ".2f"), fmt(r.get("failover_min"), ".2f"),
                fmt(r.get("failover_max"), ".2f")]
        if "error" in r:
            row[-1] += "  ERROR: " + r["error"][:60]
        rows.append(row)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    print()
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print()
    print(f"3 members each on loopback; {len(VALUE)}-byte values; Nc = N concurrent clients writing "
          f"to the leader for {args.duration:g} s; failover = SIGKILL of the leader until a write "
          f"via a survivor is acknowledged ({args.attempt_timeout:g} s per attempt, retried), "
          f"median/min/max of {args.trials} trials.")
    print("Both systems are driven by the same Python client (threads, keep-alive HTTP + JSON; "
          "etcd through its gRPC gateway), so absolute numbers are client-bound: compare the "
          "two rows, not the numbers with other benchmarks.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(SYSTEMS), help="run one system only")
    ap.add_argument("--trials", type=int, default=5, help="failover trials (>= 1)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per latency run")
    ap.add_argument("--clients", default="1,32", help="concurrent clients, comma-separated")
    ap.add_argument("--attempt-timeout", type=float, default=0.25,
                    help="client timeout of each write attempt during failover, seconds")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.trials < 1 or not 0 < args.duration <= 60 or not 0.05 <= args.attempt_timeout <= 30 or \
            not args.clients or any(not 1 <= c <= 256 for c in args.clients):
        ap.error("--trials >= 1, --duration in (0, 60], --attempt-timeout 0.05..30, "
                 "--clients each 1..256")
    systems = [args.only] if args.only else ["etcd", "gureum"]
    for s in systems:
        binary = ETCD if s == "etcd" else harness.GUREUM
        if not os.access(binary, os.X_OK):
            ap.error(f"{s}: {binary} not found or not executable"
                     + (" (apt-get install -y etcd-server etcd-client)" if s == "etcd" else ""))

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _f: sys.exit(128 + signum))
    workdir = tempfile.mkdtemp(prefix="raft-bench-")
    log(f"work dir {workdir}; systems {systems}; clients {args.clients}; "
        f"{args.duration:g} s per run; {args.trials} failover trials")
    results = []
    try:
        for s in systems:
            d = os.path.join(workdir, s)
            os.makedirs(d)
            results.append(run_system(s, args, d))
    finally:
        cleanup()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
