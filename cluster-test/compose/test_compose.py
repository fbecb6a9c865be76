"""test_compose.py - the five-node compose cluster (deploy/docker-compose.yml) in real containers,
under real faults: membership and Raft, a killed voter (detected dead, replaced), a network
partition (docker network disconnect/connect), a node recreated on its volume, and S3 reads and
writes through the published port while all that happens.

The module's cluster is a compose project of its own (unique name, free /24, free host ports), so
it runs beside `make compose-up` and beside other runs; cluster-test/compose/docker-compose.test.yml
shortens the failure timeouts. Everything it made (containers, network, volumes) is removed at the
end, also on failure, and the last test asserts nothing is left. Node logs of a failed run are kept
in cluster-test/logs/compose/. Needs a Docker engine and the image (`make compose-test` builds it);
without an engine the module is skipped. Every wait is bounded."""
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

    # --- life cycle ---
    def up(self):
        self.dc("up", "-d", timeout=180)

    def down(self):
        self.dc("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=180,
                check=False)
        self._cids.clear()

    def dump_logs(self):
        dest = os.path.join(LOGS, self.project)
        os.makedirs(dest, exist_ok=True)
        for n in NODES:
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
    failed_before = request.session.testsfailed
    try:
        t0 = time.monotonic()
        c.up()
        c.wait_all_alive(timeout=90)
        print(f"\ncompose project {c.project} on {c.net}.0/24: five alive in "
              f"{time.monotonic() - t0:.1f}s")
        yield c
    finally:
        if request.session.testsfailed > failed_before:
            try:
                print(f"\nnode logs kept in {c.dump_logs()}")
            except Exception as e:
                print(f"\ncould not keep the node logs: {e}")
        c.down()
        left = project_leftovers(c.project)
        if any(left.values()):
            force_remove(c.project)
            raise AssertionError(f"compose down left {left} behind (now force-removed)")


class S3Probe:
    """Writes and reads one new object per call through the published S3 port; counts failures."""

    def __init__(self, cluster, bucket):
        self.s3, self.bucket = cluster.s3(), bucket
        self.ok, self.errors, self.n = 0, [], 0

    def step(self):
        self.n += 1
        key, body = f"probe/{self.n:05d}", os.urandom(2048) + str(self.n).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            got = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            assert got == body, f"{key}: read back {len(got)} bytes that differ"
            self.ok += 1
        except Exception as e:
            self.errors.append(f"{key}: {e.__class__.__name__}: {e}"[:300])


@pytest.fixture(scope="module")
def bucket(cluster):
    s3 = cluster.s3()
    wait_for(lambda: s3.create_bucket(Bucket="faults"), 30, "bucket 'faults' to be created")
    return "faults"


def pick_voter(cluster, exclude=("node1",)):
    """A voter other than node1 (whose ports the tests use), preferably not the leader."""
    leader, roles = wait_for(lambda: cluster.raft_view(NODES), 30, "an agreed Raft leader")
    voters = [n for n, r in roles.items() if r == "voter" and n not in exclude]
    assert voters, f"no voter outside {exclude}: {roles}"
    others = [v for v in voters if v != leader]
    return (others or voters)[0], leader, roles


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
    probe = S3Probe(cluster, bucket)
    t0 = time.monotonic()
    sh(["docker", "kill", cluster.cid(victim)])
    try:
        def dead_everywhere():
            probe.step()
            return not cluster.not_seeing(observers, [victim], "dead")
        wait_for(dead_everywhere, 40, f"every other node to list {victim} dead")
        t_dead = time.monotonic() - t0

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
              f"voters {voters} after {t_replaced:.1f}s; S3 ok {probe.ok}/{probe.n}")
        assert not probe.errors, f"S3 failed during the fault: {probe.errors[:5]}"
        assert probe.ok >= 2
    finally:
        sh(["docker", "start", cluster.cid(victim)], check=False)
    cluster.wait_all_alive(timeout=60)
    # Back, it replicates as a standby (the three voters stay).
    wait_for(lambda: in_raft_again(cluster, victim), 60,
             f"{victim} to replicate again with three voters")


