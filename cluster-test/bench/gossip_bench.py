#!/usr/bin/env python3
"""gossip_bench.py - Gureum's gossip membership against Serf (HashiCorp memberlist), on the same
machine in the same run, for clusters of 5, 10 and 25 nodes on loopback addresses.

Not a test: it measures and prints a table (see bench/README.md for how to read it). For each
system and cluster size it measures
  join       time from spawning one extra node until every member lists it alive; median and
             max over --joins joins (each a new name on a new address, stopped before the next);
  kill       time from SIGKILL of a member until every other member lists it dead (Serf:
             "failed"); median and max over --kills kills, the victim restarted in between and
             waited for until everyone lists it alive again;
  false      members that ever report a member dead/failed when it is paused (SIGSTOP) for 2 s,
             polled throughout the pause and after it until everyone lists it alive again (at
             least 5 s, at most 30 s: past any suspicion timeout);
  bytes/s    idle gossip traffic per node: nftables counters on the loopback output hook count
             the bytes each node's address sends on the gossip port (Gureum: RPC 7071, not
             Raft's 7072; Serf: 7946), plus what other local addresses send to the cluster
             there (memberlist's TCP dials leave from 127.0.0.1), over an idle window with no
             polling, divided by the window and the node count (same rules for both systems).
The goal is for Gureum to beat Serf on detection and convergence with zero false deaths.

Both systems run with their defaults (Serf: the LAN profile). Members are polled the same way
for both: one persistent connection per node (Gureum: HTTP keep-alive GET /v1/members; Serf: its
msgpack RPC `members` command, what `serf members -format=json` uses), every node in turn,
rounds 20 ms apart. Every wait is bounded; every process and the nft table are cleaned up on
exit, Ctrl-C included.

usage: gossip_bench.py [--sizes 5,10,25] [--kills 5] [--joins 3] [--only gureum|serf]
                       [--idle 10] [--json FILE] [--keep]
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
    sized = {0xd9: ">B", 0xda: ">H", 0xdb: ">I", 0xc4: ">B", 0xc5: ">H", 0xc6: ">I",
             0xc7: ">B", 0xc8: ">H", 0xc9: ">I"}
    if t in sized:
        fmt = sized[t]
        n = struct.unpack(fmt, take(struct.calcsize(fmt)))[0]
        if t in (0xd9, 0xda, 0xdb):  # str 8/16/32 (Serf's codec writes old-style raw)
            return raw(n), i
        if t in (0xc4, 0xc5, 0xc6):  # bin 8/16/32
            return bytes(take(n)), i
        take(1 + n)  # ext 8/16/32: skipped
        return None, i
    ints = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q", 0xd0: ">b", 0xd1: ">h", 0xd2: ">i",
            0xd3: ">q", 0xca: ">f", 0xcb: ">d"}
    if t in ints:
        return struct.unpack(ints[t], take(struct.calcsize(ints[t])))[0], i
    exts = {0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16}
    if t in exts:
        take(1 + exts[t])
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
    LEAVE_SIGNAL = signal.SIGTERM  # graceful stop: announces `left`
    GOSSIP_PORT = 7071             # gossip rides the cluster RPC; Raft has its own port (7072)

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
    LEAVE_SIGNAL = signal.SIGINT  # the agent leaves gracefully on SIGINT, not on SIGTERM
    GOSSIP_PORT = 7946            # memberlist, UDP and TCP
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


def nft_count_setup(ips, port):
    """Counter rules on the loopback output hook for the gossip port only (TCP or UDP, as source
    or destination port): Gureum's RPC port (Raft has a port of its own), Serf's memberlist port.
    One pair of rules per cluster address for what it sends, and one pair for what other local
    addresses send to the cluster: memberlist dials its TCP streams (push-pull, fallback pings)
    without binding the node's address, so they leave from 127.0.0.1; Gureum dials from its bind
    address. Each packet is counted once: every rule ends our chain (accept only ends this
    chain, it does not bypass anyone else's rules)."""
    nft_delete()
    dst = ", ".join(ips)
    proto = "meta l4proto { tcp, udp }"
    lines = [f"add table inet {NFT_TABLE}",
             f"add chain inet {NFT_TABLE} out "
             "{ type filter hook output priority 0; policy accept; }"]
    for ip in ips:
        for d in ("sport", "dport"):
            lines.append(f"add rule inet {NFT_TABLE} out ip saddr {ip} {proto} th {d} {port} "
                         "counter accept")
    for d in ("sport", "dport"):
        lines.append(f"add rule inet {NFT_TABLE} out ip daddr {{ {dst} }} {proto} th {d} {port} "
                     "counter accept")
    r = subprocess.run(["nft", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"nft: {r.stderr}")


def nft_counts():
    """{source ip: bytes}; the key "other" holds bytes sent to the cluster from other addresses."""
    r = subprocess.run(["nft", "-j", "list", "chain", "inet", NFT_TABLE, "out"],
                       capture_output=True, text=True, timeout=10, check=True)
    out = {}
    for item in json.loads(r.stdout)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        src, nbytes = "other", 0
        for e in rule["expr"]:
            m = e.get("match")
            if m and m["left"].get("payload", {}).get("field") == "saddr":
                src = m["right"]
            if "counter" in e:
                nbytes = e["counter"]["bytes"]
        out[src] = out.get(src, 0) + nbytes
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


def states_of(observers, target):
    """{observer: how it lists target now} (for error messages)."""
    out = {}
    for o in observers:
        try:
            out[o.name] = o.view().get(target.name)
        except Exception as e:
            out[o.name] = f"error: {e.__class__.__name__}"
    return out


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
    t0 = time.monotonic()
    try:
        return wait_seen(nodes, nodes, "alive", 3, f"{system}: all {len(nodes)} alive everywhere")
    except RuntimeError as e:  # slow: say who was missing what, then keep waiting
        log(f"  slow start: {e}")
    wait_seen(nodes, nodes, "alive", timeout, f"{system}: all {len(nodes)} alive everywhere")
    return time.monotonic() - t0


def measure_idle_bytes(nodes, window):
    """(average bytes/s per node, bytes/s of the busiest address, bytes/s from elsewhere), on
    the nodes' gossip port."""
    ips = [n.ip for n in nodes]
    nft_count_setup(ips, nodes[0].GOSSIP_PORT)
    try:
        before = nft_counts()
        t0 = time.monotonic()
        time.sleep(window)  # the idle window itself: nothing is polled meanwhile
        after = nft_counts()
        dt = time.monotonic() - t0
    finally:
        nft_delete()
    rate = {k: (after.get(k, 0) - before.get(k, 0)) / dt for k in after}
    per = [rate.get(ip, 0) for ip in ips]
    other = rate.get("other", 0)
    return (sum(per) + other) / len(ips), max(per), other


def measure_pause(victim, others):
    """SIGSTOP the victim for PAUSE_S, then watch until every observer lists it alive again
    (at least AFTER_PAUSE_S, at most 30 s: longer than any suspicion timeout, so a refutation
    that got lost shows up as the death it turns into). Returns (number of observers that ever
    listed it dead, seconds from the resume until every observer listed it alive again - for
    good - or None if that never happened)."""
    ever_dead, last = set(), {}
    victim.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    resumed = back = None
    try:
        while time.monotonic() - t0 < PAUSE_S + 30:
            now = time.monotonic()
            if resumed is None and now - t0 >= PAUSE_S:
                victim.proc.send_signal(signal.SIGCONT)
                resumed = now
            for o in others:
                try:
                    last[o.name] = o.view().get(victim.name)
                except Exception:
                    continue
                if last[o.name] == "dead":
                    ever_dead.add(o.name)
            everywhere = len(last) == len(others) and all(v == "alive" for v in last.values())
            if resumed is not None and everywhere:
                back = back if back is not None else time.monotonic() - resumed
                if time.monotonic() - resumed >= AFTER_PAUSE_S:
                    break
            else:
                back = None
            time.sleep(POLL)
    finally:
        if resumed is None:
            victim.proc.send_signal(signal.SIGCONT)
    return len(ever_dead), back


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
            raise RuntimeError(f"{system}: SIGKILLed {victim.name} not dead everywhere in 120 s: "
                               f"{states_of(others, victim)}")
        t = max(res.values())
        times.append(t)
        log(f"  kill {k + 1}/{kills}: {victim.name} dead everywhere after {t:.2f}s "
            f"(first observer {min(res.values()):.2f}s)")
        victim.close()
        victim.start()
        harness.wait_for(victim.ready, 15, f"{victim.name} to answer after restart")
        wait_seen(others, [victim], "alive", 60, f"restarted {victim.name} alive everywhere")
    return times


def measure_joins(system, nodes, joiners):
    """Each joiner (a new name on a new address) in turn: spawn, time until every member lists
    it alive, then stop it gracefully and wait until nobody lists it alive any more, so the
    cluster is back to its size for the next one."""
    times = []
    for j in joiners:
        wait_seen(nodes, nodes, "alive", 60, f"{system}: everyone alive before a join")
        j.start()
        res = poll_until(nodes, lambda v: v.get(j.name) == "alive", 60)
        if any(v is None for v in res.values()):
            raise RuntimeError(f"{system}: new node {j.name} not alive everywhere in 60 s")
        times.append(max(res.values()))
        log(f"  join: {j.name} alive everywhere {times[-1]:.2f}s after spawn")
        stop_procs([j.proc], j.LEAVE_SIGNAL)
        poll_until(nodes, lambda v: v.get(j.name) != "alive", 30)
    return times


def run_one(system, size, args, workdir):
    net = NET_BASE[system] + size
    ips = [f"127.0.{net}.{i + 1}" for i in range(size + args.joins)]  # the joiners come last
    prefix = "g" if system == "gureum" else "s"
    make = SYSTEMS[system]
    everyone = [make(workdir, f"{prefix}{size}-{i + 1}", ip, ips[0]) for i, ip in enumerate(ips)]
    nodes, joiners = everyone[:size], everyone[size:]
    result = {"system": system, "nodes": size}
    t_start = time.monotonic()
    try:
        conv = start_cluster(system, nodes, 120)
        log(f"{system} x{size}: converged ({conv:.2f}s after the last node answered)")
        time.sleep(SETTLE_S)
        avg, mx, other = measure_idle_bytes(nodes, args.idle)
        result.update(bytes_per_node=avg, bytes_max_node=mx, bytes_unbound=other)
        log(f"  idle traffic: {avg:.0f} B/s per node (busiest address sends {mx:.0f} B/s; "
            f"{other:.0f} B/s total from unbound sockets)")

        false_deaths, back = measure_pause(nodes[-1], nodes[:-1])
        result.update(false_deaths=false_deaths, pause_observers=size - 1,
                      pause_recovered=back is not None, pause_alive_after=back)
        log(f"  2 s pause of {nodes[-1].name}: {false_deaths} members reported it dead; "
            + (f"alive everywhere {back:.2f}s after the resume" if back is not None
               else "NOT alive everywhere 30 s after the resume"))

        times = measure_kills(system, nodes, args.kills)
        result.update(kill_median=statistics.median(times), kill_max=max(times), kill_all=times)

        times = measure_joins(system, nodes, joiners)
        result.update(join_median=statistics.median(times), join_max=max(times), join_all=times)
    except Exception as e:
        result["error"] = str(e)
        log(f"{system} x{size}: FAILED: {e}")
    finally:
        stop_procs([n.proc for n in everyone if n.proc is not None])
        for n in everyone:
            n.close()
        log(f"{system} x{size}: done in {time.monotonic() - t_start:.0f}s")
    return result


# --- report ------------------------------------------------------------------------------------

def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def print_table(results):
    cols = ["system", "nodes", "join med s", "join max s", "kill med s", "kill max s",
            "false deaths", "bytes/s/node"]
    rows = []
    for r in results:
        fd = (f"{r['false_deaths']}/{r['pause_observers']}"
              + ("" if r.get("pause_recovered", True) else " (stuck)")
              if "false_deaths" in r else "-")
        rows.append([r["system"], str(r["nodes"]), fmt(r.get("join_median"), ".2f"),
                     fmt(r.get("join_max"), ".2f"),
                     fmt(r.get("kill_median"), ".2f"), fmt(r.get("kill_max"), ".2f"), fd,
                     fmt(r.get("bytes_per_node"), ".0f") + (" ERROR" if "error" in r else "")])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    print()
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    for r in results:
        if "error" in r:
            print(f"ERROR {r['system']} x{r['nodes']}: {r['error']}")
    print()
    print("join = spawn of a new node until every member lists it alive, median/max of the "
          "joins; kill = SIGKILL until "
          "every other member lists it dead (Serf: failed), median/max of the kills; false "
          "deaths = members that reported a 2 s SIGSTOPped node dead / members watching; "
          "bytes/s/node = idle IP bytes per node on the gossip port (Gureum 7071, Serf 7946).")
    print("Goal: Gureum beats Serf on join and kill times with zero false deaths.")
    by = {(r["system"], r["nodes"]): r for r in results}
    for size in sorted({r["nodes"] for r in results}):
        g, s = by.get(("gureum", size)), by.get(("serf", size))
        if not g or not s or "error" in g or "error" in s:
            continue
        verdict = []
        for key, label in (("join_median", "join median"), ("kill_median", "kill median"),
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
    ap.add_argument("--joins", type=int, default=3, help="new nodes joined per cluster (>= 1)")
    ap.add_argument("--only", choices=sorted(SYSTEMS), help="run one system only")
    ap.add_argument("--idle", type=float, default=10.0, help="idle byte window, seconds")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work dir (logs, data); kept anyway when a run fails")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(s < 2 or s > 50 for s in sizes) or args.kills < 1 \
            or not 1 <= args.joins <= 10:
        ap.error("sizes must be 2..50, --kills >= 1, --joins 1..10")
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
        if args.keep or any("error" in r for r in results):
            log(f"kept {workdir} (node logs under <system>-<size>/)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
