#!/usr/bin/env bash
# Stop the lab processes recorded in STATE_DIR/pids (only those; nothing is
# killed by name). Logs and keys stay in STATE_DIR for inspection.
#
# Usage: stop.sh [STATE_DIR]     (default: $LAB_STATE_DIR or /tmp/dnscrypt-lab)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lab_set_state_dir "${1:-}"

# The watchdog goes first, so it does not start a second stop.sh meanwhile;
# when the watchdog itself runs us, it is left to exit by itself.
if [[ "${LAB_FROM_WATCHDOG:-0}" == 1 ]]; then
  rm -f "$PIDS/watchdog.pid"
else
  stop_all watchdog
fi
# stubby.sh's stubbies (stubby-PORT), then the lab's own daemons.
extra=()
for f in "$PIDS"/stubby-*.pid; do
  [[ -f "$f" ]] && f="${f##*/}" && extra+=("${f%.pid}")
done
stop_all "${extra[@]}" socks-auth socks go-dnscrypt dnsdist unbound
rm -f "$STATE/lab.env"
