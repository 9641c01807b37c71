#!/usr/bin/env bash
# Stop a lab when the process that owns it exits, so that a killed or crashed
# test run leaves no daemons behind. start.sh runs this (detached, recorded as
# "watchdog" in STATE_DIR/pids) when LAB_OWNER_PID is set; stop.sh ends it.
# If the state dir disappears while the lab runs, it stops the processes it
# last saw recorded there.
#
# Usage: watchdog.sh STATE_DIR OWNER_PID OWNER_STARTTIME PIDLIST
# PIDLIST: the lab's "PID STARTTIME" lines when it was started (so that the
# list is known even if the state dir goes before this script reads it).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $# == 4 ]] || die "usage: watchdog.sh STATE_DIR OWNER_PID OWNER_STARTTIME PIDLIST"
STATE="$1" owner="$2" owner_st="$3" seen="$4"
PIDS="$STATE/pids"

# Poll once a second (builtins only, apart from sleep).
while [[ "$(proc_starttime "$owner" 2>/dev/null)" == "$owner_st" ]]; do
  if [[ ! -d "$PIDS" ]]; then
    log "state dir $STATE is gone; stopping the processes it listed"
    procs=()
    while read -r pid st; do
      [[ -n "$pid" && "$pid" != "$$" && "$(proc_starttime "$pid" 2>/dev/null)" == "$st" ]] || continue
      kill -TERM "$pid" 2>/dev/null && procs+=("$pid $st")
    done <<<"$seen"
    sleep 2
    for p in "${procs[@]}"; do
      read -r pid st <<<"$p"
      [[ "$(proc_starttime "$pid" 2>/dev/null)" != "$st" ]] || kill -KILL "$pid" 2>/dev/null || true
    done
    exit 0
  fi
  # Keep the last non-empty list: the dir may vanish in the middle of this.
  now_seen=""
  for f in "$PIDS"/*.pid; do
    [[ -f "$f" ]] && read -r line <"$f" && now_seen+="$line"$'\n'
  done
  [[ -z "$now_seen" ]] || seen="$now_seen"
  sleep 1
done
[[ -d "$PIDS" ]] || exit 0
log "owner process $owner is gone; stopping the lab in $STATE"
LAB_FROM_WATCHDOG=1 "$LAB_DIR_SCRIPTS/stop.sh" "$STATE"
