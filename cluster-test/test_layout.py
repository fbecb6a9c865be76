"""test_layout.py - the storage layout between real nodes: three storage nodes own all 256
partitions each; a fourth takes ~192 slots (prev set exactly on the partitions that moved, cleared
once the newcomer reports them synced); a graceful stop drops a node at once, a SIGKILLed one only
after storage.dead_timeout_s (3 s here), one back in time moves nothing; a lone zone-b node is in
every partition.

The layout is read from GET /v1/storage/layout (JSON; ?full=1 adds every partition's owners and
prev): the Raft value itself is binary protobuf. Sync reports, which the replication code writes
through layout_mgr_report_synced, are written here as raw LayoutSynced records with the state API.
Every test uses its own addresses in 127.0.70.x. Measured times are printed (run with -s)."""
import signal
import time

import pytest
import requests

import harness
from harness import Node, Timeout, jdump, wait_for

NET = "127.0.70"
DEAD_TIMEOUT_S = 3
BOUND_S = 30  # generous bound for anything that should take a few seconds


# --- helpers ---------------------------------------------------------------------------------

def storage_node(workdir, name, ip, seeds, zone=None, dead_timeout_s=DEAD_TIMEOUT_S):
    extra = ["--zone", zone] if zone else []
    return Node(workdir, name, ip, roles=["storage"], seeds=seeds, extra_args=extra,
                env={"GUREUM_STORAGE_DEAD_TIMEOUT_S": str(dead_timeout_s)})


def start_nodes(workdir, nodes, first_ip, count, zones=None, **kw):
    """`count` storage nodes on NET.first_ip.. (node 1 bootstraps, the others seed from it)."""
    out = []
    seed = f"{NET}.{first_ip}:7071"
    for i in range(count):
        ip = f"{NET}.{first_ip + i}"
        n = storage_node(workdir, f"s{first_ip + i}", ip, [] if i == 0 else [seed],
                         zone=zones[i] if zones else None, **kw)
        nodes.append(n)
        out.append(n.start())
    for n in out:
        n.wait_ready(15)
    return out


def layout(node, full=False, timeout=2):
    """GET /v1/storage/layout of `node` (None while there is none)."""
    r = node.get("/v1/storage/layout" + ("?full=1" if full else ""), timeout=timeout)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()


def slots(lay):
    """{node name: partitions it owns}."""
    return {n["name"]: n["partitions"] for n in lay["nodes"]}


def wait_layout(observers, cond, what, timeout=BOUND_S):
    """Wait until cond(layout) holds on every observer; returns {observer: layout}."""
    last = {}

    def check():
        for o in observers:
            try:
                last[o.name] = layout(o)
            except requests.RequestException as e:
                last[o.name] = f"error: {e.__class__.__name__}"
                return False
            if not isinstance(last[o.name], dict) or not cond(last[o.name]):
                return False
        return dict(last)
    try:
        return wait_for(check, timeout, what, interval=0.05)
    except Timeout as e:
        summary = {k: (v if not isinstance(v, dict) else
                       {"version": v["version"], "slots": slots(v), "moving": v["moving"]})
                   for k, v in last.items()}
        raise Timeout(f"{e}; last seen:\n{jdump(summary)}") from None


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def synced_record(version, node, bitmap=b"\xff" * 32):
    """A LayoutSynced protobuf: version = 1, node = 2, partitions = 3."""
    name = node.encode()
    return (b"\x08" + varint(version) + b"\x12" + varint(len(name)) + name +
            b"\x1a" + varint(len(bitmap)) + bitmap)


def report_synced(via, version, names):
    for name in names:
        r = requests.put(f"http://{via.admin}/v1/state/storage/synced/{name}",
                         data=synced_record(version, name), timeout=10)
        assert r.status_code == 200, f"sync report of {name}: {r.status_code} {r.text}"


def settle(nodes):
    """Report every node synced for the current version until the layout has no moves left
    (the replication code does this for real); returns the settled layout."""
    def done():
        lay = layout(nodes[0])
        if lay and lay["moving"] == 0:
            return lay
        report_synced(nodes[0], lay["version"], [n["name"] for n in lay["nodes"]])
        time.sleep(0.3)
        return None
    wait_for(done, BOUND_S, "the layout to settle after sync reports", interval=0.05)
    lays = wait_layout(nodes, lambda l: l["moving"] == 0, "every node to mirror the settled layout")
    return lays[nodes[0].name]


def leader_of(nodes):
    for n in nodes:
        try:
            lay = layout(n)
            if lay and lay["maintainer"]:
                return n
        except requests.RequestException:
            pass
    return None


