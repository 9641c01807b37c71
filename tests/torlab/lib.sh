# shellcheck shell=bash disable=SC2034
# Shared settings and helpers of the private Tor network scripts. Sourced, not run.
#
# The ports follow from TOR_LAB_PORT_BASE (default 9000), in the fixed layout
# tortest relies on when it looks for a free block:
#   BASE+10+i   ORPort of relay i
#   BASE+30+i   DirPort of relay i
#   BASE+70+i   ControlPort of relay i
#   BASE+150    client SocksPort
#   BASE+151    client ControlPort (cookie authentication)
#   BASE+152    client DNSPort (UDP)
#   BASE+153    the exits' only resolver (127.0.0.1), unless TOR_LAB_EXIT_DNS
#               names another
#   BASE+154    ControlPort of the onion-service host (only with
#               TOR_LAB_ONION_SERVICES)
# Everything binds to 127.0.0.1.

TORLAB_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PORT_BASE=${TOR_LAB_PORT_BASE:-9000}
[[ $PORT_BASE =~ ^[1-9][0-9]{0,4}$ ]] || { printf 'torlab: TOR_LAB_PORT_BASE must be a number, not %q\n' "$PORT_BASE" >&2; exit 1; }
OR_BASE=$((PORT_BASE + 10))
DIR_BASE=$((PORT_BASE + 30))
CTL_BASE=$((PORT_BASE + 70))
SOCKS_PORT=$((PORT_BASE + 150))
CLIENT_CTRL=$((PORT_BASE + 151))
DNS_PORT=$((PORT_BASE + 152))
ONION_CTRL=$((PORT_BASE + 154))
EXIT_DNS=${TOR_LAB_EXIT_DNS:-127.0.0.1:$((PORT_BASE + 153))}
TIMEOUT=${TOR_LAB_TIMEOUT:-120}
INFO_LOG=${TOR_LAB_INFO_LOG:-1}
N_MIDDLES=${TOR_LAB_MIDDLES:-1}
N_EXITS=${TOR_LAB_EXITS:-2}

die() { printf 'torlab: %s\n' "$*" >&2; exit 1; }
note() { printf 'tor-lab: %s\n' "$*"; }

# set_state STATE_DIR: absolute state directory in $STATE.
set_state() {
  [[ -n ${1:-} ]] || die "usage: $(basename "$0") STATE_DIR"
  mkdir -p "$1" || die "cannot create $1"
  STATE=$(cd "$1" && pwd)
}

# The relays: three authorities, then the middles, then the exits.
NODES=(auth0 auth1 auth2)
ROLES=(auth auth auth)
build_nodes() {
  local i
  [[ $N_MIDDLES =~ ^[0-9]+$ && $N_EXITS =~ ^[0-9]+$ ]] || die "TOR_LAB_MIDDLES and TOR_LAB_EXITS must be numbers"
  ((N_EXITS >= 1)) || die "TOR_LAB_EXITS must be at least 1"
  ((3 + N_MIDDLES + N_EXITS <= 20)) || die "at most 20 relays (3 authorities + TOR_LAB_MIDDLES + TOR_LAB_EXITS)"
  for ((i = 0; i < N_MIDDLES; i++)); do NODES+=("middle$i"); ROLES+=(middle); done
  for ((i = 0; i < N_EXITS; i++)); do NODES+=("exit$i"); ROLES+=(exit); done
}

