#!/usr/bin/env python3
"""gossip_bench.py - Gureum's gossip membership against Serf (HashiCorp memberlist), on the same
machine in the same run, for clusters of 5, 10 and 25 nodes on loopback addresses.

Not a test: it measures and prints a table (see bench/README.md for how to read it). For each
system and cluster size it measures
  join       time from spawning one extra node until every member lists it alive;
  kill       time from SIGKILL of a member until every other member lists it dead (Serf:
             "failed"); median and max over --kills kills, the victim restarted in between and
             waited for until everyone lists it alive again;
  false      members that ever report a member dead/failed while it is paused (SIGSTOP) for 2 s,
             polled throughout the pause and 5 s after it;
  bytes/s    idle traffic per node: nftables counters on the loopback output hook count the
             bytes each node's address sends to the cluster's addresses over an idle window,
             divided by the window and the node count (the same rules for both systems).
The goal is for Gureum to beat Serf on detection and convergence with zero false deaths.

Both systems run with their defaults (Serf: the LAN profile). Members are polled the same way
for both: one persistent connection per node (Gureum: HTTP keep-alive GET /v1/members; Serf: its
msgpack RPC `members` command, what `serf members -format=json` uses), every node in turn,
rounds 20 ms apart. Every wait is bounded; every process and the nft table are cleaned up on
exit, Ctrl-C included.

usage: gossip_bench.py [--sizes 5,10,25] [--kills 5] [--only gureum|serf] [--idle 10]
                       [--json FILE] [--keep]
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402  (cluster-test/harness.py: the gureum Node class, wait_for)

import requests  # noqa: E402

SERF = os.environ.get("SERF_BIN", shutil.which("serf") or "/usr/bin/serf")
NFT_TABLE = "gureum_bench"
POLL = 0.02          # seconds between polling rounds
PAUSE_S = 2.0        # SIGSTOP length
AFTER_PAUSE_S = 5.0  # keep watching this long after SIGCONT
SETTLE_S = 2.0       # after convergence, before the idle byte window (start-up syncs die down)
# Subnets: 127.0.<base + size>.<i>; distinct per system and size so no run reuses an address.
NET_BASE = {"gureum": 100, "serf": 200}

PROCS = []  # every process we started, for the exit cleanup


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- a minimal msgpack codec (Serf's RPC protocol); no third-party dependency ----------------

class Incomplete(Exception):
    pass


def mp_pack(o, out=None):
    out = bytearray() if out is None else out
    if o is None:
        out.append(0xc0)
    elif o is True or o is False:
        out.append(0xc3 if o else 0xc2)
    elif isinstance(o, int):
        if 0 <= o < 128:
            out.append(o)
        elif o >= 0:
            out += b"\xcf" + struct.pack(">Q", o)
        else:
            out += b"\xd3" + struct.pack(">q", o)
    elif isinstance(o, str):
        b = o.encode()
        out += (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xdb" + struct.pack(">I", len(b)))
        out += b
    elif isinstance(o, dict):
        out += b"\xdf" + struct.pack(">I", len(o))
        for k, v in o.items():
            mp_pack(k, out)
            mp_pack(v, out)
    elif isinstance(o, (list, tuple)):
        out += b"\xdd" + struct.pack(">I", len(o))
        for v in o:
            mp_pack(v, out)
    else:
        raise TypeError(f"cannot msgpack {type(o)}")
    return out


def mp_unpack(b, i=0):
    """Decode one object from b at i; returns (obj, next i); raises Incomplete on short input."""
    def take(n):
        nonlocal i
        if i + n > len(b):
            raise Incomplete()
        v = b[i:i + n]
        i += n
        return v

    def raw(n):
        v = bytes(take(n))
        try:
            return v.decode()
        except UnicodeDecodeError:
            return v

    t = take(1)[0]
    if t < 0x80:
        return t, i
    if t >= 0xe0:
        return t - 0x100, i
    if 0x80 <= t <= 0x8f or t in (0xde, 0xdf):
        n = t & 0x0f if t <= 0x8f else struct.unpack(">H" if t == 0xde else ">I",
                                                       take(2 if t == 0xde else 4))[0]
        d = {}
        for _ in range(n):
            k, i = mp_unpack(b, i)
            d[k], i = mp_unpack(b, i)
        return d, i
    if 0x90 <= t <= 0x9f or t in (0xdc, 0xdd):
        n = t & 0x0f if t <= 0x9f else struct.unpack(">H" if t == 0xdc else ">I",
                                                       take(2 if t == 0xdc else 4))[0]
        a = []
        for _ in range(n):
            v, i = mp_unpack(b, i)
            a.append(v)
        return a, i
    if 0xa0 <= t <= 0xbf:
        return raw(t & 0x1f), i
    fixed = {0xc0: None, 0xc2: False, 0xc3: True}
    if t in fixed:
        return fixed[t], i
    if t in (0xd9, 0xda, 0xdb):  # str 8/16/32 (Serf's codec writes old-style raw)
        n = struct.unpack({0xd9: ">B", 0xda: ">H", 0xdb: ">I"}[t], take({0xd9: 1, 0xda: 2, 0xdb: 4}[t]))[0]
        return raw(n), i
    if t in (0xc4, 0xc5, 0xc6):  # bin 8/16/32
        n = struct.unpack({0xc4: ">B", 0xc5: ">H", 0xc6: ">I"}[t], take({0xc4: 1, 0xc5: 2, 0xc6: 4}[t]))[0]
        return bytes(take(n)), i
    ints = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q", 0xd0: ">b", 0xd1: ">h", 0xd2: ">i",
            0xd3: ">q", 0xca: ">f", 0xcb: ">d"}
    if t in ints:
        return struct.unpack(ints[t], take(struct.calcsize(ints[t])))[0], i
    exts = {0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16}
    if t in exts:
        take(1 + exts[t])
        return None, i
    if t in (0xc7, 0xc8, 0xc9):
        n = struct.unpack({0xc7: ">B", 0xc8: ">H", 0xc9: ">I"}[t], take({0xc7: 1, 0xc8: 2, 0xc9: 4}[t]))[0]
        take(1 + n)
        return None, i
    raise ValueError(f"bad msgpack type byte 0x{t:02x}")


class SerfRPC:
    """One persistent connection to a Serf agent's RPC port (handshake, then `members`)."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.addr = (host, int(port))
        self.sock, self.buf, self.seq = None, bytearray(), 0

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, bytearray()

    def _read_obj(self, deadline):
        while True:
            try:
                obj, n = mp_unpack(self.buf)
                del self.buf[:n]
                return obj
            except Incomplete:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("serf rpc: no reply")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("serf rpc: closed")
            self.buf += chunk

    def _call(self, command, body=None, has_reply_body=True, timeout=2.0):
        deadline = time.monotonic() + timeout
        self.seq += 1
        msg = mp_pack({"Command": command, "Seq": self.seq})
        if body is not None:
            mp_pack(body, msg)
        self.sock.sendall(bytes(msg))
        hdr = self._read_obj(deadline)
        if hdr.get("Error"):
            raise RuntimeError(f"serf rpc {command}: {hdr['Error']}")
        return self._read_obj(deadline) if has_reply_body else None

    def members(self):
        """[{Name, Status, ...}]; reconnects when the connection is gone."""
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.addr, timeout=2)
                self.sock.settimeout(2)
                self._call("handshake", {"Version": 1}, has_reply_body=False)
            return self._call("members")["Members"]
        except Exception:
            self.close()
            raise


