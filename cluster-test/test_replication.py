"""test_replication.py - objects replicated across storage nodes, driven with boto3: node loss,
quorum loss, a corrupt block, a node added and removed under traffic, a 2|1 partition, and
storage classes. Nodes live on 127.0.80.x (one cluster per test, 3 or 4 nodes)."""
import hashlib
import json
import os
import random
import threading
import time

import boto3
import requests
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import harness
from harness import Cluster, Node, wait_for

MiB = 1 << 20
NET = 80
FAST = {"GUREUM_STORAGE_SYNC_INTERVAL_S": "2", "GUREUM_STORAGE_DEBUG_HOOKS": "true",
        "GUREUM_STORAGE_REBALANCE_MIB_S": "256"}


# --- helpers ---------------------------------------------------------------------------------

def s3_client(node, key, timeout=20):
    cfg = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                 retries={"max_attempts": 1}, connect_timeout=5, read_timeout=timeout)
    return boto3.client("s3", endpoint_url=f"http://{node.ip}:9000", region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"], config=cfg)


def create_key(node, name):
    def attempt():
        r = node.cli("key", "create", name, "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None
    return wait_for(attempt, 20, f"`gureum key create {name}`")


def storage_status(node):
    r = node.get("/v1/storage/status", timeout=10)
    r.raise_for_status()
    return r.json()


def start_cluster(workdir, nodes, n=3, env=None, dead_timeout=30):
    c = Cluster(workdir, n, net=NET, prefix="r", seeds=1,
                env={**FAST, "GUREUM_STORAGE_DEAD_TIMEOUT_S": str(dead_timeout), **(env or {})})
    nodes.extend(c.nodes)
    c.start()
    for x in c:
        wait_layout(x, [y.name for y in c])
    key = create_key(c[0], "repl")
    return c, key


def wait_layout(node, names, timeout=40, settled=True):
    """Until `node` reports a layout over exactly `names` (and, if asked, nothing moving)."""
    def ok():
        st = storage_status(node)
        have = sorted(x["name"] for x in st["nodes"])
        return have == sorted(names) and (not settled or st["rebalance"]["moving_partitions"] == 0)
    wait_for(ok, timeout, f"a layout over {sorted(names)}", interval=0.2)
    return storage_status(node)


def body_of(i):
    """Mixed sizes: mostly small, some 100 KiB, a few over a block (1 MiB)."""
    rnd = random.Random(i)
    size = rnd.choice([0, 1, 100, 4096, 30000]) if i % 10 else rnd.choice([100 * 1024, 2 * MiB + 7])
    return rnd.randbytes(size)


def put_many(s3, bucket, keys):
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=body_of(int(k.split("-")[1])))


def check_all(s3, bucket, keys):
    bad = []
    for k in keys:
        want = body_of(int(k.split("-")[1]))
        try:
            got = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        except ClientError as e:
            bad.append((k, e.response["Error"]["Code"]))
            continue
        if hashlib.sha256(got).digest() != hashlib.sha256(want).digest():
            bad.append((k, f"{len(got)} bytes, want {len(want)}"))
    return bad


def converged(cluster, live, want_objects=None):
    """Every live node ran anti-entropy with nothing left to do, and (if given) each holds
    want_objects[name] objects."""
    for n in live:
        n.cli("storage", "sync")
    time.sleep(0.5)
    st = storage_status(live[0])
    by = {x["name"]: x for x in st["nodes"]}
    for n in live:
        s = by.get(n.name, {})
        ae = s.get("antientropy", {})
        if s.get("error") or ae.get("running") or ae.get("differing", 1) != 0 or ae.get("rounds", 0) < 1:
            return False
        if s.get("sync_queue", 1) != 0 or s.get("hints_pending", 1) != 0:
            return False
        if want_objects and s.get("objects") != want_objects.get(n.name):
            return False
    return st


# --- tests -----------------------------------------------------------------------------------

def test_layout_and_status_cli(workdir, nodes):
    c, key = start_cluster(workdir, nodes)
    st = storage_status(c[0])
    assert st["layout_version"] >= 1 and st["replicas"] == 3
    assert sorted(x["partitions"] for x in st["nodes"]) == [256, 256, 256]
    r = c[1].cli("storage", "status")
    assert r.returncode == 0, r.stderr
    assert "layout version" in r.stdout and "r3" in r.stdout and "settled" in r.stdout, r.stdout
    r = c[1].cli("storage", "status", "--json")
    assert json.loads(r.stdout)["layout_version"] == st["layout_version"]
    r = harness.run_cli("storage", "status", node="127.0.80.250:7070", timeout=30)
    assert r.returncode == 3 and "cannot reach" in r.stderr


def test_node_loss_then_repair(workdir, nodes):
    """1,000 objects; SIGKILL one node: every object reads back and writes go on; restart it:
    anti-entropy converges and the node holds its share."""
    c, key = start_cluster(workdir, nodes)
    s3 = s3_client(c[0], key)
    s3.create_bucket(Bucket="loss")
    keys = [f"obj-{i}" for i in range(1000)]
    put_many(s3, "loss", keys)
    c[2].kill()
    t0 = time.monotonic()
    assert check_all(s3, "loss", keys) == []
    read_s = time.monotonic() - t0
    more = [f"obj-{i}" for i in range(1000, 1100)]
    put_many(s3, "loss", more)  # new writes with one of three copies down
    assert check_all(s3_client(c[1], key), "loss", more) == []
    c[2].start()
    c[2].wait_ready()
    t0 = time.monotonic()
    st = wait_for(lambda: converged(c, c.nodes, {n.name: 1100 for n in c}), 90,
                  "anti-entropy to converge with 1,100 objects on every node", interval=1)
    print(f"\nread 1000 objects with a node down in {read_s:.1f}s; "
          f"converged {time.monotonic() - t0:.1f}s after restart; "
          f"pulled {[x.get('pulled_versions') for x in st['nodes']]}")
    assert check_all(s3_client(c[2], key), "loss", keys[:50] + more) == []


def test_quorum_lost_writes_fail_then_nothing_lost(workdir, nodes):
    c, key = start_cluster(workdir, nodes)
    s3 = s3_client(c[0], key, timeout=30)
    s3.create_bucket(Bucket="quorum")
    keys = [f"obj-{i}" for i in range(200)]
    put_many(s3, "quorum", keys)
    c[1].kill()
    c[2].kill()
    t0 = time.monotonic()
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket="quorum", Key="lost", Body=b"x" * 1000)
    took = time.monotonic() - t0
    err = ei.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503, err
    assert err["Error"]["Code"] in ("ServiceUnavailable", "SlowDown"), err
    assert took < 25, took
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket="quorum", Key="obj-1")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    c[1].start()
    c[1].wait_ready()
    wait_for(lambda: s3.put_object(Bucket="quorum", Key="back", Body=b"y"), 30,
             "writes to resume with two of three nodes")
    assert check_all(s3, "quorum", keys) == []
    c[2].start()
    c[2].wait_ready()
    assert check_all(s3_client(c[2], key), "quorum", keys[:40]) == []


