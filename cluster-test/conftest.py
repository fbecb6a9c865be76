"""conftest.py - pytest fixtures for cluster tests: a work dir per test, nodes stopped at the end,
every node's log kept under cluster-test/logs/<test>/ when the test fails, and no partition rules
left behind (stale nft tables of dead runs are removed before the session, ours after it and
after each test that uses the `network` fixture)."""
import os
import shutil

import pytest

import harness

LOGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def nodes(request, tmp_path):
    """A list the test appends harness.Node objects to; all are stopped afterwards."""
    started = []
    yield started
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    for n in started:
        try:
            n.resume()
        except Exception:
            pass
        try:
            n.stop()
        except Exception:
            n.kill()
    if failed and started:
        dest = os.path.join(LOGS, request.node.name)
        shutil.rmtree(dest, ignore_errors=True)
        harness.dump_logs(started, dest)
        print(f"\nnode logs kept in {dest}")


@pytest.fixture(scope="session", autouse=True)
def _no_stale_partitions():
    """A crashed run may have left partition rules: start clean, and end clean."""
    harness.heal_stale()
    yield
    harness.heal()


@pytest.fixture
def network():
    """Network faults for one test: harness.partition()/heal(), healed at teardown whatever
    happens."""
    harness.heal()
    yield harness
    harness.heal()


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)
