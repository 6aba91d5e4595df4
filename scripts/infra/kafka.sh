#!/usr/bin/env bash
# scripts/infra/kafka.sh — run a real Apache Kafka broker for herald's tests:
# one KRaft node (broker+controller in one JVM) on 127.0.0.1, with the jars
# fetched from Maven Central through scripts/infra/kafka/pom.xml (cached in
# $HERALD_INFRA_DIR/kafka/libs, refetched only when the version or POM changes).
#
# Usage: scripts/infra/kafka.sh COMMAND [ARGS]
#   start                 fetch jars if needed, format storage once, start the
#                         broker (or reuse one already answering on the port),
#                         wait until it serves admin requests (HERALD_KAFKA_START_TIMEOUT, 90 s).
#                         Data survives stop/start, but not a broker that died
#                         without `stop` (its storage is then formatted anew).
#   stop                  stop the broker, only if this script started it
#                         (marker file "owned"); SIGTERM, SIGKILL after 30 s
#   status                print running/stopped; exit 0 when running
#   bootstrap             print 127.0.0.1:PORT (the bootstrap.servers value)
#   topics-create NAME[:PARTITIONS]...
#                         create topics (default 3 partitions, RF 1) unless present
#   topics-list           list topics
#   produce TOPIC         send stdin lines as messages (ConsoleProducer)
#   consume TOPIC [N]     print N (default 1) messages from the beginning, 30 s max
#   tool CLASS [ARGS]     run any main class of the Kafka jars, e.g.
#                         org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka.sh bootstrap)" --describe
#   libs                  only fetch the jars; print the libs folder
#   clean                 delete this port's broker state (must be stopped)
#
# Env: HERALD_TEST_KAFKA_PORT (29092), HERALD_TEST_KAFKA_CONTROLLER_PORT (PORT+1),
#      HERALD_KAFKA_VERSION (default: kafka.version in kafka/pom.xml),
#      HERALD_KAFKA_HEAP (512m), HERALD_KAFKA_START_TIMEOUT (90),
#      HERALD_KAFKA_JIT (fast: the broker's JVM compiles with C1 only, which starts quickly and
#      suits tests; full: C1 then C2, for benchmarks, where the broker's steady-state CPU counts),
#      HERALD_KAFKA_GC (serial: one collector thread and a heap that grows from 128 MiB, which
#      suits tests; parallel: two collector threads and the whole heap from the start, for
#      benchmarks, where the broker's young-generation pauses show in every server's tail),
#      HERALD_INFRA_DIR (<repo>/target/infra; broker state in $HERALD_INFRA_DIR/kafka/PORT)
# Needs java >= 17 and mvn (scripts/infra/packages.sh installs them if absent).
set -euo pipefail
INFRA_COMPONENT=kafka
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POM="$INFRA_SCRIPTS/kafka/pom.xml"
PORT="${HERALD_TEST_KAFKA_PORT:-29092}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "HERALD_TEST_KAFKA_PORT must be a number, got '$PORT'"
CPORT="${HERALD_TEST_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
[[ "$CPORT" =~ ^[0-9]+$ ]] || die "HERALD_TEST_KAFKA_CONTROLLER_PORT must be a number"
BOOTSTRAP="127.0.0.1:$PORT"
VERSION="${HERALD_KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)}"
[[ -n "$VERSION" ]] || die "cannot read kafka.version from $POM"
START_TIMEOUT="${HERALD_KAFKA_START_TIMEOUT:-90}"
HEAP="${HERALD_KAFKA_HEAP:-512m}"
JIT="${HERALD_KAFKA_JIT:-fast}"
[[ "$JIT" == fast || "$JIT" == full ]] || die "HERALD_KAFKA_JIT must be fast or full, got '$JIT'"
GC="${HERALD_KAFKA_GC:-serial}"
[[ "$GC" == serial || "$GC" == parallel ]] || die "HERALD_KAFKA_GC must be serial or parallel, got '$GC'"

KDIR="$HERALD_INFRA_DIR/kafka"
LIBS="$KDIR/libs"
STATE="$KDIR/$PORT"
PROPS="$STATE/server.properties"
DATA="$STATE/data"
LOGFILE="$STATE/kafka.log"
PIDFILE="$STATE/kafka.pid"
MARKER="$STATE/owned" # exists only while a broker that we started runs
ADMIN_PROPS="$KDIR/admin.properties"
SERVER_LOG4J="$KDIR/log4j2-server.properties"
TOOLS_LOG4J="$KDIR/log4j2-tools.properties"

