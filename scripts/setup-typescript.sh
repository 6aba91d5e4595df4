#!/usr/bin/env bash
# Installs the dev dependencies of the TypeScript client (clients/typescript) from its
# package-lock.json with `npm ci`, so `npm run check` (tsc over the generated types and their
# compile-time tests) and `npm test` (the client's tests against a real herald) can run.
#
# Idempotent: does nothing when node_modules/.bin/tsc exists and package-lock.json is not newer
# than node_modules/.package-lock.json (the copy npm writes after an install). Needs node and npm.
#
# Usage: scripts/setup-typescript.sh            (from anywhere)
# Then:  (cd clients/typescript && npm run check && npm test)
set -euo pipefail

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-typescript: '$tool' is not installed or not on PATH; install Node.js 20+ (with npm) first." >&2
    exit 1
  fi
done

script_path="${BASH_SOURCE[0]}"
[[ "$script_path" == */* ]] || script_path="./$script_path"
client_dir="$(cd "${script_path%/*}/.." && pwd)/clients/typescript"
cd "$client_dir"

if [[ ! -f package-lock.json ]]; then
  echo "setup-typescript: $client_dir/package-lock.json is missing." >&2
  exit 1
fi

if [[ -x node_modules/.bin/tsc && ! package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup-typescript: clients/typescript dependencies are up to date."
  exit 0
fi

echo "setup-typescript: installing clients/typescript dependencies (node $(node --version), npm $(npm --version))..."
npm ci --no-audit --no-fund
echo "setup-typescript: done; run the checks with: (cd clients/typescript && npm run check)"
