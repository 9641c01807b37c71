#!/usr/bin/env bash
# Load test: dnsperf through dnscrypt-proxy in front of dnsdist's DNSCrypt
# listeners, and, in the same run, through dnsdist's plain DNS port as the
# baseline. Prints for each run: qps, queries lost, the CPU time per query
# of the process under test (utime+stime from /proc/PID/stat over the
# queries answered: dnsdist for the baseline rows, the proxy otherwise) and
# the proxy's peak RSS (VmHWM).
#
# Rows:
#   dnsdist plain                 the baseline, as fast as it goes
#   dnsdist plain at N qps        dnsdist again, held to the proxy's rate
#                                 through dnsdist es1: CPU per query grows as
#                                 the rate falls (each query then costs thread
#                                 wake-ups), so compare the proxy with this row
#   proxy -> dnsdist es1/es2      the real path; dnsdist's DNSCrypt (an X25519
#                                 operation per query) limits the rate
#   proxy -> fast resolver        the proxy kept busy: tests/bench/fastresolver,
#                                 a DNSCrypt resolver that caches shared keys
#   proxy -> set of 3 fast        three fast resolvers as one set (--stamp x3):
#                                 the set's cost per query beside the row above
#   unbound plain TCP             unbound's own cost, dnsperf -m tcp
#   proxy -> unbound TCP/DoT/DoH  the other upstream kinds, one persistent
#                                 connection each, to the lab's unbound
#   stubby -> unbound DoT         stubby (getdns) in the proxy's place, for DoT
#
# Usage: tests/bench/load.sh [-l SECONDS] [-Q QPS] [-q OUTSTANDING] [-e] [--quick]
#   -l   duration of each dnsperf run (default 20)
#   -Q   rate limit (default: none, as fast as the proxy answers)
#   -q   queries outstanding (default 100; the proxy's cap is 250)
#   -e   EDNS0 in the queries (dnsperf -e: 4096 bytes), so large answers
#        come back whole over UDP instead of truncated
#   --quick  3-second runs (CI checks the script works; numbers are noisy)
# Exits 1 if a run through the proxy answers no query or loses more than 1%
# of them. Needs the lab's programs (tests/lab/install.sh) and Go. Runs on
# 127.0.0.1 only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"

secs=20 qps="" outstanding=100 edns=()
while (($#)); do
  case "$1" in
    -l) secs="$2"; shift ;;
    -Q) qps="$2"; shift ;;
    -q) outstanding="$2"; shift ;;
    -e) edns=(-e) ;;
    --quick) secs=3 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "load.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
