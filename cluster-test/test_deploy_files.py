"""test_deploy_files.py - the deployment files hold together without Docker or systemd running:
the example config passes `gureum config check`, the systemd unit passes `systemd-analyze verify`
(when systemd-analyze is installed), the install rule puts the files where the unit and
docs/deploy.md expect them, the compose files parse (when a compose command is installed), and
the Dockerfile and scripts keep their conventions. The compose cluster itself is tested by
cluster-test/compose/ (make compose-test)."""
import os
import re
import shutil
import subprocess

import pytest

import harness

ROOT = harness.ROOT
DEPLOY = os.path.join(ROOT, "deploy")


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def run(args, timeout=60, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def test_example_config_passes_config_check():
    r = run([harness.GUREUM, "config", "check", os.path.join(DEPLOY, "gureum.example.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


def test_example_config_sets_what_differs_per_machine():
    text = read("deploy", "gureum.example.yml")
    for key in ("name", "bind", "advertise", "zone", "seeds", "roles", "cluster", "data_dir",
                "ports", "s3"):
        assert re.search(rf"^{key}:", text, re.M), f"gureum.example.yml does not set {key}"
    for key in ("secret", "admin", "rpc", "raft", "port", "website_port"):
        assert re.search(rf"^  {key}:", text, re.M), f"gureum.example.yml does not set {key}"


def test_example_config_rejected_when_broken(tmp_path):
    """config check is a real check: a typo in the example is reported with its line."""
    bad = tmp_path / "bad.yml"
    bad.write_text(read("deploy", "gureum.example.yml").replace("zone: ", "zome: ", 1))
    r = run([harness.GUREUM, "config", "check", str(bad)])
    assert r.returncode == 2 and "zome" in r.stderr + r.stdout


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies():
    r = run([os.path.join(DEPLOY, "verify-unit.sh"), harness.GUREUM], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_systemd_unit_fits_the_binary():
    unit = read("deploy", "gureum.service")
    sources = "".join(read("node", f) for f in os.listdir(os.path.join(ROOT, "node"))
                      if f.endswith(".c"))
    if "sd_notify" not in sources and "NOTIFY_SOCKET" not in sources:
        assert not re.search(r"^Type=notify", unit, re.M), "the binary does not speak sd_notify"
    if "SIGHUP" not in sources:
        assert not re.search(r"^ExecReload=", unit, re.M), "the binary does not reload on SIGHUP"
    assert re.search(r"^ExecStart=/usr/local/bin/gureum node start --config /etc/gureum/gureum.yml$",
                     unit, re.M)
    for line in ("User=gureum", "StateDirectory=gureum", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "Restart=on-failure", "RestartPreventExitStatus=2"):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line
    assert re.search(r"^LimitNOFILE=\d+$", unit, re.M)
    # The Raft transport relays streams through socketpairs: AF_UNIX must stay allowed.
    assert re.search(r"^RestrictAddressFamilies=.*AF_UNIX", unit, re.M)


def test_install_rule(tmp_path):
    build = os.path.dirname(harness.GUREUM)
    if not os.path.exists(os.path.join(build, "cmake_install.cmake")):
        pytest.skip(f"{build} is not a CMake build directory")
    env = dict(os.environ, DESTDIR=str(tmp_path))
    r = run(["cmake", "--install", build, "--prefix", "/usr/local"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("bin/gureum", "share/gureum/gureum.service", "share/gureum/gureum.example.yml",
              "share/doc/gureum/deploy.md", "share/doc/gureum/configuration.md"):
        assert os.path.isfile(tmp_path / "usr/local" / f), f
    assert os.access(tmp_path / "usr/local/bin/gureum", os.X_OK)


def compose_command():
    if shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(compose_command() is None, reason="no compose command installed")
def test_compose_files_parse():
    """`config` needs no engine: the file and the test override are valid for this compose."""
    files = ["-f", "deploy/docker-compose.yml", "-f", "cluster-test/compose/docker-compose.test.yml"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUREUM_COMPOSE", "COMPOSE_"))}
    r = run([*compose_command(), "-p", "gureumcheck", *files, "config", "--services"], env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["certs"] + [f"node{i}" for i in range(1, 6)]
    r = run([*compose_command(), "-p", "gureumcheck", "-f", "deploy/docker-compose.yml", "config"],
            env=env)
    assert r.returncode == 0, r.stderr
    # Every node waits for certs (both compose versions render the condition once per node).
    assert r.stdout.count("condition: service_completed_successfully") == 5, r.stdout
    for published in ("127.0.0.1:9000:9000", "127.0.0.1:9080:9080", "127.0.0.1:5353:53/udp",
                      "127.0.0.1:5353:53/tcp", "127.0.0.1:7070:7070", "127.0.0.1:8080:8080"):
        assert published in r.stdout, published
    assert "127.0.0" not in re.sub(r"127\.0\.0\.1:\d+:\d+", "", r.stdout), \
        "the cluster network must not use 127.0.x addresses"


def test_compose_file_runs_tls():
    """TLS between nodes in deploy/docker-compose.yml (checked in the file itself, since the two
    compose versions render `config` differently): certs makes the files with `tls ensure` as the
    image's user without a network; every node mounts them read-only and names its own."""
    text = read("deploy", "docker-compose.yml")
    certs = re.search(r"^  certs:\n((?:    .*\n|\s*\n)+)", text, re.M)
    assert certs, "no certs service"
    block = certs.group(1)
    assert re.search(r'^    user: "10001(:10001)?"$', block, re.M), block
    assert re.search(r"^    network_mode: none$", block, re.M), block
    assert re.search(r"^    volumes: \[tls:/etc/gureum/tls\]$", block, re.M), block
    args = re.findall(r"^      - (\S+)$", block, re.M)
    assert args[:4] == ["tls", "ensure", "--dir", "/etc/gureum/tls"], args
    assert args[4:] == [f"node{i}=${{GUREUM_COMPOSE_NET:-10.213.0}}.1{i}" for i in range(1, 6)]
    assert re.search(r"^  GUREUM_TLS_CA: /etc/gureum/tls/ca\.crt$", text, re.M)
    assert re.search(r"^    certs: \{ condition: service_completed_successfully \}$", text, re.M)
    assert re.search(r"^  tls:$", text, re.M), "the tls volume is not declared"
    for i in range(1, 6):
        for line in (f"      GUREUM_TLS_CERT: /etc/gureum/tls/node{i}.crt",
                     f"      GUREUM_TLS_KEY: /etc/gureum/tls/node{i}.key",
                     f"    volumes: [node{i}-data:/var/lib/gureum, tls:/etc/gureum/tls:ro]"):
            assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def test_dockerfile_conventions():
    df = re.sub(r"\\\n\s*", " ", read("deploy", "Dockerfile"))  # continuation lines joined
    first_from = df.index("\nFROM ")
    assert re.search(r"^ARG BASE=debian:bookworm$", df[:first_from], re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["/usr/local/bin/gureum", "status"\]$', df, re.M)
    user = re.findall(r"^USER (\S+)$", df, re.M)
    assert user and not user[-1].startswith(("root", "0")), user
    assert re.search(r'^VOLUME \["/var/lib/gureum"\]$', df, re.M)
    for port in ("7070", "7071", "7072", "9000", "9080"):
        assert re.search(rf"^EXPOSE .*\b{port}/tcp", df, re.M), port
    ignored = read(".dockerignore").split()
    for entry in (".git", "/build*", ".venv", "**/*.log"):
        assert entry in ignored, entry


def test_deploy_scripts_are_strict_bash():
    for name in ("install-deps.sh", "make-base-image.sh", "compose.sh", "verify-unit.sh"):
        path = os.path.join(DEPLOY, name)
        text = read("deploy", name)
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert "\nset -euo pipefail\n" in text, name
        assert os.access(path, os.X_OK), f"{name} is not executable"
        r = run(["bash", "-n", path])
        assert r.returncode == 0, r.stderr
