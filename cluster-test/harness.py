"""harness.py - start real `gureum` nodes on 127.0.0.x and drive them like an operator would.

Each node gets its own data dir and log; tests wait on conditions with deadlines, never blind
sleeps. Faults: SIGKILL, SIGSTOP/SIGCONT, restart (and, for later issues, partitions)."""
import json
import os
import signal
import subprocess
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUREUM = os.environ.get("GUREUM_BIN", os.path.join(ROOT, "build", "gureum"))
SECRET = "cluster-test-secret"


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

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Cluster:
    """N nodes on 127.0.<net>.1..N, the first one a seed for the rest."""

    def __init__(self, workdir, n, net=10, prefix="n", **node_kw):
        self.workdir = workdir
        self.nodes = []
        for i in range(n):
            ip = f"127.0.{net}.{i + 1}"
            self.nodes.append(Node(workdir, f"{prefix}{i + 1}", ip, **node_kw))

    def __getitem__(self, i):
        return self.nodes[i]

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def start(self, ready_timeout=15):
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_ready(ready_timeout)
        return self

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


def dump_logs(nodes, dest):
    """Copy every node's log to dest (kept when a test fails)."""
    os.makedirs(dest, exist_ok=True)
    for n in nodes:
        with open(os.path.join(dest, os.path.basename(n.log)), "w") as f:
            f.write(n.log_text())
    return dest


def jdump(x):
    return json.dumps(x, indent=2, sort_keys=True)
