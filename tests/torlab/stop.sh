#!/usr/bin/env bash
# stop.sh STATE_DIR: stops every tor of a network made by start.sh (relays and
# client): the processes started as "tor -f STATE_DIR/nodes/<nick>/torrc"
# (found in /proc, so also one whose pid file is not written yet). SIGTERM,
# then SIGKILL after 10 s. Returns once they have all exited. Logs and keys
# stay in STATE_DIR.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n ${1:-} ]] || die "usage: stop.sh STATE_DIR"
STATE=$(cd "$1" 2>/dev/null && pwd) || { note "no such dir: $1"; exit 0; }
shopt -s nullglob
pids=()
for d in "$STATE"/nodes/*/; do
  d=${d%/}
  mapfile -t -O "${#pids[@]}" pids < <(node_procs "${d##*/}")
done
stop_pids "${pids[@]}" || die "some tor processes of $STATE did not exit: ${pids[*]}"
note "stopped ${#pids[@]} tor process(es) of $STATE"
