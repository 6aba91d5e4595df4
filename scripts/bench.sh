#!/usr/bin/env bash
# scripts/bench.sh — herald's delivery benchmark: many WebSocket connections, events through a real
# Kafka broker and Redis, produce-to-browser latency and completeness. See docs/benchmarks.md.
#
# Usage: [KNOB=value ...] bash scripts/bench.sh
#
# It builds the release binaries, starts a Kafka broker and a Redis of its own
# (scripts/infra/up.sh on loopback ports 39192 and 36479, not the test suite's 39092 and 36379:
# a broker that tests have filled with thousands of topics stalls in garbage collection and would be
# measured instead of herald), creates herald's topics, starts a release herald in production mode on
# 127.0.0.1:$PORT, waits for /readyz, runs herald-loadgen against it with --server-pid and
# --redis-addr (herald's and Redis's CPU and memory per notification), stops herald with SIGTERM and
# prints the report. Whatever it started (herald, and Kafka or Redis if they were
# not already running) is stopped on exit, failure and Ctrl-C included.
#
# Knobs (environment variables, with defaults):
#   CONNECTIONS=1000     WebSocket connections loadgen opens and holds
#   USERS=250            users the connections are spread over (CONNECTIONS/USERS per user)
#   RATE=200             events per second produced to Kafka
#   EVENTS=4000          events in the measured phase (round-robin over the users)
#   DRAIN=15             seconds to wait after the last event for copies still on their way
#   TARGET_MS=100        delivery target; the report gives the share of copies within it
#   PORT=38080           herald's listen port (loopback only)
#   KAFKA_PORT=39192     Kafka broker port (39092 shares the test suite's broker)
#   REDIS_PORT=36479     Redis port (36379 shares the test suite's Redis)
#   TOPIC=huleedu.class.created.v1   topic loadgen produces to; herald consumes class_created from it
#   JWT_SECRET=herald-bench-secret   HS256 secret shared by herald and loadgen
#   JWT_AUDIENCE=herald-bench JWT_ISSUER=herald-bench   aud and iss herald requires and loadgen signs
#   MAX_PER_USER=        herald --max-connections-per-user (default: max(5, CONNECTIONS/USERS rounded up))
#   SEND_QUEUE=256       herald --send-queue
#   HISTORY_SIZE=        herald --history-size (notifications kept per user for resume; 0: no
#                        history, the baseline for the cost of history; empty: herald's default)
#   MAX_IDLE_KIB=10      herald RSS per idle authenticated socket must stay at or under this (KiB);
#                        over it, the script exits 3
#   HERALD_LOG=warn      RUST_LOG for herald
#   HERALD_ARGS=         extra herald flags (word-split)
#   LOADGEN_ARGS=        extra herald-loadgen flags (word-split), e.g. "--connect-concurrency 128"
#   OUT=target/bench/<UTC time>   folder for herald.log, report.txt and report.json
#   BUILD=1              0: skip `cargo build --release`
#   CARGO_TARGET_DIR=target   where the release binaries are built and found
#   KEEP_INFRA=0         1: leave Kafka and Redis running even if this script started them
#
# Exit status: loadgen's (0 complete, 2 ran but lost, duplicated or refused something, 1 could not
# run), 1 when herald could not be started or did not stop cleanly, 3 when the RSS per idle socket
# was over MAX_IDLE_KIB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CONNECTIONS="${CONNECTIONS:-1000}"
USERS="${USERS:-250}"
RATE="${RATE:-200}"
EVENTS="${EVENTS:-4000}"
DRAIN="${DRAIN:-15}"
TARGET_MS="${TARGET_MS:-100}"
PORT="${PORT:-38080}"
export HERALD_TEST_KAFKA_PORT="${KAFKA_PORT:-39192}"
export HERALD_TEST_REDIS_PORT="${REDIS_PORT:-36479}"
TOPIC="${TOPIC:-huleedu.class.created.v1}"
JWT_SECRET="${JWT_SECRET:-herald-bench-secret}"
JWT_AUDIENCE="${JWT_AUDIENCE:-herald-bench}"
JWT_ISSUER="${JWT_ISSUER:-herald-bench}"
PER_USER=$(((CONNECTIONS + USERS - 1) / USERS))
MAX_PER_USER="${MAX_PER_USER:-$((PER_USER > 5 ? PER_USER : 5))}"
SEND_QUEUE="${SEND_QUEUE:-256}"
HISTORY_SIZE="${HISTORY_SIZE:-}"
MAX_IDLE_KIB="${MAX_IDLE_KIB:-10}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
HERALD_LOG="${HERALD_LOG:-warn}"
HERALD_ARGS="${HERALD_ARGS:-}"
LOADGEN_ARGS="${LOADGEN_ARGS:-}"
OUT="${OUT:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
BUILD="${BUILD:-1}"
KEEP_INFRA="${KEEP_INFRA:-0}"

