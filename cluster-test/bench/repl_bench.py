#!/usr/bin/env python3
"""repl_bench.py - what replication costs and how fast it heals: Gureum with 3 nodes and 3 copies
beside 1 node with 1 copy, in the same run, and the repair rates. Not a test: prints one table.

Setups (one after the other, alone on the machine):
  1 node   127.0.90.1, 1 copy (the layout of a single storage node).
  3 nodes  127.0.90.11-13, storage.replicas=3; the client talks to the first node, which
           coordinates every request (quorum writes to all three, reads from a quorum).
Rows, for both: PUT/GET 4 KiB ops/s at 1 and 32 connections (load tool: wrk with presigned URLs,
  as s3_bench.py; Python threads when wrk is missing), 64 MiB PUT/GET MiB/s (median of --reps).
Repair (4 nodes 127.0.90.21-24, 3 copies, storage.dead_timeout_s=3, rebalance 1000 MiB/s):
  re-replication: DATA (1 GiB; 256 MiB with --quick) in 16 MiB objects; SIGKILL one node; the
    time until the layout dropped it and every partition has its 3 copies again (storage status:
    settled, each survivor holding all objects), with and without the 3 s dead timeout.
  rebalance: 3 nodes holding DATA, a 4th joins; MiB/s = bytes the newcomer pulled / time from its
    start until the layout settled.
Every wait is bounded; every process is stopped on exit.

usage: repl_bench.py [--quick] [--duration 5] [--reps 3] [--json FILE]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402
import s3_bench  # noqa: E402  (load tools, crc32, cleanup of started nodes)

import boto3  # noqa: E402
import requests  # noqa: E402
from botocore.config import Config  # noqa: E402

MiB = 1 << 20
SMALL = 4096
BIG = 64 * MiB


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def client(node, key):
    return boto3.client("s3", endpoint_url=f"http://{node.ip}:9000", region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"],
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"total_max_attempts": 1}, read_timeout=120,
                                      max_pool_connections=16))


def status(node):
    return node.get("/v1/storage/status", timeout=10).json()


def cluster(workdir, ips, env):
    nodes = [harness.Node(workdir, f"b{ip.split('.')[-1]}", ip, seeds=[f"{ips[0]}:7071"] if i else [],
                          env=env) for i, ip in enumerate(ips)]
    for n in nodes:
        s3_bench.NODES.append(n)
        n.start()
    for n in nodes:
        n.wait_ready(20)
    names = sorted(n.name for n in nodes)
    harness.wait_for(lambda: all(sorted(x["name"] for x in status(n)["nodes"]) == names
                                 for n in nodes), 60, "the layout on every node", interval=0.2)

    def key():
        r = nodes[0].cli("key", "create", "bench", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None
    k = harness.wait_for(key, 20, "an access key")
    s3 = client(nodes[0], k)
    harness.wait_for(lambda: s3.create_bucket(Bucket="bench"), 10, "bucket creation")
    s3.create_bucket(Bucket="bench-pub", ACL="public-read")
    return nodes, k, s3


def stop(nodes):
    for n in nodes:
        try:
            n.stop(timeout=20)
        except Exception:
            n.kill()


def throughput(label, nodes, s3, args, workdir, load, tool):
    res = {"setup": label}
    host = f"{nodes[0].ip}:9000"
    body = os.urandom(SMALL)
    ck = s3_bench.crc32_b64(body)
    n = 2000 if args.quick else 5000
    pre = f"http://{host}"
    puts = [s3.generate_presigned_url("put_object", Params={"Bucket": "bench", "Key": f"k{i}"},
                                      ExpiresIn=3600)[len(pre):] for i in range(n)]
    s3.put_object(Bucket="bench-pub", Key="obj4k", Body=body)
    for c in (1, 32):
        rate, total, err = load(host, puts, "PUT", body, ck, c, args.duration, workdir)
        res[f"put_{c}c"] = rate
        log(f"{label}: PUT 4 KiB {c}c {rate:.0f} ops/s ({total} requests, {err} errors, {tool})")
        rate, total, err = load(host, ["/bench-pub/obj4k"], "GET", None, "", c, args.duration,
                                workdir)
        res[f"get_{c}c"] = rate
        log(f"{label}: GET 4 KiB {c}c {rate:.0f} ops/s ({total} requests, {err} errors, {tool})")
    big = os.urandom(BIG)
    big_ck = s3_bench.crc32_b64(big)
    sess = requests.Session()
    p, g = [], []
    for i in range(args.reps):
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "bench-pub", "Key": f"big{i}"},
                                        ExpiresIn=3600)
        t0 = time.monotonic()
        r = sess.put(url, data=big, headers={"x-amz-checksum-crc32": big_ck}, timeout=300)
        if r.status_code != 200:
            raise RuntimeError(f"64 MiB PUT: {r.status_code} {r.text[:200]}")
        p.append(BIG / MiB / (time.monotonic() - t0))
        t0 = time.monotonic()
        got = 0
        with sess.get(f"http://{host}/bench-pub/big{i}", stream=True, timeout=300) as r:
            for piece in r.iter_content(MiB):
                got += len(piece)
        if got != BIG:
            raise RuntimeError(f"64 MiB GET returned {got} bytes")
        g.append(BIG / MiB / (time.monotonic() - t0))
    res["big_put_mibs"], res["big_get_mibs"] = statistics.median(p), statistics.median(g)
    log(f"{label}: 64 MiB PUT {res['big_put_mibs']:.0f} MiB/s GET {res['big_get_mibs']:.0f} MiB/s")
    return res


def fill(s3, total):
    obj = os.urandom(16 * MiB)
    for i in range(total // (16 * MiB)):
        s3.put_object(Bucket="bench", Key=f"fill-{i}", Body=obj)
    return total // (16 * MiB)


def settled_with(nodes, copies):
    """The layout is over `nodes`, nothing moves, anti-entropy finds nothing, and the nodes hold
    `copies` object copies in all (objects x 3)."""
    def ok():
        for n in nodes:
            n.cli("storage", "sync")
        st = status(nodes[0])
        by = {x["name"]: x for x in st["nodes"]}
        if st["rebalance"]["moving_partitions"] or sorted(by) != sorted(n.name for n in nodes):
            return False
        if any(by[n.name].get("antientropy", {}).get("differing", 1) != 0 for n in nodes):
            return False
        return sum(by[n.name].get("objects", 0) for n in nodes) == copies
    return ok


def repair_rates(args, workdir):
    total = (256 if args.quick else 1024) * MiB
    env = {"GUREUM_STORAGE_DEAD_TIMEOUT_S": "3", "GUREUM_STORAGE_SYNC_INTERVAL_S": "2",
           "GUREUM_STORAGE_REBALANCE_MIB_S": "1000", "GUREUM_STORE_SYNC_WRITES": "false"}
    res = {}
    # re-replication after a node loss (4 nodes, 3 copies)
    ips = [f"127.0.90.{21 + i}" for i in range(4)]
    nodes, key, s3 = cluster(workdir, ips, env)
    try:
        count = fill(s3, total)
        harness.wait_for(settled_with(nodes, count * 3), 300, "three copies of the data",
                         interval=1)
        victim = nodes[3]
        victim.kill()
        t0 = time.monotonic()
        live = nodes[:3]
        harness.wait_for(lambda: sorted(x["name"] for x in status(live[0])["nodes"]) ==
                         sorted(n.name for n in live), 60, "the layout to drop the dead node",
                         interval=0.2)
        t_drop = time.monotonic() - t0
        harness.wait_for(settled_with(live, count * 3), 600, "three copies again", interval=1)
        t_all = time.monotonic() - t0
        res["rereplicate_s"] = t_all
        res["rereplicate_after_drop_s"] = t_all - t_drop
        res["rereplicate_mib"] = total // MiB
        log(f"re-replication of {total // MiB} MiB: {t_all:.1f} s after the kill "
            f"({t_all - t_drop:.1f} s after the layout dropped the node at {t_drop:.1f} s)")
    finally:
        stop(nodes)
    # rebalance when a node joins (3 nodes with data, a 4th joins)
    ips = [f"127.0.90.{31 + i}" for i in range(3)]
    nodes, key, s3 = cluster(workdir, ips, env)
    try:
        count = fill(s3, total)
        harness.wait_for(settled_with(nodes, count * 3), 300, "the data on all three", interval=1)
        n4 = harness.Node(workdir, "b34", "127.0.90.34", seeds=[f"{ips[0]}:7071"], env=env)
        s3_bench.NODES.append(n4)
        t0 = time.monotonic()
        n4.start().wait_ready(20)
        everyone = nodes + [n4]
        harness.wait_for(settled_with(everyone, count * 3), 600, "the rebalance to settle",
                         interval=0.5)
        dt = time.monotonic() - t0
        me = [x for x in status(nodes[0])["nodes"] if x["name"] == n4.name][0]
        pulled = me.get("pulled_bytes", 0)
        res["rebalance_s"] = dt
        res["rebalance_mib"] = pulled / MiB
        res["rebalance_mibs"] = pulled / MiB / dt
        log(f"rebalance: the 4th node pulled {pulled / MiB:.0f} MiB in {dt:.1f} s "
            f"({pulled / MiB / dt:.0f} MiB/s)")
    finally:
        stop(nodes + [n4])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--only-repair", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.reps = min(args.duration, 3), 1
    load, tool = (s3_bench.run_wrk, "wrk") if s3_bench.WRK else (s3_bench.run_python, "python")
    workdir = tempfile.mkdtemp(prefix="repl-bench-")
    rows = []
    if args.only_repair:
        print(json.dumps(repair_rates(args, workdir)))
        return
    try:
        for label, ips in (("1 node, 1 copy", ["127.0.90.1"]),
                           ("3 nodes, 3 copies", [f"127.0.90.{11 + i}" for i in range(3)])):
            nodes, key, s3 = cluster(workdir, ips, {})
            try:
                rows.append(throughput(label, nodes, s3, args, workdir, load, tool))
            finally:
                stop(nodes)
        rep = repair_rates(args, workdir)
    finally:
        s3_bench.cleanup()
    print(f"\nGureum replication ({tool} load, {args.duration:g} s per cell; RocksDB fsync on)")
    print(f"{'setup':<20} {'PUT 1c':>8} {'PUT 32c':>8} {'GET 1c':>8} {'GET 32c':>8} "
          f"{'64MiB PUT':>10} {'64MiB GET':>10}")
    for r in rows:
        print(f"{r['setup']:<20} {r['put_1c']:>8.0f} {r['put_32c']:>8.0f} {r['get_1c']:>8.0f} "
              f"{r['get_32c']:>8.0f} {r['big_put_mibs']:>10.0f} {r['big_get_mibs']:>10.0f}")
    print(f"\nre-replicate {rep['rereplicate_mib']} MiB after a node loss: {rep['rereplicate_s']:.1f} s "
          f"from the kill ({rep['rereplicate_after_drop_s']:.1f} s after the 3 s dead timeout "
          f"dropped the node)")
    print(f"rebalance when a 4th node joins: {rep['rebalance_mibs']:.0f} MiB/s "
          f"({rep['rebalance_mib']:.0f} MiB in {rep['rebalance_s']:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "repair": rep}, f, indent=2)


if __name__ == "__main__":
    main()