# --- the two systems -------------------------------------------------------------------------

def _track(proc):
    PROCS.append(proc)
    return proc


class GureumNode:
    def __init__(self, workdir, name, ip, seed_ip):
        seeds = [f"{seed_ip}:7071"] if seed_ip and seed_ip != ip else []
        self.n = harness.Node(workdir, name, ip, seeds=seeds)
        self.name, self.ip = name, ip
        self.http = requests.Session()

    def start(self):
        self.n.start()
        _track(self.n.proc)

    def ready(self):
        try:
            return bool(self.n.status())
        except Exception:
            return False

    def view(self):
        """{name: state} with states alive/suspect/dead/left."""
        r = self.http.get(f"http://{self.n.admin}/v1/members", timeout=1)
        r.raise_for_status()
        return {m["name"]: m["state"] for m in r.json()}

    @property
    def proc(self):
        return self.n.proc

    def close(self):
        self.http.close()


class SerfNode:
    STATES = {"alive": "alive", "failed": "dead", "left": "left", "leaving": "left"}

    def __init__(self, workdir, name, ip, seed_ip):
        self.name, self.ip, self.seed_ip = name, ip, seed_ip
        self.log = os.path.join(workdir, f"{name}.log")
        self.rpc = SerfRPC(f"{ip}:7373")
        self.proc = None

    def start(self):
        args = [SERF, "agent", f"-node={self.name}", f"-bind={self.ip}:7946",
                f"-rpc-addr={self.ip}:7373", "-log-level=warn"]
        if self.seed_ip and self.seed_ip != self.ip:
            args.append(f"-join={self.seed_ip}:7946")
        with open(self.log, "ab") as f:
            self.proc = _track(subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT))
        self.rpc.close()

    def ready(self):
        try:
            self.rpc.members()
            return True
        except Exception:
            return False

    def view(self):
        """{name: state}, Serf's statuses mapped to Gureum's words (failed -> dead)."""
        return {m["Name"]: self.STATES.get(m["Status"], m["Status"]) for m in self.rpc.members()}

    def close(self):
        self.rpc.close()


