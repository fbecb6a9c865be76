#!/usr/bin/env bash
# compose.sh - the five-node compose test cluster (deploy/docker-compose.yml) for `make compose-up`
# and `make compose-down`, with whichever compose is installed: the plugin (`docker compose`)
# first, else the standalone `docker-compose` (1.29 on Debian bookworm).
#
#   deploy/compose.sh up     make the TLS certificates (service certs, once), start the nodes,
#                            wait (bounded) until all are healthy, every node is alive, TLS is
#                            on and Raft has a leader, then print how to use the cluster
#   deploy/compose.sh down   remove every container, network and volume of the project (the
#                            certificates' volume too)
#   deploy/compose.sh cmd    print the compose command line (for copy and paste)
#
# Environment: COMPOSE_PROJECT_NAME (default gureum), GUREUM_COMPOSE_WAIT_S (default 90) and the
# GUREUM_COMPOSE_* variables described at the top of deploy/docker-compose.yml.
set -euo pipefail

cd "$(dirname "$0")/.."
FILE=deploy/docker-compose.yml
PROJECT=${COMPOSE_PROJECT_NAME:-gureum}
WAIT_S=${GUREUM_COMPOSE_WAIT_S:-90}
NODES=(node1 node2 node3 node4 node5)

die() { echo "compose: ERROR: $*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  die "neither the compose plugin (docker compose) nor docker-compose is installed: apt-get install docker-compose"
fi
DC=("${COMPOSE[@]}" -p "$PROJECT" -f "$FILE")

engine() {
  docker info >/dev/null 2>&1 ||
    die "no Docker engine answers (docker info failed); start it (systemctl start docker) and try again"
}

# Container ids by service, looked up once after `up` (compose's own ps is slow to start).
declare -A CID=()
lookup_ids() {
  local n
  for n in "${NODES[@]}"; do CID[$n]=$("${DC[@]}" ps --all -q "$n" 2>/dev/null | head -1); done
}

# Health of one service's container: healthy, starting, unhealthy, exited... or "missing".
health() {
  local id=${CID[$1]:-}
  [ -n "$id" ] || { echo missing; return; }
  docker inspect -f '{{if .State.Running}}{{if .State.Health}}{{.State.Health.Status}}{{else}}running{{end}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing
}

# The CLI inside node1's container (docker exec: the same as `compose exec -T`, faster).
node1() {
  [ -n "${CID[node1]:-}" ] && docker exec "${CID[node1]}" gureum "$@"
}

alive_count() {
  node1 members --json 2>/dev/null | grep -c '"state": "alive"' || true
}

up() {
  engine
  docker image inspect "${GUREUM_COMPOSE_IMAGE:-gureum:latest}" >/dev/null 2>&1 ||
    die "image ${GUREUM_COMPOSE_IMAGE:-gureum:latest} not found: run make image first"
  local t0=$SECONDS
  echo "compose: starting ${#NODES[@]} nodes (project $PROJECT, ${COMPOSE[*]})"
  if ! "${DC[@]}" up -d; then
    echo "--- the certs service (TLS certificates) said:" >&2
    "${DC[@]}" logs --no-color certs >&2 2>&1 || true
    die "compose up failed (see above). A published port in use (make run? another cluster?): set
    GUREUM_COMPOSE_{S3,WEB,DNS,ADMIN,LB}_PORT; a subnet taken: GUREUM_COMPOSE_NET; the certs
    service failed (its output is above). make compose-down cleans up"
  fi
  echo "compose: waiting up to ${WAIT_S}s for every node to be healthy and alive"
  local deadline=$((SECONDS + WAIT_S)) states alive leader tls
  lookup_ids
  while :; do
    states=""
    for n in "${NODES[@]}"; do states+="$n=$(health "$n") "; done
    alive=$(alive_count)
    leader=$(node1 raft status --json 2>/dev/null |
             sed -n 's/^  "leader": "\(.*\)",$/\1/p' || true)
    tls=$(node1 status --json 2>/dev/null | grep -c '"cluster_tls": true' || true)
    if [ "$(grep -o '=healthy' <<<"$states" | wc -l)" -eq ${#NODES[@]} ] &&
       [ "$alive" -eq ${#NODES[@]} ] && [ -n "$leader" ] && [ "$tls" = 1 ]; then
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "compose: still not ready after ${WAIT_S}s: $states alive=$alive leader=${leader:-none} tls=$tls" >&2
      "${DC[@]}" ps >&2 || true
      for n in "${NODES[@]}"; do
        echo "--- last log lines of $n" >&2
        "${DC[@]}" logs --tail 10 "$n" >&2 2>&1 || true
      done
      die "the cluster did not come up; make compose-down removes it"
    fi
    sleep 0.5
  done
  local ip=${GUREUM_COMPOSE_HOST_IP:-127.0.0.1}
  local dc="${DC[*]}" victim="${PROJECT}-node3-1"
  [ "${COMPOSE[0]}" = docker-compose ] && victim="${PROJECT}_node3_1"
  cat <<TXT

Gureum compose cluster is up in $((SECONDS - t0))s: ${#NODES[@]} nodes alive, Raft leader $leader.
  node1-3 storage,dns,pipeline (zones a, b, c)   node4-5 edge,balancer (zones a, b)
  TLS between nodes: on (CA and node certificates in the volume ${PROJECT}_tls, made by certs)
  objects: 3 copies over node1-3 (storage.replicas)

  S3 API       http://$ip:${GUREUM_COMPOSE_S3_PORT:-9000}   (node1; path-style, SigV4, region us-east-1)
  websites     http://$ip:${GUREUM_COMPOSE_WEB_PORT:-9080}   (node1)
  admin API    http://$ip:${GUREUM_COMPOSE_ADMIN_PORT:-7070}   (node1; /v1/status, /metrics)
  DNS          $ip:${GUREUM_COMPOSE_DNS_PORT:-5353} udp+tcp (node1; the dns role is not implemented yet)
  balancer     http://$ip:${GUREUM_COMPOSE_LB_PORT:-8080}   (node4; the balancer role is not implemented yet)

Try:
  $dc exec -T node1 gureum members
  $dc exec -T node3 gureum raft status
  $dc exec -T node1 gureum key create alice --json
  $dc exec -T node1 gureum storage status
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... aws --endpoint-url http://$ip:${GUREUM_COMPOSE_S3_PORT:-9000} s3 mb s3://photos
  curl -s http://$ip:${GUREUM_COMPOSE_ADMIN_PORT:-7070}/metrics | grep gureum_gossip_members
  $dc logs -f node2
  docker kill $victim; $dc up -d     (a node lost, then back)

make compose-down removes every container, network and volume of the cluster.
TXT
}

down() {
  engine
  echo "compose: removing the containers, network and volumes of project $PROJECT"
  "${DC[@]}" down --volumes --remove-orphans --timeout 20
  local left
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
         docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"
         docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
  [ -z "$left" ] || die "left behind: ${left//$'\n'/ }"
  echo "compose: project $PROJECT removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  cmd) echo "${DC[*]}" ;;
  *) echo "usage: $0 up|down|cmd" >&2; exit 2 ;;
esac
