#!/usr/bin/env bash
# start.sh STATE_DIR
#
# Builds and starts a tiny PRIVATE Tor network on 127.0.0.1 only:
#   auth0..auth2   directory authorities (also non-exit relays)
#   middle0..      plain non-exit relays (TOR_LAB_MIDDLES, default 1)
#   exit0..        exit relays whose ONLY accepted exit target is 127.0.0.0/8
#                  (TOR_LAB_EXITS, default 2)
#   client         Tor client: SocksPort, ControlPort (cookie), DNSPort
#   onion          only with TOR_LAB_ONION_SERVICES: a tor (no relay) that
#                  publishes those onion services
# waits until an authority publishes a consensus listing every relay, then
# starts the client (client.sh start --wait) and returns once it reports
# "Bootstrapped 100%" AND a real SOCKS5 CONNECT through an exit to a TCP
# service on 127.0.0.1 succeeds. TOR_LAB_CLIENT=0 starts the relays only.
# With TOR_LAB_ONION_SERVICES ("NAME VIRTPORT 127.x.y.z:PORT" lines) it also
# starts the node "onion" publishing them, and returns only once a SOCKS5
# CONNECT through the client to each NAME's .onion:VIRTPORT reaches its
# target, so the targets must accept TCP connections before start.sh runs.
# env gets TOR_LAB_ONIONS (the names) and TOR_LAB_ONION_<NAME>=<56 characters>.onion.
#
# Nothing talks to the public Tor network: no default authorities, no
# fallback directories, OutboundBindAddress 127.0.0.1, exits accept only
# 127.0.0.0/8 and resolve names only through TOR_LAB_EXIT_DNS (loopback).
#
# Ports and knobs: see lib.sh and README.md. TOR_LAB_TIMEOUT (s, default 120)
# bounds the whole start; on failure it prints the tails of the tor logs,
# stops what it started and exits 1. TOR_LAB_OWNER_PID: every tor exits by
# itself within ~15 s of that process dying. TOR_LAB_CLIENT_EXTRA /
# TOR_LAB_RELAY_EXTRA: extra torrc lines (newline-separated).
#
# Stop with: stop.sh STATE_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set_state "${1:-}"
build_nodes
parse_onions
[[ ${#ONION_NAMES[@]} == 0 || ${TOR_LAB_CLIENT:-1} != 0 ]] || die "TOR_LAB_ONION_SERVICES needs the client (TOR_LAB_CLIENT=0 given)"

TOR=$(command -v tor || true); GENCERT=$(command -v tor-gencert || true)
if [[ -z $TOR || -z $GENCERT ]]; then
  echo "torlab: tor/tor-gencert not found (apt-get install -y tor)" >&2; exit 2
fi
for t in ss awk od dd timeout; do
  command -v "$t" >/dev/null || { echo "torlab: $t not found" >&2; exit 2; }
done
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TOR_LAB_TIMEOUT must be a positive number of seconds"
[[ -z ${TOR_LAB_OWNER_PID:-} || ${TOR_LAB_OWNER_PID} =~ ^[1-9][0-9]*$ ]] || die "TOR_LAB_OWNER_PID must be a pid"
[[ $EXIT_DNS =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+$ ]] || die "TOR_LAB_EXIT_DNS must be a 127.x.y.z:PORT address, not '$EXIT_DNS'"
check_port_value TOR_LAB_EXIT_DNS "${EXIT_DNS##*:}"

# every port we bind (TCP; DNS_PORT is UDP), all different
ports=("$SOCKS_PORT" "$CLIENT_CTRL")
((${#ONION_NAMES[@]} == 0)) || ports+=("$ONION_CTRL")
for i in "${!NODES[@]}"; do ports+=($((OR_BASE + i)) $((DIR_BASE + i)) $((CTL_BASE + i))); done
seen=" "
for p in "${ports[@]}" "$DNS_PORT"; do
  check_port_value port "$p"
  [[ $seen != *" $p "* ]] || die "port $p is used twice (check TOR_LAB_PORT_BASE and TOR_LAB_EXIT_DNS)"
  seen+="$p "
done

# refuse to clobber a running network
shopt -s nullglob
for p in "$STATE"/nodes/*/pid; do
  n=$(basename "$(dirname "$p")")
  if pid=$(node_pid "$n"); then
    die "network in $STATE still running ($n, pid $pid); run stop.sh $STATE first"
  fi
done
shopt -u nullglob

# refuse if one of our ports is taken (fail loudly, not mysteriously)
busy=" $(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u | tr '\n' ' ') "
for p in "${ports[@]}"; do
  [[ $busy != *" $p "* ]] || die "TCP port $p already in use"
done
if ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ":$DNS_PORT\$"; then
  die "UDP port $DNS_PORT already in use"
fi

rm -rf "$STATE/nodes" "$STATE/env" "$STATE/client-times"
mkdir -p "$STATE/nodes"
T0=$(date +%s.%N)

# exits resolve hostnames only through a loopback resolver (never the system one)
printf 'nameserver %s\n' "$EXIT_DNS" >"$STATE/exit-resolv.conf"

# ---- 1. keys (in parallel) ----------------------------------------------------
# TOR_LAB_KEY_CACHE=DIR keeps each node's long-term keys in DIR/<nick>/ and
# reuses them (the authorities' RSA-3072 identity keys are the slowest part
# of a start on a busy machine). The authorities' signing keys and
# certificates are made afresh each time; the networks never meet, so
# sharing identities between runs or parallel networks is harmless.
KEY_CACHE=${TOR_LAB_KEY_CACHE:-}
genkeys() { # $1=index
  local i=$1 nick=${NODES[$1]} d="$STATE/nodes/${NODES[$1]}" c="" create=--create-identity-key
  mkdir -p "$d/keys"; chmod 700 "$d" "$d/keys"
  if [[ -n $KEY_CACHE && -s $KEY_CACHE/$nick/keys/secret_id_key ]] &&
    { [[ ${ROLES[$i]} != auth ]] || [[ -s $KEY_CACHE/$nick/authority_identity_key ]]; }; then
    c=$KEY_CACHE/$nick
    cp "$c"/keys/* "$d/keys/" || return 1
    if [[ ${ROLES[$i]} == auth ]]; then
      cp "$c/authority_identity_key" "$d/keys/" || return 1
      create=""
    fi
  fi
  if [[ ${ROLES[$i]} == auth ]]; then
    # shellcheck disable=SC2086
    echo "" | "$GENCERT" $create --passphrase-fd 0 -m 12 \
      -a "127.0.0.1:$((DIR_BASE + i))" \
      -i "$d/keys/authority_identity_key" -s "$d/keys/authority_signing_key" \
      -c "$d/keys/authority_certificate" >"$d/gencert.log" 2>&1 || return 1
  fi
  "$TOR" --ignore-missing-torrc -f /dev/null --quiet --list-fingerprint \
    --orport 1 --nickname "$nick" --datadirectory "$d" >"$d/fingerprint.log" 2>&1 || return 1
  if [[ -n $KEY_CACHE && -z $c && ! -e $KEY_CACHE/$nick ]]; then
    # fill the cache atomically; if another start filled it meanwhile, keep that
    mkdir -p "$KEY_CACHE" 2>/dev/null || return 0
    local tmp
    tmp=$(mktemp -d "$KEY_CACHE/.$nick.XXXXXX") || return 0
    mkdir "$tmp/keys"
    cp "$d"/keys/secret_id_key "$d"/keys/secret_onion_key* "$d"/keys/ed25519_* "$tmp/keys/" 2>/dev/null
    [[ ${ROLES[$i]} != auth ]] || cp "$d/keys/authority_identity_key" "$tmp/"
    mv -T "$tmp" "$KEY_CACHE/$nick" 2>/dev/null || rm -rf "$tmp"
  fi
  return 0
}
kpids=()
for i in "${!NODES[@]}"; do genkeys "$i" & kpids+=($!); done
for i in "${!kpids[@]}"; do
  wait "${kpids[$i]}" || { cat "$STATE/nodes/${NODES[$i]}"/*.log >&2; die "key generation failed for ${NODES[$i]}"; }
done
dirauth_lines=""
for i in "${!NODES[@]}"; do
  nick=${NODES[$i]}; d="$STATE/nodes/$nick"
  rsa=$(awk '{print $2}' "$d/fingerprint")
  if [[ ${ROLES[$i]} == auth ]]; then
    v3=$(awk '/^fingerprint /{print $2}' "$d/keys/authority_certificate")
    dirauth_lines+="DirAuthority $nick orport=$((OR_BASE + i)) no-v2 v3ident=$v3 127.0.0.1:$((DIR_BASE + i)) $rsa"$'\n'
  fi
done
T_KEYS=$(date +%s.%N)

# ---- 2. torrc files -------------------------------------------------------------
common() { # $1=nick $2=dir $3=controlport
  cat <<CONF
TestingTorNetwork 1
DataDirectory $2
PidFile $2/pid
Nickname $1
RunAsDaemon 1
Log notice file $2/notice.log
$([[ $INFO_LOG == 1 ]] && echo "Log info file $2/info.log" || true)
SafeLogging 0
LogTimeGranularity 1
ProtocolWarnings 1
ShutdownWaitLength 0
DisableDebuggerAttachment 0
ControlPort 127.0.0.1:$3
CookieAuthentication 1
$([[ -n ${TOR_LAB_OWNER_PID:-} ]] && echo "__OwningControllerProcess $TOR_LAB_OWNER_PID" || true)
# --- keep everything on loopback ---
UseDefaultFallbackDirs 0
OutboundBindAddress 127.0.0.1
ClientUseIPv6 0
# --- fast test-network behaviour (as chutney does) ---
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
$dirauth_lines
CONF
}

for i in "${!NODES[@]}"; do
  nick=${NODES[$i]}; d="$STATE/nodes/$nick"
  {
    common "$nick" "$d" $((CTL_BASE + i))
    cat <<CONF
SocksPort 0
Address 127.0.0.1
ORPort 127.0.0.1:$((OR_BASE + i))
DirPort 127.0.0.1:$((DIR_BASE + i))
ContactInfo $nick@lab.invalid
CONF
    case ${ROLES[$i]} in
      auth)
        cat <<CONF
ExitRelay 0
ExitPolicy reject *:*
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 5
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
CONF
        ;;
      middle)
        printf 'ExitRelay 0\nExitPolicy reject *:*\n' ;;
      exit)
        cat <<CONF
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
IPv6Exit 0
ExitPolicy reject *6:*
ExitPolicy accept 127.0.0.0/8:*
# Every other IPv4 address is rejected by the two /1 rules below. The final
# "accept *:*" is then unreachable for IPv4, but it makes the published policy
# "probably accept" a destination whose address is still unknown, which a tor
# client requires before it sends a HOSTNAME (e.g. "localhost") to an exit;
# with a plain "reject *:*" it answers SOCKS 0x01 and logs
# "No Tor server allows exit to localhost:PORT. Rejecting."
ExitPolicy reject 0.0.0.0/1:*
ExitPolicy reject 128.0.0.0/1:*
ExitPolicy accept *:*
# An exit refuses a stream whose previous hop is a relay missing from its own
# consensus ("Attempt by ... to open a stream from unknown relay"; the client
# sees END 'misc error' and finally SOCKS 0x01). Early in a run, or on a busy
# machine, an exit's consensus may lag behind and lack some relays.
RefuseUnknownExits 0
ServerDNSResolvConfFile $STATE/exit-resolv.conf
ServerDNSDetectHijacking 0
ServerDNSRandomizeCase 0
CONF
        ;;
    esac
    printf '%s\n' "${TOR_LAB_RELAY_EXTRA:-}"
  } >"$d/torrc"
done

cdir=$STATE/nodes/client; mkdir -p "$cdir"; chmod 700 "$cdir"
{
  common client "$cdir" "$CLIENT_CTRL"
  cat <<CONF
# IsolateSOCKSAuth is a default flag; written out because tests rely on it:
# every SOCKS username/password pair gets its own circuits.
SocksPort 127.0.0.1:$SOCKS_PORT IsolateSOCKSAuth
DNSPort 127.0.0.1:$DNS_PORT
# full descriptors: the microdescriptor exit-policy summary ignores 127/8 and
# would make the client believe no exit accepts 127.0.0.1 (tor #11264)
UseMicrodescriptors 0
# relays republish their descriptor whenever their observed bandwidth doubles;
# until the client has the new descriptors it believes "the current consensus
# has no exit nodes" and stalls NEW circuits. Fetch directory info from the
# authorities as early and as often as possible:
FetchDirInfoEarly 1
FetchDirInfoExtraEarly 1
FetchUselessDescriptors 1
TestingClientMaxIntervalWithoutRequest 1 seconds
# one notice line per SOCKS request saying whether it carried a hostname or an IP
TestSocks 1
CONF
  printf '%s\n' "${TOR_LAB_CLIENT_EXTRA:-}"
} >"$cdir/torrc"

if ((${#ONION_NAMES[@]})); then
  odir=$STATE/nodes/onion; mkdir -p "$odir"; chmod 700 "$odir"
  {
    common onion "$odir" "$ONION_CTRL"
    echo "SocksPort 0"
    # start.sh reads the descriptor uploads from the info log
    [[ $INFO_LOG == 1 ]] || echo "Log info file $odir/info.log"
    for i in "${!ONION_NAMES[@]}"; do
      echo "HiddenServiceDir $odir/hs-${ONION_NAMES[$i]}"
      echo "HiddenServicePort ${ONION_PORTS[$i]} ${ONION_TARGETS[$i]}"
    done
  } >"$odir/torrc"
fi

relay_ports=""
for i in "${!NODES[@]}"; do relay_ports+="$((OR_BASE + i)) $((DIR_BASE + i)) "; done
cat >"$STATE/env" <<CONF
TOR_LAB_SOCKS=127.0.0.1:$SOCKS_PORT
TOR_LAB_CONTROL=127.0.0.1:$CLIENT_CTRL
TOR_LAB_CONTROL_COOKIE=$cdir/control_auth_cookie
TOR_LAB_DNSPORT=127.0.0.1:$DNS_PORT
TOR_LAB_EXIT_DNS=$EXIT_DNS
TOR_LAB_RELAYS=${NODES[*]}
TOR_LAB_RELAY_PORTS=${relay_ports% }
TOR_LAB_TIMEOUT=$TIMEOUT
CONF

# ---- 3. launch the relays -----------------------------------------------------
fail() {
  echo "torlab: start.sh: FAILED: $*" >&2
  dump_logs "${NODES[@]}" client ${ONION_NAMES[0]:+onion}
  "$TORLAB_SCRIPTS/stop.sh" "$STATE" >&2 || true
  exit 1
}
trap 'fail "interrupted"' INT TERM
launch() {
  "$TOR" -f "$STATE/nodes/$1/torrc" >"$STATE/nodes/$1/launch.log" 2>&1 \
    || { cat "$STATE/nodes/$1/launch.log" >&2; fail "tor $1 did not start"; }
  wait_pid "$1" >/dev/null || fail "tor $1 wrote no pid file"
}
check_alive() {
  local n
  for n in "$@"; do
    [[ -f $STATE/nodes/$n/pid ]] || continue
    node_pid "$n" >/dev/null || fail "tor $n died"
  done
}

# Align the launch with the authorities' 5 s initial voting schedule: they vote
# at second 3 (mod 5) and publish at second 0; relays upload their descriptors
# ~1.5 s after launch. Launching just after second 0 lets the first consensus
# list every relay; otherwise the first one may lack them and the next comes
# only one full V3AuthVotingInterval (10 s) later.
ms=$(($(date +%s%3N) % 5000))
sleep "$(awk -v ms="$ms" 'BEGIN{d=(5100-ms)%5000; printf "%.3f", d/1000}')"

T_LAUNCH=$(date +%s.%N)
deadline=$(($(date +%s) + TIMEOUT - $(awk -v a="$T0" -v b="$T_LAUNCH" 'BEGIN{printf "%d", b-a}')))
for n in "${NODES[@]}"; do launch "$n"; done

# Start the client only once an authority has published a consensus that lists
# all relays: a client that first gets 404s backs off, and one that gets an
# early consensus without the exits waits ~10 s for the next one.
full_consensus() {
  local f
  for f in "$STATE"/nodes/auth*/cached-consensus; do
    [[ -f $f ]] || continue
    (($(grep -c '^r ' "$f") >= ${#NODES[@]})) && return 0
  done
  return 1
}
until full_consensus; do
  (($(date +%s) < deadline)) || fail "no consensus listing all ${#NODES[@]} relays after ${TIMEOUT}s"
  check_alive "${NODES[@]}"
  sleep 0.2
done
T_CONS=$(elapsed "$T_LAUNCH")

pids=$(for n in "${NODES[@]}"; do printf '%s=%s ' "$n" "$(cat "$STATE/nodes/$n/pid")"; done)
printf 'TOR_LAB_CONSENSUS_S=%s\n' "$T_CONS" >>"$STATE/env"
note "keys+configs $(awk -v a="$T0" -v b="$T_KEYS" 'BEGIN{printf "%.1f", b-a}')s," \
  "wait for the vote-aligned launch $(awk -v a="$T_KEYS" -v b="$T_LAUNCH" 'BEGIN{printf "%.1f", b-a}')s"
note "consensus listing all ${#NODES[@]} relays published ${T_CONS}s after launch"
note "relay pids: $pids"

# ---- 4. the onion-service host (launched first: it needs longer) and the client --
if ((${#ONION_NAMES[@]})); then
  T_ONION=$(date +%s.%N)
  launch onion
  onion_names=""
  for name in "${ONION_NAMES[@]}"; do
    f=$STATE/nodes/onion/hs-$name/hostname
    until [[ -s $f ]]; do
      (($(date +%s) < deadline)) || fail "tor onion wrote no $f"
      check_alive onion
      sleep 0.05
    done
    host=$(<"$f")
    [[ $host =~ ^[a-z2-7]{56}\.onion$ ]] || fail "$f holds '$host', not a v3 onion address"
    printf 'TOR_LAB_ONION_%s=%s\n' "$name" "$host" >>"$STATE/env"
    onion_names+="$name "
  done
  printf 'TOR_LAB_ONIONS=%s\n' "${onion_names% }" >>"$STATE/env"
fi
if [[ ${TOR_LAB_CLIENT:-1} != 0 ]]; then
  left=$((deadline - $(date +%s)))
  ((left > 0)) || fail "no time left to start the client"
  trap - INT TERM
  if ! TOR_LAB_TIMEOUT=$left "$TORLAB_SCRIPTS/client.sh" start --wait "$STATE"; then
    fail "client did not become usable"
  fi
  # shellcheck disable=SC1091
  source "$STATE/client-times"
  T_BOOT=$(awk -v a="$T_LAUNCH" -v b="$CLIENT_T_BOOT" 'BEGIN{printf "%.2f", b-a}')
  T_READY=$(awk -v a="$T_LAUNCH" -v b="$CLIENT_T_READY" 'BEGIN{printf "%.2f", b-a}')
  printf 'TOR_LAB_BOOTSTRAP_S=%s\nTOR_LAB_READY_S=%s\n' "$T_BOOT" "$T_READY" >>"$STATE/env"
  note "client Bootstrapped 100% ${T_BOOT}s after the relays' launch; first SOCKS CONNECT through an exit worked after ${T_READY}s"
fi

# ---- 5. onion services reachable through the client ---------------------------------
# The client asks the HSDirs for a descriptor; those that have none it asks
# again only 5 s later (in a test network). So first wait until the host has
# uploaded as many descriptors as it has services (info log), then CONNECT to
# each until one succeeds (reply 00). A target that refuses gives 01, the
# same as an onion service not yet reachable: the targets must listen.
if ((${#ONION_NAMES[@]})); then
  olog=$STATE/nodes/onion/info.log
  uploads() {
    local n
    n=$(grep -cE 'Uploaded hidden service descriptor \(status 200|Uploading hidden service descriptor: finished with status 200' "$olog" 2>/dev/null) || true
    echo "${n:-0}"
  }
  until (($(uploads) >= ${#ONION_NAMES[@]})); do
    (($(date +%s) < deadline)) || fail "onion services: no descriptor uploads in $olog"
    check_alive onion client
    sleep 0.2
  done
  T_UPLOAD=$(elapsed "$T_ONION")
  tries=0
  for i in "${!ONION_NAMES[@]}"; do
    host=$(<"$STATE/nodes/onion/hs-${ONION_NAMES[$i]}/hostname")
    while :; do
      tries=$((tries + 1))
      code=$(socks_probe "${ONION_PORTS[$i]}" "$host")
      [[ $code == 00 ]] && break
      (($(date +%s) < deadline)) || fail "onion service ${ONION_NAMES[$i]} ($host:${ONION_PORTS[$i]} -> ${ONION_TARGETS[$i]}) not reachable (last reply: $code; does the target listen?)"
      check_alive onion client
      sleep 0.5
    done
  done
  T_ONION_READY=$(elapsed "$T_ONION")
  printf 'TOR_LAB_ONION_UPLOAD_S=%s\nTOR_LAB_ONION_READY_S=%s\n' "$T_UPLOAD" "$T_ONION_READY" >>"$STATE/env"
  note "onion services ${ONION_NAMES[*]}: descriptors uploaded ${T_UPLOAD}s after the host's launch;" \
    "reachable through the client after ${T_ONION_READY}s ($tries CONNECTs)"
fi

if ss -Hlun 2>/dev/null | awk '{print $4}' | grep -qxF "$EXIT_DNS"; then
  note "exit relays resolve hostnames via $EXIT_DNS (something is listening there)"
else
  note "NOTE nothing listens on $EXIT_DNS/udp: hostname CONNECTs and DNSPort queries will fail" \
    "(start a resolver there BEFORE start.sh; the exits' resolver backs off once it has failed)"
fi
note "total start.sh $(elapsed "$T0")s; env file: $STATE/env"
