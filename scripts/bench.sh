#!/usr/bin/env bash
# scripts/bench.sh — herald's delivery benchmark: many WebSocket connections, events through a real
# Kafka broker and Redis, produce-to-browser latency and completeness, each run repeated under the
# same load against a reference server (herald-refserver: Kafka → in-process map → socket, no Redis,
# no validation) so herald's figures come with ratios that compare across noisy machines.
# See docs/benchmarks.md.
#
# Usage: [KNOB=value ...] bash scripts/bench.sh
#
# It builds the release binaries, starts a Kafka broker and a Redis of its own
# (scripts/infra/up.sh on loopback ports 29192 and 26479, not the test suite's 29092 and 26379:
# a broker that tests have filled with thousands of topics stalls in garbage collection and would be
# measured instead of herald), creates herald's topics, then for each rate (RATE, or each of RATES):
# starts a release herald in production mode on 127.0.0.1:$PORT, waits for /readyz, runs
# herald-loadgen against it with --server-pid and --redis-addr (herald's and Redis's CPU and memory
# per notification), stops herald with SIGTERM; then the same against herald-refserver on
# 127.0.0.1:$REF_PORT (same connections, users, rate and events; a consumer group of its own). Last,
# with GATEWAY=1, the same against Centrifugo (the leading open-source Go gateway: its Kafka
# consumer, its Redis engine; scripts/infra/centrifugo.sh builds it) on 127.0.0.1:$GATEWAY_PORT.
# Last, herald-benchplot prints herald's figures next to the other servers' and as ratios
# (comparison.md) and draws latency-cdf.svg and throughput-p99.svg. Whatever it started (the
# servers, and Kafka or Redis if they were not already running) is stopped on exit, failure and
# Ctrl-C included.
#
# Knobs (environment variables, with defaults):
#   CONNECTIONS=1000     WebSocket connections loadgen opens and holds
#   USERS=250            users the connections are spread over (CONNECTIONS/USERS per user)
#   RATE=200             events per second produced to Kafka
#   EVENTS=4000          events in the measured phase (round-robin over the users)
#   RATES=               a ladder, e.g. "1000 2000 5000 10000": each rate in turn, herald then the
#                        reference server; a server's climb stops at the first rate where it
#                        saturates (a copy lost, or p99 over MAX_P99_MS). Replaces RATE
#   DURATION=            seconds of sending per run: EVENTS becomes rate × DURATION (for a ladder,
#                        e.g. DURATION=15); empty: EVENTS as given
#   WARMUP=20            seconds of load through the reference server before the first measured run,
#                        not reported: a broker's JVM compiles its hot paths under the first load,
#                        and whichever server ran first was measured against a cold broker (p50 of
#                        seconds at 2,000/s where a warm broker gives milliseconds). 0: none
#   MAX_P99_MS=1000      p99 above which a run counts as saturated (ladder and comparison)
#   REFERENCE=1          0: herald only (no reference runs, no ratios)
#   DRAIN=15             seconds to wait after the last event for copies still on their way
#   TARGET_MS=100        delivery target; the report gives the share of copies within it
#   PORT=28080           herald's listen port (loopback only)
#   REF_PORT=PORT+1      herald-refserver's listen port
#   GATEWAY=0            1: also run Centrifugo at each rate. Its Kafka consumer publishes each
#                        record as it is (publication data mode) into the personal channel of the
#                        user its headers name; each connection is subscribed to its user's
#                        personal channel on connect, with the same token herald is given
#   GATEWAY_FEATURES=history   history: the personal channels keep a history (HISTORY_SIZE or 100
#                        publications, 24 h, recovery forced) and publications are deduplicated by
#                        idempotency key, as herald keeps a history and dedupes; bare: neither
#   GATEWAY_PORT=PORT+2  Centrifugo's listen port
#   (Every default port here is below Linux's ephemeral range, 32768-60999. A port in it can be
#   taken as the source of an outgoing connection, even by a client retrying a connection to that
#   very port while nothing listens there, which connects the socket to itself; the server then
#   cannot listen.)
#   KAFKA_PORT=29192     Kafka broker port (29092 shares the test suite's broker)
#   REDIS_PORT=26479     Redis port (26379 shares the test suite's Redis)
#   TOPIC=huleedu.class.created.v1   topic loadgen produces to
#   TOPICS=bench         which topics every server consumes. bench: TOPIC only, each of herald's
#                        events mapped to it (`--topic NAME=TOPIC`), so every server fetches the
#                        same partitions. definitions: TOPIC and every topic the event definitions
#                        list (herald's production layout), for every server
#   JWT_SECRET=herald-bench-secret   HS256 secret shared by the servers and loadgen
#   JWT_AUDIENCE=herald-bench JWT_ISSUER=herald-bench   aud and iss the servers require and loadgen signs
#   MAX_PER_USER=        herald --max-connections-per-user (default: max(5, CONNECTIONS/USERS rounded up))
#   SEND_QUEUE=256       herald's and herald-refserver's --send-queue
#   HISTORY_SIZE=        herald --history-size (notifications kept per user for resume; 0: no
#                        history, the baseline for the cost of history; empty: herald's default)
#   MAX_IDLE_KIB=10      herald RSS per idle authenticated socket must stay at or under this (KiB);
#                        over it, the script exits 3. The figure held to it is what the second half
#                        of the connections added, per connection (loadgen opens them in two halves),
#                        so what the first connections cost once (allocator caches, the hub's maps)
#                        is left out and the bound holds at any CONNECTIONS; the average over all
#                        connections is printed beside it
#   HERALD_LOG=warn      RUST_LOG for herald
#   WORKERS=             threads each server runs on: herald's and herald-refserver's
#                        --worker-threads, Centrifugo's GOMAXPROCS; empty: their defaults (one per core)
#   HERALD_ARGS=         extra herald flags (word-split)
#   LOADGEN_ARGS=        extra herald-loadgen flags (word-split), e.g. "--connect-concurrency 128"
#   OUT=target/bench/<UTC time>   folder for the runs (herald-<rate>/, reference-<rate>/: server.log,
#                        report.txt, report.json; herald's metrics.txt), comparison.md and the charts;
#                        with a single rate, report.txt, report.json, herald.log and metrics.txt of
#                        herald's run are also linked at the top of OUT, as before
#   BUILD=1              0: skip `cargo build --release`
#   CARGO_TARGET_DIR=target   where the release binaries are built and found
#   KEEP_INFRA=0         1: leave Kafka and Redis running even if this script started them
#   HERALD_KAFKA_JIT=full   the JVM of a broker this script starts compiles with C2 too (fast: C1 only)
#   HERALD_KAFKA_GC=parallel   and collects with the parallel collector and its whole heap from the
#                        start (serial: the tests' collector, whose pauses show in every tail)
#   HERALD_KAFKA_HEAP=2g   and a heap of this size, a third of it young (the tests' 512m gives a
#                        young collection every few seconds under load)
#
# Exit status, single rate: herald's loadgen's (0 complete, 2 ran but lost, duplicated or refused
# something, 1 could not run), 1 when herald could not be started or did not stop cleanly, or when
# the reference run could not be made, 3 when herald's RSS per idle socket was over MAX_IDLE_KIB.
# With RATES, saturation is the ladder's result, not a
# failure: 0 when every run was made, 1 when one could not be or a server did not stop cleanly, 3
# when a herald run's RSS per idle socket was over MAX_IDLE_KIB (likewise).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CONNECTIONS="${CONNECTIONS:-1000}"
USERS="${USERS:-250}"
RATE="${RATE:-200}"
EVENTS="${EVENTS:-4000}"
RATES="${RATES:-}"
DURATION="${DURATION:-}"
MAX_P99_MS="${MAX_P99_MS:-1000}"
REFERENCE="${REFERENCE:-1}"
DRAIN="${DRAIN:-15}"
TARGET_MS="${TARGET_MS:-100}"
PORT="${PORT:-28080}"
REF_PORT="${REF_PORT:-$((PORT + 1))}"
GATEWAY="${GATEWAY:-0}"
GATEWAY_FEATURES="${GATEWAY_FEATURES:-history}"
GATEWAY_PORT="${GATEWAY_PORT:-$((PORT + 2))}"
export HERALD_TEST_KAFKA_PORT="${KAFKA_PORT:-29192}"
export HERALD_TEST_REDIS_PORT="${REDIS_PORT:-26479}"
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
WORKERS="${WORKERS:-}"
HERALD_ARGS="${HERALD_ARGS:-}"
LOADGEN_ARGS="${LOADGEN_ARGS:-}"
OUT="${OUT:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
BUILD="${BUILD:-1}"
KEEP_INFRA="${KEEP_INFRA:-0}"
WARMUP="${WARMUP:-20}"