log() { echo "[bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

for knob in CONNECTIONS USERS EVENTS DRAIN PORT SEND_QUEUE MAX_PER_USER HERALD_TEST_KAFKA_PORT HERALD_TEST_REDIS_PORT; do
  [[ "${!knob}" =~ ^[0-9]+$ ]] || die "$knob must be a whole number, got '${!knob}'"
done
[[ -z "$HISTORY_SIZE" || "$HISTORY_SIZE" =~ ^[0-9]+$ ]] || die "HISTORY_SIZE must be a whole number or empty, got '$HISTORY_SIZE'"
[[ "$MAX_IDLE_KIB" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "MAX_IDLE_KIB must be a number, got '$MAX_IDLE_KIB'"
HISTORY_ARGS=()
[[ -z "$HISTORY_SIZE" ]] || HISTORY_ARGS=(--history-size "$HISTORY_SIZE")
[[ "$RATE" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RATE must be a number, got '$RATE'"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

HERALD_PID=""
STARTED_KAFKA=0
STARTED_REDIS=0
GROUP="bench-$$"
PREFIX="bench-$$:"

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$HERALD_PID" ]] && kill -0 "$HERALD_PID" 2>/dev/null; then
    log "stopping herald (pid $HERALD_PID)"
    kill -TERM "$HERALD_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$HERALD_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$HERALD_PID" 2>/dev/null; then
      log "herald did not stop within 15 s of SIGTERM; killing it"
      kill -KILL "$HERALD_PID" 2>/dev/null || true
    fi
    wait "$HERALD_PID" 2>/dev/null || true
  fi
  # herald's own keys (dedupe markers live a day): remove this run's.
  if [[ -n "${HERALD_TEST_REDIS:-}" ]] && redis-cli -u "$HERALD_TEST_REDIS" ping >/dev/null 2>&1; then
    redis-cli -u "$HERALD_TEST_REDIS" --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$HERALD_TEST_REDIS" del >/dev/null || true
  fi
  if [[ "$KEEP_INFRA" != 1 ]]; then
    if ((STARTED_KAFKA)); then log "stopping the Kafka broker this script started"; bash scripts/infra/kafka.sh stop || true; fi
    if ((STARTED_REDIS)); then log "stopping the Redis this script started"; bash scripts/infra/redis.sh stop || true; fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "$BUILD" == 1 ]]; then
  log "building release binaries"
  cargo build --release -p herald-loadgen -p herald-service >&2
fi
HERALD="$TARGET_DIR/release/herald"
LOADGEN="$TARGET_DIR/release/herald-loadgen"
[[ -x "$HERALD" && -x "$LOADGEN" ]] || die "release binaries missing: run with BUILD=1"

bash scripts/infra/kafka.sh status >/dev/null 2>&1 || STARTED_KAFKA=1
bash scripts/infra/redis.sh status >/dev/null 2>&1 || STARTED_REDIS=1
eval "$(bash scripts/infra/up.sh --env)"
: "${HERALD_TEST_KAFKA:?up.sh did not export HERALD_TEST_KAFKA}" "${HERALD_TEST_REDIS:?up.sh did not export HERALD_TEST_REDIS}"

# Every topic herald subscribes to exists in production; create them all, and the bench topic.
mapfile -t TOPICS < <(sed -n 's/.*"topic": *"\([^"]*\)".*/\1/p' event-defs/*.json | sort -u)
bash scripts/infra/kafka.sh topics-create "${TOPICS[@]}" "$TOPIC" >"$OUT/topics.log" 2>&1 \
  || { cat "$OUT/topics.log" >&2; die "cannot create the topics"; }

# Sockets need descriptors: raise the soft limit to the hard one (herald inherits it).
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < CONNECTIONS + 200)); then
  log "warning: open-files limit $(ulimit -n) is below CONNECTIONS + 200; connections will fail"
fi

log "starting herald on 127.0.0.1:$PORT (group $GROUP, log $OUT/herald.log)"
# auto.offset.reset=latest: a fresh group must not replay earlier runs' events from the topic;
# loadgen's warm-up resends until the consumer is assigned and sees them.
# shellcheck disable=SC2086 # HERALD_ARGS is a list of flags
NO_COLOR=1 RUST_LOG="$HERALD_LOG" "$HERALD" \
  --listen "127.0.0.1:$PORT" \
  --kafka-brokers "$HERALD_TEST_KAFKA" \
  --redis-url "$HERALD_TEST_REDIS" \
  --jwt-secret "$JWT_SECRET" \
  --jwt-audience "$JWT_AUDIENCE" \
  --jwt-issuer "$JWT_ISSUER" \
  --kafka-group "$GROUP" \
  --redis-prefix "$PREFIX" \
  --topic "class_created=$TOPIC" \
  --kafka-option auto.offset.reset=latest \
  --max-connections-per-user "$MAX_PER_USER" \
  --send-queue "$SEND_QUEUE" \
  --log-format text \
  "${HISTORY_ARGS[@]}" \
  $HERALD_ARGS \
  >"$OUT/herald.log" 2>&1 &
HERALD_PID=$!

deadline=$((SECONDS + 60))
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
  kill -0 "$HERALD_PID" 2>/dev/null || { tail -n 20 "$OUT/herald.log" >&2; die "herald exited during start-up"; }
  ((SECONDS < deadline)) || { tail -n 20 "$OUT/herald.log" >&2; die "herald not ready within 60 s"; }
  sleep 0.2
done
log "herald ready (pid $HERALD_PID); running loadgen: $CONNECTIONS connections, $USERS users, $EVENTS events at $RATE/s"

# The machine is shared (Kafka, Redis, herald, loadgen and anything else on 2 cores): record how
# busy it was overall, so a slow run can be told apart from a busy machine.
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8, $5 }' /proc/stat; }
read -r BUSY_BEFORE IDLE_BEFORE < <(cpu_ticks)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

set +e
# shellcheck disable=SC2086 # LOADGEN_ARGS is a list of flags
"$LOADGEN" \
  --url "ws://127.0.0.1:$PORT/ws" \
  --jwt-secret "$JWT_SECRET" \
  --jwt-audience "$JWT_AUDIENCE" \
  --jwt-issuer "$JWT_ISSUER" \
  --connections "$CONNECTIONS" \
  --users "$USERS" \
  --brokers "$HERALD_TEST_KAFKA" \
  --topic "$TOPIC" \
  --events "$EVENTS" \
  --rate "$RATE" \
  --drain "$DRAIN" \
  --target-ms "$TARGET_MS" \
  --server-pid "$HERALD_PID" \
  --redis-addr "127.0.0.1:$HERALD_TEST_REDIS_PORT" \
  --json-file "$OUT/report.json" \
  $LOADGEN_ARGS \
  >"$OUT/report.txt"
LOADGEN_STATUS=$?
set -e
read -r BUSY_AFTER IDLE_AFTER < <(cpu_ticks)
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_TICKS=$((BUSY_AFTER - BUSY_BEFORE))
ALL_TICKS=$((BUSY_TICKS + IDLE_AFTER - IDLE_BEFORE))

# herald's own view of the same copies: Kafka record timestamp to socket write.
curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt" 2>/dev/null || true

log "stopping herald (SIGTERM)"
STOP_STARTED=$(date +%s%N)
kill -TERM "$HERALD_PID" 2>/dev/null || log "herald had already exited"
HERALD_STATUS=0
wait "$HERALD_PID" || HERALD_STATUS=$?
HERALD_PID=""
STOP_MS=$((($(date +%s%N) - STOP_STARTED) / 1000000))

cat "$OUT/report.txt"
WARNINGS=$(grep -cE '(^|[^A-Z])WARN([^A-Z]|$)' "$OUT/herald.log" || true)
ERRORS=$(grep -cE '(^|[^A-Z])ERROR([^A-Z]|$)' "$OUT/herald.log" || true)
echo "  herald log    $OUT/herald.log ($WARNINGS warnings, $ERRORS errors); exit status $HERALD_STATUS, $STOP_MS ms after SIGTERM"
if grep -q '^herald_kafka_to_socket_seconds_bucket' "$OUT/metrics.txt" 2>/dev/null; then
  awk -F'[{}" ]+' '
    /^herald_kafka_to_socket_seconds_bucket/ { for (i = 1; i < NF; i++) if ($i == "le=") { le[++n] = $(i + 1); count[n] = $NF } }
    /^herald_kafka_to_socket_seconds_count/ { total = $NF }
    END {
      if (total == 0) exit
      line = sprintf("  herald view   %d copies, Kafka timestamp to socket write:", total)
      for (i = 1; i <= n; i++) if (le[i] != "+Inf" && le[i] + 0 >= 0.005 && le[i] + 0 <= 0.25)
        line = line sprintf(" <=%gms %.2f%%", le[i] * 1000, 100 * count[i] / total)
      print line
    }' "$OUT/metrics.txt"
fi
echo "  machine       $(nproc) cores, $((ALL_TICKS > 0 ? 100 * BUSY_TICKS / ALL_TICKS : 0))% busy during loadgen (all processes); load average $LOAD_BEFORE before, $LOAD_AFTER after"
echo "  files         $OUT/report.txt, $OUT/report.json, $OUT/metrics.txt"
((HERALD_STATUS == 0)) || { log "herald exited with status $HERALD_STATUS"; exit 1; }
PER_IDLE_KIB=$(sed -n 's/.*"rss_kib_per_idle_connection":\([0-9.]*\).*/\1/p' "$OUT/report.json")
if [[ -n "$PER_IDLE_KIB" ]]; then
  if awk -v kib="$PER_IDLE_KIB" -v max="$MAX_IDLE_KIB" 'BEGIN { exit !(kib > max) }'; then
    echo "  idle socket   $PER_IDLE_KIB KiB of herald RSS per idle authenticated socket: OVER the $MAX_IDLE_KIB KiB bound"
    ((LOADGEN_STATUS != 0)) || LOADGEN_STATUS=3
  else
    echo "  idle socket   $PER_IDLE_KIB KiB of herald RSS per idle authenticated socket (bound: $MAX_IDLE_KIB KiB)"
  fi
fi
exit "$LOADGEN_STATUS"
