"""test_foundation.py - the node as a process: zero-config start, config errors, clean stops,
CLI conventions, and the authenticated cluster RPC between real nodes (issue 2)."""
import json
import os
import signal
import subprocess
import time

import harness
from harness import GUREUM, Node, run_cli, wait_for


def test_zero_config_start_serves_status_then_sigterm_exits_0(tmp_path):
    """`gureum node start` with no arguments in an empty folder: status within 5 s."""
    t0 = time.monotonic()
    log = open(tmp_path / "node.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUREUM_")}
    p = subprocess.Popen([GUREUM, "node", "start"], cwd=tmp_path, stdout=log,
                         stderr=subprocess.STDOUT, env=env)
    try:
        def status():
            r = run_cli("status", "--json")
            return json.loads(r.stdout) if r.returncode == 0 else None
        st = wait_for(status, 5, "zero-config node to answer `gureum status --json`")
        print(f"status served {time.monotonic() - t0:.2f}s after start")
        for field in ("name", "id", "version", "uptime_s", "roles", "endpoints"):
            assert field in st, field
        assert sorted(st["roles"]) == sorted(["storage", "edge", "balancer", "dns", "pipeline"])
        assert st["endpoints"]["admin"] == "http://127.0.0.1:7070"
        assert st["endpoints"]["rpc"] == "tcp://127.0.0.1:7071"
        assert len(st["id"]) == 32
        assert (tmp_path / "gureum-data" / "node-id").read_text().strip() == st["id"]
        p.send_signal(signal.SIGTERM)
        t1 = time.monotonic()
        assert p.wait(10) == 0
        print(f"SIGTERM to exit: {time.monotonic() - t1:.2f}s")
    finally:
        if p.poll() is None:
            p.kill()
    text = (tmp_path / "node.log").read_text()
    assert "event=started" in text and "event=stopped" in text


def test_node_id_survives_restart(workdir, nodes):
    n = Node(workdir, "keeper", "127.0.10.1")
    nodes.append(n)
    first = n.start().wait_ready()["id"]
    assert n.stop() == 0
    assert n.start().wait_ready()["id"] == first


def test_sigint_also_stops_cleanly(workdir, nodes):
    n = Node(workdir, "intr", "127.0.10.1")
    nodes.append(n)
    n.start().wait_ready()
    n.signal(signal.SIGINT)
    assert n.proc.wait(10) == 0
    assert "signal=SIGINT" in n.log_text()


def _start_with_config(tmp_path, text):
    cfg = tmp_path / "gureum.yml"
    cfg.write_text(text)
    return subprocess.run([GUREUM, "node", "start", "--config", str(cfg), "--data",
                           str(tmp_path / "d")], capture_output=True, text=True, timeout=10)


def test_misspelled_key_names_key_and_line(tmp_path):
    r = _start_with_config(tmp_path, "name: a\nrpc:\n  timeout_ms: 100\n  max_inflihgt: 5\n")
    assert r.returncode == 2, r.stderr
    assert "rpc.max_inflihgt" in r.stderr and ":4:" in r.stderr, r.stderr
    assert "unknown key" in r.stderr


def test_wrong_type_and_out_of_range(tmp_path):
    r = _start_with_config(tmp_path, "ports:\n  admin: lots\n")
    assert r.returncode == 2 and "ports.admin" in r.stderr and ":2:" in r.stderr, r.stderr
    r = _start_with_config(tmp_path, "\n\nports:\n  rpc: 70000\n")
    assert r.returncode == 2 and "ports.rpc" in r.stderr and ":4:" in r.stderr, r.stderr
    assert "out of range" in r.stderr


def test_bad_flag_and_env_values_exit_2(tmp_path):
    r = subprocess.run([GUREUM, "node", "start", "--roles", "storage,teleport"],
                       capture_output=True, text=True, timeout=10, cwd=tmp_path)
    assert r.returncode == 2 and "teleport" in r.stderr, r.stderr
    env = dict(os.environ, GUREUM_RPC_TIMEOUT_MS="soon")
    r = subprocess.run([GUREUM, "node", "start"], capture_output=True, text=True, timeout=10,
                       cwd=tmp_path, env=env)
    assert r.returncode == 2 and "GUREUM_RPC_TIMEOUT_MS" in r.stderr, r.stderr
    r = subprocess.run([GUREUM, "node", "start", "--frobnicate"], capture_output=True, text=True,
                       timeout=10, cwd=tmp_path)
    assert r.returncode == 2 and "--frobnicate" in r.stderr


