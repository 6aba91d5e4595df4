# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/scale.sh: the Kafka broker and Redis a benchmark runs
# against, the topics every server consumes, herald's flags common to both, and how busy the
# machine is. The caller defines log and die, and sets OUT, TOPIC, PREFIX, GROUP, KEEP_INFRA, BUILD,
# TARGET_DIR and the JWT_* settings, and may set TOPICS (below).

STARTED_KAFKA=0
STARTED_REDIS=0

# Which topics every server consumes (the load is produced to $TOPIC either way):
#   bench        $TOPIC only; each of herald's events is consumed from it (`--topic NAME=$TOPIC`).
#                Every server fetches the same partitions, as the reference server and Centrifugo
#                consume one topic.
#   definitions  $TOPIC and every topic the event definitions list: herald's production layout
#                (19 topics, 57 partitions in the bench's broker), given to every server. librdkafka
#                names every assigned partition in each fetch (it has no incremental fetch
#                sessions), so the idle ones cost the broker and the consumer on every fetch.
TOPICS="${TOPICS:-bench}"
[[ "$TOPICS" == bench || "$TOPICS" == definitions ]] || die "TOPICS must be bench or definitions, got '$TOPICS'"

# Sets SERVER_TOPICS to the topics every server consumes (SERVER_TOPIC_LIST: the same,
# comma-separated, as herald-refserver's --topic takes them), and HERALD_TOPIC_FLAGS to herald's
# `--topic` flags for them, by TOPICS.
bench_topics() {
  local name
  SERVER_TOPICS=("$TOPIC")
  HERALD_TOPIC_FLAGS=(--topic "class_created=$TOPIC")
  if [[ "$TOPICS" == definitions ]]; then
    mapfile -t -O 1 SERVER_TOPICS < <(bash scripts/infra/definition-topics.sh | grep -vx "$TOPIC")
  else
    while read -r name; do
      [[ "$name" == class_created ]] || HERALD_TOPIC_FLAGS+=(--topic "$name=$TOPIC")
    done < <(bash scripts/infra/definition-topics.sh --notifications)
  fi
  SERVER_TOPIC_LIST=$(IFS=,; echo "${SERVER_TOPICS[*]}")
}
bench_topics

# Builds the release binaries when BUILD=1 and sets HERALD, LOADGEN, REFSERVER and BENCHPLOT to
# them; dies unless each one named in the arguments (by variable name) is there.
bench_binaries() {
  if [[ "$BUILD" == 1 ]]; then
    log "building release binaries"
    cargo build --release -p herald-loadgen -p herald-service >&2
  fi
  HERALD="$TARGET_DIR/release/herald"
  LOADGEN="$TARGET_DIR/release/herald-loadgen"
  REFSERVER="$TARGET_DIR/release/herald-refserver"
  BENCHPLOT="$TARGET_DIR/release/herald-benchplot"
  local name
  for name in "$@"; do
    [[ -x "${!name}" ]] || die "release binary ${!name} missing: run with BUILD=1"
  done
}

# Starts the broker and Redis unless they run (remembering which it started), exports their
# addresses, and creates every topic the definitions list plus the bench topic as $1 (a
# `NAME[:PARTITIONS]` spec of scripts/infra/kafka.sh topics-create).
bench_infra_up() {
  local bench_topic=$1
  bash scripts/infra/kafka.sh status >/dev/null 2>&1 || STARTED_KAFKA=1
  bash scripts/infra/redis.sh status >/dev/null 2>&1 || STARTED_REDIS=1
  # The broker this script starts compiles with C2 too: its steady-state CPU shares the 2 cores.
  # Its collector is the parallel one, whose pauses are shorter than the serial one's.
  export HERALD_KAFKA_JIT="${HERALD_KAFKA_JIT:-full}"
  export HERALD_KAFKA_GC="${HERALD_KAFKA_GC:-parallel}"
  # And a heap of 2 GiB, a third of it young. Under load the broker allocates tens of MB a second:
  # with the tests' 512 MiB it stopped for a young collection every three seconds, and on a busy
  # machine each stop left a backlog in every server's tail; with 2 GiB, every eleven seconds.
  export HERALD_KAFKA_HEAP="${HERALD_KAFKA_HEAP:-2g}"
  eval "$(bash scripts/infra/up.sh --env)"
  : "${HERALD_TEST_KAFKA:?up.sh did not export HERALD_TEST_KAFKA}" "${HERALD_TEST_REDIS:?up.sh did not export HERALD_TEST_REDIS}"
  # Every topic herald subscribes to exists in production; create them all.
  local topics
  mapfile -t topics < <(bash scripts/infra/definition-topics.sh | grep -vx "$TOPIC")
  bash scripts/infra/kafka.sh topics-create "${topics[@]}" "$bench_topic" >"$OUT/topics.log" 2>&1 \
    || { cat "$OUT/topics.log" >&2; die "cannot create the topics"; }
}

