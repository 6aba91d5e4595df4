#!/usr/bin/env bash
# Runs herald's whole test suite from a fresh clone: installs what the tests need (Redis from Debian's
# packages, a real Kafka broker from Maven Central, the TypeScript compiler from npm, cargo-deny from
# crates.io), starts Kafka, Redis and a Redis Cluster on non-default ports (reusing them if they
# already run), checks formatting, lints and the dependency tree, runs every test in the workspace,
# then the chaos run (scripts/chaos.sh, docs/reliability.md), and stops what it started.
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
cluster_already_running=0
if bash scripts/infra/redis-cluster.sh status >/dev/null 2>&1; then
  cluster_already_running=1
fi
cleanup() {
  if ((!cluster_already_running)); then
    bash scripts/infra/redis-cluster.sh stop >&2 && bash scripts/infra/redis-cluster.sh clean >&2
  fi
  if ((!already_running)); then
    bash scripts/infra/down.sh --clean >&2
  fi
}
trap cleanup EXIT
eval "$(bash scripts/infra/up.sh --env --browser)" # --browser: chromium for the demo page test
# A 3-master Redis Cluster for the cluster variants of the end-to-end tests.
bash scripts/infra/redis-cluster.sh start
HERALD_TEST_REDIS_CLUSTER="$(bash scripts/infra/redis-cluster.sh urls)"
export HERALD_TEST_KAFKA HERALD_TEST_REDIS HERALD_TEST_REDIS_CLUSTER

bash scripts/setup-typescript.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash scripts/deny.sh
cargo run -q -p herald-codegen --locked -- compat --against HEAD~1 # breaking changes in event-defs/ since the previous commit (skipped in a shallow clone)
cargo test --workspace --locked --no-fail-fast "$@"
(cd clients/typescript && npm test) # the TypeScript client against the herald binary built just above
(cd clients/typescript && npm run test:demo) # the demo page in chromium (screenshots under target/demo/)
bash scripts/chaos.sh
