# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for the lab scripts. Sourced, not run.
# Everything listens on 127.0.0.1 only. Every port can be set from the
# environment (LAB_PORT_*), so several labs can run side by side.

LAB_DIR_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_REPO_ROOT="$(cd "$LAB_DIR_SCRIPTS/../.." && pwd)"

# State directory: first argument of the calling script, else $LAB_STATE_DIR,
# else /tmp/dnscrypt-lab. Scripts call lab_set_state_dir "$@".
lab_set_state_dir() {
  STATE="${1:-${LAB_STATE_DIR:-/tmp/dnscrypt-lab}}"
  mkdir -p "$STATE"
  STATE="$(cd "$STATE" && pwd)"
  PIDS="$STATE/pids"
}

LAB_IP=127.0.0.1
PORT_DNSCRYPT=${LAB_PORT_XSALSA:-8443}           # DNSCrypt, X25519-XSalsa20Poly1305 (ES version 1)
PORT_DNSCRYPT_XCHACHA=${LAB_PORT_XCHACHA:-8444}  # DNSCrypt, X25519-XChacha20Poly1305 (ES version 2)
PORT_DNSCRYPT_MIXED=${LAB_PORT_MIXED:-8445}      # DNSCrypt, both: ES 1 serial 1 and ES 2 serial 2
PORT_DNSCRYPT_GO=${LAB_PORT_GO:-8446}            # second server: ameshkov/dnscrypt (Go), ES version 1
PORT_SOCKS=${LAB_PORT_SOCKS:-8450}               # SOCKS5, no authentication
PORT_SOCKS_AUTH=${LAB_PORT_SOCKS_AUTH:-8451}     # SOCKS5, username/password
PORT_CONSOLE=${LAB_PORT_CONSOLE:-8452}           # dnsdist console (TCP, encrypted with setKey)
PORT_BACKEND=${LAB_PORT_BACKEND:-8453}           # unbound, authoritative for lab.test (UDP+TCP)
PORT_PLAIN=${LAB_PORT_PLAIN:-8455}               # dnsdist plain DNS in front of the backend (UDP+TCP)
PORT_DOT=${LAB_PORT_DOT:-8456}                   # dnsdist DNS-over-TLS (TCP)
PORT_DOH=${LAB_PORT_DOH:-8457}                   # dnsdist DNS-over-HTTPS (TCP), path /dns-query
PORT_BACKEND_DOT=${LAB_PORT_BACKEND_DOT:-8458}   # unbound (the backend) DNS-over-TLS (TCP)
PORT_BACKEND_DOH=${LAB_PORT_BACKEND_DOH:-8459}   # unbound (the backend) DNS-over-HTTPS, HTTP/2 only, path /dns-query
PROVIDER_NAME="2.dnscrypt-cert.lab.test"
ZONE="lab.test"
SOCKS_USER="lab"
SOCKS_PASS="labpass"
# Names in the self-signed TLS certificates of dnsdist's and unbound's DoT/DoH
# listeners (the names need not resolve: clients connect to 127.0.0.1).
TLS_NAME="dns.$ZONE"
BACKEND_TLS_NAME="backend.$ZONE"
# Binary of the second DNSCrypt server (github.com/ameshkov/dnscrypt/v2/cmd),
# built from tests/tools by install.sh or by the Go package tests/labtest.
GO_DNSCRYPT="${LAB_GO_DNSCRYPT:-$LAB_REPO_ROOT/tests/.bin/dnscrypt}"

# Log lines carry the seconds since the script started, to see what is slow.
LAB_T0=${EPOCHREALTIME/[.,]/}
log() {
  local us=$((${EPOCHREALTIME/[.,]/} - LAB_T0))
  # Never fails: a log line that cannot be written must not stop a cleanup.
  printf '[lab %d.%02ds] %s\n' $((us / 1000000)) $((us % 1000000 / 10000)) "$*" >&2 2>/dev/null || true
}
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# all_ports: the ports start.sh binds, in a fixed order.
all_ports() {
  echo "$PORT_DNSCRYPT $PORT_DNSCRYPT_XCHACHA $PORT_DNSCRYPT_MIXED $PORT_DNSCRYPT_GO $PORT_SOCKS" \
       "$PORT_SOCKS_AUTH $PORT_CONSOLE $PORT_BACKEND $PORT_PLAIN $PORT_DOT $PORT_DOH" \
       "$PORT_BACKEND_DOT $PORT_BACKEND_DOH"
}

