"""harness.py - start real `gureum` nodes on 127.0.X.Y and drive them like an operator would.

Each node gets its own data dir and log; tests wait on conditions with deadlines, never blind
sleeps. Faults: SIGKILL, SIGSTOP/SIGCONT, restart, and network partitions (nftables rules on the
loopback output hook, in a table of their own). Membership helpers read /v1/members."""
import json
import os
import signal
import subprocess
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUREUM = os.environ.get("GUREUM_BIN", os.path.join(ROOT, "build", "gureum"))
SECRET = "cluster-test-secret"
# The partitions' nftables table (inet family), one per test process so that two test runs on
# one machine do not lift each other's partitions; heal() deletes it, heal_stale() deletes the
# tables of test processes that are gone.
NFT_PREFIX = "gureum_test"
NFT_TABLE = f"{NFT_PREFIX}_{os.getpid()}"


class Timeout(AssertionError):
    pass


def wait_for(cond, timeout, what, interval=0.05):
    """Poll cond() until it returns a truthy value; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # a node still starting refuses connections
            last_exc = e
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}"
                          + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


def run_cli(*args, node=None, timeout=20, env=None):
    """Run the gureum CLI; returns CompletedProcess with text output."""
    cmd = [GUREUM, *args]
    if node:
        cmd += ["--node", node]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


class Node:
    def __init__(self, workdir, name, ip, secret=SECRET, roles=None, seeds=None,
                 extra_args=None, env=None, ports=(7070, 7071, 7072)):
        self.name, self.ip, self.secret = name, ip, secret
        self.roles, self.seeds = roles, seeds or []
        self.extra_args, self.extra_env = extra_args or [], env or {}
        self.admin_port, self.rpc_port, self.raft_port = ports
        self.data = os.path.join(workdir, name)
        self.log = os.path.join(workdir, f"{name}.log")
        self.proc = None

    @property
    def admin(self):
        return f"{self.ip}:{self.admin_port}"

    @property
    def rpc(self):
        return f"{self.ip}:{self.rpc_port}"

    def start(self):
        args = [GUREUM, "node", "start", "--name", self.name, "--bind", self.ip,
                "--data", self.data, *self.extra_args]
        if self.roles:
            args += ["--roles", ",".join(self.roles)]
        if self.seeds:
            args += ["--seeds", ",".join(self.seeds)]
        env = dict(os.environ, GUREUM_CLUSTER_SECRET=self.secret,
                   GUREUM_PORTS_ADMIN=str(self.admin_port), GUREUM_PORTS_RPC=str(self.rpc_port),
                   GUREUM_PORTS_RAFT=str(self.raft_port), **self.extra_env)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        return self

    def wait_ready(self, timeout=10):
        return wait_for(lambda: self.status(), timeout, f"{self.name} to serve /v1/status")

    def get(self, path, timeout=5):
        return requests.get(f"http://{self.admin}{path}", timeout=timeout)

    def status(self):
        r = self.get("/v1/status", timeout=1)
        r.raise_for_status()
        return r.json()

    def metric(self, name, labels=""):
        """Value of one Prometheus sample (0 if absent)."""
        key = f"{name}{{{labels}}}" if labels else name
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def cli(self, *args, timeout=20):
        return run_cli(*args, node=self.admin, timeout=timeout)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """Graceful stop (SIGTERM); returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def restart(self):
        self.stop()
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def members(self, timeout=2):
        """This node's member list as a dict name -> member (GET /v1/members)."""
        r = self.get("/v1/members", timeout=timeout)
        r.raise_for_status()
        return {m["name"]: m for m in r.json()}

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Cluster:
    """N nodes on 127.0.<net>.1..N. The first `seeds` nodes are the seeds: every other node gets
    all of them, and each seed gets the seeds before it (node 1 starts alone)."""

    def __init__(self, workdir, n, net=10, prefix="n", seeds=1, **node_kw):
        self.workdir = workdir
        self.nodes = []
        self.spawned_at = None  # time.monotonic() when the last process was spawned
        ips = [f"127.0.{net}.{i + 1}" for i in range(n)]
        seed_addrs = [f"{ip}:{node_kw.get('ports', (7070, 7071, 7072))[1]}" for ip in ips[:seeds]]
        for i, ip in enumerate(ips):
            self.nodes.append(Node(workdir, f"{prefix}{i + 1}", ip,
                                   seeds=seed_addrs[:i] if i < seeds else seed_addrs, **node_kw))

    def __getitem__(self, i):
        return self.nodes[i]

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def start(self, ready_timeout=15, wait_ready=True):
        for n in self.nodes:
            n.start()
        self.spawned_at = time.monotonic()
        if wait_ready:
            for n in self.nodes:
                n.wait_ready(ready_timeout)
        return self

    def names(self):
        return [n.name for n in self.nodes]

    def others(self, *excluded):
        return [n for n in self.nodes if n not in excluded]

    def shutdown(self):
        for n in self.nodes:
            if n.alive():
                try:
                    n.resume()
                except Exception:
                    pass
        for n in self.nodes:
            try:
                n.stop()
            except Exception:
                n.kill()


