"""test_compose.py - the five-node compose cluster (deploy/docker-compose.yml) in real containers,
under real faults: membership and Raft, TLS between nodes (certificates made by the one-shot
`certs` service; a container without a certificate from the cluster CA is refused), a killed
voter (detected dead, replaced), a network partition (docker network disconnect/connect), a node
recreated on its volume, a node restored from an old backup, and S3 reads and writes through the
published port while all that happens. Objects have 3 copies over the 3 storage nodes: those
written before a fault read back byte-identical during it, new writes succeed, and once the node
is back anti-entropy brings every copy level (`gureum storage status --json`).

The module's cluster is a compose project of its own (unique name, free /24, free host ports), so
it runs beside `make compose-up` and beside other runs; cluster-test/compose/docker-compose.test.yml
shortens the failure timeouts. Everything it made (containers, network, volumes) is removed at the
end, also on failure, and the last test asserts nothing is left. Node logs of a failed run are kept
in cluster-test/logs/compose/. Needs a Docker engine and the image (`make compose-test` builds it);
without an engine the module is skipped. Every wait is bounded."""
import hashlib
import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid

import boto3
import botocore.config
import botocore.exceptions
import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FILES = [os.path.join(ROOT, "deploy", "docker-compose.yml"),
         os.path.join(HERE, "docker-compose.test.yml")]
IMAGE = os.environ.get("GUREUM_COMPOSE_IMAGE", "gureum:latest")
LOGS = os.path.join(ROOT, "cluster-test", "logs", "compose")
NODES = [f"node{i}" for i in range(1, 6)]
ROLES = {"node1": ["storage", "dns", "pipeline"], "node2": ["storage", "dns", "pipeline"],
         "node3": ["storage", "dns", "pipeline"], "node4": ["edge", "balancer"],
         "node5": ["edge", "balancer"]}
ZONES = {"node1": "zone-a", "node2": "zone-b", "node3": "zone-c", "node4": "zone-a",
         "node5": "zone-b"}
STORAGE = [n for n in NODES if "storage" in ROLES[n]]
TLS_DIR = "/etc/gureum/tls"  # where the compose file mounts the certificates' volume
PREFIX = "gureumt"  # project names: gureumt<pid>x<hex>, so stale ones of dead runs are found