SYSTEMS = {"gureum": GureumNode, "serf": SerfNode}


def stop_procs(procs, sig=signal.SIGTERM, wait=10):
    """Signal every still-running process (SIGCONT first, in case it is paused), then reap; what
    does not exit within `wait` s is SIGKILLed."""
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup():
    stop_procs([p for p in PROCS if p.poll() is None], signal.SIGKILL, wait=5)
    nft_delete()


# --- nftables byte counters ------------------------------------------------------------------

def nft_delete():
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True, timeout=10)


def nft_count_setup(ips):
    """One counter rule per address: bytes it sends to any cluster address (loopback output)."""
    nft_delete()
    dst = ", ".join(ips)
    lines = [f"add table inet {NFT_TABLE}",
             f"add chain inet {NFT_TABLE} out {{ type filter hook output priority 0; policy accept; }}"]
    lines += [f"add rule inet {NFT_TABLE} out ip saddr {ip} ip daddr {{ {dst} }} counter"
              for ip in ips]
    r = subprocess.run(["nft", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"nft: {r.stderr}")


def nft_counts():
    """{source ip: bytes}."""
    r = subprocess.run(["nft", "-j", "list", "chain", "inet", NFT_TABLE, "out"],
                       capture_output=True, text=True, timeout=10, check=True)
    out = {}
    for item in json.loads(r.stdout)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        src, nbytes = None, 0
        for e in rule["expr"]:
            m = e.get("match")
            if m and m["left"].get("payload", {}).get("field") == "saddr":
                src = m["right"]
            if "counter" in e:
                nbytes = e["counter"]["bytes"]
        if src:
            out[src] = nbytes
    return out


# --- measurements ------------------------------------------------------------------------------

def poll_until(observers, pred, timeout):
    """Poll every observer's view each round until pred(view) holds for all of them (each
    observer is done the first time it holds). Returns {observer name: seconds}, or None for
    observers that never got there within `timeout`."""
    t0 = time.monotonic()
    done = {}
    deadline = t0 + timeout
    while len(done) < len(observers) and time.monotonic() < deadline:
        for o in observers:
            if o.name in done:
                continue
            try:
                if pred(o.view()):
                    done[o.name] = time.monotonic() - t0
            except Exception:
                pass
        time.sleep(POLL)
    return {o.name: done.get(o.name) for o in observers}


def wait_seen(observers, targets, state, timeout, what):
    res = poll_until(observers, lambda v: all(v.get(t.name) == state for t in targets), timeout)
    missing = [k for k, v in res.items() if v is None]
    if missing:
        sample = {}
        for o in observers:
            if o.name in missing[:3]:
                try:
                    sample[o.name] = {t.name: o.view().get(t.name) for t in targets}
                except Exception as e:
                    sample[o.name] = repr(e)
        raise RuntimeError(f"{what}: {len(missing)} members never saw it within {timeout}s "
                           f"(e.g. {sample})")
    return max(res.values())


def start_cluster(system, nodes, timeout):
    seed, rest = nodes[0], nodes[1:]
    seed.start()
    harness.wait_for(seed.ready, 15, f"{seed.name} to answer")
    for n in rest:
        n.start()
    for n in rest:
        harness.wait_for(n.ready, 15, f"{n.name} to answer")
    return wait_seen(nodes, nodes, "alive", timeout, f"{system}: all {len(nodes)} alive everywhere")


def measure_idle_bytes(nodes, window):
    ips = [n.ip for n in nodes]
    nft_count_setup(ips)
    try:
        before = nft_counts()
        t0 = time.monotonic()
        time.sleep(window)  # the idle window itself: nothing is polled meanwhile
        after = nft_counts()
        dt = time.monotonic() - t0
    finally:
        nft_delete()
    per = [(after.get(ip, 0) - before.get(ip, 0)) / dt for ip in ips]
    return sum(per) / len(per), max(per)


def measure_pause(victim, others):
    """Count observers that ever list the paused victim as dead; then wait for it alive."""
    ever_dead = set()
    victim.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    resumed = False
    try:
        while time.monotonic() - t0 < PAUSE_S + AFTER_PAUSE_S:
            if not resumed and time.monotonic() - t0 >= PAUSE_S:
                victim.proc.send_signal(signal.SIGCONT)
                resumed = True
            for o in others:
                try:
                    if o.view().get(victim.name) == "dead":
                        ever_dead.add(o.name)
                except Exception:
                    pass
            time.sleep(POLL)
    finally:
        if not resumed:
            victim.proc.send_signal(signal.SIGCONT)
    try:
        wait_seen(others, [victim], "alive", 30, f"{victim.name} alive again after the pause")
        recovered = True
    except RuntimeError as e:
        log(f"  {e}")
        recovered = False
    return len(ever_dead), recovered


def measure_kills(system, nodes, kills):
    times = []
    for k in range(kills):
        victim = nodes[1 + k % (len(nodes) - 1)]  # never the seed
        others = [n for n in nodes if n is not victim]
        wait_seen(nodes, nodes, "alive", 60, f"{system}: everyone alive before kill {k + 1}")
        t0 = time.monotonic()
        victim.proc.kill()
        victim.proc.wait()
        res = poll_until(others, lambda v: v.get(victim.name) == "dead", 120)
        if any(v is None for v in res.values()):
            raise RuntimeError(f"{system}: SIGKILLed {victim.name} not dead everywhere in 120 s")
        t = max(res.values())
        times.append(t)
        log(f"  kill {k + 1}/{kills}: {victim.name} dead everywhere after {t:.2f}s "
            f"(first observer {min(res.values()):.2f}s)")
        victim.close()
        victim.start()
        harness.wait_for(victim.ready, 15, f"{victim.name} to answer after restart")
        wait_seen(others, [victim], "alive", 60, f"restarted {victim.name} alive everywhere")
    return times


def run_one(system, size, args, workdir):
    net = NET_BASE[system] + size
    ips = [f"127.0.{net}.{i + 1}" for i in range(size + 1)]  # the last one is the joiner
    prefix = "g" if system == "gureum" else "s"
    make = SYSTEMS[system]
    nodes = [make(workdir, f"{prefix}{size}-{i + 1}", ip, ips[0]) for i, ip in enumerate(ips[:-1])]
    joiner = make(workdir, f"{prefix}{size}-{size + 1}", ips[-1], ips[0])
    result = {"system": system, "nodes": size}
    t_start = time.monotonic()
    try:
        conv = start_cluster(system, nodes, 120)
        log(f"{system} x{size}: converged ({conv:.2f}s after the last node answered)")
        time.sleep(SETTLE_S)
        avg, mx = measure_idle_bytes(nodes, args.idle)
        result.update(bytes_per_node=avg, bytes_max_node=mx)
        log(f"  idle traffic: {avg:.0f} B/s per node (max {mx:.0f})")

        false_deaths, recovered = measure_pause(nodes[-1], nodes[:-1])
        result.update(false_deaths=false_deaths, pause_observers=size - 1,
                      pause_recovered=recovered)
        log(f"  2 s pause of {nodes[-1].name}: {false_deaths} members reported it dead; "
            f"{'recovered' if recovered else 'NOT recovered'}")

        times = measure_kills(system, nodes, args.kills)
        result.update(kill_median=statistics.median(times), kill_max=max(times), kill_all=times)

        wait_seen(nodes, nodes, "alive", 60, f"{system}: everyone alive before the join")
        joiner.start()
        res = poll_until(nodes, lambda v: v.get(joiner.name) == "alive", 60)
        if any(v is None for v in res.values()):
            raise RuntimeError(f"{system}: new node {joiner.name} not alive everywhere in 60 s")
        result["join"] = max(res.values())
        log(f"  join: {joiner.name} alive everywhere {result['join']:.2f}s after spawn")
    except Exception as e:
        result["error"] = str(e)
        log(f"{system} x{size}: FAILED: {e}")
    finally:
        all_nodes = nodes + [joiner]
        stop_procs([n.proc for n in all_nodes if n.proc is not None])
        for n in all_nodes:
            n.close()
        log(f"{system} x{size}: done in {time.monotonic() - t_start:.0f}s")
    return result


# --- report ------------------------------------------------------------------------------------

def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def print_table(results):
    cols = ["system", "nodes", "join s", "kill med s", "kill max s", "false deaths",
            "bytes/s/node"]
    rows = []
    for r in results:
        fd = (f"{r['false_deaths']}/{r['pause_observers']}"
              + ("" if r.get("pause_recovered", True) else " (stuck)")
              if "false_deaths" in r else "-")
        rows.append([r["system"], str(r["nodes"]), fmt(r.get("join"), ".2f"),
                     fmt(r.get("kill_median"), ".2f"), fmt(r.get("kill_max"), ".2f"), fd,
                     fmt(r.get("bytes_per_node"), ".0f")
                     + ("" if "error" not in r else "  ERROR: " + r["error"][:60])])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    print()
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print()
    print("join = spawn of a new node until every member lists it alive; kill = SIGKILL until "
          "every other member lists it dead (Serf: failed), median/max of the kills; false "
          "deaths = members that reported a 2 s SIGSTOPped node dead / members watching; "
          "bytes/s/node = idle IP bytes each node sends to the cluster.")
    print("Goal: Gureum beats Serf on join and kill times with zero false deaths.")
    by = {(r["system"], r["nodes"]): r for r in results}
    for size in sorted({r["nodes"] for r in results}):
        g, s = by.get(("gureum", size)), by.get(("serf", size))
        if not g or not s or "error" in g or "error" in s:
            continue
        verdict = []
        for key, label in (("join", "join"), ("kill_median", "kill median"),
                           ("kill_max", "kill max")):
            verdict.append(f"{label} {'beats' if g[key] < s[key] else 'LOSES TO'} Serf "
                           f"({g[key]:.2f}s vs {s[key]:.2f}s)")
        verdict.append("zero false deaths" if g["false_deaths"] == 0 else
                       f"{g['false_deaths']} FALSE DEATHS")
        print(f"  {size:>3} nodes: Gureum " + "; ".join(verdict))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5,10,25", help="cluster sizes, comma-separated")
    ap.add_argument("--kills", type=int, default=5, help="SIGKILLs per cluster (>= 1)")
    ap.add_argument("--only", choices=sorted(SYSTEMS), help="run one system only")
    ap.add_argument("--idle", type=float, default=10.0, help="idle byte window, seconds")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(s < 2 or s > 50 for s in sizes) or args.kills < 1:
        ap.error("sizes must be 2..50 and --kills >= 1")
    systems = [args.only] if args.only else ["serf", "gureum"]
    for s in systems:
        binary = SERF if s == "serf" else harness.GUREUM
        if not os.access(binary, os.X_OK):
            ap.error(f"{s}: {binary} not found or not executable")

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _f: sys.exit(128 + signum))
    nft_delete()
    workdir = tempfile.mkdtemp(prefix="gossip-bench-")
    log(f"work dir {workdir}; systems {systems}; sizes {sizes}; {args.kills} kills each")
    results = []
    try:
        for size in sizes:
            for system in systems:
                d = os.path.join(workdir, f"{system}-{size}")
                os.makedirs(d)
                results.append(run_one(system, size, args, d))
    finally:
        cleanup()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