# Quick-starting JVMs: C1 only, serial GC, small stacks.
FAST_JVM=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Xshare:auto -Djava.awt.headless=true)
# The broker's JVM: quick-starting, or with C2 as well for benchmarks (HERALD_KAFKA_JIT).
BROKER_JVM=("${FAST_JVM[@]}")
[[ "$JIT" == full ]] && BROKER_JVM=(-XX:+UseSerialGC -Xss512k -Xshare:auto -Djava.awt.headless=true)
BROKER_XMS=128m
# Measured at 2,000 and 10,000 events/s (docs/benchmarks.md, "The broker's garbage collector"):
# the parallel collector took the reference server's p99 from 16-27 ms to 9-22 ms for the same
# broker CPU; G1 (pauses aimed at 10 ms) took more CPU and made every tail longer.
if [[ "$GC" == parallel ]]; then
  BROKER_JVM=("${BROKER_JVM[@]/-XX:+UseSerialGC/-XX:+UseParallelGC}")
  BROKER_XMS=$HEAP
fi

usage() { print_header "${BASH_SOURCE[0]}"; }

check_java() {
  have java || die "java not found: run scripts/infra/packages.sh"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  if ! [[ "${v%%.*}" =~ ^[0-9]+$ ]] || ((${v%%.*} < 17)); then
    die "Kafka $VERSION needs Java >= 17, found '${v:-unknown}'"
  fi
}

write_support_files() {
  mkdir -p "$KDIR"
  cat >"$ADMIN_PROPS" <<'PROPS'
# client settings for the readiness check and the admin helpers
request.timeout.ms=5000
default.api.timeout.ms=15000
socket.connection.setup.timeout.ms=2000
socket.connection.setup.timeout.max.ms=5000
PROPS
  cat >"$SERVER_LOG4J" <<'L4J'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
L4J
  cat >"$TOOLS_LOG4J" <<'L4J'
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
L4J
}

# Fetch the jars into $LIBS unless they are there for this version and POM.
ensure_libs() {
  local stamp want tmp attempt
  want="$VERSION $(sha256sum "$POM" | cut -d' ' -f1)"
  stamp="$LIBS/.stamp"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  have mvn || die "mvn not found: run scripts/infra/packages.sh"
  mkdir -p "$KDIR"
  exec 8>"$KDIR/libs.lock"
  flock -w 600 8 || die "could not lock $KDIR/libs.lock"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then # fetched meanwhile
    exec 8>&-
    return 0
  fi
  log "fetching Apache Kafka $VERSION jars from Maven Central into $LIBS"
  tmp="$LIBS.tmp.$$"
  rm -rf "$tmp"
  for attempt in 1 2 3; do
    if mvn -B -q -Dstyle.color=never -f "$POM" \
      dependency:copy-dependencies -DincludeScope=runtime \
      -Dkafka.version="$VERSION" -DoutputDirectory="$tmp" >"$KDIR/mvn.log" 2>&1; then
      break
    fi
    if ((attempt == 3)); then
      tail -n 40 "$KDIR/mvn.log" >&2
      die "mvn could not fetch Kafka $VERSION (log: $KDIR/mvn.log)"
    fi
    log "mvn failed (attempt $attempt); retrying"
    sleep 3
  done
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $tmp"
  echo "$want" >"$tmp/.stamp"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  exec 8>&-
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1))"
}

