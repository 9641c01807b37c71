#!/usr/bin/env bash
# Run one command on the lab's dnsdist console and print its answer.
# dnsdist's console exits 0 even when the Lua command fails; this script
# exits 1 then, with the error text on stderr.
#
# Usage: console.sh [-s STATE_DIR] 'LUA'
#   e.g. console.sh 'showDNSCryptBinds()'
#        console.sh 'labCerts()'
#        console.sh 'getDNSCryptBind(0):printCertificates()'
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
state_arg=""
if [[ "${1:-}" == -s ]]; then
  [[ $# -ge 2 ]] || die "usage: console.sh [-s STATE_DIR] 'LUA'"
  state_arg="$2"; shift 2
fi
[[ $# -ge 1 ]] || die "usage: console.sh [-s STATE_DIR] 'LUA'"
lab_set_state_dir "$state_arg"
[[ -f "$STATE/console.conf" ]] || die "no $STATE/console.conf; is the lab started?"
lab_console "$*"
