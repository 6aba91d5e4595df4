#!/usr/bin/env bash
# scripts/chaos.sh — herald under faults, every notification counted. See docs/reliability.md.
#
# Usage: bash scripts/chaos.sh [herald-chaos flags...]    (e.g. --faults kill,poison, --redis-persistence none)
#
# It builds herald and herald-chaos with the debug profile `cargo test` already uses, then runs
# herald-chaos under a hard timeout. herald-chaos creates topics of its own in the Kafka of
# $HERALD_TEST_KAFKA (default 127.0.0.1:29092; started with scripts/infra/up.sh, and stopped at the
# end, if nothing answers there), starts a redis-server of its own on a free loopback port (it
# restarts and SIGSTOPs it: the shared Redis is never touched; it keeps an append-only file, so its
# restart keeps history), two herald instances in production mode and later a third, holds
# 300 users × 2 tabs on them (each a resuming client: it reconnects with ?since=<last id>), produces
# 20,000 notifications at 200/s while it injects the faults, prints the report and exits 0 (every
# assertion held), 2 (one failed) or 1 (could not run). It asserts 0 lost after resume and
# 0 duplicates by id on every tab (--assert-no-loss --assert-no-duplicates) unless CHAOS_ASSERT=0.
#
# Everything herald-chaos starts is its child and in the process group `timeout` makes, which the
# timeout and the EXIT trap below signal as a whole; herald-chaos deletes its topics itself.
#
# Knobs (environment variables, with defaults):
#   CHAOS_TIMEOUT=280   seconds the run may take before it is stopped (SIGTERM, SIGKILL 10 s later)
#   CHAOS_OUT=target/chaos/<UTC time>   folder for report.txt, report.json, tabs.csv and the logs
#   BUILD=1             0: use the binaries already in target/debug
#   CHAOS_ASSERT=1      0: report losses and duplicates without asserting them
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHAOS_TIMEOUT="${CHAOS_TIMEOUT:-280}"
CHAOS_OUT="${CHAOS_OUT:-target/chaos/$(date -u +%Y%m%dT%H%M%SZ)}"
BUILD="${BUILD:-1}"
CHAOS_ASSERT="${CHAOS_ASSERT:-1}"
export HERALD_TEST_KAFKA="${HERALD_TEST_KAFKA:-127.0.0.1:29092}"

log() { echo "[chaos.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$CHAOS_TIMEOUT" =~ ^[0-9]+$ ]] || die "CHAOS_TIMEOUT must be a whole number of seconds, got '$CHAOS_TIMEOUT'"
[[ "$CHAOS_ASSERT" == 0 || "$CHAOS_ASSERT" == 1 ]] || die "CHAOS_ASSERT must be 0 or 1, got '$CHAOS_ASSERT'"
ASSERT_ARGS=()
((CHAOS_ASSERT)) && ASSERT_ARGS=(--assert-no-loss --assert-no-duplicates)
command -v redis-server >/dev/null || die "redis-server is missing: run scripts/infra/packages.sh"

if [[ "$BUILD" == 1 ]]; then
  log "building herald and herald-chaos (debug)"
  cargo build --locked -p herald-service -p herald-loadgen >&2
fi
HERALD="$ROOT/target/debug/herald"
CHAOS="$ROOT/target/debug/herald-chaos"
[[ -x "$HERALD" && -x "$CHAOS" ]] || die "debug binaries missing: run with BUILD=1"

# 600 sockets on the driver's side and up to 600 on each herald's: raise the soft limit of open
# files to the hard one (children inherit it).
ulimit -n "$(ulimit -Hn)"
mkdir -p "$CHAOS_OUT"

# timeout puts itself and the driver (with its Redis and herald children) in a process group of
# its own, whose id is timeout's pid.
CHAOS_GROUP=""
STARTED_INFRA=0
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Whatever of that group is left (the driver stopped on a signal, or timed out): end it.
  if [[ -n "$CHAOS_GROUP" ]] && pgrep -g "$CHAOS_GROUP" >/dev/null 2>&1; then
    log "stopping what herald-chaos started (process group $CHAOS_GROUP)"
    kill -TERM -- "-$CHAOS_GROUP" 2>/dev/null || true
    for _ in $(seq 1 50); do pgrep -g "$CHAOS_GROUP" >/dev/null 2>&1 || break; sleep 0.2; done
    kill -KILL -- "-$CHAOS_GROUP" 2>/dev/null || true
  fi
  if ((STARTED_INFRA)); then
    bash scripts/infra/down.sh >&2 || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! bash scripts/infra/kafka.sh status >/dev/null 2>&1; then
  log "no Kafka answers; starting one with scripts/infra/up.sh (stopped again on exit)"
  eval "$(bash scripts/infra/up.sh --env)"
  STARTED_INFRA=1
fi

log "running herald-chaos (at most $CHAOS_TIMEOUT s; output in $CHAOS_OUT)"
set +e
timeout --kill-after=10 "$CHAOS_TIMEOUT" "$CHAOS" \
  --kafka "$HERALD_TEST_KAFKA" \
  --herald "$HERALD" \
  --redis-server "$(command -v redis-server)" \
  --event-defs "$ROOT/event-defs" \
  --out "$CHAOS_OUT" \
  "${ASSERT_ARGS[@]}" \
  "$@" &
CHAOS_GROUP=$!
wait "$CHAOS_GROUP"
STATUS=$?
set -e
if ((STATUS == 124 || STATUS == 137)); then
  die "herald-chaos did not finish within $CHAOS_TIMEOUT s (logs in $CHAOS_OUT)"
fi
exit "$STATUS"
