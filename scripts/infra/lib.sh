#!/usr/bin/env bash
# scripts/infra/lib.sh — shared helpers for the scripts in scripts/infra/.
#
# Usage: source it from another script in this folder:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It defines REPO_ROOT, INFRA_SCRIPTS, HERALD_INFRA_DIR (default
# <repo>/target/infra, exported) and small functions: log, die, have,
# pid_alive, pid_cmdline_has, port_open, wait_pid_exit, stop_pid.
# All diagnostics go to stderr so that stdout stays clean for values.

INFRA_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_SCRIPTS/../.." && pwd)"
HERALD_INFRA_DIR="${HERALD_INFRA_DIR:-$REPO_ROOT/target/infra}"
export HERALD_INFRA_DIR
export INFRA_SCRIPTS REPO_ROOT

log() { printf '[infra:%s] %s\n' "${INFRA_COMPONENT:-infra}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# pid_alive PID — true when PID is a running (non-zombie) process.
pid_alive() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" ]]
}

# pid_cmdline_has PID WORD — true when PID's command line contains WORD.
pid_cmdline_has() {
  local pid="$1" word="$2"
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$word"
}

# owned_pid_with WORD — the pid in $PIDFILE when $MARKER says this script started it, it still runs,
# and its command line contains WORD (so a recycled pid is not mistaken for it); empty otherwise.
owned_pid_with() {
  local word="$1" pid
  [[ -f "$MARKER" && -f "$PIDFILE" ]] || return 0
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if pid_alive "$pid" && pid_cmdline_has "$pid" "$word"; then
    echo "$pid"
  fi
}

# port_open PORT — true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  local port="$1"
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# wait_pid_exit PID SECONDS — wait until PID is gone; false on timeout.
wait_pid_exit() {
  local pid="$1" deadline=$((SECONDS + $2))
  while pid_alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# stop_pid PID SECONDS — SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
  local pid="$1" grace="$2"
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_pid_exit "$pid" "$grace"; then
    log "pid $pid still alive after ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 10 || die "pid $pid did not exit after SIGKILL"
  fi
}

# print_header FILE — print FILE's leading comment block (its usage text).
print_header() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}
