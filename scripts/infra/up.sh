#!/usr/bin/env bash
# scripts/infra/up.sh — bring up everything herald's integration tests need:
# Debian packages (packages.sh), a Redis (redis.sh) and a real Kafka broker
# (kafka.sh). Idempotent: when all is already installed and running it only
# checks, in about a second.
#
# Usage: scripts/infra/up.sh [--env] [--browser] [--skip-packages]
#   --env            print only shell `export` lines on stdout, for
#                      eval "$(scripts/infra/up.sh --env)"
#                    (HERALD_TEST_KAFKA=127.0.0.1:PORT, HERALD_TEST_REDIS=redis://127.0.0.1:PORT)
#   --browser        also install chromium (passed to packages.sh)
#   --skip-packages  don't run packages.sh (also: HERALD_INFRA_SKIP_PACKAGES=1)
# Without --env a short human summary goes to stdout. Progress always goes to
# stderr. Ports and folders: see redis.sh / kafka.sh (HERALD_TEST_REDIS_PORT,
# HERALD_TEST_KAFKA_PORT, HERALD_INFRA_DIR). Stop with scripts/infra/down.sh.
set -euo pipefail
INFRA_COMPONENT=up
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_out=0
pkg_args=()
skip_packages="${HERALD_INFRA_SKIP_PACKAGES:-0}"
for arg in "$@"; do
  case "$arg" in
    --env) env_out=1 ;;
    --browser) pkg_args+=(--browser) ;;
    --skip-packages) skip_packages=1 ;;
    -h | --help) print_header "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

if [[ "$skip_packages" != 1 ]]; then
  "$INFRA_SCRIPTS/packages.sh" "${pkg_args[@]}" >&2
fi
"$INFRA_SCRIPTS/redis.sh" start >&2
"$INFRA_SCRIPTS/kafka.sh" start >&2

kafka="$("$INFRA_SCRIPTS/kafka.sh" bootstrap)"
redis="$("$INFRA_SCRIPTS/redis.sh" url)"
if ((env_out)); then
  printf 'export HERALD_TEST_KAFKA=%q\n' "$kafka"
  printf 'export HERALD_TEST_REDIS=%q\n' "$redis"
else
  echo "Kafka bootstrap: $kafka   (HERALD_TEST_KAFKA)"
  echo "Redis URL:       $redis   (HERALD_TEST_REDIS)"
  echo "Stop with: scripts/infra/down.sh"
fi
