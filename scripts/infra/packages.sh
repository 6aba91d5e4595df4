#!/usr/bin/env bash
# scripts/infra/packages.sh — install the Debian packages herald's builds and
# tests need, only those that are missing (checked with dpkg-query/command -v).
# `apt-get update` runs once, and only when something must be installed, so a
# machine that already has everything returns in well under a second.
#
# Usage: scripts/infra/packages.sh [--browser] [--check]
#   --browser  also install chromium (headless browser tests)
#   --check    install nothing; list what is missing, exit 1 if anything is
#
# Installed when missing: redis-server (+ redis-cli); a Java runtime and Maven
# only if `java` / `mvn` are not on PATH (kafka.sh needs them). Building herald
# needs no package: librdkafka, zlib and AWS-LC are compiled from the crates'
# own sources with the C compiler and make the machine ships.
set -euo pipefail
INFRA_COMPONENT=packages
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

browser=0
check=0
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    --check) check=1 ;;
    -h | --help) print_header "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

wanted=(redis-server redis-tools)
((browser)) && wanted+=(chromium)

pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for p in "${wanted[@]}"; do
  pkg_installed "$p" || missing+=("$p")
done
# Tools that may come from outside Debian's packages (the machine image ships
# its own JDK and Maven): only install Debian's when the command is absent.
have java || missing+=(default-jre-headless)
have mvn || missing+=(maven)

if ((${#missing[@]} == 0)); then
  log "all packages present"
  exit 0
fi
if ((check)); then
  log "missing: ${missing[*]}"
  exit 1
fi

((EUID == 0)) || die "must run as root to install: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
log "installing: ${missing[*]}"
apt-get "${apt_opts[@]}" update -qq >&2
apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" >&2
for p in "${missing[@]}"; do
  pkg_installed "$p" || die "package $p did not install"
done
log "installed: ${missing[*]}"