def test_corrupt_block_is_read_around_and_scrubbed(workdir, nodes):
    c, key = start_cluster(workdir, nodes)
    s3 = s3_client(c[0], key)
    s3.create_bucket(Bucket="rot")
    data = os.urandom(3 * MiB + 5)
    vid = "null"
    s3.put_object(Bucket="rot", Key="big", Body=data)
    r = requests.post(f"http://{c[0].admin}/v1/debug/corrupt",
                              params={"bucket": "rot", "key": "big", "version": vid,
                                      "offset": str(MiB)}, timeout=10)
    assert r.status_code == 200, r.text
    # c[0] reads its own copy first: the bad block must be read around, never returned.
    got = s3.get_object(Bucket="rot", Key="big")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert c[0].cli("storage", "scrub").returncode == 0

    def repaired():
        me = [x for x in storage_status(c[0])["nodes"] if x["name"] == c[0].name][0]
        return me["scrub"]["repaired"] >= 1 and not me["scrub"]["running"] and me
    me = wait_for(repaired, 30, "the scrub to repair the block", interval=0.5)
    assert me["scrub"]["bad"] >= 1
    # Now even this node's own copy is good: stop the others and read it alone... with a
    # quorum of one it cannot answer, so check the scrub finds nothing any more.
    assert c[0].cli("storage", "scrub").returncode == 0
    wait_for(lambda: not [x for x in storage_status(c[0])["nodes"]
                          if x["name"] == c[0].name][0]["scrub"]["running"], 30, "a second scrub")
    me = [x for x in storage_status(c[0])["nodes"] if x["name"] == c[0].name][0]
    assert me["scrub"]["bad"] == 0, me["scrub"]


