#!/usr/bin/env bash
# Add a new resolver certificate to the running dnsdist, through its console,
# so tests can exercise certificate rotation. The new certificate is signed
# with the lab's provider key, so LAB_PROVIDER_KEY and the stamps stay valid.
#
# Usage: rotate-cert.sh [options]
#   -s, --state DIR     state dir (default: $LAB_STATE_DIR or /tmp/dnscrypt-lab)
#   -b, --bind N|all    DNSCrypt bind: 0 = XSalsa port, 1 = XChaCha port, 2 = mixed port (default: all)
#   -e, --es 1|2        ES version of the new cert: 1 XSalsa20Poly1305, 2 XChacha20Poly1305
#                       (default: that of the bind's highest-serial certificate)
#   -n, --serial N      serial of the new cert (default: highest serial + 1)
#   --from TS           valid from, Unix time (default: now - 60)
#   --until TS          valid until, Unix time (default: now + 86400)
#   --retire-old        stop advertising the older certs (they still decrypt queries)
#   --remove-old        drop the older certs entirely (queries using them get no answer)
#   -l, --list          only print the certificates of all binds
#
# Prints the certificate list afterwards, one line per certificate:
#   bind=0 serial=2 es=1 active=true from=... until=...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

state_arg="" bind=all es=0 serial=0 retire=false remove=false list_only=0
now=$(date +%s)
from=$((now - 60)) till=$((now + 86400))
need() { [[ $# -ge 2 ]] || die "$1 needs a value (see --help)"; }
while (($#)); do
  case "$1" in
    -s|--state) need "$@"; state_arg="$2"; shift ;;
    -b|--bind) need "$@"; bind="$2"; shift ;;
    -e|--es) need "$@"; es="$2"; shift ;;
    -n|--serial) need "$@"; serial="$2"; shift ;;
    --from) need "$@"; from="$2"; shift ;;
    --until) need "$@"; till="$2"; shift ;;
    --retire-old) retire=true ;;
    --remove-old) remove=true ;;
    -l|--list) list_only=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ "$es" =~ ^[012]$ ]] || die "--es must be 1 or 2"
[[ "$bind" == all || "$bind" =~ ^[012]$ ]] || die "--bind must be 0, 1, 2 or all"
[[ "$serial" =~ ^(0|[1-9][0-9]{0,9})$ ]] && ((10#$serial < 4294967296)) || die "--serial must be 1..4294967295"
[[ "$from" =~ ^(0|[1-9][0-9]{0,9})$ ]] && ((10#$from < 4294967296)) || die "--from must be a Unix time"
[[ "$till" =~ ^(0|[1-9][0-9]{0,9})$ ]] && ((10#$till < 4294967296)) || die "--until must be a Unix time"
lab_set_state_dir "$state_arg"
[[ -f "$STATE/console.conf" ]] || die "no $STATE/console.conf; is the lab started?"

if ((!list_only)); then
  binds=("$bind"); [[ "$bind" == all ]] && binds=(0 1 2)
  for b in "${binds[@]}"; do
    lab_console "labRotate($b, $es, $serial, $from, $till, $retire, $remove)" >&2 || die "rotation on bind $b failed"
  done
fi
lab_console 'labCerts()' || die "listing the certificates failed"
