"""test_tls.py - TLS between nodes with real processes: `gureum tls init|issue` make a cluster CA
and node certificates; three nodes configured with them (tls: in their YAML file) form a cluster
over tls+tcp:// (gossip on the RPC port and the Raft tunnel); a fourth node with a certificate
from another CA, and one without TLS, are refused by every node (never alive to them, they see
nobody, and none of their frames reaches the cluster's envelope check, let alone a handler).

Every node lives on 127.0.60.* (other tests own the other subnets): each test uses its own hosts
in it (.1-.9, .11-.19, .21-.29) so no test inherits another's sockets. Measured times are printed
(run with -s)."""
import json
import os
import stat
import time

import pytest

from harness import Node, run_cli, wait_all_see, wait_for, watch_states, ever_seen

NET = "127.0.60"


# --- certificates ---------------------------------------------------------------------------

def tls_cli(*args):
    return run_cli("tls", *args)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two CAs: `cluster` (the cluster's) and `other` (a stranger's), and a function that issues a
    node certificate from either; returns {"ca", "cert", "key"} paths."""
    root = tmp_path_factory.mktemp("pki")
    dirs = {"cluster": str(root / "cluster"), "other": str(root / "other")}
    for d in dirs.values():
        r = tls_cli("init", "--dir", d, "--json")
        assert r.returncode == 0, r.stderr

    def issue(name, ip, ca="cluster"):
        r = tls_cli("issue", name, "--dir", dirs[ca], "--ip", ip, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    issue.dirs = dirs
    return issue


def tls_node(workdir, name, ip, certs, seeds=()):
    """A node whose tls.* keys come from a YAML file (certs=None: no TLS at all)."""
    extra = []
    if certs:
        path = os.path.join(workdir, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(f"tls:\n  ca: {certs['ca']}\n  cert: {certs['cert']}\n  key: {certs['key']}\n")
        extra = ["--config", path]
    return Node(workdir, name, ip, seeds=list(seeds), extra_args=extra,
                env={"GUREUM_RAFT_WRITE_TIMEOUT_MS": "3000"})


def tls_cluster(workdir, nodes, pki, hosts):
    """Three TLS nodes on NET.<hosts>, the first the seed of the others; returns them started."""
    ips = [f"{NET}.{h}" for h in hosts]
    seed = f"{ips[0]}:7071"
    c = [tls_node(workdir, f"t{h}", ip, pki(f"t{h}", ip), seeds=[] if i == 0 else [seed])
         for i, (h, ip) in enumerate(zip(hosts, ips))]
    nodes.extend(c)
    for n in c:
        n.start()
    for n in c:
        n.wait_ready(15)
    return c


def raft_status(node):
    r = node.get("/v1/raft/status", timeout=2)
    r.raise_for_status()
    return r.json()


def one_leader(c):
    """The name of the leader every node of c agrees on, once there is one."""
    def cond():
        sts = [raft_status(n) for n in c]
        leaders = {s["leader"] for s in sts}
        led = [s["name"] for s in sts if s["state"] == "leader"]
        if len(leaders) == 1 and len(led) == 1 and led[0] in leaders:
            return led[0]
        return None
    return wait_for(cond, 30, "one Raft leader that every node names")


def refused(c, side="inbound"):
    return sum(n.metric("gureum_rpc_tls_refused_total", f'side="{side}"') for n in c)


def hmac_rejected(c):
    return sum(n.metric("gureum_rpc_rejected_total", 'reason="auth"') for n in c)


def assert_kept_out(c, stranger, watch_s=6):
    """The stranger is never alive to the cluster, sees none of it alive, has no Raft leader,
    and the cluster's handshake refusals grow while its envelope rejections do not."""
    before_tls, before_hmac = refused(c), hmac_rejected(c)
    stranger.start().wait_ready()
    t0 = time.monotonic()
    wait_for(lambda: refused(c) > before_tls, 15,
             "the cluster to refuse the stranger's TLS handshakes")
    took = time.monotonic() - t0
    seen = watch_states(c, stranger, watch_s)
    assert not ever_seen(seen, "alive"), f"a cluster node saw the stranger alive: {seen}"
    assert not ever_seen(seen, "suspect"), f"a cluster node ever listed the stranger: {seen}"
    theirs = stranger.members()
    alive = [name for name, m in theirs.items() if m["state"] == "alive" and name != stranger.name]
    assert not alive, f"the stranger sees {alive} alive: {theirs}"
    st = raft_status(stranger)
    assert st["leader"] == "" and st["state"] != "leader", st
    for n in c:
        assert stranger.name not in n.members(), n.name
    # The stranger holds the cluster secret: only TLS keeps it out, before any frame is read.
    assert hmac_rejected(c) == before_hmac
    # Nor can it ping a cluster node on either port.
    for port in (7071, 7072):
        r = stranger.cli("ping", f"{c[0].ip}:{port}", "--timeout", "500")
        assert r.returncode == 3, (port, r.stdout, r.stderr)
    return took, refused(c) - before_tls


# --- tests ----------------------------------------------------------------------------------

