#!/usr/bin/env bash
# stop.sh STATE_DIR: stops every tor of a network made by start.sh (relays and
# client), by pid file, and only processes that really are a tor running with
# that state dir's torrc. SIGTERM, then SIGKILL after 10 s. Returns once they
# are all gone. Logs and keys stay in STATE_DIR.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n ${1:-} ]] || die "usage: stop.sh STATE_DIR"
STATE=$(cd "$1" 2>/dev/null && pwd) || { note "no such dir: $1"; exit 0; }
shopt -s nullglob
pids=()
for pf in "$STATE"/nodes/*/pid; do
  n=$(basename "$(dirname "$pf")")
  pid=$(node_pid "$n") && pids+=("$pid")
done
stop_pids "${pids[@]}" || die "some tor processes of $STATE did not exit: ${pids[*]}"
note "stopped ${#pids[@]} tor process(es) of $STATE"