for bin in dnsperf dnsdist go; do
  command -v "$bin" >/dev/null || { echo "load.sh: $bin not found (tests/lab/install.sh)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/dnscrypt-load.XXXXXX)"
proxy_pid=""
fast_pid=""
# Under set -e a failing command would end the trap early (wait returns 143
# for a process ended by SIGTERM), leaving the lab running: nothing here may
# fail.
cleanup() {
  local p
  for p in "$proxy_pid" $fast_pid; do
    [[ -n "$p" ]] || continue
    { kill "$p" && wait "$p"; } 2>/dev/null || true
  done
  "$root/tests/lab/stop.sh" "$work/lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=ports.sh
. "$here/ports.sh"
lab_ports

echo "building dnscrypt-proxy" >&2
(cd "$root" && go build -o "$work/dnscrypt-proxy" ./cmd/dnscrypt-proxy &&
  go build -o "$work/fastresolver" ./tests/bench/fastresolver)
echo "starting the lab" >&2
# LAB_OWNER_PID: the lab's watchdog stops it should this script be killed
# before its trap runs.
LAB_GO_SERVER=0 LAB_OWNER_PID=$$ "$root/tests/lab/start.sh" "$work/lab" >/dev/null
# shellcheck disable=SC1091
. "$work/lab/lab.env"

queries="$root/tests/lab/queries.txt"
perf() { # perf PORT -> dnsperf output
  local args=(-s 127.0.0.1 -p "$1" -d "$queries" -l "$secs" -q "$outstanding" -c 4 -T 2 "${edns[@]}")
  [[ -n "$qps" ]] && args+=(-Q "$qps")
  dnsperf "${args[@]}" 2>&1
}
field() { # field OUTPUT PATTERN -> first number after PATTERN
  sed -n "s/.*$2[^0-9]*\([0-9.]*\).*/\1/p" <<<"$1" | head -1
}
cpu_ticks() { # utime + stime of PID, in clock ticks
  awk '{ sub(/^[^)]*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

hz=$(getconf CLK_TCK)
row() { # row NAME OUTPUT TICKS RSS
  local done_q us
  done_q=$(field "$2" 'Queries completed:')
  us=$(awk -v t="$3" -v hz="$hz" -v n="$done_q" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
  printf '%-38s %9.0f %6s %9s %9s %10s\n' "$1" "$(field "$2" 'Queries per second:')" \
    "$(field "$2" 'Queries lost:')" "$done_q" "$us" "$4"
}
# measure PID PORT [dnsperf args...] -> dnsperf output, CPU ticks of PID in $ticks
measure() {
  local pid=$1 port=$2 t0 t1
  shift 2
  t0=$(cpu_ticks "$pid")
  out=$(perf "$port" "$@")
  t1=$(cpu_ticks "$pid")
  ticks=$((t1 - t0))
}
# run_proxy NAME ADDR PROVIDER-NAME KEY: start the proxy, warm up, measure
run_proxy() {
  run_proxy_args "$1" --resolver-address="$2" --provider-name="$3" --provider-key="$4"
}
# run_proxy_args NAME ARGS...: the same with the resolver options ARGS
run_proxy_args() {
  local name=$1
  shift
  "$work/dnscrypt-proxy" --local-address="127.0.0.1:$proxy_port" "$@" \
    --loglevel=5 >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 100); do
    grep -q "Proxying from" "$work/proxy.log" && break
    kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy.log" >&2; exit 1; }
    sleep 0.1
  done
  perf "$proxy_port" >/dev/null # warm-up: certificate, padding cap, buffers
  measure "$proxy_pid" "$proxy_port"
  row "proxy -> $name" "$out" "$ticks" "$(awk '/VmHWM/ { print $2 " " $3 }' "/proc/$proxy_pid/status")"
  { kill "$proxy_pid" && wait "$proxy_pid"; } 2>/dev/null || true
  proxy_pid=""
  check "proxy -> $name" "$out"
}
# check NAME OUTPUT: fail unless queries were answered and at most 1% lost.
check() {
  local sent lost done_q
  sent=$(field "$2" 'Queries sent:') lost=$(field "$2" 'Queries lost:') done_q=$(field "$2" 'Queries completed:')
  if [[ -z "$done_q" || "$done_q" == 0 ]] || awk -v l="${lost:-0}" -v s="${sent:-0}" 'BEGIN { exit !(s == 0 || l * 100 > s) }'; then
    echo "load.sh: $1: ${done_q:-no} queries answered, ${lost:-?} of ${sent:-?} lost (more than 1%)" >&2
    echo "$2" >&2
    cat "$work/proxy.log" >&2
    exit 1
  fi
}

dnsdist_pid=$(cat "$work/lab/pids/dnsdist.pid" | cut -d' ' -f1)
printf '%-38s %9s %6s %9s %9s %10s\n' "run" "qps" "lost" "answered" "CPU us/q" "peak RSS"
measure "$dnsdist_pid" "${LAB_PLAIN##*:}"
row "dnsdist plain DNS (baseline)" "$out" "$ticks" "-"
run_proxy "dnsdist es1 (XSalsa20)" "$LAB_RESOLVER_ADDRESS" "$LAB_PROVIDER_NAME" "$LAB_PROVIDER_KEY"
es1_qps=$(field "$out" 'Queries per second:')
run_proxy "dnsdist es2 (XChaCha20)" "$LAB_RESOLVER_ADDRESS_XCHACHA" "$LAB_PROVIDER_NAME" "$LAB_PROVIDER_KEY"
rate=$(printf '%.0f' "$es1_qps")
if ((rate > 0)) && [[ -z "$qps" ]]; then
  qps=$rate measure "$dnsdist_pid" "${LAB_PLAIN##*:}"
  row "dnsdist plain DNS at $rate qps" "$out" "$ticks" "-"
fi
# start_fast ES N: N fast resolvers; their stamps in fast_stamps, the first's
# address, provider name and key in faddr fname fkey
start_fast() {
  local i
  fast_stamps=()
  for i in $(seq "$2"); do
    "$work/fastresolver" "$1" >"$work/fast$i.out" &
    fast_pid="$fast_pid $!"
    for _ in $(seq 50); do [[ -s "$work/fast$i.out" ]] && break; sleep 0.1; done
    read -r faddr fname fkey fstamp <"$work/fast$i.out"
    fast_stamps+=("--stamp=$fstamp")
  done
  read -r faddr fname fkey _ <"$work/fast1.out"
}
stop_fast() {
  local p
  for p in $fast_pid; do { kill "$p" && wait "$p"; } 2>/dev/null || true; done
  fast_pid=""
}
for es in es1 es2; do
  start_fast "$es" 3
  run_proxy "fast resolver $es" "$faddr" "$fname" "$fkey"
  if [[ "$es" == es1 ]]; then
    run_proxy_args "set of 3 fast resolvers $es" "${fast_stamps[@]}"
  fi
  stop_fast
done

# The other kinds, to unbound; unbound's own cost over TCP first.
unbound_pid=$(cut -d' ' -f1 "$work/lab/pids/unbound.pid")
measure "$unbound_pid" "${LAB_BACKEND##*:}" -m tcp
row "unbound plain TCP (dnsperf -m tcp)" "$out" "$ticks" "-"
run_proxy_args "unbound plain TCP" --resolver-address="tcp://$LAB_BACKEND" --private-domain=lab.test
run_proxy_args "unbound DoT" --stamp="$LAB_STAMP_BACKEND_DOT" --private-domain=lab.test
run_proxy_args "unbound DoH" --stamp="$LAB_STAMP_BACKEND_DOH" --private-domain=lab.test
stubby_port=$proxy_port
"$root/tests/lab/stubby.sh" -s "$work/lab" start "$stubby_port" backend >/dev/null
stubby_pid=$(cut -d' ' -f1 "$work/lab/pids/stubby-$stubby_port.pid")
perf "$stubby_port" >/dev/null # warm-up
measure "$stubby_pid" "$stubby_port"
row "stubby -> unbound DoT" "$out" "$ticks" "$(awk '/VmHWM/ { print $2 " " $3 }' "/proc/$stubby_pid/status")"
"$root/tests/lab/stubby.sh" -s "$work/lab" stop "$stubby_port" >/dev/null
