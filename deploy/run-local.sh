#!/usr/bin/env bash
# run-local.sh - start a local 3-node cluster on 127.0.0.1-3 with every role (used by `make run`).
# Data and logs go under ./run/; Ctrl-C (or SIGTERM) stops every node cleanly.
set -u
BIN=${1:-build/gureum}
DIR=${GUREUM_RUN_DIR:-run}
N=3
mkdir -p "$DIR"
export GUREUM_CLUSTER_SECRET=${GUREUM_CLUSTER_SECRET:-gureum-local-dev-secret}

pids=()
stop() {
  echo
  echo "stopping ${#pids[@]} nodes..."
  kill -TERM "${pids[@]}" 2>/dev/null
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  echo "all nodes stopped (exit $rc)"
  exit "$rc"
}
trap stop INT TERM

for i in $(seq 1 $N); do
  seeds=""
  [ "$i" -gt 1 ] && seeds="--seeds 127.0.0.1:7071"
  # shellcheck disable=SC2086
  "$BIN" node start --name "node$i" --bind "127.0.0.$i" --data "$DIR/node$i" $seeds \
    --log-file "$DIR/node$i.log" &
  pids+=($!)
done

for i in $(seq 1 $N); do
  for _ in $(seq 1 100); do
    "$BIN" status --node "127.0.0.$i:7070" >/dev/null 2>&1 && break
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
      echo "node$i failed to start; its log ($DIR/node$i.log) says:"; tail -5 "$DIR/node$i.log"; stop
    fi
    sleep 0.1
  done
done

echo "Gureum local cluster is up: $N nodes, every role."
for i in $(seq 1 $N); do
  echo
  echo "node$i (log: $DIR/node$i.log)"
  "$BIN" status --node "127.0.0.$i:7070" --json | sed -n '/"endpoints"/,/}/p' | sed '1d;$d'
done
cat <<TXT

Try:
  $BIN status --node 127.0.0.2:7070
  $BIN ping 127.0.0.3:7071 --node 127.0.0.1:7070
  curl -s http://127.0.0.1:7070/metrics | head
  $BIN --help

Ctrl-C stops the cluster.
TXT
wait