# --- membership ------------------------------------------------------------------------------

def member_states(node, timeout=2):
    """{name: state} as `node` sees it."""
    return {k: m["state"] for k, m in node.members(timeout).items()}


def not_seeing(observers, targets, state):
    """The (observer, target, state-seen) triples that keep "every observer lists every target as
    `state`" from being true; state may be a string or a set of accepted states. An observer
    that does not answer counts as (observer, None, error)."""
    ok = {state} if isinstance(state, str) else set(state)
    missing = []
    for o in observers:
        try:
            seen = member_states(o)
        except Exception as e:
            missing.append((o.name, None, f"error: {e.__class__.__name__}"))
            continue
        for t in targets:
            name = t if isinstance(t, str) else t.name
            if seen.get(name) not in ok:
                missing.append((o.name, name, seen.get(name)))
    return missing


def all_see(observers, targets, state):
    """True when every node in `observers` lists every node in `targets` as `state`."""
    return not not_seeing(observers, targets, state)


def wait_all_see(observers, targets, state, timeout, what=None, interval=0.05):
    """Wait until every observer lists every target as `state`; returns the seconds it took.
    On timeout, the message names who still sees what."""
    t0 = time.monotonic()
    last = []

    def cond():
        last[:] = not_seeing(observers, targets, state)
        return not last
    names = ",".join(t if isinstance(t, str) else t.name for t in targets)
    try:
        wait_for(cond, timeout, what or f"every node to list [{names}] as {state}", interval)
    except Timeout as e:
        raise Timeout(f"{e}; still: {last[:12]}") from None
    return time.monotonic() - t0


def watch_states(observers, target, duration, interval=0.05, until=None):
    """Poll every observer's /v1/members for `duration` s (or until until(seen) is true) and
    return seen = {observer name: [(t, state of target or None if unlisted)]}, t in seconds from
    the start. Only changes are recorded. An observer that does not answer is skipped that
    round. ever_seen(seen, state) lists the observers that reported `state` at some point."""
    name = target if isinstance(target, str) else target.name
    seen = {o.name: [] for o in observers}
    t0 = time.monotonic()
    deadline = t0 + duration
    while time.monotonic() < deadline and not (until and until(seen)):
        for o in observers:
            try:
                st = member_states(o, timeout=1).get(name)
            except Exception:
                continue
            if not seen[o.name] or seen[o.name][-1][1] != st:
                seen[o.name].append((round(time.monotonic() - t0, 3), st))
        time.sleep(interval)
    return seen


def ever_seen(seen, state):
    """Observers in a watch_states() result that reported `state` at some point."""
    return sorted(o for o, changes in seen.items() if any(st == state for _, st in changes))


def last_seen(seen):
    """{observer: the last state it reported} from a watch_states() result."""
    return {o: (changes[-1][1] if changes else None) for o, changes in seen.items()}


# --- network partitions (nftables) -----------------------------------------------------------
# Nodes bind distinct 127.0.X.Y addresses and dial peers from their bind address, so dropping
# packets by (source, destination) on the output hook (loopback traffic passes it once) cuts
# every path between two groups, both ways. The test process itself talks from 127.0.0.1 and
# is never cut off.

def _nft(script):
    r = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                       timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"nft failed: {r.stderr.strip()}\n{script}")


def heal():
    """Remove every partition (delete our nft table; fine if there is none)."""
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True,
                   timeout=10)


def heal_stale():
    """Delete partition tables left behind by test processes that no longer run (a crashed or
    killed run), and our own."""
    r = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True, text=True,
                       timeout=10)
    for line in r.stdout.splitlines():
        name = line.split()[-1] if line.startswith("table inet ") else ""
        if not name.startswith(NFT_PREFIX):
            continue
        pid = name[len(NFT_PREFIX) + 1:]
        if name != NFT_TABLE and pid.isdigit() and os.path.exists(f"/proc/{pid}"):
            continue  # another test run, still going
        subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True,
                       timeout=10)


def partition(groups):
    """Drop all traffic between nodes of different groups (lists of Node), both directions.
    Replaces any earlier partition."""
    heal()
    lines = [f"add table inet {NFT_TABLE}",
             f"add chain inet {NFT_TABLE} out "
             "{ type filter hook output priority 0; policy accept; }"]
    for i, g in enumerate(groups):
        for j, h in enumerate(groups):
            if i != j and g and h:
                src = ", ".join(n.ip for n in g)
                dst = ", ".join(n.ip for n in h)
                lines.append(f"add rule inet {NFT_TABLE} out ip saddr {{ {src} }} "
                             f"ip daddr {{ {dst} }} drop")
    _nft("\n".join(lines) + "\n")


def dump_logs(nodes, dest):
    """Copy every node's log to dest (kept when a test fails)."""
    os.makedirs(dest, exist_ok=True)
    for n in nodes:
        with open(os.path.join(dest, os.path.basename(n.log)), "w") as f:
            f.write(n.log_text())
    return dest


def jdump(x):
    return json.dumps(x, indent=2, sort_keys=True)
