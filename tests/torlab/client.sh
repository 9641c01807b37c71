#!/usr/bin/env bash
# client.sh start [--wait] STATE_DIR | stop STATE_DIR | status STATE_DIR
#
# Starts or stops only the Tor client of a network made by start.sh; the
# relays keep running. The client keeps its data directory (cached consensus
# and descriptors), so a restart bootstraps in about a second.
#
#   start          launch the client; returns once its SocksPort listens
#                  (Tor is then usually not bootstrapped yet)
#   start --wait   also wait until "Bootstrapped 100%" and a SOCKS5 CONNECT
#                  through an exit to 127.0.0.1 works; bounded by
#                  TOR_LAB_TIMEOUT (default: the value start.sh used)
#   stop           SIGTERM (SIGKILL after 10 s); returns once the process is
#                  gone and its SocksPort refuses connections
#   status         prints the pid and exits 0 if the client runs, else exits 3
#
# Timings of the last start go to STATE_DIR/client-times (epoch seconds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: client.sh start [--wait] STATE_DIR | stop STATE_DIR | status STATE_DIR"; }
cmd=${1:-}; shift || true
wait_ready=0
if [[ $cmd == start && ${1:-} == --wait ]]; then wait_ready=1; shift; fi
[[ $# == 1 ]] || usage
set_state "$1"
[[ -f $STATE/env && -f $STATE/nodes/client/torrc ]] || die "$STATE is not a network made by start.sh (no env or client torrc)"
SOCKS_PORT=$(sed -n 's/^TOR_LAB_SOCKS=127\.0\.0\.1://p' "$STATE/env")
check_port_value "SocksPort in $STATE/env" "$SOCKS_PORT"
if [[ -z ${TOR_LAB_TIMEOUT:-} ]]; then
  TIMEOUT=$(sed -n 's/^TOR_LAB_TIMEOUT=//p' "$STATE/env")
  TIMEOUT=${TIMEOUT:-120}
fi
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TOR_LAB_TIMEOUT must be a positive number of seconds"
LOG=$STATE/nodes/client/notice.log

socks_listening() { ss -Hltn "sport = :$SOCKS_PORT" 2>/dev/null | grep -q .; }

case $cmd in
status)
  if pid=$(node_pid client); then echo "running $pid"; exit 0; fi
  echo stopped; exit 3
  ;;
stop)
  if pid=$(node_pid client); then
    stop_pids "$pid" || die "client (pid $pid) did not exit"
    note "client (pid $pid) stopped"
  else
    note "client was not running"
  fi
  for _ in $(seq 1 50); do socks_listening || exit 0; sleep 0.1; done
  die "SocksPort 127.0.0.1:$SOCKS_PORT still listens after the client stopped"
  ;;
start) ;;
*) usage ;;
esac

if pid=$(node_pid client); then die "client already running (pid $pid)"; fi
if socks_listening; then die "TCP port $SOCKS_PORT (SocksPort) already in use"; fi
TOR=$(command -v tor) || die "tor not found"

fail() {
  echo "torlab: client.sh: FAILED: $*" >&2
  dump_logs client
  exit 1
}
deadline=$(($(date +%s) + TIMEOUT))
# the part of notice.log written by this start begins after byte $off
off=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
T_START=$(date +%s.%N)
"$TOR" -f "$STATE/nodes/client/torrc" >"$STATE/nodes/client/launch.log" 2>&1 \
  || { cat "$STATE/nodes/client/launch.log" >&2; fail "tor client did not start"; }
T_LAUNCHED=$(date +%s.%N)
pid=$(wait_pid client) || fail "tor client exited right after its launch (no pid file)"
# with RunAsDaemon the launch returns once the listeners are open
until socks_listening; do
  (($(date +%s) < deadline)) || fail "SocksPort 127.0.0.1:$SOCKS_PORT not listening after ${TIMEOUT}s"
  node_pid client >/dev/null || fail "tor client (pid $pid) died"
  sleep 0.05
done
printf 'CLIENT_T_START=%s\nCLIENT_T_LAUNCHED=%s\n' "$T_START" "$T_LAUNCHED" >"$STATE/client-times"
if ((wait_ready == 0)); then
  note "client started (pid $pid), SocksPort 127.0.0.1:$SOCKS_PORT listening after $(elapsed "$T_START")s; not waiting for bootstrap"
  exit 0
fi

last=""
until tail -c +$((off + 1)) "$LOG" 2>/dev/null | grep -q 'Bootstrapped 100%'; do
  (($(date +%s) < deadline)) || fail "client not bootstrapped after ${TIMEOUT}s (last: ${last:-none})"
  node_pid client >/dev/null || fail "tor client (pid $pid) died"
  last=$(tail -c +$((off + 1)) "$LOG" 2>/dev/null | grep -o 'Bootstrapped [0-9]*%.*' | tail -n1 || true)
  sleep 0.1
done
T_BOOT=$(date +%s.%N)

# SOCKS5 CONNECT through an exit to a TCP port on 127.0.0.1 that is not a
# relay port: the client's own SocksPort.
tries=0
while :; do
  tries=$((tries + 1))
  code=$(socks_probe "$SOCKS_PORT")
  [[ $code == 00 ]] && break
  (($(date +%s) < deadline)) || fail "bootstrapped, but a SOCKS CONNECT to 127.0.0.1:$SOCKS_PORT through Tor still fails (last reply: $code)"
  node_pid client >/dev/null || fail "tor client (pid $pid) died"
  sleep 0.5
done
T_READY=$(date +%s.%N)
printf 'CLIENT_T_BOOT=%s\nCLIENT_T_READY=%s\n' "$T_BOOT" "$T_READY" >>"$STATE/client-times"
note "client (pid $pid) Bootstrapped 100% $(awk -v a="$T_START" -v b="$T_BOOT" 'BEGIN{printf "%.2f", b-a}')s after its launch;" \
  "SOCKS CONNECT through an exit worked after $(awk -v a="$T_START" -v b="$T_READY" 'BEGIN{printf "%.2f", b-a}')s (probe #$tries)"
