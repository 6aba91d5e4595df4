#!/usr/bin/env bash
# scripts/infra/redis.sh — run a throw-away Redis for herald's tests: Debian's
# redis-server on 127.0.0.1, a non-default port, no persistence
# (--save '' --appendonly no), daemonized with a pidfile and a logfile.
#
# Usage: scripts/infra/redis.sh start|stop|status|url
#   start   start it, or reuse a server already answering PING on the port;
#           waits (deadline HERALD_REDIS_START_TIMEOUT, default 20 s) until
#           PING answers
#   stop    stop it, but only if this script started it (marker file "owned")
#   status  print running/stopped; exit 0 when the port answers PING
#   url     print redis://127.0.0.1:PORT
#   clean   delete this port's state folder (must be stopped)
#
# Env: HERALD_TEST_REDIS_PORT (default 26379),
#      HERALD_INFRA_DIR (default <repo>/target/infra; state in $HERALD_INFRA_DIR/redis/PORT)
# Needs redis-server and redis-cli (scripts/infra/packages.sh installs them).
set -euo pipefail
INFRA_COMPONENT=redis
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${HERALD_TEST_REDIS_PORT:-26379}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "HERALD_TEST_REDIS_PORT must be a number, got '$PORT'"
STATE="$HERALD_INFRA_DIR/redis/$PORT"
PIDFILE="$STATE/redis.pid"
LOGFILE="$STATE/redis.log"
MARKER="$STATE/owned" # exists only while a server that we started runs
START_TIMEOUT="${HERALD_REDIS_START_TIMEOUT:-20}"

usage() { print_header "${BASH_SOURCE[0]}"; }

ping_ok() {
  [[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null || true)" == "PONG" ]]
}

# The pid of the server we started, when it still runs; empty otherwise.
owned_pid() {
  owned_pid_with ":$PORT"
}

cmd_start() {
  { have redis-server && have redis-cli; } || die "redis-server/redis-cli missing: run scripts/infra/packages.sh"
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  flock -w 120 9 || die "could not lock $STATE/lock"

  if ping_ok; then
    if [[ -n "$(owned_pid)" ]]; then
      log "already running on port $PORT (started by us, pid $(owned_pid))"
    else
      rm -f "$MARKER"
      log "reusing a Redis already answering on port $PORT (not started by us; stop will leave it)"
    fi
    return 0
  fi
  if [[ -z "$(owned_pid)" ]]; then
    rm -f "$MARKER" "$PIDFILE" # stale, from a process that is gone
  fi
  if port_open "$PORT"; then
    die "port $PORT is taken by something that does not answer Redis PING; set HERALD_TEST_REDIS_PORT"
  fi

  log "starting redis-server on 127.0.0.1:$PORT (state in $STATE)"
  : >"$LOGFILE"
  redis-server --port "$PORT" --bind 127.0.0.1 \
    --save '' --appendonly no \
    --daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE" \
    --dir "$STATE" --protected-mode yes --databases 16 >&2 9>&- # don't leak the lock
  touch "$MARKER"

  local deadline=$((SECONDS + START_TIMEOUT))
  until ping_ok; do
    if ((SECONDS >= deadline)); then
      log "redis did not answer PING within ${START_TIMEOUT}s; last log lines:"
      tail -n 20 "$LOGFILE" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  log "ready: redis://127.0.0.1:$PORT (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
}

cmd_stop() {
  local pid
  pid="$(owned_pid)"
  if [[ -z "$pid" ]]; then
    if [[ -f "$MARKER" ]]; then
      rm -f "$MARKER" "$PIDFILE"
      log "not running (removed stale marker)"
    elif ping_ok; then
      log "a Redis answers on port $PORT but was not started by this script; leaving it"
    else
      log "not running"
    fi
    return 0
  fi
  log "stopping redis-server pid $pid"
  timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  stop_pid "$pid" 10
  rm -f "$MARKER" "$PIDFILE"
  log "stopped"
}

cmd_status() {
  if ping_ok; then
    if [[ -n "$(owned_pid)" ]]; then
      echo "running on 127.0.0.1:$PORT (pid $(owned_pid), started by this script)"
    else
      echo "running on 127.0.0.1:$PORT (not started by this script)"
    fi
  else
    echo "stopped (port $PORT)"
    return 1
  fi
}

cmd_clean() {
  [[ -z "$(owned_pid)" ]] || die "redis on port $PORT is running; stop it first"
  rm -rf "$STATE"
  log "removed $STATE"
}

case "${1:-}" in
  start) cmd_start ;;
  clean) cmd_clean ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "redis://127.0.0.1:$PORT" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