def member_since_ms(observer, name):
    m = observer.members().get(name)
    return (m["state"], m["since_ms"]) if m else (None, None)


# --- tests -----------------------------------------------------------------------------------

def test_layout_follows_storage_nodes(workdir, nodes):
    """3 nodes own everything; a 4th takes ~192 slots; graceful stop and SIGKILL remove nodes at
    the right time."""
    c = start_nodes(workdir, nodes, 1, 3)
    t0 = time.monotonic()
    lays = wait_layout(c, lambda l: len(l["nodes"]) == 3 and all(v == 256 for v in slots(l).values()),
                       "3 nodes owning 256 partitions each")
    print(f"\nfirst 3-node layout visible on every node {time.monotonic() - t0:.2f}s after ready: "
          f"version {lays[c[0].name]['version']}")
    lay3 = settle(c)
    assert lay3["replicas"] == 3 and lay3["settled"]
    full3 = layout(c[0], full=True)
    assert len(full3["partitions"]) == 256
    for p in full3["partitions"]:
        assert sorted(p["owners"]) == sorted(n.name for n in c) and p["prev"] == []

    # A 4th storage node: a new version, ~192 slots each, prev exactly on the moved partitions.
    n4 = storage_node(workdir, "s4", f"{NET}.4", [f"{NET}.1:7071"])
    nodes.append(n4)
    t0 = time.monotonic()
    n4.start()
    all4 = c + [n4]
    lays = wait_layout(all4, lambda l: len(l["nodes"]) == 4, "the 4-node layout on every node")
    took = time.monotonic() - t0
    lay4 = lays[c[0].name]
    full4 = layout(c[0], full=True)
    print(f"4th node: start to new layout on all 4 nodes {took:.2f}s; version "
          f"{lay3['version']} -> {lay4['version']}; slots {slots(lay4)}; moving {lay4['moving']}")
    assert lay4["version"] > lay3["version"]
    assert all(191 <= v <= 193 for v in slots(lay4).values()), slots(lay4)
    moved, changed = 0, 0
    for p3, p4 in zip(full3["partitions"], full4["partitions"]):
        new = [o for o in p4["owners"] if o not in p3["owners"]]
        moved += len(new)
        if sorted(p3["owners"]) != sorted(p4["owners"]):
            changed += 1
            assert sorted(p4["prev"]) == sorted(p3["owners"]), (p3, p4)
            assert p4["owners"][-1] == "s4"
        else:
            assert p4["prev"] == [] and p4["owners"] == p3["owners"]
    print(f"slots moved: {moved}, partitions changed: {changed}")
    assert moved <= 200 and changed == lay4["moving"] == moved
    assert took < 10, f"the new layout took {took:.2f}s"

    # The newcomer reports its partitions synced: the leader clears prev, the version stays.
    report_synced(c[0], lay4["version"], ["s4"])
    lays = wait_layout(all4, lambda l: l["moving"] == 0, "prev to clear after s4's sync report")
    assert lays["s4"]["version"] == lay4["version"]

    # Graceful stop (SIGTERM: the node leaves): dropped at once, well before the dead timeout.
    t0 = time.monotonic()
    assert n4.stop() == 0
    stopped = time.monotonic()
    lays = wait_layout(c, lambda l: len(l["nodes"]) == 3, "the layout to drop s4 after it left")
    took = time.monotonic() - stopped
    print(f"graceful stop: layout without s4 {took:.2f}s after the process exited "
          f"(stop took {stopped - t0:.2f}s)")
    assert took < DEAD_TIMEOUT_S, f"a node that left was kept {took:.2f}s"
    assert all(v == 256 for v in slots(lays[c[0].name]).values())
    settle(c)

    # SIGKILL: kept while dead for less than storage.dead_timeout_s, dropped after it.
    victim = next(n for n in c if n is not leader_of(c))
    survivors = [n for n in c if n is not victim]
    leader = leader_of(survivors)
    assert leader is not None
    before = layout(leader)
    victim.kill()
    killed = time.monotonic()

    def dead_at_leader():
        st, since = member_since_ms(leader, victim.name)
        return since if st == "dead" else None
    dead_since_ms = wait_for(dead_at_leader, BOUND_S, f"the leader to declare {victim.name} dead")
    dead_seen = time.monotonic()
    # Until the timeout runs out (leader's clock), the layout must not change.
    while time.time() * 1000 < dead_since_ms + DEAD_TIMEOUT_S * 1000 - 300:
        lay = layout(leader)
        assert lay["version"] == before["version"], (
            f"layout changed {time.time() * 1000 - dead_since_ms:.0f} ms after the death")
        time.sleep(0.05)
    lays = wait_layout(survivors, lambda l: len(l["nodes"]) == 2,
                       f"the layout to drop {victim.name} after the dead timeout",
                       timeout=DEAD_TIMEOUT_S + 10)
    dropped_ms = time.time() * 1000
    print(f"SIGKILL: declared dead {dead_seen - killed:.2f}s after the kill, dropped from the "
          f"layout {(dropped_ms - dead_since_ms) / 1000:.2f}s after the death "
          f"(storage.dead_timeout_s={DEAD_TIMEOUT_S})")
    lay2 = lays[leader.name]
    assert (dropped_ms - dead_since_ms) / 1000 < DEAD_TIMEOUT_S + 3
    # Two nodes left: copies are capped at 2, every node owns every partition.
    assert all(v == 256 for v in slots(lay2).values()), slots(lay2)
    full2 = layout(leader, full=True)
    assert all(len(p["owners"]) == 2 for p in full2["partitions"])


