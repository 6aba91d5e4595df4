#!/usr/bin/env bash
# scripts/scale.sh — herald scaled out on one machine: many authenticated WebSocket connections
# spread over several herald instances (one consumer group, one Redis, one Kafka), events produced
# to Kafka for users whose sockets sit on any instance, every copy counted. Optionally one instance
# is killed (SIGKILL) in the middle of sending: its clients reconnect to the other instances with
# `since` and must miss nothing. See docs/benchmarks.md ("Scale-out").
#
# Usage: [KNOB=value ...] bash scripts/scale.sh
#
# A process may hold at most 20,000 open files here, so one herald instance holds at most about
# 19,000 sockets and one loadgen process as many: the connections are spread over INSTANCES herald
# processes and over as many herald-loadgen processes as PER_LOADGEN allows. Every loadgen gets
# every instance's URL; its connection i opens at instance (i + its number) mod INSTANCES and a
# reconnect moves on to the next instance, as a browser behind a load balancer does. Each loadgen
# has its own users (`scale-<n>-<i>`), produces its share of the events for them, and waits (its
# `--wait-for`) until every loadgen holds its connections, so all send at once. The script reads
# every instance's RSS before the connections and once they are all open and idle.
#
# Knobs (environment variables, with defaults):
#   CONNECTIONS=100000   WebSocket connections, over all loadgens
#   INSTANCES=6          herald instances (ports BASE_PORT+1 ...)
#   USERS=50000          users over all loadgens (CONNECTIONS/USERS tabs each, spread over instances)
#   RATE=2000            events per second, over all loadgens
#   EVENTS=60000         events in the measured phase, over all loadgens
#   DRAIN=30             seconds each loadgen waits after its last event for copies on their way
#   PER_LOADGEN=17000    most connections one loadgen process holds
#   KILL=0               1: SIGKILL the first instance KILL_AFTER seconds into the measured phase
#   KILL_AFTER=10        see KILL
#   TARGET_MS=50         delivery target; the report gives the share of copies within it
#   PARTITIONS=12        partitions of the bench topic (at least INSTANCES, so every instance consumes)
#   BASE_PORT=28300      herald i listens on 127.0.0.1:BASE_PORT+i
#   KAFKA_PORT=29492     Kafka broker port (the script's own broker)
#   REDIS_PORT=26779     Redis port (the script's own Redis)
#   (The ports are below Linux's ephemeral range, 32768-60999: the run's own 100,000 outgoing
#   connections take source ports from that range, and would take a listen port there from any
#   other process on the machine; see docs/benchmarks.md, "A listen port taken as a source port".)
#   TOPIC=huleedu.class.created.v1   topic the loadgens produce to
#   TOPICS=bench         bench: every instance consumes TOPIC only (each event mapped to it);
#                        definitions: TOPIC and every topic the definitions list (production's layout)
#   HERALD_LOG=warn      RUST_LOG for herald
#   HERALD_ARGS=         extra herald flags (word-split)
#   LOADGEN_ARGS=        extra herald-loadgen flags (word-split)
#   OUT=target/scale/<UTC time>   folder for the logs, the reports and each instance's /metrics at the end
#   BUILD=1              0: skip `cargo build --release`
#   CARGO_TARGET_DIR=target   where the release binaries are built and found
#   KEEP_INFRA=0         1: leave Kafka and Redis running
#   WARMUP=20            seconds of load (at RATE, at most 5,000/s) through herald-refserver on
#                        127.0.0.1:BASE_PORT before the instances start, not reported: a broker's
#                        JVM compiles its hot paths under its first load. 0: none
#   HERALD_KAFKA_JIT=full   the JVM of a broker this script starts compiles with C2 too (fast: C1 only)
#   HERALD_KAFKA_GC=parallel   and collects with the parallel collector and its whole heap from the
#                        start (serial: the tests' collector, whose pauses show in every tail)
#   HERALD_KAFKA_HEAP=2g   and a heap of this size, a third of it young (the tests' 512m gives a
#                        young collection every few seconds under load)
#
# Exit status: 0 when every loadgen got every copy exactly once (exit 0 of each), 2 when a loadgen
# lost, duplicated or refused something, 1 when the run could not be made.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CONNECTIONS="${CONNECTIONS:-100000}"
INSTANCES="${INSTANCES:-6}"
USERS="${USERS:-50000}"
RATE="${RATE:-2000}"
EVENTS="${EVENTS:-60000}"
DRAIN="${DRAIN:-30}"
PER_LOADGEN="${PER_LOADGEN:-17000}"
KILL="${KILL:-0}"
KILL_AFTER="${KILL_AFTER:-10}"
TARGET_MS="${TARGET_MS:-50}"
PARTITIONS="${PARTITIONS:-12}"
BASE_PORT="${BASE_PORT:-28300}"
export HERALD_TEST_KAFKA_PORT="${KAFKA_PORT:-29492}"
export HERALD_TEST_REDIS_PORT="${REDIS_PORT:-26779}"
TOPIC="${TOPIC:-huleedu.class.created.v1}"
JWT_SECRET="herald-scale-secret"
JWT_AUDIENCE="herald-scale"
JWT_ISSUER="herald-scale"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
HERALD_LOG="${HERALD_LOG:-warn}"
HERALD_ARGS="${HERALD_ARGS:-}"
LOADGEN_ARGS="${LOADGEN_ARGS:-}"
OUT="${OUT:-target/scale/$(date -u +%Y%m%dT%H%M%SZ)}"
BUILD="${BUILD:-1}"
KEEP_INFRA="${KEEP_INFRA:-0}"
WARMUP="${WARMUP:-20}"

