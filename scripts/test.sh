#!/usr/bin/env bash
# Runs herald's whole test suite from a fresh clone: installs what the tests need (the TypeScript
# compiler from npm), checks formatting and lints, then runs every test in the workspace.
#
# Usage: bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-typescript.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast "$@"
