#!/usr/bin/env bash
# Runs herald's whole test suite from a fresh clone: installs what the tests need (Debian packages
# for building librdkafka, Redis, a real Kafka broker from Maven Central, the TypeScript compiler from
# npm), starts Kafka and Redis on non-default ports (reusing them if they already run), checks
# formatting and lints, runs every test in the workspace, and stops what it started.
#
# Usage: bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers that already run (a developer's session) are reused and left running; servers started
# here are stopped afterwards and their state deleted, so topics made by tests do not pile up.
already_running=0
if bash scripts/infra/kafka.sh status >/dev/null 2>&1 && bash scripts/infra/redis.sh status >/dev/null 2>&1; then
  already_running=1
fi
eval "$(bash scripts/infra/up.sh --env)"
if ((!already_running)); then
  trap 'bash scripts/infra/down.sh --clean >&2' EXIT
fi
export HERALD_TEST_KAFKA HERALD_TEST_REDIS

bash scripts/setup-typescript.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast "$@"
(cd clients/typescript && npm test) # the TypeScript client against the herald binary built just above