log() { echo "[scale] $*" >&2; }
die() { log "error: $*"; exit 1; }

for knob in CONNECTIONS INSTANCES USERS EVENTS DRAIN PER_LOADGEN KILL_AFTER PARTITIONS BASE_PORT \
  HERALD_TEST_KAFKA_PORT HERALD_TEST_REDIS_PORT; do
  [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer, got '${!knob}'"
done
[[ "$RATE" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RATE must be a number, got '$RATE'"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds, got '$WARMUP'"
LOADGENS=$(((CONNECTIONS + PER_LOADGEN - 1) / PER_LOADGEN))
# Loadgen n's share of TOTAL: an even split, the remainder going one each to the first loadgens.
share() { echo $(($1 / LOADGENS + ($2 <= $1 % LOADGENS ? 1 : 0))); }
((USERS <= CONNECTIONS)) || die "USERS must not exceed CONNECTIONS"
PER_USER=$(((CONNECTIONS + USERS - 1) / USERS))
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
GO="$OUT/go"
rm -f "$GO"

HERALD_PIDS=()
LOADGEN_PIDS=()
GROUP="scale-$$"
PREFIX="scale-$$:"
# shellcheck source=infra/bench-lib.sh
. scripts/infra/bench-lib.sh

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${LOADGEN_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${HERALD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${LOADGEN_PIDS[@]}" "${HERALD_PIDS[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  bench_infra_down
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_binaries HERALD LOADGEN REFSERVER

bench_infra_up "$TOPIC:$PARTITIONS"
bench_warm_up "$WARMUP" "${RATE%.*}" "$BASE_PORT"

ulimit -n "$(ulimit -Hn)"
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU time of processes in clock ticks (utime + stime); a process that is gone counts 0.
cpu_ticks() {
  local pid total=0
  for pid in "$@"; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

URLS=()
bench_herald_flags "$GROUP"
for i in $(seq 1 "$INSTANCES"); do
  port=$((BASE_PORT + i))
  URLS+=("ws://127.0.0.1:$port/ws")
  # shellcheck disable=SC2086 # HERALD_ARGS is a list of flags
  NO_COLOR=1 RUST_LOG="$HERALD_LOG" "$HERALD" \
    --listen "127.0.0.1:$port" \
    "${BENCH_HERALD_FLAGS[@]}" \
    --max-connections-per-user "$((PER_USER > 5 ? PER_USER : 5))" \
    $HERALD_ARGS \
    >"$OUT/herald-$i.log" 2>&1 &
  HERALD_PIDS+=("$!")
done
for i in $(seq 1 "$INSTANCES"); do
  port=$((BASE_PORT + i))
  deadline=$((SECONDS + 90))
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "${HERALD_PIDS[$((i - 1))]}" 2>/dev/null || { tail -n 20 "$OUT/herald-$i.log" >&2; die "herald $i exited during start-up"; }
    ((SECONDS < deadline)) || { tail -n 20 "$OUT/herald-$i.log" >&2; die "herald $i not ready within 90 s"; }
    sleep 0.2
  done
done
RSS_BEFORE=0
for pid in "${HERALD_PIDS[@]}"; do RSS_BEFORE=$((RSS_BEFORE + $(rss_kib "$pid"))); done
log "$INSTANCES instances ready (pids ${HERALD_PIDS[*]}; $((RSS_BEFORE / 1024)) MiB together)"

log "$LOADGENS loadgens share $CONNECTIONS connections, $USERS users and $EVENTS events at $RATE/s"
for n in $(seq 1 "$LOADGENS"); do
  PER_CONNECTIONS=$(share "$CONNECTIONS" "$n")
  PER_USERS=$(share "$USERS" "$n")
  PER_EVENTS=$(share "$EVENTS" "$n")
  PER_RATE=$(awk -v rate="$RATE" -v part="$PER_EVENTS" -v all="$EVENTS" 'BEGIN { printf "%.3f", rate * part / all }')
  # Loadgen n starts its connections at instance n, so every instance gets its share of each.
  rotated=("${URLS[@]:$(((n - 1) % INSTANCES))}" "${URLS[@]:0:$(((n - 1) % INSTANCES))}")
  urls=$(IFS=,; echo "${rotated[*]}")
  # shellcheck disable=SC2086 # LOADGEN_ARGS is a list of flags
  "$LOADGEN" \
    --url "$urls" \
    --jwt-secret "$JWT_SECRET" \
    --jwt-audience "$JWT_AUDIENCE" \
    --jwt-issuer "$JWT_ISSUER" \
    --connections "$PER_CONNECTIONS" \
    --users "$PER_USERS" \
    --user-prefix "scale-$n-" \
    --brokers "$HERALD_TEST_KAFKA" \
    --topic "$TOPIC" \
    --events "$PER_EVENTS" \
    --rate "$PER_RATE" \
    --drain "$DRAIN" \
    --target-ms "$TARGET_MS" \
    --read-buffer-kib 1 \
    --connect-concurrency 32 \
    --connect-timeout 60 \
    --warmup-timeout 180 \
    --wait-for "$GO" \
    --json-file "$OUT/loadgen-$n.json" \
    $LOADGEN_ARGS \
    >"$OUT/loadgen-$n.txt" 2>"$OUT/loadgen-$n.log" &
  LOADGEN_PIDS+=("$!")
done

# Every loadgen holds its connections and has seen its warm-up: read the instances' RSS, then go.
deadline=$((SECONDS + 900))
while (($(grep -l "waiting for $GO" "$OUT"/loadgen-*.log 2>/dev/null | wc -l) < LOADGENS)); do
  for pid in "${LOADGEN_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 5 "$OUT"/loadgen-*.log >&2; die "a loadgen ended before sending"; }
  done
  ((SECONDS < deadline)) || die "the loadgens did not all connect and warm up within 900 s"
  sleep 1
done
HELD=0
for i in $(seq 1 "$INSTANCES"); do
  held=$(curl -sf "http://127.0.0.1:$((BASE_PORT + i))/metrics" | awk '/^herald_connections / { print $2 }')
  log "instance $i holds ${held:-?} connections, RSS $(($(rss_kib "${HERALD_PIDS[$((i - 1))]}") / 1024)) MiB"
  HELD=$((HELD + ${held:-0}))
done
RSS_OPEN=0
for pid in "${HERALD_PIDS[@]}"; do RSS_OPEN=$((RSS_OPEN + $(rss_kib "$pid"))); done
REDIS_PID=$(redis-cli -u "$HERALD_TEST_REDIS" info server | awk -F: '/^process_id:/ { print $2 }' | tr -d '\r')
HERALD_TICKS_BEFORE=$(cpu_ticks "${HERALD_PIDS[@]}")
REDIS_TICKS_BEFORE=$(cpu_ticks "$REDIS_PID")
read -r BUSY_BEFORE IDLE_BEFORE < <(machine_ticks)
touch "$GO"
log "$HELD connections held; sending"

if [[ "$KILL" == 1 ]]; then
  sleep "$KILL_AFTER"
  log "killing instance 1 (pid ${HERALD_PIDS[0]}) with SIGKILL"
  kill -KILL "${HERALD_PIDS[0]}" 2>/dev/null || true
fi

STATUS=0
for pid in "${LOADGEN_PIDS[@]}"; do
  code=0
  wait "$pid" || code=$?
  ((code == 0)) || { ((code == 2 && STATUS != 1)) && STATUS=2 || STATUS=1; }
done
LOADGEN_PIDS=()
# Each instance's own view of the run (herald_kafka_to_read_seconds, herald_publish_seconds, ...);
# a killed instance has none.
for i in $(seq 1 "$INSTANCES"); do
  curl -sf "http://127.0.0.1:$((BASE_PORT + i))/metrics" >"$OUT/metrics-$i.txt" 2>/dev/null || rm -f "$OUT/metrics-$i.txt"
done
# The killed instance's ticks are lost with it: the CPU figures then undercount.
HERALD_TICKS=$(($(cpu_ticks "${HERALD_PIDS[@]}") - HERALD_TICKS_BEFORE))
REDIS_TICKS=$(($(cpu_ticks "$REDIS_PID") - REDIS_TICKS_BEFORE))
read -r BUSY_AFTER IDLE_AFTER < <(machine_ticks)
BUSY_PERCENT=$((100 * (BUSY_AFTER - BUSY_BEFORE) / (BUSY_AFTER - BUSY_BEFORE + IDLE_AFTER - IDLE_BEFORE + 1)))

for n in $(seq 1 "$LOADGENS"); do
  echo "== loadgen $n"
  cat "$OUT/loadgen-$n.txt"
done
# Totals over the loadgens: copies expected, delivered, missing and duplicated, and the worst p99.
python3 - "$OUT" "$LOADGENS" "$HELD" "$RSS_BEFORE" "$RSS_OPEN" "$CONNECTIONS" "$INSTANCES" "$KILL" \
  "$HERALD_TICKS" "$REDIS_TICKS" "$(getconf CLK_TCK)" "$BUSY_PERCENT" <<'PY'
import json, sys
out, loadgens, held, before, opened, connections, instances, kill, herald_ticks, redis_ticks, hz, busy = sys.argv[1:]
reports = [json.load(open(f"{out}/loadgen-{n}.json")) for n in range(1, int(loadgens) + 1)]
def total(path):
    value = 0
    for report in reports:
        node = report
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        value += node if isinstance(node, (int, float)) else 0
    return value
p99 = max((report.get("latency_ms") or {}).get("p99", 0) for report in reports)
p50 = max((report.get("latency_ms") or {}).get("p50", 0) for report in reports)
per_socket = (int(opened) - int(before)) / max(int(held), 1)
summary = {
    "connections": int(connections), "held": int(held), "instances": int(instances), "killed": kill == "1",
    "events_sent": total(["events", "sent"]), "copies_expected": total(["copies", "expected"]),
    "copies_received": total(["copies", "received"]), "copies_missing": total(["copies", "missing"]),
    "copies_duplicated": total(["copies", "duplicates"]), "copies_misrouted": total(["copies", "misrouted"]),
    "reconnects": sum(sum(report["connections"].get("resumed_after", {}).values()) for report in reports),
    "resumes_not_recovered": total(["copies", "resumes", "not_recovered"]),
    "p50_ms_worst_loadgen": p50, "p99_ms_worst_loadgen": p99,
    "herald_rss_mib_open": round(int(opened) / 1024, 1), "herald_rss_kib_per_socket": round(per_socket, 2),
    "herald_cpu_us_per_event": round(int(herald_ticks) / int(hz) * 1e6 / max(total(["events", "sent"]), 1), 1),
    "redis_cpu_us_per_event": round(int(redis_ticks) / int(hz) * 1e6 / max(total(["events", "sent"]), 1), 1),
    "machine_busy_percent": int(busy),
    "complete": all(report.get("complete") for report in reports),
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print("== scale-out summary")
for key, value in summary.items():
    print(f"  {key:28} {value}")
PY
echo "  files         $OUT"
exit "$STATUS"