def test_dead_node_back_in_time_moves_nothing(workdir, nodes):
    """A SIGKILLed node restarted within storage.dead_timeout_s keeps its partitions: the layout
    version does not change."""
    c = start_nodes(workdir, nodes, 11, 3, dead_timeout_s=20)
    wait_layout(c, lambda l: len(l["nodes"]) == 3, "the 3-node layout")
    lay = settle(c)
    victim = c[2] if c[2] is not leader_of(c) else c[1]
    leader = leader_of(c)
    victim.kill()
    wait_for(lambda: member_since_ms(leader, victim.name)[0] == "dead", BOUND_S,
             f"{victim.name} to be declared dead")
    victim.start()
    harness.wait_all_see([leader], [victim], "alive", BOUND_S)
    time.sleep(1.5)  # a recomputation would have happened by now
    after = layout(leader)
    assert after["version"] == lay["version"] and len(after["nodes"]) == 3, jdump(after)


def test_zone_b_node_in_every_partition(workdir, nodes):
    """Three nodes in zone a and one in zone b with 3 replicas: the zone-b node is an owner of
    every partition, the others share the rest."""
    c = start_nodes(workdir, nodes, 21, 4, zones=["a", "a", "a", "b"])
    lays = wait_layout(c, lambda l: len(l["nodes"]) == 4, "the 4-node layout")
    lay = lays[c[0].name]
    zones = {n["name"]: n["zone"] for n in lay["nodes"]}
    assert zones == {"s21": "a", "s22": "a", "s23": "a", "s24": "b"}
    full = layout(c[0], full=True)
    for i, p in enumerate(full["partitions"]):
        assert "s24" in p["owners"], f"partition {i}: {p}"
        assert {zones[o] for o in p["owners"]} == {"a", "b"}
    s = slots(lay)
    print(f"\nzones a,a,a,b: slots {s}")
    assert s["s24"] == 256 and all(170 <= s[n] <= 171 for n in ("s21", "s22", "s23"))


def test_leader_without_storage_role(workdir, nodes):
    """The Raft leader does not run storage (it bootstraps with roles [dns]): the storage node
    with the lowest name keeps the layout instead."""
    boss = Node(workdir, "s31", f"{NET}.31", roles=["dns"])
    nodes.append(boss)
    boss.start().wait_ready(15)
    wait_for(lambda: boss.get("/v1/raft/status", timeout=1).json()["state"] == "leader", BOUND_S,
             "s31 to lead Raft")
    c = []
    for i in range(3):
        n = storage_node(workdir, f"s{32 + i}", f"{NET}.{32 + i}", [f"{NET}.31:7071"])
        nodes.append(n)
        c.append(n.start())
    for n in c:
        n.wait_ready(15)
    lays = wait_layout(c, lambda l: len(l["nodes"]) == 3 and all(v == 256 for v in slots(l).values()),
                       "the layout of the 3 storage nodes")
    assert sorted(slots(lays["s32"])) == ["s32", "s33", "s34"]
    assert boss.get("/v1/raft/status").json()["leader"] == "s31"
    assert lays["s32"]["maintainer"] and not lays["s33"]["maintainer"] and not lays["s34"]["maintainer"]
    # It follows membership like the leader would: s33 leaves, s34 stays.
    assert c[1].stop() == 0
    lays = wait_layout([c[0], c[2]], lambda l: len(l["nodes"]) == 2, "the layout to drop s33")
    assert sorted(slots(lays["s32"])) == ["s32", "s34"]
