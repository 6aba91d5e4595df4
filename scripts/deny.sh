#!/usr/bin/env bash
# Judges herald's dependency tree with cargo-deny against deny.toml: security advisories, licenses,
# banned crates and duplicate versions, and sources. Installs cargo-deny from crates.io when missing
# (compiled from source once per machine, into ~/.cargo/bin).
#
# The advisory check needs the RustSec advisory database, a git repository cargo-deny fetches from
# GitHub. Where GitHub cannot be reached, the advisory check cannot run: this script says so and runs
# the other checks. The advisory this project is known to have met (RUSTSEC-2023-0071, the `rsa`
# crate) is also a ban in deny.toml, so it is refused everywhere.
#
# Usage: bash scripts/deny.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# deny.toml is written for this version; a different installed version is replaced.
version=0.20.2
if [[ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $version" ]]; then
  echo "deny.sh: installing cargo-deny $version from crates.io (compiled once per machine)" >&2
  # cargo-deny's release profile asks for fat LTO and one codegen unit, which makes its compilation
  # several times longer on two cores; a plain optimised build checks the same.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet cargo-deny --version "$version"
fi

if cargo deny fetch db >/dev/null 2>&1; then
  cargo deny --locked check
else
  echo "deny.sh: the RustSec advisory database cannot be fetched from here; advisories NOT checked" >&2
  cargo deny --locked check bans licenses sources
fi