# check_ports: every port is a number in 1..65535 and no two are equal.
check_ports() {
  local p seen=" "
  for p in $(all_ports); do
    [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] && ((10#$p >= 1 && 10#$p <= 65535)) || die "bad port '$p' (LAB_PORT_* must be 1..65535)"
    [[ "$seen" != *" $p "* ]] || die "port $p is given twice (LAB_PORT_* must all differ)"
    seen+="$p "
  done
}

# go_server_stamp: what a built Go server must match to be current: the
# SHA-256 of tests/tools/go.mod followed by go.sum. tests/labtest computes the
# same value (goServerStamp), so either may build and the other reuses it.
go_server_stamp() {
  cat "$LAB_REPO_ROOT/tests/tools/go.mod" "$LAB_REPO_ROOT/tests/tools/go.sum" | sha256sum | cut -d' ' -f1
}

# --- process bookkeeping -----------------------------------------------------
# A pid file holds "PID STARTTIME" (STARTTIME = field 22 of /proc/PID/stat), so
# a recycled PID is never mistaken for one of ours.

proc_starttime() {
  # The command name in field 2 may contain spaces; cut after the last ')'.
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  # After ") " the fields start at field 3 (state), so field 22 is word 20.
  # A zombie (state Z) has exited already and only waits to be reaped.
  # shellcheck disable=SC2086
  set -- $stat
  [[ "$1" != Z ]] || return 1
  echo "${20}"
}

# start_bg NAME LOGFILE CMD...: run CMD detached (own session, stdin from
# /dev/null, output to LOGFILE) and record it in $PIDS/NAME.pid.
start_bg() {
  local name="$1" logfile="$2"; shift 2
  mkdir -p "$PIDS"
  setsid "$@" </dev/null >"$logfile" 2>&1 &
  local pid=$! st
  # Record at once so that the failure trap can stop it.
  st="$(proc_starttime "$pid")" || { sleep 0.1; cat "$logfile" >&2; die "$name exited at once (see $logfile)"; }
  echo "$pid $st" >"$PIDS/$name.pid"
}

# pid_alive NAME: print the PID if the process recorded for NAME still runs.
pid_alive() {
  local f="$PIDS/$1.pid" pid st
  [[ -f "$f" ]] || return 1
  read -r pid st <"$f" || return 1
  [[ -n "$pid" && "$(proc_starttime "$pid" 2>/dev/null)" == "$st" ]] || return 1
  echo "$pid"
}

# stop_all NAME...: SIGTERM every recorded process at once, wait up to 5 s,
# SIGKILL what is left. Only processes listed in $PIDS are touched.
stop_all() {
  local name pid left
  for name in "$@"; do
    if pid="$(pid_alive "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for _ in $(seq 50); do
    left=0
    for name in "$@"; do pid_alive "$name" >/dev/null && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for name in "$@"; do
    if pid="$(pid_alive "$name")"; then
      log "$name ($pid) ignored SIGTERM, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    [[ ! -f "$PIDS/$name.pid" ]] || log "stopped $name"
    rm -f "$PIDS/$name.pid"
  done
}

# --- probes ------------------------------------------------------------------

# port_busy PORT: true if anything listens on 127.0.0.1:PORT or the wildcard
# address, over TCP or UDP (ss), or accepts a TCP connection there. One ss
# call is cached in LISTENING for all ports; unset LISTENING to refresh it.
port_busy() {
  if [[ -z "${LISTENING+set}" ]]; then
    LISTENING=$'\n'
    if command -v ss >/dev/null; then
      local addr
      while read -r _ _ _ _ addr _; do LISTENING+="$addr"$'\n'; done < <(ss -Hlnut 2>/dev/null)
    fi
  fi
  local a
  for a in "127.0.0.1:$1" "0.0.0.0:$1" "*:$1" "[::]:$1" "[::ffff:127.0.0.1]:$1"; do
    [[ "$LISTENING" == *$'\n'"$a"$'\n'* ]] && return 0
  done
  tcp_accepts "$1"
}

# tcp_accepts PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
tcp_accepts() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$LAB_IP/$1" 2>/dev/null
}

# dig_short [dig options...]: one quick query, answer section only.
dig_short() {
  dig +short +time=1 +tries=1 "$@" 2>/dev/null
}

# wait_for NAME DESC LOGFILE SECONDS CMD...: poll CMD every 0.1 s until it
# succeeds. If the process recorded as NAME exits, or SECONDS pass, print the
# end of LOGFILE and fail.
wait_for() {
  local name="$1" desc="$2" logfile="$3" secs="$4"; shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    # start.sh sets LAB_OWNER/LAB_OWNER_ST: no use going on for a dead owner.
    if [[ -n "${LAB_OWNER:-}" && "$(proc_starttime "$LAB_OWNER" 2>/dev/null)" != "$LAB_OWNER_ST" ]]; then
      die "owner process $LAB_OWNER is gone; giving up"
    fi
    if ! pid_alive "$name" >/dev/null; then
      log "$desc: the process exited; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "$desc did not come up within ${secs}s; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  log "$desc is up"
}

# socks_dns_check PORT [USER PASS]: through the SOCKS5 server on PORT, open a
# TCP connection to the backend and ask www.lab.test A over DNS-over-TCP.
# Pure bash (/dev/tcp, dd, od), so it needs no SOCKS-capable client.
# Succeeds only if the answer carries 127.0.84.10.
socks_dns_check() {
  timeout 5 bash -c '
    set -euo pipefail
    port=$1 user=${2:-} pass=${3:-} backend_port=$4
    hex() { od -An -v -tx1 | tr -d " \n"; }
    exec 3<>/dev/tcp/127.0.0.1/$port
    if [[ -n "$user" ]]; then
      printf "\x05\x01\x02" >&3
      [[ "$(dd bs=1 count=2 <&3 2>/dev/null | hex)" == 0502 ]]
      printf "\x01\\x$(printf %02x ${#user})%s\\x$(printf %02x ${#pass})%s" "$user" "$pass" >&3
      [[ "$(dd bs=1 count=2 <&3 2>/dev/null | hex)" == 0100 ]]
    else
      printf "\x05\x01\x00" >&3
      [[ "$(dd bs=1 count=2 <&3 2>/dev/null | hex)" == 0500 ]]
    fi
    # CONNECT 127.0.0.1:backend_port (IPv4 address type)
    printf "\x05\x01\x00\x01\x7f\x00\x00\x01\\x$(printf %02x $((backend_port >> 8)))\\x$(printf %02x $((backend_port & 255)))" >&3
    reply=$(dd bs=1 count=10 <&3 2>/dev/null | hex)
    [[ "${reply:0:4}" == 0500 ]]
    # DNS over TCP: 2-byte length, then id 0x4c41, no flags, 1 question
    printf "\x00\x1e\x4c\x41\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x03lab\x04test\x00\x00\x01\x00\x01" >&3
    len=$(dd bs=1 count=2 <&3 2>/dev/null | hex)
    body=$(dd bs=1 count=$((16#$len)) <&3 2>/dev/null | hex)
    [[ "${body:0:4}" == 4c41 && "$body" == *7f00540a* ]]
  ' socks_dns_check "$1" "${2:-}" "${3:-}" "$PORT_BACKEND"
}

# lab_console LUA: run LUA on the dnsdist console of $STATE and print the
# answer. Lua errors come back from dnsdist as text with exit status 0; they
# are turned into a failure here (text on stderr, status 1).
lab_console() {
  local out
  out="$(timeout 10 dnsdist -C "$STATE/console.conf" -c -e "$1" 2>&1)" || {
    printf '%s\n' "$out" >&2; log "console command failed: $1"; return 1; }
  if grep -qiE '^(error|fatal|.*\[string ")' <<<"$out"; then
    printf '%s\n' "$out" >&2
    log "console command failed: $1"
    return 1
  fi
  [[ -z "$out" ]] || printf '%s\n' "$out"
}