# Warms the broker up: $1 seconds of events at $2 per second (at most 5,000) produced to $TOPIC and
# read by herald-refserver on 127.0.0.1:$3 for 100 sockets; not reported (output in $OUT/warm-up).
# A broker's JVM compiles its hot paths under its first load, and a server measured first met a
# cold one: records read seconds late at 2,000/s where a warm broker gave milliseconds.
bench_warm_up() {
  local seconds=$1 rate=$2 port=$3 dir="$OUT/warm-up" pid deadline
  ((seconds > 0)) || return 0
  rate=$(awk -v rate="$rate" 'BEGIN { printf "%d", (rate > 5000 ? 5000 : rate) }')
  mkdir -p "$dir"
  if curl -s -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    die "127.0.0.1:$port (the warm-up's reference server) is already taken by another process"
  fi
  "$REFSERVER" \
    --listen "127.0.0.1:$port" \
    --kafka-brokers "$HERALD_TEST_KAFKA" \
    --kafka-group "$GROUP-warm-up" \
    --topic "$SERVER_TOPIC_LIST" \
    --kafka-option auto.offset.reset=latest \
    --jwt-secret "$JWT_SECRET" \
    --jwt-audience "$JWT_AUDIENCE" \
    --jwt-issuer "$JWT_ISSUER" \
    >"$dir/server.log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)) \
      || { kill -TERM "$pid" 2>/dev/null; die "the warm-up's reference server did not start (see $dir/server.log)"; }
    sleep 0.2
  done
  log "warming the broker up: $seconds s at $rate/s through the reference server (not reported)"
  "$LOADGEN" \
    --url "ws://127.0.0.1:$port/ws" \
    --jwt-secret "$JWT_SECRET" \
    --jwt-audience "$JWT_AUDIENCE" \
    --jwt-issuer "$JWT_ISSUER" \
    --connections 100 \
    --users 100 \
    --brokers "$HERALD_TEST_KAFKA" \
    --topic "$TOPIC" \
    --events "$((rate * seconds))" \
    --rate "$rate" \
    --drain 5 \
    >"$dir/report.txt" 2>"$dir/loadgen.log" || log "the warm-up run reported a problem (see $dir); measuring anyway"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops the broker and Redis this script started, unless KEEP_INFRA=1.
bench_infra_down() {
  [[ "$KEEP_INFRA" != 1 ]] || return 0
  if ((STARTED_KAFKA)); then log "stopping the Kafka broker this script started"; bash scripts/infra/kafka.sh stop || true; fi
  if ((STARTED_REDIS)); then log "stopping the Redis this script started"; bash scripts/infra/redis.sh stop || true; fi
}

# Sets BENCH_HERALD_FLAGS to herald's flags for a production-mode instance in consumer group $1
# on the benchmark's broker and Redis: its events' topics by TOPICS, and a new group reading
# from the latest offset (loadgen's warm-up resends until the consumer is assigned).
bench_herald_flags() {
  BENCH_HERALD_FLAGS=(
    --kafka-brokers "$HERALD_TEST_KAFKA"
    --redis-url "$HERALD_TEST_REDIS"
    --jwt-secret "$JWT_SECRET"
    --jwt-audience "$JWT_AUDIENCE"
    --jwt-issuer "$JWT_ISSUER"
    --kafka-group "$1"
    --redis-prefix "$PREFIX"
    "${HERALD_TOPIC_FLAGS[@]}"
    --kafka-option auto.offset.reset=latest
    --log-format text
  )
}

# The machine's busy and idle clock ticks since boot, over every core.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8, $5 }' /proc/stat; }
