#!/usr/bin/env bash
# Stop a lab when the process that owns it exits, so that a killed or crashed
# test run leaves no daemons behind. start.sh runs this (detached, recorded as
# "watchdog" in STATE_DIR/pids) when LAB_OWNER_PID is set; stop.sh ends it.
#
# Usage: watchdog.sh STATE_DIR OWNER_PID OWNER_STARTTIME
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $# == 3 ]] || die "usage: watchdog.sh STATE_DIR OWNER_PID OWNER_STARTTIME"
STATE="$1" owner="$2" owner_st="$3"
PIDS="$STATE/pids"

# Poll once a second: the owner still runs (same PID and start time) and the
# lab was not stopped or removed meanwhile.
while [[ -d "$PIDS" && "$(proc_starttime "$owner" 2>/dev/null)" == "$owner_st" ]]; do
  sleep 1
done
[[ -d "$PIDS" ]] || exit 0
log "owner process $owner is gone; stopping the lab in $STATE"
LAB_FROM_WATCHDOG=1 "$LAB_DIR_SCRIPTS/stop.sh" "$STATE"