# Onion services (TOR_LAB_ONION_SERVICES: one "NAME VIRTPORT TARGET" per line,
# TARGET a 127.x.y.z:PORT address) run on one more tor, the node "onion", a
# client that is no relay. parse_onions fills ONION_NAMES, ONION_PORTS and
# ONION_TARGETS.
ONION_NAMES=() ONION_PORTS=() ONION_TARGETS=()
parse_onions() {
  local line name vport target extra
  while IFS= read -r line; do
    [[ -n ${line//[[:space:]]/} ]] || continue
    read -r name vport target extra <<<"$line"
    [[ $name =~ ^[a-z][a-z0-9_]{0,31}$ && -z $extra ]] ||
      die "TOR_LAB_ONION_SERVICES: want \"NAME VIRTPORT 127.x.y.z:PORT\" with NAME [a-z][a-z0-9_]*, got '$line'"
    [[ " ${ONION_NAMES[*]} " != *" $name "* ]] || die "TOR_LAB_ONION_SERVICES: $name is given twice"
    check_port_value "onion service $name: virtual port" "$vport"
    [[ $target =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+$ ]] || die "onion service $name: target must be 127.x.y.z:PORT, not '$target'"
    check_port_value "onion service $name: target" "${target##*:}"
    ONION_NAMES+=("$name") ONION_PORTS+=("$vport") ONION_TARGETS+=("$target")
  done <<<"${TOR_LAB_ONION_SERVICES:-}"
}

# check_port_value NAME VALUE: a port number 1..65535.
check_port_value() {
  if [[ ! $2 =~ ^[1-9][0-9]{0,4}$ ]] || (($2 > 65535)); then die "$1: bad port '$2'"; fi
}

# running PID: the process exists and is not a zombie. tor daemonises, so
# its parent is init, which may reap an exited tor only a while later.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# node_pid NICK: the pid of that node's tor if it runs with this state dir's
# torrc (so a recycled pid is never taken for ours); fails otherwise.
node_pid() {
  local pid
  pid=$(cat "$STATE/nodes/$1/pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE/nodes/$1/torrc" || return 1
  echo "$pid"
}

# node_procs NICK: the pids of every running tor started as
# "tor -f STATE/nodes/NICK/torrc", found in /proc: also one whose pid file is
# missing or not written yet (a start interrupted right after the launch).
node_procs() {
  local f pid want="$STATE/nodes/$1/torrc" args
  for f in /proc/[0-9]*/cmdline; do
    mapfile -d '' -t args 2>/dev/null <"$f" || continue
    [[ ${args[1]:-} == -f && ${args[2]:-} == "$want" ]] || continue
    pid=${f#/proc/}; pid=${pid%/cmdline}
    running "$pid" && echo "$pid"
  done
  return 0
}

# wait_pid NICK: waits up to 10 s for the node's pid file (a daemonising tor
# writes it a moment after the launch command returns); prints the pid.
wait_pid() {
  local _
  for _ in $(seq 1 200); do
    node_pid "$1" && return 0
    sleep 0.05
  done
  return 1
}

# stop_pids PID...: SIGTERM (and SIGCONT), then SIGKILL after 10 s; returns
# once all have exited.
stop_pids() {
  local pid alive=("$@") still _
  ((${#alive[@]} > 0)) || return 0
  kill -TERM "${alive[@]}" 2>/dev/null
  # a paused (SIGSTOP) tor handles SIGTERM only once it runs again
  kill -CONT "${alive[@]}" 2>/dev/null
  for _ in $(seq 1 100); do
    still=()
    for pid in "${alive[@]}"; do running "$pid" && still+=("$pid"); done
    alive=("${still[@]}")
    ((${#alive[@]} == 0)) && return 0
    sleep 0.1
  done
  for pid in "${alive[@]}"; do
    echo "torlab: SIGKILL $pid" >&2
    kill -KILL "$pid" 2>/dev/null
  done
  for _ in $(seq 1 50); do
    still=()
    for pid in "${alive[@]}"; do running "$pid" && still+=("$pid"); done
    ((${#still[@]} == 0)) && return 0
    sleep 0.1
  done
  return 1
}

# dump_logs NICK...: the last lines of each node's notice log, on stderr.
dump_logs() {
  local n
  for n in "$@"; do
    echo "----- $n notice.log (last 25 lines) -----" >&2
    tail -n 25 "$STATE/nodes/$n/notice.log" >&2 2>/dev/null || echo "(none)" >&2
  done
}

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

# socks_probe PORT [HOST]: one SOCKS5 CONNECT without authentication through
# the client to 127.0.0.1:PORT (an IPv4 address), or to HOST:PORT (a host
# name, address type 3, such as an onion service's NAME.onion); prints the
# reply code (00 = succeeded), or "timeout"/"down". The target must not be a
# relay's ORPort or DirPort: the client refuses those ("the network would
# reject it", no Tor over Tor).
socks_probe() {
  # shellcheck disable=SC2016
  timeout 30 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || { echo down; exit 0; }
    printf "\x05\x01\x00" >&3
    m=$(dd bs=1 count=2 <&3 2>/dev/null | od -An -tx1 | tr -d " \n")
    [[ $m == 0500 ]] || { echo "method:$m"; exit 0; }
    port="\x$(printf %02x $(($2 >> 8)))\x$(printf %02x $(($2 & 255)))"
    if [[ -z $3 ]]; then
      printf "\x05\x01\x00\x01\x7f\x00\x00\x01$port" >&3
    else
      printf "\x05\x01\x00\x03\x$(printf %02x ${#3})%s$port" "$3" >&3
    fi
    r=$(dd bs=1 count=2 <&3 2>/dev/null | od -An -tx1 | tr -d " \n")
    echo "${r:2:2}"' socks_probe "$SOCKS_PORT" "$1" "${2:-}" 2>/dev/null || echo "timeout"
}