class Traffic(threading.Thread):
    """A client writing and reading back continuously; records every error it sees."""

    def __init__(self, s3, bucket):
        super().__init__(daemon=True)
        self.s3, self.bucket = s3, bucket
        self.stop_evt = threading.Event()
        self.errors, self.written = [], []

    def run(self):
        i = 0
        deadline = time.monotonic() + 240
        while not self.stop_evt.is_set() and time.monotonic() < deadline:
            k = f"t-{i}"
            body = body_of(i)
            try:
                self.s3.put_object(Bucket=self.bucket, Key=k, Body=body)
                self.written.append(k)
                j = random.choice(self.written)
                got = self.s3.get_object(Bucket=self.bucket, Key=j)["Body"].read()
                if got != body_of(int(j.split("-")[1])):
                    self.errors.append((j, "bytes differ"))
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.errors.append((k, repr(e)[:200]))
            i += 1

    def stop(self):
        self.stop_evt.set()
        self.join(30)


def test_add_and_remove_a_node_under_traffic(workdir, nodes):
    c, key = start_cluster(workdir, nodes)
    s3 = s3_client(c[0], key)
    s3.create_bucket(Bucket="grow")
    base = [f"obj-{i}" for i in range(300)]
    put_many(s3, "grow", base)
    v0 = storage_status(c[0])["layout_version"]
    t = Traffic(s3, "grow")
    t.start()
    try:
        n4 = Node(workdir, "r4", f"127.0.{NET}.4", seeds=[c[0].rpc],
                  env={**FAST, "GUREUM_STORAGE_DEAD_TIMEOUT_S": "30"})
        nodes.append(n4)
        n4.start()
        n4.wait_ready()
        t0 = time.monotonic()
        st = wait_layout(c[0], [x.name for x in c] + ["r4"], timeout=120)
        moved_s = time.monotonic() - t0
        assert st["layout_version"] > v0
        shares = {x["name"]: x["partitions"] for x in st["nodes"]}
        assert 180 <= shares["r4"] <= 200, shares
        # gracefully remove r2: it leaves, the layout drops it, its partitions move.
        c[1].stop()
        t1 = time.monotonic()
        st = wait_layout(c[0], [c[0].name, c[2].name, "r4"], timeout=120)
        removed_s = time.monotonic() - t1
    finally:
        t.stop()
    print(f"\nadd: layout settled in {moved_s:.1f}s; remove: {removed_s:.1f}s; "
          f"{len(t.written)} writes under traffic, errors {t.errors[:3]}")
    assert t.errors == []
    assert len(t.written) > 20
    assert check_all(s3, "grow", base) == []
    assert check_all(s3_client(n4, key), "grow", t.written[-30:]) == []


def test_partition_majority_writes_then_converges(workdir, nodes, network):
    c, key = start_cluster(workdir, nodes)
    s3a = s3_client(c[0], key)
    s3a.create_bucket(Bucket="split")
    put_many(s3a, "split", [f"obj-{i}" for i in range(50)])
    network.partition([[c[0], c[1]], [c[2]]])
    try:
        wait_for(lambda: harness.member_states(c[0]).get(c[2].name) == "dead", 20, "r3 seen dead")
        written = [f"obj-{i}" for i in range(50, 150)]
        put_many(s3a, "split", written)  # the majority side keeps accepting writes
        s3a.put_object(Bucket="split", Key="obj-7", Body=body_of(7)[::-1] or b"new")  # overwrite
        with pytest.raises(ClientError) as ei:  # the minority side refuses
            s3_client(c[2], key, timeout=30).put_object(Bucket="split", Key="minority", Body=b"m")
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        network.heal()
    counts = {n.name: 150 for n in c}
    st = wait_for(lambda: converged(c, c.nodes, counts), 90, "convergence after the heal",
                  interval=1)
    assert st
    got = s3_client(c[2], key).get_object(Bucket="split", Key="obj-7")["Body"].read()
    assert got == (body_of(7)[::-1] or b"new")
    assert check_all(s3_client(c[2], key), "split", written) == []