log() { echo "[bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

for knob in CONNECTIONS USERS EVENTS DRAIN WARMUP PORT REF_PORT GATEWAY_PORT SEND_QUEUE MAX_PER_USER HERALD_TEST_KAFKA_PORT HERALD_TEST_REDIS_PORT; do
  [[ "${!knob}" =~ ^[0-9]+$ ]] || die "$knob must be a whole number, got '${!knob}'"
done
[[ -z "$HISTORY_SIZE" || "$HISTORY_SIZE" =~ ^[0-9]+$ ]] || die "HISTORY_SIZE must be a whole number or empty, got '$HISTORY_SIZE'"
[[ -z "$WORKERS" || "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a whole number above 0 or empty, got '$WORKERS'"
[[ -z "$DURATION" || "$DURATION" =~ ^[0-9]+$ ]] || die "DURATION must be a whole number of seconds or empty, got '$DURATION'"
[[ "$REFERENCE" == 0 || "$REFERENCE" == 1 ]] || die "REFERENCE must be 0 or 1, got '$REFERENCE'"
[[ "$GATEWAY" == 0 || "$GATEWAY" == 1 ]] || die "GATEWAY must be 0 or 1, got '$GATEWAY'"
[[ "$GATEWAY_FEATURES" == history || "$GATEWAY_FEATURES" == bare ]] || die "GATEWAY_FEATURES must be history or bare, got '$GATEWAY_FEATURES'"
((PORT != REF_PORT && PORT != GATEWAY_PORT && REF_PORT != GATEWAY_PORT)) || die "PORT, REF_PORT and GATEWAY_PORT must differ"
for knob in MAX_IDLE_KIB MAX_P99_MS RATE; do
  [[ "${!knob}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$knob must be a number, got '${!knob}'"
done
read -r -a LADDER <<<"${RATES:-$RATE}"
((${#LADDER[@]} > 0)) || die "RATES must list at least one rate"
for rate in "${LADDER[@]}"; do
  [[ "$rate" =~ ^[0-9]+$ ]] || [[ -z "$RATES" && "$rate" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RATES must be whole numbers of events per second, got '$rate'"
done
HISTORY_ARGS=()
[[ -z "$HISTORY_SIZE" ]] || HISTORY_ARGS=(--history-size "$HISTORY_SIZE")
WORKER_ARGS=()
[[ -z "$WORKERS" ]] || WORKER_ARGS=(--worker-threads "$WORKERS")
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

SERVER_PID=""
SERVER_NAME=""
# shellcheck source=infra/bench-lib.sh
. scripts/infra/bench-lib.sh
GROUP="bench-$$"
PREFIX="bench-$$:"

# Stops the server under test (SIGTERM, then SIGKILL after 15 s); sets STOP_STATUS and STOP_MS.
stop_server() {
  STOP_STATUS=0
  STOP_MS=0
  [[ -n "$SERVER_PID" ]] || return 0
  local started
  started=$(date +%s%N)
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "$SERVER_NAME did not stop within 15 s of SIGTERM; killing it"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
  else
    log "$SERVER_NAME had already exited"
  fi
  wait "$SERVER_PID" 2>/dev/null || STOP_STATUS=$?
  STOP_MS=$((($(date +%s%N) - started) / 1000000))
  SERVER_PID=""
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$SERVER_PID" ]]; then
    log "stopping $SERVER_NAME (pid $SERVER_PID)"
    stop_server
  fi
  # herald's own keys (dedupe markers live a day): remove this run's.
  if [[ -n "${HERALD_TEST_REDIS:-}" ]] && redis-cli -u "$HERALD_TEST_REDIS" ping >/dev/null 2>&1; then
    redis-cli -u "$HERALD_TEST_REDIS" --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$HERALD_TEST_REDIS" del >/dev/null || true
  fi
  bench_infra_down
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_binaries HERALD LOADGEN REFSERVER BENCHPLOT
SERVERS=(herald)
((REFERENCE == 0)) || SERVERS+=(reference)
if ((GATEWAY)); then
  CENTRIFUGO="$(bash scripts/infra/centrifugo.sh path)" || die "cannot build Centrifugo"
  SERVERS+=(centrifugo)
fi

bench_infra_up "$TOPIC"
log "every server consumes ${#SERVER_TOPICS[@]} topic(s) (TOPICS=$TOPICS)"
log "every server runs on ${WORKERS:-its default number of} worker thread(s) (WORKERS=$WORKERS)"

# Sockets need descriptors: raise the soft limit to the hard one (the servers inherit it).
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < CONNECTIONS + 200)); then
  log "warning: open-files limit $(ulimit -n) is below CONNECTIONS + 200; connections will fail"
fi

# Starts herald or the reference server for one run, logging to $1/server.log; waits for /readyz.
# auto.offset.reset=latest: a fresh group must not replay earlier runs' events from the topic;
# loadgen's warm-up resends until the consumer is assigned and sees them.
start_server() {
  local server=$1 dir=$2 port=$3 group=$4
  SERVER_NAME=$server
  # Something already answering there would be measured instead (and pass the readiness check).
  if curl -s -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    log "127.0.0.1:$port is already taken by another process; stop it or choose another PORT/REF_PORT"
    return 1
  fi
  log "starting $server on 127.0.0.1:$port (group $group, log $dir/server.log)"
  local ready=/readyz
  if [[ "$server" == centrifugo ]]; then
    ready=/health
    start_centrifugo "$dir" "$port" "$group" || return 1
  elif [[ "$server" == herald ]]; then
    bench_herald_flags "$group"
    # shellcheck disable=SC2086 # HERALD_ARGS is a list of flags
    NO_COLOR=1 RUST_LOG="$HERALD_LOG" "$HERALD" \
      --listen "127.0.0.1:$port" \
      "${BENCH_HERALD_FLAGS[@]}" \
      --max-connections-per-user "$MAX_PER_USER" \
      --send-queue "$SEND_QUEUE" \
      "${HISTORY_ARGS[@]}" \
      "${WORKER_ARGS[@]}" \
      $HERALD_ARGS \
      >"$dir/server.log" 2>&1 &
  else
    "$REFSERVER" \
      --listen "127.0.0.1:$port" \
      --kafka-brokers "$HERALD_TEST_KAFKA" \
      --kafka-group "$group" \
      --topic "$SERVER_TOPIC_LIST" \
      --kafka-option auto.offset.reset=latest \
      --jwt-secret "$JWT_SECRET" \
      --jwt-audience "$JWT_AUDIENCE" \
      --jwt-issuer "$JWT_ISSUER" \
      --send-queue "$SEND_QUEUE" \
      "${WORKER_ARGS[@]}" \
      >"$dir/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$port$ready" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$dir/server.log" >&2; SERVER_PID=""; return 1; }
    ((SECONDS < deadline)) || { tail -n 20 "$dir/server.log" >&2; log "$server not ready within 60 s"; return 1; }
    sleep 0.2
  done
}

# Starts Centrifugo in the background for one run ($1 folder, $2 port, $3 consumer group) with its
# configuration in $1/centrifugo.json. Its Kafka consumer reads a new group from the earliest offset
# (there is no setting for it): the group's offsets are set to the topic's end first, so earlier
# runs' events are not replayed.
start_centrifugo() {
  local dir=$1 port=$2 group=$3 namespace='{"name": "personal"}' idempotency=centrifugo-idempotency-key
  local history=${HISTORY_SIZE:-100}
  if [[ "$GATEWAY_FEATURES" == history ]]; then
    ((history == 0)) || namespace="{\"name\": \"personal\", \"history_size\": $history, \"history_ttl\": \"24h\", \"force_recovery\": true}"
  else
    # A header no record carries: no idempotency key, no deduplication.
    idempotency=x-bench-no-idempotency-key
  fi
  cat >"$dir/centrifugo.json" <<JSON
{
  "http_server": {"address": "127.0.0.1", "port": $port},
  "log": {"level": "warn"},
  "health": {"enabled": true},
  "client": {
    "token": {"hmac_secret_key": "$JWT_SECRET", "audience": "$JWT_AUDIENCE", "issuer": "$JWT_ISSUER"},
    "allowed_origins": ["*"],
    "user_connection_limit": $MAX_PER_USER,
    "subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "personal"}
  },
  "channel": {"namespaces": [$namespace]},
  "engine": {"type": "redis", "redis": {"address": "$HERALD_TEST_REDIS", "prefix": "${PREFIX}centrifugo"}},
  "consumers": [{"enabled": true, "name": "bench", "type": "kafka", "kafka": {
    "brokers": ["$HERALD_TEST_KAFKA"], "topics": ["${SERVER_TOPIC_LIST//,/\", \"}"], "consumer_group": "$group",
    "publication_data_mode": {"enabled": true, "idempotency_key_header": "$idempotency"}}}]
}
JSON
  bash scripts/infra/kafka.sh tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$HERALD_TEST_KAFKA" --group "$group" --topic "$TOPIC" --reset-offsets --to-latest --execute \
    >"$dir/offsets.log" 2>&1 || { cat "$dir/offsets.log" >&2; log "cannot set $group's offsets"; return 1; }
  env ${WORKERS:+"GOMAXPROCS=$WORKERS"} "$CENTRIFUGO" --config "$dir/centrifugo.json" >"$dir/server.log" 2>&1 &
}

# The machine is shared (Kafka, Redis, the server, loadgen and anything else on 2 cores): record how
# busy it was overall, so a slow run can be told apart from a busy machine.

# A number from a one-line loadgen report.json ("key":value, first occurrence); empty if absent.
json_number() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1" | head -n 1; }

# Whether the run in $1 saturated its server: a copy lost, duplicated or misrouted, no copy at all,
# or p99 over MAX_P99_MS.
saturated() {
  local json=$1/report.json p99
  [[ -s "$json" ]] || return 0
  for key in missing duplicates misrouted; do
    [[ "$(json_number "$json" "$key")" == 0 ]] || return 0
  done
  p99=$(json_number "$json" p99)
  [[ -n "$p99" ]] || return 0
  awk -v p99="$p99" -v max="$MAX_P99_MS" 'BEGIN { exit !(p99 > max) }'
}

# One run: $1 server (herald, reference or centrifugo), $2 rate, $3 events. Sets RUN_DIR,
# LOADGEN_STATUS, SERVER_STATUS (non-zero when it could not start or did not stop cleanly) and
# IDLE_KIB.
run_once() {
  local server=$1 rate=$2 events=$3 port=$PORT url protocol=herald
  [[ "$server" != reference ]] || port=$REF_PORT
  [[ "$server" != centrifugo ]] || { port=$GATEWAY_PORT; protocol=centrifugo; }
  url="ws://127.0.0.1:$port/ws"
  [[ "$protocol" == herald ]] || url="ws://127.0.0.1:$port/connection/websocket"
  RUN_DIR="$OUT/$server-$rate"
  LOADGEN_STATUS=1
  SERVER_STATUS=0
  IDLE_KIB=""
  IDLE_KIB_AVERAGE=""
  mkdir -p "$RUN_DIR"
  if ! start_server "$server" "$RUN_DIR" "$port" "$GROUP-$server-$rate"; then
    log "$server could not be started"
    SERVER_STATUS=1
    return
  fi
  log "$server ready (pid $SERVER_PID); running loadgen: $CONNECTIONS connections, $USERS users, $events events at $rate/s"
  local busy_before idle_before busy_after idle_after load_before load_after redis_args=()
  [[ "$server" == reference ]] || redis_args=(--redis-addr "127.0.0.1:$HERALD_TEST_REDIS_PORT")
  read -r busy_before idle_before < <(machine_ticks)
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  set +e
  # shellcheck disable=SC2086 # LOADGEN_ARGS is a list of flags
  "$LOADGEN" \
    --protocol "$protocol" \
    --url "$url" \
    --jwt-secret "$JWT_SECRET" \
    --jwt-audience "$JWT_AUDIENCE" \
    --jwt-issuer "$JWT_ISSUER" \
    --connections "$CONNECTIONS" \
    --users "$USERS" \
    --brokers "$HERALD_TEST_KAFKA" \
    --topic "$TOPIC" \
    --events "$events" \
    --rate "$rate" \
    --drain "$DRAIN" \
    --target-ms "$TARGET_MS" \
    --server-pid "$SERVER_PID" \
    "${redis_args[@]}" \
    --json-file "$RUN_DIR/report.json" \
    $LOADGEN_ARGS \
    >"$RUN_DIR/report.txt"
  LOADGEN_STATUS=$?
  set -e
  read -r busy_after idle_after < <(machine_ticks)
  load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
  local busy_ticks=$((busy_after - busy_before))
  local all_ticks=$((busy_ticks + idle_after - idle_before))

  # herald's own view of the same copies: Kafka record timestamp to socket write.
  [[ "$server" != herald ]] || curl -sf "http://127.0.0.1:$port/metrics" >"$RUN_DIR/metrics.txt" 2>/dev/null || true

  log "stopping $server (SIGTERM)"
  stop_server
  SERVER_STATUS=$STOP_STATUS

  echo "== $server at $rate/s"
  cat "$RUN_DIR/report.txt"
  local warnings errors
  warnings=$(grep -cE '(^|[^A-Z])WARN([^A-Z]|$)' "$RUN_DIR/server.log" || true)
  errors=$(grep -cE '(^|[^A-Z])ERROR([^A-Z]|$)' "$RUN_DIR/server.log" || true)
  echo "  $server log $RUN_DIR/server.log ($warnings warnings, $errors errors); exit status $SERVER_STATUS, $STOP_MS ms after SIGTERM"
  if grep -q '^herald_kafka_to_socket_seconds_bucket' "$RUN_DIR/metrics.txt" 2>/dev/null; then
    awk -F'[{}" ]+' '
      /^herald_kafka_to_socket_seconds_bucket/ { for (i = 1; i < NF; i++) if ($i == "le=") { le[++n] = $(i + 1); count[n] = $NF } }
      /^herald_kafka_to_socket_seconds_count/ { total = $NF }
      END {
        if (total == 0) exit
        line = sprintf("  herald view   %d copies, Kafka timestamp to socket write:", total)
        for (i = 1; i <= n; i++) if (le[i] != "+Inf" && le[i] + 0 >= 0.005 && le[i] + 0 <= 0.25)
          line = line sprintf(" <=%gms %.2f%%", le[i] * 1000, 100 * count[i] / total)
        print line
      }' "$RUN_DIR/metrics.txt"
  fi
  echo "  machine       $(nproc) cores, $((all_ticks > 0 ? 100 * busy_ticks / all_ticks : 0))% busy during loadgen (all processes); load average $load_before before, $load_after after"
  echo "  files         $RUN_DIR/{report.txt,report.json$([[ "$server" != herald ]] || echo ,metrics.txt)}"
  ((SERVER_STATUS == 0)) || log "$server exited with status $SERVER_STATUS"
  if [[ -s "$RUN_DIR/report.json" ]]; then
    IDLE_KIB=$(json_number "$RUN_DIR/report.json" rss_kib_per_idle_connection_added)
    IDLE_KIB_AVERAGE=$(json_number "$RUN_DIR/report.json" rss_kib_per_idle_connection)
  fi
}

bench_warm_up "$WARMUP" "${LADDER[-1]}" "$REF_PORT"

STATUS=0
IDLE_OVER=0
declare -A SATURATED=()
PLOT_RUNS=()
for rate in "${LADDER[@]}"; do
  events=$EVENTS
  [[ -z "$DURATION" ]] || events=$(awk -v rate="$rate" -v seconds="$DURATION" 'BEGIN { printf "%d", rate * seconds }')
  for server in "${SERVERS[@]}"; do
    [[ -z "${SATURATED[$server]:-}" ]] || continue
    run_once "$server" "$rate" "$events"
    [[ ! -s "$RUN_DIR/report.json" ]] || PLOT_RUNS+=("$server=$RUN_DIR/report.json")
    if [[ "$server" == herald && -n "$IDLE_KIB" ]]; then
      idle="$IDLE_KIB KiB of herald RSS per idle authenticated socket, as the second half of the sockets added it ($IDLE_KIB_AVERAGE KiB averaged over all)"
      if awk -v kib="$IDLE_KIB" -v max="$MAX_IDLE_KIB" 'BEGIN { exit !(kib > max) }'; then
        echo "  idle socket   $idle: OVER the $MAX_IDLE_KIB KiB bound"
        IDLE_OVER=1
      else
        echo "  idle socket   $idle; bound: $MAX_IDLE_KIB KiB"
      fi
    fi
    if [[ -z "$RATES" ]]; then
      # A single rate: herald's result is the script's, as it always was; another server's run
      # only fails the script when it could not be made.
      if [[ "$server" == herald ]]; then
        STATUS=$LOADGEN_STATUS
        ((SERVER_STATUS == 0)) || STATUS=1
        for file in report.txt report.json metrics.txt; do
          [[ ! -e "$RUN_DIR/$file" ]] || ln -sfn "herald-$rate/$file" "$OUT/$file"
        done
        ln -sfn "herald-$rate/server.log" "$OUT/herald.log"
      elif ((LOADGEN_STATUS == 1 || SERVER_STATUS != 0)) && ((STATUS == 0)); then
        STATUS=1
      fi
    else
      if ((LOADGEN_STATUS == 1 || SERVER_STATUS != 0)); then STATUS=1; fi
      if saturated "$RUN_DIR" || ((LOADGEN_STATUS != 0)); then
        log "$server saturated at $rate/s: no higher rate for it"
        SATURATED[$server]=1
      fi
    fi
  done
done

if ((${#PLOT_RUNS[@]} > 0)); then
  echo
  echo "== ${SERVERS[*]} compared (comparison.md, latency-cdf.svg, throughput-p99.svg in $OUT)"
  CAPTION="$CONNECTIONS connections over $USERS users; $(nproc) shared cores; $(date -u +%Y-%m-%d)"
  "$BENCHPLOT" --out "$OUT" --max-p99-ms "$MAX_P99_MS" --caption "$CAPTION" "${PLOT_RUNS[@]}" \
    || { log "herald-benchplot failed"; ((STATUS != 0)) || STATUS=1; }
fi
if ((IDLE_OVER)) && ((STATUS == 0)); then STATUS=3; fi
exit "$STATUS"