def test_partitioned_node_is_seen_dead_then_alive_again(cluster, bucket):
    """docker network disconnect cuts a node off: each side sees the other suspect, then dead;
    S3 keeps working; docker network connect (same address) heals it: all alive, one leader."""
    victim, leader, roles = pick_voter(cluster)
    observers = [n for n in NODES if n != victim]
    net = cluster.network()
    probe = S3Probe(cluster, bucket)
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
    wait_for(lambda: in_raft_again(cluster, "node1"), 60, "node1 back in the Raft configuration")
    print(f"\nnode1 recreated on its volume, answering after {t_up:.1f}s, back in Raft after "
          f"{time.monotonic() - t0:.1f}s")


def in_raft_again(cluster, node):
    """All five agree on a leader whose configuration has `node` (voter or standby) and 3 voters."""
    v = cluster.raft_view(NODES)
    return v and v[1].get(node) in ("voter", "standby") and \
        sum(r == "voter" for r in v[1].values()) == 3


def test_rolling_restart_one_node_at_a_time(cluster, bucket):
    """The upgrade procedure of docs/deploy.md: stop one node (it leaves the cluster), start it on
    its volume, wait until every node lists it alive and it is back in the Raft configuration,
    then the next one. Writes commit while each node is down; nothing is lost."""
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
        wait_for(lambda: in_raft_again(cluster, node), 60, f"{node} back in the Raft configuration")
        took[node] = round(time.monotonic() - t0, 1)
    print(f"\nrolling restart, seconds per node: {took}")
    for reader in NODES:
        for node in NODES:
            got = cluster.json(reader, "state", "get", f"compose/rolling/{node}")
            assert got["value"] == node, (reader, node, got)
    got = wait_for(lambda: s3.get_object(Bucket=bucket, Key="rolling.bin")["Body"].read(), 30,
                   "the S3 object after node1's restart")
    assert got == body


def tools_image():
    """An image with a shell and tar (the node image has neither), for volume backups."""
    for img in (os.environ.get("GUREUM_COMPOSE_TOOLS_IMAGE"), "gureum-base:bookworm",
                "debian:bookworm"):
        if img and sh(["docker", "image", "inspect", img], check=False).returncode == 0:
            return img
    return None


def test_backup_and_restore_of_a_node_volume(cluster, tmp_path):
    """docs/deploy.md's backup: stop the node, tar its volume, start it; later restore that tar
    into the volume: the node keeps its id and catches up with what was written after the
    backup."""
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

    def tar(script):
        sh(["docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/data",
            "-v", f"{backup}:/backup", tools, "sh", "-c", script], timeout=120)

    cluster.dc("stop", "--timeout", "20", node, timeout=60)
    tar("tar -C /data -czf /backup/node.tgz .")
    cluster.dc("start", node, timeout=60)
    cluster.wait_all_alive(timeout=60)
    wait_for(lambda: in_raft_again(cluster, node), 60, f"{node} back in the Raft configuration")
    cluster.gureum("node1", "state", "put", "compose/backup", "after", timeout=20)

    t0 = time.monotonic()
    cluster.dc("stop", "--timeout", "20", node, timeout=60)
    tar("find /data -mindepth 1 -delete && tar -C /data -xzf /backup/node.tgz")
    cluster.dc("start", node, timeout=60)
    wait_for(lambda: cluster.json(node, "status", timeout=5), 30, f"{node} to answer")
    assert cluster.json(node, "status")["id"] == node_id
    cluster.wait_all_alive(timeout=60)
    wait_for(lambda: in_raft_again(cluster, node), 60, f"{node} back in the Raft configuration")
    wait_for(lambda: cluster.json(node, "state", "get", "compose/backup", "--stale")
             .get("value") == "after", 60, f"restored {node} to catch up with the later write")
    print(f"\n{node} restored from its backup ({os.path.getsize(os.path.join(backup, 'node.tgz'))}"
          f" bytes), caught up {time.monotonic() - t0:.1f}s after the restore began")


def test_zz_down_leaves_nothing(cluster):
    """compose down removes every container, network and volume of the project."""
    assert any(project_leftovers(cluster.project).values())
    cluster.down()
    assert project_leftovers(cluster.project) == {"containers": [], "networks": [], "volumes": []}