def test_tls_cli(tmp_path):
    d = str(tmp_path / "ca")
    r = tls_cli("init", "--dir", d, "--json")
    assert r.returncode == 0, r.stderr
    paths = json.loads(r.stdout)
    assert set(paths) == {"ca_cert", "ca_key"}
    assert stat.S_IMODE(os.stat(paths["ca_key"]).st_mode) == 0o600
    # An existing CA is kept unless --force: exit 3, saying how to go on.
    r = tls_cli("init", "--dir", d)
    assert r.returncode == 3 and "--force" in r.stderr, r.stderr
    r = tls_cli("issue", "web-1", "--dir", d, "--ip", f"{NET}.99", "--dns", "web-1.lan", "--json")
    assert r.returncode == 0, r.stderr
    node = json.loads(r.stdout)
    assert set(node) == {"cert", "key", "ca"} and node["ca"] == paths["ca_cert"]
    assert stat.S_IMODE(os.stat(node["key"]).st_mode) == 0o600
    # Bad usage names the argument and exits 2; no CA exits 3 and says how to make one.
    r = tls_cli("issue", "web-2", "--dir", d, "--ip", "10.0.0")
    assert r.returncode == 2 and "--ip" in r.stderr, r.stderr
    r = tls_cli("issue", "web-2", "--dir", d)
    assert r.returncode == 2 and "--ip" in r.stderr, r.stderr
    r = tls_cli("issue", "web-2", "--dir", str(tmp_path / "nowhere"), "--ip", f"{NET}.98")
    assert r.returncode == 3 and "gureum tls init" in r.stderr, r.stderr
    assert tls_cli("bogus").returncode == 2
    assert tls_cli("--help").returncode == 0
    # The config checks the tls.* keys: all three or none, and the files must fit together.
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"bind: {NET}.99\ntls:\n  ca: {paths['ca_cert']}\n  cert: {node['cert']}\n")
    r = run_cli("config", "check", str(cfg))
    assert r.returncode == 2 and "tls.key" in r.stderr, r.stderr
    cfg.write_text(f"bind: {NET}.99\ntls:\n  ca: {paths['ca_cert']}\n  cert: {node['cert']}\n"
                   f"  key: {node['key']}\n")
    r = run_cli("config", "check", str(cfg))
    assert r.returncode == 0, r.stderr
    cfg.write_text(f"bind: {NET}.97\ntls:\n  ca: {paths['ca_cert']}\n  cert: {node['cert']}\n"
                   f"  key: {node['key']}\n")
    r = run_cli("config", "check", str(cfg))
    assert r.returncode == 2 and "tls.cert" in r.stderr and f"--ip {NET}.97" in r.stderr, r.stderr
    r = run_cli("config", "defaults")
    assert all(f"tls.{k} = " in r.stdout for k in ("ca", "cert", "key"))


def test_tls_cluster_forms(workdir, nodes, pki):
    t0 = time.monotonic()
    c = tls_cluster(workdir, nodes, pki, (1, 2, 3))
    took = wait_all_see(c, c, "alive", 20)
    leader = one_leader(c)
    formed = time.monotonic() - t0
    for n in c:
        st = n.status()
        assert st["cluster_tls"] is True, st
        assert st["endpoints"]["rpc"] == f"tls+tcp://{n.ip}:7071", st["endpoints"]
        assert st["endpoints"]["raft"] == f"tls+tcp://{n.ip}:7072", st["endpoints"]
    r = run_cli("status", "--json", node=c[0].admin)
    assert r.returncode == 0 and json.loads(r.stdout)["cluster_tls"] is True
    # A write through a follower commits through the leader and is readable everywhere.
    follower = next(n for n in c if n.name != leader)
    r = follower.cli("state", "put", "tls/greeting", "hello over tls")
    assert r.returncode == 0, r.stderr
    for n in c:
        r = n.cli("state", "get", "tls/greeting")
        assert r.returncode == 0 and r.stdout.strip() == "hello over tls", (n.name, r.stderr)
    # An authenticated round trip over TLS on both ports (the Raft channel has no ping handler,
    # and says so in an authenticated answer).
    rtts = []
    for _ in range(20):
        r = c[0].cli("ping", f"{c[1].ip}:7071", "--json")
        assert r.returncode == 0, r.stderr
        rtts.append(json.loads(r.stdout)["rtt_ms"])
    r = c[0].cli("ping", f"{c[1].ip}:7072")
    assert r.returncode == 3 and "no handler for message type" in r.stderr, r.stderr
    assert refused(c) == 0 and refused(c, "outbound") == 0
    rtts.sort()
    print(f"\nTLS cluster: all alive after {took:.2f}s, leader {leader}, formed in {formed:.2f}s; "
          f"ping over TLS median {rtts[len(rtts) // 2]:.2f} ms (min {rtts[0]:.2f})")


def test_tls_other_ca_refused(workdir, nodes, pki):
    c = tls_cluster(workdir, nodes, pki, (11, 12, 13))
    wait_all_see(c, c, "alive", 20)
    one_leader(c)
    ip = f"{NET}.19"
    stranger = tls_node(workdir, "t19", ip, pki("t19", ip, ca="other"), seeds=[c[0].rpc, c[1].rpc])
    nodes.append(stranger)
    took, n = assert_kept_out(c, stranger)
    assert stranger.status()["cluster_tls"] is True
    print(f"\nother CA: first refusal counted within {took:.2f}s; {n:.0f} handshakes refused")


def test_no_tls_refused(workdir, nodes, pki):
    c = tls_cluster(workdir, nodes, pki, (21, 22, 23))
    wait_all_see(c, c, "alive", 20)
    one_leader(c)
    plain = tls_node(workdir, "t29", f"{NET}.29", None, seeds=[c[0].rpc, c[1].rpc])
    nodes.append(plain)
    took, n = assert_kept_out(c, plain)
    st = plain.status()
    assert st["cluster_tls"] is False and st["endpoints"]["rpc"].startswith("tcp://"), st
    # The cluster cannot reach it either: our dialler refuses a peer that does not speak TLS.
    r = c[0].cli("ping", plain.rpc, "--timeout", "500")
    assert r.returncode == 3, (r.stdout, r.stderr)
    print(f"\nno TLS: first refusal counted within {took:.2f}s; {n:.0f} handshakes refused")
