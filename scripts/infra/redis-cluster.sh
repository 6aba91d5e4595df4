#!/usr/bin/env bash
# scripts/infra/redis-cluster.sh — run a throw-away 3-master Redis Cluster for
# herald's tests: Debian's redis-server in cluster mode on 127.0.0.1, three
# consecutive ports, no replicas, no persistence, daemonized with pidfiles and
# logfiles, joined with `redis-cli --cluster create --cluster-yes`.
#
# Usage: scripts/infra/redis-cluster.sh start|stop|status|urls|clean
#   start   start the three nodes and create the cluster, or reuse a cluster
#           already answering (cluster_state:ok) on the first port; waits
#           (deadline HERALD_REDIS_START_TIMEOUT, default 20 s) until every
#           node reports cluster_state:ok
#   stop    stop the nodes, but only those this script started (marker "owned")
#   status  print running/stopped; exit 0 when the cluster state is ok
#   urls    print the three node URLs, comma-separated (herald's --redis-url
#           with --redis-cluster)
#   clean   delete the cluster's state folder (must be stopped)
#
# Env: HERALD_TEST_REDIS_CLUSTER_PORT (first port, default 17001; uses it and
#      the next two), HERALD_INFRA_DIR (default <repo>/target/infra; state in
#      $HERALD_INFRA_DIR/redis-cluster/PORT/NODE_PORT)
# Needs redis-server >= 7 (sharded pub/sub) and redis-cli (scripts/infra/packages.sh).
set -euo pipefail
INFRA_COMPONENT=redis-cluster
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIRST="${HERALD_TEST_REDIS_CLUSTER_PORT:-17001}"
[[ "$FIRST" =~ ^[0-9]+$ ]] || die "HERALD_TEST_REDIS_CLUSTER_PORT must be a number, got '$FIRST'"
PORTS=("$FIRST" "$((FIRST + 1))" "$((FIRST + 2))")
STATE="$HERALD_INFRA_DIR/redis-cluster/$FIRST"
START_TIMEOUT="${HERALD_REDIS_START_TIMEOUT:-20}"

usage() { print_header "${BASH_SOURCE[0]}"; }

ping_ok() {
  [[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" == "PONG" ]]
}

cluster_ok() {
  timeout 5 redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

all_ok() {
  local port
  for port in "${PORTS[@]}"; do cluster_ok "$port" || return 1; done
}

# node_pid PORT — the pid of the node we started on PORT, when it still runs; empty otherwise.
node_pid() {
  local MARKER="$STATE/$1/owned" PIDFILE="$STATE/$1/redis.pid"
  owned_pid_with ":$1"
}

urls() {
  local port out=()
  for port in "${PORTS[@]}"; do out+=("redis://127.0.0.1:$port"); done
  (IFS=,; echo "${out[*]}")
}

# Starts the node on 127.0.0.1:$1 (daemonized, state in $STATE/$1). Its cluster bus port is $1 - 10000
# when $1 + 10000 would be in Linux's ephemeral port range (32768 and up), where an outgoing
# connection may hold it and the node could not bind it.
declare -A STARTED # when each node was last started (SECONDS)
start_node() {
  local port="$1" dir="$STATE/$1" bus=$(($1 + 10000))
  ((bus < 32768)) || bus=$((port - 10000))
  mkdir -p "$dir"
  rm -f "$dir/owned" "$dir/redis.pid" "$dir/nodes.conf" # a fresh node joins a fresh cluster
  log "starting cluster node on 127.0.0.1:$port, bus port $bus (state in $dir)"
  : >"$dir/redis.log"
  redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
    --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --dir "$dir" --protected-mode yes >&2 9>&-
  touch "$dir/owned"
  STARTED[$port]=$SECONDS
}

cmd_start() {
  { have redis-server && have redis-cli; } || die "redis-server/redis-cli missing: run scripts/infra/packages.sh"
  local version
  version="$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')"
  [[ "${version:-0}" -ge 7 ]] || die "redis-server $version is too old: sharded pub/sub needs Redis 7"
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  flock -w 120 9 || die "could not lock $STATE/lock"

  if all_ok; then
    log "already running on ports ${PORTS[*]} (cluster_state:ok)"
    return 0
  fi
  local port dir
  for port in "${PORTS[@]}"; do
    dir="$STATE/$port"
    mkdir -p "$dir"
    if ping_ok "$port"; then
      [[ -n "$(node_pid "$port")" ]] || die "port $port answers PING but is not a node this script started; set HERALD_TEST_REDIS_CLUSTER_PORT"
      continue
    fi
    port_open "$port" && die "port $port is taken by something that does not answer Redis PING; set HERALD_TEST_REDIS_CLUSTER_PORT"
    start_node "$port"
  done
  local deadline=$((SECONDS + START_TIMEOUT)) restarts
  for port in "${PORTS[@]}"; do
    restarts=0
    until ping_ok "$port"; do
      if ((SECONDS - STARTED[$port] >= 3 && restarts < 2)) && [[ -z "$(node_pid "$port")" ]]; then
        # It exited: a port it binds was briefly taken (its log says which). Start it again.
        log "node $port exited before answering PING; its log ends with:"
        tail -n 5 "$STATE/$port/redis.log" >&2 || true
        restarts=$((restarts + 1))
        sleep 1
        start_node "$port"
        continue
      fi
      if ((SECONDS >= deadline)); then
        # The log is deleted with the state when the caller cleans up: show it now.
        tail -n 20 "$STATE/$port/redis.log" >&2 || true
        die "node $port did not answer PING within ${START_TIMEOUT}s (log above, from $STATE/$port/redis.log)"
      fi
      sleep 0.1
    done
  done
  if ! cluster_ok "$FIRST"; then
    local nodes=()
    for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
    log "creating the cluster: ${nodes[*]}"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >&2 9>&-
  fi
  until all_ok; do
    ((SECONDS < deadline)) || die "the cluster did not reach cluster_state:ok within ${START_TIMEOUT}s"
    sleep 0.2
  done
  log "ready: $(urls)"
}

cmd_stop() {
  local port pid any=0
  for port in "${PORTS[@]}"; do
    pid="$(node_pid "$port")"
    if [[ -z "$pid" ]]; then
      rm -f "$STATE/$port/owned" "$STATE/$port/redis.pid"
      continue
    fi
    any=1
    log "stopping cluster node $port (pid $pid)"
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    stop_pid "$pid" 10
    rm -f "$STATE/$port/owned" "$STATE/$port/redis.pid"
  done
  ((any)) && log "stopped" || log "not running (or not started by this script)"
}

cmd_status() {
  if all_ok; then
    echo "running on 127.0.0.1 ports ${PORTS[*]} (cluster_state:ok)"
  else
    echo "stopped (ports ${PORTS[*]})"
    return 1
  fi
}

cmd_clean() {
  local port
  for port in "${PORTS[@]}"; do
    [[ -z "$(node_pid "$port")" ]] || die "cluster node $port is running; stop it first"
  done
  rm -rf "$STATE"
  log "removed $STATE"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  urls) urls ;;
  clean) cmd_clean ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
