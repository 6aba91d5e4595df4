#!/usr/bin/env bash
# scripts/infra/down.sh — stop the Kafka broker and the Redis that up.sh
# started. Servers that were already running before (not started by these
# scripts) are left alone. Safe to run when nothing runs.
#
# Usage: scripts/infra/down.sh [--clean]
#   --clean  also delete their state (Kafka log dirs, Redis folder) but keep
#            the cached Kafka jars in $HERALD_INFRA_DIR/kafka/libs
# Same env as up.sh (HERALD_TEST_KAFKA_PORT, HERALD_TEST_REDIS_PORT, HERALD_INFRA_DIR).
set -euo pipefail
INFRA_COMPONENT=down
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

clean=0
for arg in "$@"; do
  case "$arg" in
    --clean) clean=1 ;;
    -h | --help) print_header "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

rc=0
"$INFRA_SCRIPTS/kafka.sh" stop || rc=1
"$INFRA_SCRIPTS/redis.sh" stop || rc=1
if ((clean && rc == 0)); then
  "$INFRA_SCRIPTS/kafka.sh" clean || rc=1
  "$INFRA_SCRIPTS/redis.sh" clean || rc=1
fi
exit "$rc"
