#!/usr/bin/env bash
# install-deps.sh - the one install step: every Debian package the build, tests and benchmarks
# need, plus pinned test-only Python tools in ./.venv. Idempotent; run as root on Debian bookworm.
#   --build   only what compiling `gureum` needs, no .venv (the Docker image's build stage)
set -euo pipefail

cd "$(dirname "$0")/.."

BUILD_PKGS=(
  # build
  build-essential cmake pkg-config protobuf-c-compiler
  # product libraries
  libuv1-dev libnng-dev librocksdb-dev libprotobuf-c-dev libyaml-dev libssl-dev
  libhttp-parser-dev libjansson-dev libraft-dev libxml2-dev
  # unit tests (CMakeLists.txt requires cmocka to configure)
  libcmocka-dev
)
BUILD_ONLY=0
case "${1:-}" in
  --build) BUILD_ONLY=1 ;;
  "") ;;
  *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac

PKGS=(
  "${BUILD_PKGS[@]}"
  # cluster tests and benchmarks
  python3 python3-venv python3-pip iproute2 nftables procps curl
  # benchmark peers
  serf etcd-server etcd-client
  # S3 tests and benchmark: aws CLI v2, Debian's boto3 (an older SDK), nginx (WebDAV peer), wrk
  awscli python3-boto3 nginx wrk
  # deploy checks: the base image for `make image` (debootstrap), `systemd-analyze verify` of
  # deploy/gureum.service (systemd). Docker itself is not installed here: the compose tests run
  # when an engine answers and are skipped otherwise.
  debootstrap systemd
)
[ "$BUILD_ONLY" = 1 ] && PKGS=("${BUILD_PKGS[@]}")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$BUILD_ONLY" = 1 ]; then
  echo "install-deps: build packages ok"
  exit 0
fi

# Test-only Python tools, pinned, in a venv so the system Python stays untouched.
REQ=cluster-test/requirements.txt
STAMP=.venv/.requirements.sha
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "install-deps: creating .venv with $REQ"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
  echo "$want" > "$STAMP"
fi
echo "install-deps: ok"
