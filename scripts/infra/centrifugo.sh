#!/usr/bin/env bash
# scripts/infra/centrifugo.sh — the Centrifugo server scripts/bench.sh measures beside herald
# (GATEWAY=1): the leading open-source real-time gateway, written in Go, with a Redis engine and a
# Kafka consumer of its own.
#
# Usage: scripts/infra/centrifugo.sh path
#   path    print the binary's path, building it first when missing: `go install` of
#           github.com/centrifugal/centrifugo/v6 at HERALD_CENTRIFUGO_VERSION from the Go module
#           proxy into $HERALD_INFRA_DIR/centrifugo/VERSION/ (a few minutes on 2 cores, once)
#
# Env: HERALD_CENTRIFUGO_VERSION (default 6.9.1),
#      HERALD_INFRA_DIR (default <repo>/target/infra)
# Needs the go command (1.26 or newer).
set -euo pipefail
INFRA_COMPONENT=centrifugo
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION="${HERALD_CENTRIFUGO_VERSION:-6.9.1}"
[[ "$VERSION" =~ ^[0-9]+[.][0-9]+[.][0-9]+$ ]] || die "HERALD_CENTRIFUGO_VERSION must look like 6.9.1, got '$VERSION'"
MODULE="github.com/centrifugal/centrifugo/v${VERSION%%.*}"
DIR="$HERALD_INFRA_DIR/centrifugo/$VERSION"
BIN="$DIR/centrifugo"

cmd_path() {
  if [[ ! -x "$BIN" ]]; then
    have go || die "the go command is needed to build Centrifugo"
    log "building Centrifugo $VERSION ($MODULE) into $DIR"
    mkdir -p "$DIR"
    # The version is stamped as the release build stamps it, so the server reports it.
    GOBIN="$DIR" GOFLAGS=-mod=mod go install \
      -ldflags "-X $MODULE/internal/build.Version=$VERSION" "$MODULE@v$VERSION" >&2 \
      || die "go install of $MODULE@v$VERSION failed"
  fi
  "$BIN" version >&2
  echo "$BIN"
}

case "${1:-}" in
  path) cmd_path ;;
  -h | --help) print_header "$0" ;;
  *) print_header "$0"; exit 2 ;;
esac
