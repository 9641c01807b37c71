#!/usr/bin/env bash
# Overload run: dnsperf floods the proxy (in front of dnsdist's DNSCrypt
# listener, which caps the real path near 7k qps) with far more queries in
# flight than it may hold, then stops; a TCP client then asks until it is
# answered. Prints for each --max-active-requests value: queries sent, lost
# (no answer at all), SERVFAIL, the peak of the proxy's TCP connections to
# dnsdist (sampled every 50 ms with ss), the proxy's peak RSS (VmHWM), and
# how long after the load stopped a TCP client was answered again.
#
# Usage: tests/bench/overload.sh [-l SECONDS] [-c CLIENTS] [-q OUTSTANDING]
#                                [-b BINARY] [-n MAX]...
#   -l   duration of the dnsperf run (default 20)
#   -c   dnsperf clients (default 20)
#   -q   dnsperf queries outstanding (default 2000)
#   -b   the dnscrypt-proxy binary (default: built from this checkout)
#   -n   a --max-active-requests value to run with (repeatable; default:
#        the proxy's default, then 2000)
#   --quick  3-second runs, default -n only (CI checks the script works)
# Needs the lab's programs (tests/lab/install.sh), dig and Go. Runs on
# 127.0.0.1 only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"

secs=20 clients=20 outstanding=2000 bin="" limits=()
while (($#)); do
  case "$1" in
    -l) secs="$2"; shift ;;
    -c) clients="$2"; shift ;;
    -q) outstanding="$2"; shift ;;
    -b) bin="$2"; shift ;;
    -n) limits+=("$2"); shift ;;
    --quick) secs=3 limits=(default) ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "overload.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
((${#limits[@]})) || limits=(default 2000)
for b in dnsperf dnsdist dig ss go; do
  command -v "$b" >/dev/null || { echo "overload.sh: $b not found (tests/lab/install.sh)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/dnscrypt-overload.XXXXXX)"
proxy_pid="" sampler_pid=""
cleanup() {
  local p
  for p in "$sampler_pid" "$proxy_pid"; do
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

if [[ -z "$bin" ]]; then
  echo "building dnscrypt-proxy" >&2
  (cd "$root" && go build -o "$work/dnscrypt-proxy" ./cmd/dnscrypt-proxy)
  bin="$work/dnscrypt-proxy"
fi
echo "starting the lab" >&2
LAB_GO_SERVER=0 LAB_OWNER_PID=$$ "$root/tests/lab/start.sh" "$work/lab" >/dev/null
# shellcheck disable=SC1091
. "$work/lab/lab.env"
dnsdist_port=${LAB_RESOLVER_ADDRESS##*:}

field() { # field OUTPUT PATTERN -> first number after PATTERN
  sed -n "s/.*$2[^0-9]*\([0-9.]*\).*/\1/p" <<<"$1" | head -1
}
now_ms() { echo $((${EPOCHREALTIME/[.,]/} / 1000)); }

printf '%-10s %8s %7s %9s %12s %10s %14s\n' "-n" "sent" "lost" "SERVFAIL" "peak up TCP" "peak RSS" "TCP back after"
for n in "${limits[@]}"; do
  args=(--local-address="127.0.0.1:$proxy_port" --resolver-address="$LAB_RESOLVER_ADDRESS"
    --provider-name="$LAB_PROVIDER_NAME" --provider-key="$LAB_PROVIDER_KEY" --loglevel=4)
  [[ "$n" == default ]] || args+=(--max-active-requests="$n")
  "$bin" "${args[@]}" >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 100); do
    [[ "$(dig +short +tcp +time=1 +tries=1 -p "$proxy_port" @127.0.0.1 www.lab.test A 2>/dev/null)" == 127.0.84.10 ]] && break
    kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy.log" >&2; exit 1; }
    sleep 0.1
  done
  # Peak of the proxy's TCP connections to dnsdist.
  (
    peak=0
    while kill -0 "$proxy_pid" 2>/dev/null; do
      c=$(ss -Htn state established "dst 127.0.0.1:$dnsdist_port" 2>/dev/null | wc -l)
      ((c > peak)) && { peak=$c; echo "$peak" >"$work/peak"; }
      sleep 0.05
    done
  ) &
  sampler_pid=$!
  echo 0 >"$work/peak"
  out=$(dnsperf -s 127.0.0.1 -p "$proxy_port" -d "$root/tests/lab/queries.txt" -l "$secs" \
    -c "$clients" -q "$outstanding" -t 15 2>&1)
  stopped=$(now_ms)
  back="never"
  for _ in $(seq 300); do
    if [[ "$(dig +short +tcp +time=1 +tries=1 -p "$proxy_port" @127.0.0.1 www.lab.test A 2>/dev/null)" == 127.0.84.10 ]]; then
      back="$(($(now_ms) - stopped)) ms"
      break
    fi
    sleep 0.05
  done
  rss=$(awk '/VmHWM/ { print $2 " " $3 }' "/proc/$proxy_pid/status")
  { kill "$sampler_pid" && wait "$sampler_pid"; } 2>/dev/null || true
  sampler_pid=""
  { kill "$proxy_pid" && wait "$proxy_pid"; } 2>/dev/null || true
  proxy_pid=""
  servfail=$(sed -n 's/.*SERVFAIL \([0-9]*\).*/\1/p' <<<"$out" | head -1)
  printf '%-10s %8s %7s %9s %12s %10s %14s\n' "$n" "$(field "$out" 'Queries sent:')" \
    "$(field "$out" 'Queries lost:')" "${servfail:-0}" "$(cat "$work/peak")" "$rss" "$back"
  [[ "$back" != never ]] || { echo "overload.sh: TCP clients not served again after the load" >&2; cat "$work/proxy.log" >&2; exit 1; }
done
