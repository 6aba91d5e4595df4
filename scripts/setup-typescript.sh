#!/usr/bin/env bash
# Installs the dev dependencies of the TypeScript client (clients/typescript) and of the AsyncAPI
# document's validation (clients/asyncapi) from their package-lock.json files with `npm ci`, so
# `npm run check` (tsc over the generated types and their compile-time tests), `npm test` (the
# client's tests against a real herald) and the `@asyncapi/parser` check of asyncapi.json can run.
#
# Idempotent: skips a package whose dependencies are installed (node_modules/.bin/tsc,
# node_modules/@asyncapi/parser) and whose package-lock.json is not newer than
# node_modules/.package-lock.json (the copy npm writes after an install). Needs node and npm.
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
clients_dir="$(cd "${script_path%/*}/.." && pwd)/clients"

# install PACKAGE MARKER: `npm ci` in clients/PACKAGE unless MARKER (a file the install makes) exists
# and package-lock.json is not newer than the last install.
install() {
  local package="$1" marker="$2"
  cd "$clients_dir/$package"
  if [[ ! -f package-lock.json ]]; then
    echo "setup-typescript: $clients_dir/$package/package-lock.json is missing." >&2
    exit 1
  fi
  if [[ -e "$marker" && ! package-lock.json -nt node_modules/.package-lock.json ]]; then
    echo "setup-typescript: clients/$package dependencies are up to date."
    return
  fi
  echo "setup-typescript: installing clients/$package dependencies (node $(node --version), npm $(npm --version))..."
  npm ci --no-audit --no-fund
}

install typescript node_modules/.bin/tsc
# The AsyncAPI project's parser, which validates clients/asyncapi/asyncapi.json.
install asyncapi node_modules/@asyncapi/parser/package.json
echo "setup-typescript: done; run the checks with: (cd clients/typescript && npm run check)"