def test_config_file_values_take_effect(workdir, nodes, tmp_path):
    cfg = tmp_path / "n.yml"
    cfg.write_text("name: from-file\nzone: zone-b\nroles: [dns, edge]\n")
    n = Node(workdir, "ignored", "127.0.10.1", extra_args=["--config", str(cfg)])
    nodes.append(n)
    # --name from the harness overrides the file: flags beat the file.
    st = n.start().wait_ready()
    assert st["name"] == "ignored"
    assert st["zone"] == "zone-b"
    assert st["roles"] == ["dns", "edge"]


def test_three_nodes_rpc_ping_each_other(workdir, nodes):
    ns = [Node(workdir, f"p{i}", f"127.0.0.{i}") for i in (1, 2, 3)]
    nodes.extend(ns)
    for n in ns:
        n.start()
    for n in ns:
        n.wait_ready()
    for a in ns:
        for b in ns:
            if a is b:
                continue
            r = a.cli("ping", b.rpc, "--json")
            assert r.returncode == 0, r.stderr
            pong = json.loads(r.stdout)
            assert pong["name"] == b.name and pong["id"] == b.status()["id"]
            print(f"{a.name} -> {b.name}: {pong['rtt_ms']:.2f} ms")
    assert ns[0].metric("gureum_rpc_requests_total") >= 2


def test_wrong_secret_is_rejected_and_counted(workdir, nodes):
    good = Node(workdir, "good", "127.0.10.1")
    evil = Node(workdir, "evil", "127.0.10.2", secret="not-the-cluster-secret")
    nodes.extend([good, evil])
    good.start(), evil.start()
    good.wait_ready(), evil.wait_ready()
    before = good.metric("gureum_rpc_rejected_total", 'reason="auth"')
    r = evil.cli("ping", good.rpc, "--timeout", "500")
    assert r.returncode == 3, r.stdout
    assert "timed out" in r.stderr
    wait_for(lambda: good.metric("gureum_rpc_rejected_total", 'reason="auth"') > before, 5,
             "the rejection to be counted")
    assert good.metric("gureum_rpc_requests_total") == 0  # nothing was executed
    assert "frame_rejected" in good.log_text()
    # And the other way round: the stranger does not accept our frames either.
    r = good.cli("ping", evil.rpc, "--timeout", "500")
    assert r.returncode == 3


def test_cli_conventions(workdir, nodes):
    r = run_cli("status", node="127.0.0.1:1")
    assert r.returncode == 3 and "cannot reach node" in r.stderr
    assert run_cli("nonsense").returncode == 2
    assert run_cli("ping").returncode == 2
    assert run_cli("status", "extra").returncode == 2
    assert run_cli("status", "--bogus").returncode == 2
    for cmd in (["status"], ["ping"], ["config"], ["node", "start"]):
        r = run_cli(*cmd, "--help")
        assert r.returncode == 0 and "usage" in r.stdout, cmd
    r = run_cli("config", "defaults")
    assert r.returncode == 0 and "rpc.timeout_ms" in r.stdout
    n = Node(workdir, "conv", "127.0.10.1")
    nodes.append(n)
    n.start().wait_ready()
    r = n.cli("status")
    assert r.returncode == 0 and "conv" in r.stdout and "endpoints" in r.stdout
    r = n.cli("ping", "not-an-address")
    assert r.returncode == 2 and "bad peer address" in r.stderr
    assert n.get("/v1/nope").status_code == 404
    assert n.get("/v1/nope").json()["error"]["code"] == "NotFound"


def test_metrics_are_prometheus_text(workdir, nodes):
    n = Node(workdir, "m", "127.0.10.1")
    nodes.append(n)
    n.start().wait_ready()
    r = n.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert "# TYPE gureum_rpc_requests_total counter" in text
    assert 'gureum_rpc_rejected_total{reason="auth"} 0' in text
