#!/usr/bin/env bash
# verify-unit.sh - check deploy/gureum.service with `systemd-analyze verify` (make verify-unit).
#
# verify wants the unit's ExecStart binary to exist and systemd's own units (sysinit.target...)
# to be there, and this must work on machines where /usr/local/bin/gureum is not installed and
# systemd is not PID 1 (containers, CI). So it verifies inside a throw-away root: systemd's unit
# directory copied in, the unit at etc/systemd/system/, and the binary at usr/local/bin/gureum
# (the build given as $1, default build/gureum; a stub script if there is none). Nothing outside
# that temporary folder is touched. Any warning (unknown key, bad value) counts as a failure.
set -euo pipefail

cd "$(dirname "$0")/.."
UNIT=deploy/gureum.service
BIN=${1:-build/gureum}

command -v systemd-analyze >/dev/null ||
  { echo "verify-unit: systemd-analyze is not installed (apt-get install systemd, or make deps)" >&2; exit 3; }

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/gureum-unit.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" "$ROOT/usr/lib/systemd"
for d in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -d "$d" ]; then cp -a "$d" "$ROOT/usr/lib/systemd/"; break; fi
done
if [ -x "$BIN" ]; then
  cp "$BIN" "$ROOT/usr/local/bin/gureum"
else
  echo "verify-unit: $BIN not built; verifying against a stub /usr/local/bin/gureum"
  printf '#!/bin/sh\nexit 0\n' > "$ROOT/usr/local/bin/gureum"
  chmod 755 "$ROOT/usr/local/bin/gureum"
fi
cp "$UNIT" "$ROOT/etc/systemd/system/gureum.service"

set +e
out=$(systemd-analyze verify --root="$ROOT" --man=no gureum.service 2>&1)
rc=$?
set -e
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  echo "${out//$ROOT/}" >&2
  echo "verify-unit: $UNIT FAILED (systemd-analyze verify exit $rc)" >&2
  exit 1
fi
echo "verify-unit: $UNIT ok ($(systemd-analyze --version | head -1))"