def test_storage_classes_copies(workdir, nodes):
    c, key = start_cluster(workdir, nodes)
    s3 = s3_client(c[0], key)
    s3.create_bucket(Bucket="classes")
    for i in range(30):
        s3.put_object(Bucket="classes", Key=f"std-{i}", Body=b"s" * 100)
        s3.put_object(Bucket="classes", Key=f"rr-{i}", Body=b"r" * 100,
                      StorageClass="REDUCED_REDUNDANCY")
    def copies():
        st = converged(c, c.nodes)
        return st and sum(x["objects"] for x in st["nodes"])
    total = wait_for(copies, 60, "anti-entropy rounds")
    assert total == 30 * 3 + 30 * 2, total
    assert s3.head_object(Bucket="classes", Key="rr-3")["StorageClass"] == "REDUCED_REDUNDANCY"


def test_a_frozen_replica_costs_a_grace_period_not_a_timeout(workdir, nodes):
    """SIGSTOP one node (alive to gossip for a few seconds, answering nothing): writes finish
    once a quorum stored them plus a short grace, reads once a read quorum answered."""
    c, key = start_cluster(workdir, nodes)
    s3 = s3_client(c[0], key)
    s3.create_bucket(Bucket="frozen")
    s3.put_object(Bucket="frozen", Key="before", Body=b"b" * 5000)
    c[2].pause()
    try:
        took = []
        for i in range(3):
            t0 = time.monotonic()
            s3.put_object(Bucket="frozen", Key=f"k{i}", Body=os.urandom(100 + i * 2 * MiB))
            took.append(time.monotonic() - t0)
            t0 = time.monotonic()
            assert s3.get_object(Bucket="frozen", Key="before")["Body"].read() == b"b" * 5000
            took.append(time.monotonic() - t0)
        print(f"\nrequest times with a frozen replica: {[round(t, 2) for t in took]}")
        assert max(took) < 5, took
    finally:
        c[2].resume()
    wait_for(lambda: converged(c, c.nodes, {n.name: 4 for n in c}), 60, "the frozen node to catch up",
             interval=1)


def test_listing_hides_what_a_stale_replica_still_lists(workdir, nodes):
    """A replica that missed deletes (frozen meanwhile) must not bring the keys back into
    listings, even before repair reached it."""
    c, key = start_cluster(workdir, nodes, env={"GUREUM_STORAGE_SYNC_INTERVAL_S": "3600"})
    s3 = s3_client(c[0], key)
    s3.create_bucket(Bucket="stale")
    keys = [f"d/obj-{i}" for i in range(20)]
    for k in keys:
        s3.put_object(Bucket="stale", Key=k, Body=b"x")
    c[2].pause()
    try:
        for k in keys[:10]:
            s3.delete_object(Bucket="stale", Key=k)
    finally:
        c[2].resume()
    for n in c:  # whichever node coordinates, the deleted keys stay gone
        s3n = s3_client(n, key)
        got = [o["Key"] for o in s3n.list_objects_v2(Bucket="stale").get("Contents", [])]
        assert got == sorted(keys[10:]), (n.name, got)
        with pytest.raises(ClientError) as ei:  # and reads agree: the delete wins
            s3n.get_object(Bucket="stale", Key=keys[3])
        assert ei.value.response["Error"]["Code"] == "NoSuchKey"
    logs = "".join(n.log_text() for n in c)
    print(f"\nstale copies hidden by listings: {logs.count('listing_stale_copy')}")