# run_tool CLASS ARGS... — a main class from the Kafka jars, quiet logging.
run_tool() {
  local cls="$1"
  shift
  java "${FAST_JVM[@]}" -Xms32m -Xmx256m \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIBS/*" "$cls" "$@"
}

# The pid of the broker we started, when it still runs; empty otherwise.
owned_pid() {
  owned_pid_with "$PROPS"
}

# True when a Kafka broker on the port answers an admin request (ListTopics).
admin_ok() {
  port_open "$PORT" || return 1
  timeout 40 java "${FAST_JVM[@]}" -Xms32m -Xmx128m \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$ADMIN_PROPS" --list >/dev/null 2>&1
}

random_cluster_id() {
  # Kafka's Uuid text form: 16 random bytes, base64url without padding.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && break
  done
  echo "$id"
}

write_server_properties() {
  mkdir -p "$STATE" "$DATA"
  cat >"$PROPS" <<PROPS
# Written by scripts/infra/kafka.sh on every start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA

# single node: every internal topic with one replica
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# fast tests
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
PROPS
}

cmd_libs() {
  ensure_libs
  echo "$LIBS"
}

cmd_start() {
  check_java
  write_support_files
  ensure_libs
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  flock -w 300 9 || die "could not lock $STATE/lock"

  local pid
  pid="$(owned_pid)"
  if [[ -z "$pid" ]] && port_open "$PORT"; then
    if admin_ok; then
      rm -f "$MARKER"
      log "reusing a Kafka broker already answering on $BOOTSTRAP (not started by us; stop will leave it)"
      return 0
    fi
    die "port $PORT is taken by something that does not answer as Kafka; set HERALD_TEST_KAFKA_PORT"
  fi
  if [[ -z "$pid" ]]; then
    if [[ -f "$MARKER" ]]; then
      # Our previous broker died without `stop` (killed with the session, say).
      # Restarting on its data would wait out its old broker session (~10 s)
      # before unfencing; the data is throw-away, so start from fresh storage.
      log "previous broker on port $PORT died uncleanly; discarding its data"
      rm -rf "$DATA"
    fi
    rm -f "$MARKER" "$PIDFILE"
    port_open "$CPORT" && die "controller port $CPORT is taken; set HERALD_TEST_KAFKA_CONTROLLER_PORT"
    write_server_properties
    if [[ ! -f "$DATA/meta.properties" ]]; then
      log "formatting KRaft storage in $DATA"
      run_tool kafka.tools.StorageTool format --config "$PROPS" \
        --cluster-id "$(random_cluster_id)" --ignore-formatted >"$STATE/format.log" 2>&1 ||
        { cat "$STATE/format.log" >&2; die "storage format failed"; }
    fi
    log "starting Kafka $VERSION on $BOOTSTRAP (controller :$CPORT, state in $STATE)"
    : >"$LOGFILE"
    nohup java "${BROKER_JVM[@]}" "-Xms$BROKER_XMS" "-Xmx$HEAP" \
      -Dlog4j2.configurationFile="$SERVER_LOG4J" -Dkafka.logs.dir="$STATE" \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"
    touch "$MARKER"
  else
    log "already started by us (pid $pid); checking it answers"
  fi

  # Ready = the broker logged that it started (it is then unfenced and can
  # host partitions) and it answers an admin request on the bootstrap port.
  local deadline=$((SECONDS + START_TIMEOUT)) t0=$SECONDS
  while :; do
    if ! pid_alive "$pid"; then
      log "broker exited during startup; last log lines:"
      tail -n 40 "$LOGFILE" >&2 || true
      rm -f "$MARKER" "$PIDFILE"
      exit 1
    fi
    if grep -q 'Kafka Server started' "$LOGFILE" 2>/dev/null || ((SECONDS - t0 > 30)); then
      if admin_ok; then
        break
      fi
    fi
    if ((SECONDS >= deadline)); then
      log "broker not ready within ${START_TIMEOUT}s (pid $pid still running); last log lines:"
      tail -n 40 "$LOGFILE" >&2 || true
      exit 1
    fi
    sleep 0.3
  done
  log "ready: $BOOTSTRAP (pid $pid, $((SECONDS - t0))s)"
}

cmd_stop() {
  local pid
  pid="$(owned_pid)"
  if [[ -z "$pid" ]]; then
    if [[ -f "$MARKER" ]]; then
      rm -f "$MARKER" "$PIDFILE"
      log "not running (removed stale marker)"
    elif port_open "$PORT"; then
      log "something answers on port $PORT but was not started by this script; leaving it"
    else
      log "not running"
    fi
    return 0
  fi
  log "stopping broker pid $pid"
  stop_pid "$pid" 30
  rm -f "$MARKER" "$PIDFILE"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(owned_pid)"
  if [[ -n "$pid" ]]; then
    echo "running on $BOOTSTRAP (pid $pid, started by this script)"
  elif port_open "$PORT"; then
    echo "port $PORT open (not started by this script)"
  else
    echo "stopped (port $PORT)"
    return 1
  fi
}

cmd_topics_create() {
  (($# > 0)) || die "usage: kafka.sh topics-create NAME[:PARTITIONS]..."
  write_support_files
  ensure_libs
  local spec name parts
  for spec in "$@"; do
    name="${spec%%:*}"
    parts=3
    [[ "$spec" == *:* ]] && parts="${spec#*:}"
    [[ "$parts" =~ ^[0-9]+$ ]] || die "bad partition count in '$spec'"
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$ADMIN_PROPS" --create --if-not-exists \
      --topic "$name" --partitions "$parts" --replication-factor 1 >&2
  done
}

cmd_clean() {
  [[ -z "$(owned_pid)" ]] || die "broker on port $PORT is running; stop it first"
  rm -rf "$STATE"
  log "removed $STATE"
}

need_tools() {
  write_support_files
  ensure_libs
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bootstrap) echo "$BOOTSTRAP" ;;
  libs) cmd_libs ;;
  clean) cmd_clean ;;
  topics-create) shift; cmd_topics_create "$@" ;;
  topics-list)
    need_tools
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$ADMIN_PROPS" --list
    ;;
  produce)
    (($# == 2)) || die "usage: kafka.sh produce TOPIC <lines"
    need_tools
    run_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" --topic "$2"
    ;;
  consume)
    (($# == 2 || $# == 3)) || die "usage: kafka.sh consume TOPIC [N]"
    need_tools
    run_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" \
      --topic "$2" --from-beginning --max-messages "${3:-1}" --timeout-ms 30000
    ;;
  tool)
    (($# >= 2)) || die "usage: kafka.sh tool CLASS [ARGS]"
    shift
    need_tools
    run_tool "$@"
    ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
