# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/scale.sh: the Kafka broker and Redis a benchmark runs
# against, herald's flags common to both, and how busy the machine is. The caller defines log and
# die, and sets OUT, TOPIC, PREFIX, KEEP_INFRA and the JWT_* settings.

STARTED_KAFKA=0
STARTED_REDIS=0

# Starts the broker and Redis unless they run (remembering which it started), exports their
# addresses, and creates every topic the definitions list plus the bench topic as $1 (a
# `NAME[:PARTITIONS]` spec of scripts/infra/kafka.sh topics-create).
bench_infra_up() {
  local bench_topic=$1
  bash scripts/infra/kafka.sh status >/dev/null 2>&1 || STARTED_KAFKA=1
  bash scripts/infra/redis.sh status >/dev/null 2>&1 || STARTED_REDIS=1
  # The broker this script starts compiles with C2 too: its steady-state CPU shares the 2 cores.
  export HERALD_KAFKA_JIT="${HERALD_KAFKA_JIT:-full}"
  eval "$(bash scripts/infra/up.sh --env)"
  : "${HERALD_TEST_KAFKA:?up.sh did not export HERALD_TEST_KAFKA}" "${HERALD_TEST_REDIS:?up.sh did not export HERALD_TEST_REDIS}"
  # Every topic herald subscribes to exists in production; create them all.
  local topics
  mapfile -t topics < <(bash scripts/infra/definition-topics.sh | grep -vx "$TOPIC")
  bash scripts/infra/kafka.sh topics-create "${topics[@]}" "$bench_topic" >"$OUT/topics.log" 2>&1 \
    || { cat "$OUT/topics.log" >&2; die "cannot create the topics"; }
}

# Stops the broker and Redis this script started, unless KEEP_INFRA=1.
bench_infra_down() {
  [[ "$KEEP_INFRA" != 1 ]] || return 0
  if ((STARTED_KAFKA)); then log "stopping the Kafka broker this script started"; bash scripts/infra/kafka.sh stop || true; fi
  if ((STARTED_REDIS)); then log "stopping the Redis this script started"; bash scripts/infra/redis.sh stop || true; fi
}

# Sets BENCH_HERALD_FLAGS to herald's flags for a production-mode instance in consumer group $1
# on the benchmark's broker and Redis: the bench topic as class_created's, and a new group reading
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
    --topic "class_created=$TOPIC"
    --kafka-option auto.offset.reset=latest
    --log-format text
  )
}

# The machine's busy and idle clock ticks since boot, over every core.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8, $5 }' /proc/stat; }