def sh(args, timeout=60, check=True, env=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def docker_answers():
    try:
        return shutil.which("docker") and sh(["docker", "info"], timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def compose_command():
    """The compose plugin first, else the standalone docker-compose (1.29 on bookworm)."""
    if shutil.which("docker") and sh(["docker", "compose", "version"], check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


if not docker_answers():
    pytest.skip("compose tests SKIPPED: no Docker engine answers", allow_module_level=True)
COMPOSE = compose_command()
if COMPOSE is None:
    pytest.skip("compose tests SKIPPED: neither `docker compose` nor docker-compose is installed",
                allow_module_level=True)


class Timeout(AssertionError):
    pass


def wait_for(cond, timeout, what, interval=0.5):
    """Poll cond() until truthy; fail naming `what` (and the last value or error) after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = v
        except Exception as e:  # a node starting or cut off does not answer
            last = f"{e.__class__.__name__}: {e}"
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what} (last: {str(last)[:600]})")
        time.sleep(interval)


def free_subnet():
    """A 10.213.X.0/24 that overlaps no Docker network's subnet."""
    used = []
    ids = sh(["docker", "network", "ls", "-q"]).stdout.split()
    if ids:
        for net in json.loads(sh(["docker", "network", "inspect", *ids]).stdout):
            for c in (net.get("IPAM") or {}).get("Config") or []:
                if c.get("Subnet"):
                    try:
                        used.append(ipaddress.ip_network(c["Subnet"], strict=False))
                    except ValueError:
                        pass
    for x in random.sample(range(100, 250), 150):
        cand = ipaddress.ip_network(f"10.213.{x}.0/24")
        if not any(cand.overlaps(u) for u in used if u.version == 4):
            return f"10.213.{x}"
    raise AssertionError("no free 10.213.X.0/24 for the test network")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def project_leftovers(project):
    """Containers, networks and volumes labelled with the compose project."""
    lbl = f"label=com.docker.compose.project={project}"
    return {
        "containers": sh(["docker", "ps", "-aq", "--filter", lbl]).stdout.split(),
        "networks": sh(["docker", "network", "ls", "-q", "--filter", lbl]).stdout.split(),
        "volumes": sh(["docker", "volume", "ls", "-q", "--filter", lbl]).stdout.split(),
    }


def force_remove(project):
    """Last resort when `compose down` left something behind."""
    left = project_leftovers(project)
    if left["containers"]:
        sh(["docker", "rm", "-fv", *left["containers"]], check=False)
    for n in left["networks"]:
        sh(["docker", "network", "rm", n], check=False)
    if left["volumes"]:
        sh(["docker", "volume", "rm", "-f", *left["volumes"]], check=False)


def remove_stale_projects():
    """Projects of earlier test runs whose process is gone (a crashed or killed run)."""
    projects = set()
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        out = sh(["docker", *kind, "--filter", "label=com.docker.compose.project",
                  "--format", '{{.Label "com.docker.compose.project"}}'], check=False).stdout
        projects.update(p for p in out.split() if p.startswith(PREFIX))
    for p in projects:
        pid = p[len(PREFIX):].split("x")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            force_remove(p)


class ComposeCluster:
    def __init__(self):
        self.project = f"{PREFIX}{os.getpid()}x{uuid.uuid4().hex[:6]}"
        self.net = free_subnet()
        s3, web, dns, admin, lb = free_ports(5)
        self.ports = {"s3": s3, "web": web, "dns": dns, "admin": admin, "lb": lb}
        self.env = dict(os.environ, GUREUM_COMPOSE_IMAGE=IMAGE, GUREUM_COMPOSE_NET=self.net,
                        GUREUM_COMPOSE_HOST_IP="127.0.0.1",
                        GUREUM_COMPOSE_SECRET=f"compose-test-{uuid.uuid4().hex}",
                        GUREUM_COMPOSE_S3_PORT=str(s3), GUREUM_COMPOSE_WEB_PORT=str(web),
                        GUREUM_COMPOSE_DNS_PORT=str(dns), GUREUM_COMPOSE_ADMIN_PORT=str(admin),
                        GUREUM_COMPOSE_LB_PORT=str(lb))
        self.env.pop("COMPOSE_PROJECT_NAME", None)
        self.env.pop("COMPOSE_FILE", None)
        self._cids = {}
        self.key = None
        self.failed_before = 0  # the session's failure count when the cluster came up
        self.logs_kept = None

    # --- compose and docker ---
    def dc_args(self, *args):
        files = [a for f in FILES for a in ("-f", f)]
        return [*COMPOSE, "-p", self.project, *files, *args]

    def dc(self, *args, timeout=120, check=True):
        return sh(self.dc_args(*args), timeout=timeout, check=check, env=self.env)

    def cid(self, node):
        if node not in self._cids:
            ids = self.dc("ps", "--all", "-q", node, timeout=30).stdout.split()
            assert ids, f"no container for {node}"
            self._cids[node] = ids[0]
        return self._cids[node]

    def forget(self, node):
        self._cids.pop(node, None)

    def network(self):
        names = sh(["docker", "network", "ls", "--format", "{{.Name}}", "--filter",
                    f"label=com.docker.compose.project={self.project}"]).stdout.split()
        assert len(names) == 1, f"expected one network of the project, got {names}"
        return names[0]

    def ip(self, node):
        return f"{self.net}.{10 + int(node[4:])}"

    def gureum(self, node, *args, timeout=15, check=True):
        """Run the CLI inside the node's container (docker exec: faster than compose exec)."""
        return sh(["docker", "exec", self.cid(node), "gureum", *args], timeout=timeout,
                  check=check)

    def json(self, node, *args, timeout=15):
        return json.loads(self.gureum(node, *args, "--json", timeout=timeout).stdout)

    def members(self, node):
        """{name: state} as `node` sees it."""
        return {m["name"]: m["state"] for m in self.json(node, "members", timeout=5)}

    def raft(self, node):
        return self.json(node, "raft", "status", timeout=5)

    def health(self, node):
        return sh(["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                   self.cid(node)]).stdout.strip()

    # --- waits ---
    def not_seeing(self, observers, targets, states):
        states = {states} if isinstance(states, str) else set(states)
        missing = []
        for o in observers:
            try:
                seen = self.members(o)
            except Exception as e:
                missing.append((o, None, f"error: {e.__class__.__name__}"))
                continue
            missing += [(o, t, seen.get(t)) for t in targets if seen.get(t) not in states]
        return missing

    def wait_see(self, observers, targets, states, timeout, what):
        last = []

        def cond():
            last[:] = self.not_seeing(observers, targets, states)
            return not last
        t0 = time.monotonic()
        try:
            wait_for(cond, timeout, what)
        except Timeout as e:
            raise Timeout(f"{e}; still (observer, target, seen): {last[:10]}") from None
        return time.monotonic() - t0

    def wait_all_alive(self, timeout=60):
        return self.wait_see(NODES, NODES, "alive", timeout, "every node to list all five alive")

    def raft_view(self, observers):
        """(leader, {name: role}) when every observer names the same leader and that leader's
        configuration is known, else None."""
        views = {o: self.raft(o) for o in observers}
        leaders = {v["leader"] for v in views.values()}
        if len(leaders) != 1 or "" in leaders:
            return None
        leader = leaders.pop()
        lv = views.get(leader) or self.raft(leader)
        if lv["state"] != "leader":
            return None
        return leader, {m["name"]: m["role"] for m in lv["members"]}

    # --- S3 ---
    def s3(self):
        if self.key is None:
            out = self.dc("exec", "-T", "node1", "gureum", "key", "create", "compose-test",
                          "--json", timeout=60).stdout
            self.key = json.loads(out)
        return boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.ports['s3']}", region_name="us-east-1",
            aws_access_key_id=self.key["access_key_id"],
            aws_secret_access_key=self.key["secret_access_key"],
            config=botocore.config.Config(signature_version="s3v4",
                                          s3={"addressing_style": "path"},
                                          connect_timeout=3, read_timeout=10,
                                          retries={"total_max_attempts": 1}))

    # --- replicated storage ---
    def storage_status(self):
        """`gureum storage status --json` as an operator runs it (compose exec on node1)."""
        out = self.dc("exec", "-T", "node1", "gureum", "storage", "status", "--json",
                      timeout=60).stdout
        return json.loads(out)

    def storage_unlevel(self):
        """Asks every storage node for an anti-entropy round now, then lists what keeps the
        copies from being level: per node an error, a round running or none yet, differing
        partitions, queued repairs or hints, partitions still moving, unequal object counts."""
        for n in STORAGE:
            self.gureum(n, "storage", "sync", timeout=10, check=False)
        time.sleep(0.5)
        st = self.storage_status()
        by = {x["name"]: x for x in st["nodes"]}
        why = []
        if sorted(by) != STORAGE:
            why.append(f"layout nodes {sorted(by)}")
        if st["rebalance"]["moving_partitions"]:
            why.append(f"{st['rebalance']['moving_partitions']} partitions moving")
        for n, x in sorted(by.items()):
            ae = x.get("antientropy") or {}
            if x.get("error"):
                why.append(f"{n}: {x['error']}")
            elif ae.get("running") or ae.get("rounds", 0) < 1:
                why.append(f"{n}: anti-entropy round pending")
            elif ae.get("differing", 1) or x.get("sync_queue", 1) or x.get("hints_pending", 1):
                why.append(f"{n}: differing {ae.get('differing')}, queue {x.get('sync_queue')}, "
                           f"hints {x.get('hints_pending')}")
        objects = {n: x.get("objects") for n, x in by.items()}
        if len(set(objects.values())) != 1:
            why.append(f"objects {objects}")
        return why, st

    def wait_storage_level(self, timeout=90):
        """Until every copy is level (storage_unlevel() finds nothing); returns (seconds, status)."""
        t0 = time.monotonic()
        last = []

        def cond():
            why, st = self.storage_unlevel()
            last[:] = why
            return None if why else st
        try:
            st = wait_for(cond, timeout, "the storage copies to be level", interval=1)
        except Timeout as e:
            raise Timeout(f"{e}; still: {last}") from None
        return time.monotonic() - t0, st

    # --- life cycle ---
    def up(self):
        self.dc("up", "-d", timeout=180)

    def down(self):
        self.dc("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=180,
                check=False)
        self._cids.clear()

    def keep_logs_if_failed(self, session):
        """Node logs of a run in which a test failed (once, before the containers go)."""
        if self.logs_kept or session.testsfailed <= self.failed_before:
            return
        try:
            self.logs_kept = self.dump_logs()
            print(f"\nnode logs kept in {self.logs_kept}")
        except Exception as e:
            print(f"\ncould not keep the node logs: {e}")

    def dump_logs(self):
        dest = os.path.join(LOGS, self.project)
        os.makedirs(dest, exist_ok=True)
        for n in ["certs", *NODES]:
            r = self.dc("logs", "--no-color", n, timeout=60, check=False)
            with open(os.path.join(dest, f"{n}.log"), "w") as f:
                f.write(r.stdout + r.stderr)
        return dest


@pytest.fixture(scope="module")
def cluster(request):
    remove_stale_projects()
    if sh(["docker", "image", "inspect", IMAGE], check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} not found: run `make image` (make compose-test builds it)")
    c = ComposeCluster()
    c.failed_before = request.session.testsfailed
    try:
        t0 = time.monotonic()
        c.up()
        c.wait_all_alive(timeout=90)
        print(f"\ncompose project {c.project} on {c.net}.0/24: five alive in "
              f"{time.monotonic() - t0:.1f}s")
        yield c
    finally:
        c.keep_logs_if_failed(request.session)
        c.down()
        left = project_leftovers(c.project)
        if any(left.values()):
            force_remove(c.project)
            raise AssertionError(f"compose down left {left} behind (now force-removed)")


class S3Probe:
    """Writes and reads one new object per call through the published S3 port; counts failures
    and remembers what it wrote (written), to be read again later."""

    def __init__(self, cluster, bucket, prefix="probe"):
        self.s3, self.bucket, self.prefix = cluster.s3(), bucket, prefix
        self.ok, self.errors, self.n, self.written = 0, [], 0, {}

    def step(self):
        self.n += 1
        key, body = f"{self.prefix}/{self.n:05d}", os.urandom(2048) + str(self.n).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            self.written[key] = hashlib.sha256(body).hexdigest()
            got = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            assert got == body, f"{key}: read back {len(got)} bytes that differ"
            self.ok += 1
        except Exception as e:
            self.errors.append(f"{key}: {e.__class__.__name__}: {e}"[:300])


def put_objects(s3, bucket, prefix, sizes=(0, 1, 4096, 65_537, 300_000, 1_500_000, 3_000_001)):
    """One object per size (some over a 1 MiB block); returns {key: sha256 hex}."""
    written = {}
    for i, size in enumerate(sizes):
        key, body = f"{prefix}/{i:02d}-{size}", os.urandom(size)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        written[key] = hashlib.sha256(body).hexdigest()
    return written


def unreadable(s3, bucket, written):
    """The keys of `written` ({key: sha256}) that do not read back byte-identical, with why."""
    bad = []
    for key, digest in written.items():
        try:
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as e:
            bad.append((key, f"{e.__class__.__name__}: {e}"[:200]))
            continue
        if hashlib.sha256(got).hexdigest() != digest:
            bad.append((key, f"{len(got)} bytes that differ"))
    return bad


@pytest.fixture(scope="module")
def bucket(cluster):
    s3 = cluster.s3()
    wait_for(lambda: s3.create_bucket(Bucket="faults"), 30, "bucket 'faults' to be created")
    return "faults"


def pick_voter(cluster, exclude=("node1",), voter_only=True):
    """A node other than node1 (whose ports the tests use) to inflict a fault on: a storage voter
    if there is one (so the fault hits both Raft and an object copy), else any voter, or (with
    voter_only False) a storage node that is not a voter; preferably not the leader."""
    leader, roles = wait_for(lambda: cluster.raft_view(NODES), 30, "an agreed Raft leader")
    voters = [n for n, r in roles.items() if r == "voter" and n not in exclude]
    assert voters, f"no voter outside {exclude}: {roles}"
    choice = ([v for v in voters if v in STORAGE] or
              ([] if voter_only else [n for n in STORAGE if n not in exclude]) or voters)
    others = [v for v in choice if v != leader]
    return (others or choice)[0], leader, roles


# --- tests ----------------------------------------------------------------------------------

def test_members_five_alive(cluster):
    """The operator's command (compose exec) lists five alive; every node agrees, with the roles
    and zones the compose file gives them; every container is healthy."""
    out = cluster.dc("exec", "-T", "node1", "gureum", "members", "--json", timeout=60).stdout
    members = {m["name"]: m for m in json.loads(out)}
    assert sorted(members) == NODES
    assert {n: m["state"] for n, m in members.items()} == {n: "alive" for n in NODES}
    for n, m in members.items():
        assert m["roles"] == ROLES[n], (n, m)
        assert m["zone"] == ZONES[n], (n, m)
        assert m["address"] == f"{cluster.ip(n)}:7071", (n, m)
    cluster.wait_all_alive(timeout=30)
    wait_for(lambda: all(cluster.health(n) == "healthy" for n in NODES), 60,
             "every container to be healthy")


def test_admin_api_published(cluster):
    """node1's admin API and metrics answer on the published host port."""
    base = f"http://127.0.0.1:{cluster.ports['admin']}"
    st = requests.get(f"{base}/v1/status", timeout=5).json()
    assert st["name"] == "node1" and st["address"] == cluster.ip("node1")
    assert st["roles"] == ROLES["node1"]
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert 'gureum_gossip_members{state="alive"} 5' in metrics


def test_raft_one_leader_and_voters(cluster):
    """All five name the same leader; with raft.max_voters 3 (test override) there are three
    voters, the leader among them, and the other two replicate as standbys."""
    def converged():
        v = cluster.raft_view(NODES)
        if not v:
            return None
        leader, roles = v
        voters = sorted(n for n, r in roles.items() if r == "voter")
        standbys = sorted(n for n, r in roles.items() if r == "standby")
        ok = sorted(roles) == NODES and len(voters) == 3 and len(standbys) == 2 and leader in voters
        return (leader, voters, standbys) if ok else None
    leader, voters, standbys = wait_for(converged, 60, "one leader, 3 voters and 2 standbys")
    print(f"\nleader {leader}, voters {voters}, standbys {standbys}")
    states = [cluster.raft(n)["state"] for n in NODES]
    assert states.count("leader") == 1, states


def test_tls_on_every_node(cluster):
    """The certs service ran once, as uid 10001, and exited 0; every node runs the cluster channel
    over TLS with its own certificate from the volume (cluster_tls in `gureum status`); running
    certs again keeps every file."""
    ids = cluster.dc("ps", "--all", "-q", "certs", timeout=30).stdout.split()
    assert len(ids) == 1, f"expected one certs container, got {ids}"
    st = json.loads(sh(["docker", "inspect", "-f", "{{json .State}}", ids[0]]).stdout)
    assert st["Status"] == "exited" and st["ExitCode"] == 0, st
    user = sh(["docker", "inspect", "-f", "{{.Config.User}}", ids[0]]).stdout.strip()
    assert user.split(":")[0] in ("10001", "gureum"), f"certs ran as {user!r}"
    for n in NODES:
        status = cluster.json(n, "status")
        assert status["cluster_tls"] is True, (n, status)
        env = sh(["docker", "inspect", "-f", "{{json .Config.Env}}", cluster.cid(n)]).stdout
        env = dict(e.split("=", 1) for e in json.loads(env))
        assert env["GUREUM_TLS_CA"] == f"{TLS_DIR}/ca.crt", env
        assert env["GUREUM_TLS_CERT"] == f"{TLS_DIR}/{n}.crt", env
        assert env["GUREUM_TLS_KEY"] == f"{TLS_DIR}/{n}.key", env
        mounts = json.loads(sh(["docker", "inspect", "-f", "{{json .Mounts}}",
                                cluster.cid(n)]).stdout)
        tls = [m for m in mounts if m["Destination"] == TLS_DIR]
        assert tls and tls[0]["RW"] is False, (n, mounts)
    # Idempotent: a second run (as `up` does every time) keeps the CA and every certificate.
    r = cluster.dc("run", "--rm", "-T", "certs", timeout=120)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 + len(NODES) and all(x.startswith("kept") for x in lines), r.stdout
    metrics = requests.get(f"http://127.0.0.1:{cluster.ports['admin']}/metrics", timeout=5).text
    assert 'gureum_rpc_tls_refused_total{side="inbound"} 0' in metrics, \
        [x for x in metrics.splitlines() if "tls_refused" in x]


def tls_refused_inbound(cluster):
    metrics = requests.get(f"http://127.0.0.1:{cluster.ports['admin']}/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith('gureum_rpc_tls_refused_total{side="inbound"}'):
            return int(float(line.split()[-1]))
    raise AssertionError("gureum_rpc_tls_refused_total{side=\"inbound\"} not in node1's metrics")


def test_node_without_cluster_certificate_is_refused(cluster):
    """Two strangers join the cluster network with the right secret and seeds: one with a
    certificate from a CA of its own (`gureum tls ensure` in a volume of its own), one without
    TLS. Neither gets in: node1 never lists them alive, each lists nobody else alive, node1 counts
    the refused handshakes - and both keep running (so they really tried)."""
    net, lbl = cluster.network(), f"com.docker.compose.project={cluster.project}"
    seeds = ",".join(f"{cluster.ip(n)}:7071" for n in STORAGE)
    strangers = {"stranger-ca": f"{cluster.net}.51", "stranger-plain": f"{cluster.net}.52"}
    volume = f"{cluster.project}_stranger-tls"
    made = []
    refused0 = tls_refused_inbound(cluster)
    try:
        sh(["docker", "volume", "create", "--label", lbl, volume])
        sh(["docker", "run", "--rm", "--network", "none", "--label", lbl,
            "-v", f"{volume}:{TLS_DIR}", IMAGE, "tls", "ensure", "--dir", TLS_DIR,
            f"stranger-ca={strangers['stranger-ca']}"], timeout=60)
        for name, ip in strangers.items():
            args = ["docker", "run", "-d", "--name", f"{cluster.project}-{name}", "--label", lbl,
                    "--network", net, "--ip", ip,
                    "-e", f"GUREUM_NAME={name}", "-e", f"GUREUM_ADVERTISE={ip}",
                    "-e", f"GUREUM_CLUSTER_SECRET={cluster.env['GUREUM_COMPOSE_SECRET']}",
                    "-e", f"GUREUM_SEEDS={seeds}", "-e", "GUREUM_ROLES=storage",
                    "-e", "GUREUM_GOSSIP_PUSHPULL_INTERVAL_MS=2000"]
            if name == "stranger-ca":
                args += ["-v", f"{volume}:{TLS_DIR}:ro", "-e", f"GUREUM_TLS_CA={TLS_DIR}/ca.crt",
                         "-e", f"GUREUM_TLS_CERT={TLS_DIR}/{name}.crt",
                         "-e", f"GUREUM_TLS_KEY={TLS_DIR}/{name}.key"]
            made.append(sh([*args, IMAGE], timeout=60).stdout.strip())
        for cid, name in zip(made, strangers):
            st = wait_for(lambda: json.loads(sh(["docker", "exec", cid, "gureum", "status",
                                                 "--json"], timeout=10).stdout), 30,
                          f"{name} to answer")
            assert st["cluster_tls"] is (name == "stranger-ca"), st
        # A dozen seconds: many join attempts, probes and push-pulls (2 s) on both sides.
        seen, deadline = [], time.monotonic() + 12
        while time.monotonic() < deadline:
            m = cluster.members("node1")
            seen += [(n, m[n]) for n in strangers if m.get(n) == "alive"]
            time.sleep(1)
        assert not seen, f"node1 listed a stranger alive: {seen}"
        for cid, name in zip(made, strangers):
            running = sh(["docker", "inspect", "-f", "{{.State.Running}}", cid]).stdout.strip()
            assert running == "true", f"{name} exited: {sh(['docker', 'logs', cid]).stderr[-1500:]}"
            own = json.loads(sh(["docker", "exec", cid, "gureum", "members", "--json"],
                                timeout=10).stdout)
            alive = [x["name"] for x in own if x["state"] == "alive" and not x.get("self")]
            assert not alive, f"{name} lists {alive} alive"
        for n in NODES:
            m = cluster.members(n)
            assert not [x for x in strangers if m.get(x) == "alive"], (n, m)
        refused = wait_for(lambda: tls_refused_inbound(cluster) - refused0 or None, 10,
                           "node1 to count refused TLS handshakes")
        cluster.wait_all_alive(timeout=30)
        print(f"\nstrangers refused: node1 refused {refused} handshakes, lists neither alive")
    finally:
        if made:
            sh(["docker", "rm", "-fv", *made], check=False)
        sh(["docker", "volume", "rm", "-f", volume], check=False)
    assert not sh(["docker", "ps", "-aq", "--filter", f"name={cluster.project}-stranger"]).stdout


def test_s3_through_published_port(cluster, bucket):
    """S3 (SigV4, path style) through node1's published port; the website port answers HTTP."""
    s3 = cluster.s3()
    body = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="hello.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="hello.bin")["Body"].read() == body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "hello.bin" in keys
    r = requests.get(f"http://127.0.0.1:{cluster.ports['web']}/", timeout=5)
    assert r.status_code < 500


def test_killed_voter_is_detected_dead_and_replaced(cluster, bucket):
    """docker kill a voter: the others see it dead, the leader promotes a standby in its place
    (raft.dead_voter_timeout_s 3), S3 keeps working; started again it comes back alive."""
    victim, leader, roles = pick_voter(cluster)
    observers = [n for n in NODES if n != victim]
    s3 = cluster.s3()
    before = put_objects(s3, bucket, "before-kill")
    probe = S3Probe(cluster, bucket, "during-kill")
    t0 = time.monotonic()
    sh(["docker", "kill", cluster.cid(victim)])
    try:
        def dead_everywhere():
            probe.step()
            return not cluster.not_seeing(observers, [victim], "dead")
        wait_for(dead_everywhere, 40, f"every other node to list {victim} dead")
        t_dead = time.monotonic() - t0
        # One copy gone (if it was a storage node), two left: a quorum for reads and writes.
        bad = unreadable(s3, bucket, before)
        assert not bad, f"objects written before killing {victim} misread: {bad}"

        def replaced():
            probe.step()
            v = cluster.raft_view(observers)
            if not v:
                return None
            _, r = v
            voters = [n for n, role in r.items() if role == "voter"]
            return voters if victim not in voters and len(voters) == 3 else None
        voters = wait_for(replaced, 60, f"{victim} to be replaced as a voter")
        t_replaced = time.monotonic() - t0
        print(f"\nkilled {victim} (leader {leader}): dead everywhere after {t_dead:.1f}s, "
              f"voters {voters} after {t_replaced:.1f}s; S3 ok {probe.ok}/{probe.n}, "
              f"{len(before)} earlier objects intact")
        assert not probe.errors, f"S3 failed during the fault: {probe.errors[:5]}"
        assert probe.ok >= 2
    finally:
        sh(["docker", "start", cluster.cid(victim)], check=False)
    t1 = time.monotonic()
    cluster.wait_all_alive(timeout=60)
    # Back, it replicates as a standby (the three voters stay).
    wait_in_raft(cluster, victim)
    took, st = cluster.wait_storage_level(timeout=90)
    print(f"{victim} back: copies level {time.monotonic() - t1:.1f}s after its start "
          f"({st['nodes'][0]['objects']} objects on each storage node)")
    bad = unreadable(s3, bucket, {**before, **probe.written})
    assert not bad, f"objects misread after {victim} came back: {bad[:5]}"


def test_partitioned_node_is_seen_dead_then_alive_again(cluster, bucket):
    """docker network disconnect cuts a node off: each side sees the other suspect, then dead;
    S3 keeps working; docker network connect (same address) heals it: all alive, one leader."""
    victim, leader, roles = pick_voter(cluster, voter_only=False)
    observers = [n for n in NODES if n != victim]
    net = cluster.network()
    s3 = cluster.s3()
    before = put_objects(s3, bucket, "before-partition")
    probe = S3Probe(cluster, bucket, "during-partition")
    took = {}
    t0 = time.monotonic()
    sh(["docker", "network", "disconnect", "-f", net, cluster.cid(victim)])
    connected = False
    try:
        def cut_off():
            probe.step()
            return not cluster.not_seeing(observers, [victim], "dead")
        wait_for(cut_off, 40, f"every other node to list {victim} dead")
        took["others see it dead"] = time.monotonic() - t0
        # The victim, alone, suspects or declares dead every other node - slowly: its failed
        # probes raise its Lifeguard health score, which stretches its own probe interval
        # (about 20 s for all four here).
        cluster.wait_see([victim], observers, ("suspect", "dead"), 60,
                         f"{victim} to list the others suspect or dead")
        took["it sees the others suspect/dead"] = time.monotonic() - t0
        # Quorum stays on the majority side: writes through node1 still commit.
        cluster.gureum("node1", "state", "put", "compose/partition", "during", timeout=20)
        assert not probe.errors, f"S3 failed during the partition: {probe.errors[:5]}"
        bad = unreadable(s3, bucket, before)
        assert not bad, f"objects written before the partition misread: {bad}"
        sh(["docker", "network", "connect", "--ip", cluster.ip(victim), net, cluster.cid(victim)])
        connected = True
        t1 = time.monotonic()
        cluster.wait_all_alive(timeout=60)
        took["reconnected: all alive"] = time.monotonic() - t1
        wait_for(lambda: cluster.raft_view(NODES), 60, "all five to agree on one Raft leader")
        took["reconnected: one leader"] = time.monotonic() - t1
        wait_for(lambda: cluster.json(victim, "state", "get", "compose/partition", "--stale")
                 .get("value") == "during", 60, f"{victim} to apply the write made without it")
        took["reconnected: caught up"] = time.monotonic() - t1
        cluster.wait_storage_level(timeout=90)
        took["reconnected: copies level"] = time.monotonic() - t1
        bad = unreadable(s3, bucket, {**before, **probe.written})
        assert not bad, f"objects misread after the partition healed: {bad[:5]}"
    finally:
        if not connected:
            sh(["docker", "network", "connect", "--ip", cluster.ip(victim), net,
                cluster.cid(victim)], check=False)
    print(f"\npartitioned {victim} (leader {leader}): "
          + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()) + f"; S3 ok {probe.ok}/{probe.n}")


def test_recreated_node_keeps_its_state(cluster, bucket):
    """node1's container is removed and created anew on the same volume: same node id, the
    replicated state and the S3 object it stored are intact, and it rejoins."""
    s3 = cluster.s3()
    value = uuid.uuid4().hex
    cluster.gureum("node1", "state", "put", "compose/persist", value, timeout=20)
    body = os.urandom(1_500_000)
    s3.put_object(Bucket=bucket, Key="persist.bin", Body=body)
    node_id = cluster.json("node1", "status")["id"]

    t0 = time.monotonic()
    cluster.dc("stop", "--timeout", "20", "node1", timeout=60)
    cluster.dc("rm", "-f", "node1", timeout=60)
    old = cluster.cid("node1")
    cluster.forget("node1")
    cluster.dc("up", "-d", "node1", timeout=120)
    assert cluster.cid("node1") != old, "compose did not create a new container"
    wait_for(lambda: cluster.json("node1", "status", timeout=5), 30, "node1 to answer again")
    t_up = time.monotonic() - t0
    assert cluster.json("node1", "status")["id"] == node_id, "node1 lost its id: volume not reused"
    assert cluster.json("node1", "state", "get", "compose/persist", "--stale")["value"] == value
    cluster.wait_all_alive(timeout=60)
    wait_for(lambda: cluster.json("node1", "state", "get", "compose/persist")["value"] == value,
             30, "a linearizable read of compose/persist on node1")
    got = wait_for(lambda: s3.get_object(Bucket=bucket, Key="persist.bin")["Body"].read(), 30,
                   "the S3 object through the published port")
    assert got == body
    # Its graceful stop took it out of the Raft configuration; the leader adds it back.
    wait_in_raft(cluster, "node1")
    print(f"\nnode1 recreated on its volume, answering after {t_up:.1f}s, back in Raft after "
          f"{time.monotonic() - t0:.1f}s")


def in_raft_again(cluster, node):
    """All five agree on a leader whose configuration has `node` (voter or standby) and 3 voters."""
    v = cluster.raft_view(NODES)
    return v and v[1].get(node) in ("voter", "standby") and \
        sum(r == "voter" for r in v[1].values()) == 3


def wait_in_raft(cluster, node, timeout=60):
    """Until in_raft_again(node); on a timeout the message shows what each node last said."""
    try:
        wait_for(lambda: in_raft_again(cluster, node), timeout,
                 f"{node} back in the Raft configuration with three voters")
    except Timeout as e:
        views = {}
        for n in NODES:
            try:
                r = cluster.raft(n)
                views[n] = (r.get("state"), r.get("leader"),
                            {m["name"]: m["role"] for m in r.get("members", [])})
            except Exception as x:
                views[n] = f"{x.__class__.__name__}: {x}"[:200]
        raise Timeout(f"{e}; raft status per node: {views}") from None


def test_rolling_restart_one_node_at_a_time(cluster, bucket):
    """The upgrade procedure of docs/deploy.md: stop one node (it leaves the cluster), start it on
    its volume, wait until every node lists it alive and it is back in the Raft configuration,
    then the next one. Writes commit while each node is down; nothing is lost, and the object
    copies are level at the end."""
    s3 = cluster.s3()
    body = os.urandom(200_000)
    s3.put_object(Bucket=bucket, Key="rolling.bin", Body=body)
    took = {}
    for node in ["node5", "node4", "node3", "node2", "node1"]:
        t0 = time.monotonic()
        cluster.dc("stop", "--timeout", "20", node, timeout=60)
        writer = "node2" if node == "node1" else "node1"
        wait_for(lambda: cluster.gureum(writer, "state", "put", f"compose/rolling/{node}", node,
                                        timeout=20), 30, f"a write while {node} is down")
        cluster.dc("start", node, timeout=60)
        cluster.wait_all_alive(timeout=60)
        wait_in_raft(cluster, node)
        took[node] = round(time.monotonic() - t0, 1)
    print(f"\nrolling restart, seconds per node: {took}")
    for reader in NODES:
        for node in NODES:
            got = cluster.json(reader, "state", "get", f"compose/rolling/{node}")
            assert got["value"] == node, (reader, node, got)
    got = wait_for(lambda: s3.get_object(Bucket=bucket, Key="rolling.bin")["Body"].read(), 30,
                   "the S3 object after node1's restart")
    assert got == body
    # Each storage node's graceful stop took it out of the storage layout; all back, the copies
    # level again (docs/deploy.md: wait for this before the next storage node).
    took_level, _ = cluster.wait_storage_level(timeout=90)
    print(f"copies level {took_level:.1f}s after the last restart")


def tools_image():
    """An image with a shell and tar (the node image has neither), for volume backups."""
    for img in (os.environ.get("GUREUM_COMPOSE_TOOLS_IMAGE"), "gureum-base:bookworm",
                "debian:bookworm"):
        if img and sh(["docker", "image", "inspect", img], check=False).returncode == 0:
            return img
    return None


def test_backup_and_restore_of_a_node_volume(cluster, bucket, tmp_path):
    """docs/deploy.md's backup: stop the node, tar its volume, start it; later restore that tar
    into the volume: the node keeps its id and catches up with what was written after the
    backup - the control-plane state from the leader, the objects (and a deletion) by
    anti-entropy from the other copies."""
    tools = tools_image()
    if not tools:
        pytest.skip("no image with tar (gureum-base:bookworm or debian:bookworm)")
    node = "node2"
    mounts = json.loads(sh(["docker", "inspect", "-f", "{{json .Mounts}}", cluster.cid(node)]).stdout)
    volume = next(m["Name"] for m in mounts if m["Destination"] == "/var/lib/gureum")
    node_id = cluster.json(node, "status")["id"]
    cluster.gureum("node1", "state", "put", "compose/backup", "before", timeout=20)
    wait_for(lambda: cluster.json(node, "state", "get", "compose/backup", "--stale")
             .get("value") == "before", 30, f"{node} to apply the write")
    backup = str(tmp_path)
    s3 = cluster.s3()
    s3.put_object(Bucket=bucket, Key="backup/deleted-later", Body=b"gone after the backup")
    cluster.wait_storage_level(timeout=90)  # node2 holds its copy when the backup is taken

    def tar(script):
        sh(["docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/data",
            "-v", f"{backup}:/backup", tools, "sh", "-c", script], timeout=120)

    cluster.dc("stop", "--timeout", "20", node, timeout=60)
    tar("tar -C /data -czf /backup/node.tgz .")
    cluster.dc("start", node, timeout=60)
    cluster.wait_all_alive(timeout=60)
    wait_in_raft(cluster, node)
    cluster.gureum("node1", "state", "put", "compose/backup", "after", timeout=20)
    s3.delete_object(Bucket=bucket, Key="backup/deleted-later")  # the backup still has it
    after = put_objects(s3, bucket, "after-backup", sizes=(10, 200_000, 1_200_000))
    cluster.wait_storage_level(timeout=90)

    t0 = time.monotonic()
    cluster.dc("stop", "--timeout", "20", node, timeout=60)
    tar("find /data -mindepth 1 -delete && tar -C /data -xzf /backup/node.tgz")
    cluster.dc("start", node, timeout=60)
    wait_for(lambda: cluster.json(node, "status", timeout=5), 30, f"{node} to answer")
    assert cluster.json(node, "status")["id"] == node_id
    cluster.wait_all_alive(timeout=60)
    wait_in_raft(cluster, node)
    wait_for(lambda: cluster.json(node, "state", "get", "compose/backup", "--stale")
             .get("value") == "after", 60, f"restored {node} to catch up with the later write")
    t_state = time.monotonic() - t0
    _, st = cluster.wait_storage_level(timeout=90)
    t_level = time.monotonic() - t0
    bad = unreadable(s3, bucket, after)
    assert not bad, f"objects written after the backup misread: {bad}"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="backup/deleted-later")
    assert e.value.response["Error"]["Code"] == "NoSuchKey", e.value.response
    print(f"\n{node} restored from its backup ({os.path.getsize(os.path.join(backup, 'node.tgz'))}"
          f" bytes): state caught up {t_state:.1f}s, object copies level {t_level:.1f}s after the "
          f"restore began ({st['nodes'][0]['objects']} objects on each storage node)")


def test_zz_down_leaves_nothing(cluster, request):
    """compose down removes every container, network and volume of the project."""
    cluster.keep_logs_if_failed(request.session)  # the logs of an earlier failure, while they exist
    assert any(project_leftovers(cluster.project).values())
    cluster.down()
    assert project_leftovers(cluster.project) == {"containers": [], "networks": [], "volumes": []}
