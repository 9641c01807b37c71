#!/usr/bin/env bash
# Load test: dnsperf through dnscrypt-proxy in front of dnsdist's DNSCrypt
# listeners, and, in the same run, through dnsdist's plain DNS port as the
# baseline. Prints for each run: qps, queries lost, the proxy's CPU time per
# query (utime+stime from /proc/PID/stat over the queries answered) and its
# peak RSS (VmHWM).
#
# Usage: tests/bench/load.sh [-l SECONDS] [-Q QPS] [-q OUTSTANDING] [-e] [--quick]
#   -l   duration of each dnsperf run (default 20)
#   -Q   rate limit (default: none, as fast as the proxy answers)
#   -q   queries outstanding (default 100; the proxy's cap is 250)
#   -e   EDNS0 in the queries (dnsperf -e: 4096 bytes), so large answers
#        come back whole over UDP instead of truncated
#   --quick  3-second runs (CI checks the script works; numbers are noisy)
# Needs the lab's programs (tests/lab/install.sh) and Go. Runs on 127.0.0.1 only.
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
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "load.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
for bin in dnsperf dnsdist go; do
  command -v "$bin" >/dev/null || { echo "load.sh: $bin not found (tests/lab/install.sh)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/dnscrypt-load.XXXXXX)"
proxy_pid=""
cleanup() {
  [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  "$root/tests/lab/stop.sh" "$work/lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Free ports for the lab (it takes them from the environment) and the proxy.
read -r -a ports < <(python3 - <<'PY'
import socket
socks, out = [], []
while len(out) < 10:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close(); continue
    socks += [t, u]; out.append(p)
print(*out)
PY
)
export LAB_PORT_XSALSA=${ports[0]} LAB_PORT_XCHACHA=${ports[1]} LAB_PORT_MIXED=${ports[2]} \
  LAB_PORT_GO=${ports[3]} LAB_PORT_SOCKS=${ports[4]} LAB_PORT_SOCKS_AUTH=${ports[5]} \
  LAB_PORT_CONSOLE=${ports[6]} LAB_PORT_BACKEND=${ports[7]} LAB_PORT_PLAIN=${ports[8]}
proxy_port=${ports[9]}

echo "building dnscrypt-proxy" >&2
(cd "$root" && go build -o "$work/dnscrypt-proxy" ./cmd/dnscrypt-proxy)
echo "starting the lab" >&2
LAB_GO_SERVER=0 "$root/tests/lab/start.sh" "$work/lab" >/dev/null
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

printf '%-34s %9s %8s %8s %12s %10s\n' "run" "qps" "lost" "answered" "CPU us/query" "peak RSS"
base=$(perf "${LAB_PLAIN##*:}")
printf '%-34s %9s %8s %8s %12s %10s\n' "dnsdist plain DNS (baseline)" \
  "$(field "$base" 'Queries per second:')" "$(field "$base" 'Queries lost:')" \
  "$(field "$base" 'Queries completed:')" "-" "-"

hz=$(getconf CLK_TCK)
for target in "es1 (XSalsa20)|$LAB_RESOLVER_ADDRESS" "es2 (XChaCha20)|$LAB_RESOLVER_ADDRESS_XCHACHA"; do
  name="${target%%|*}" addr="${target##*|}"
  "$work/dnscrypt-proxy" --local-address="127.0.0.1:$proxy_port" --resolver-address="$addr" \
    --provider-name="$LAB_PROVIDER_NAME" --provider-key="$LAB_PROVIDER_KEY" --loglevel=5 \
    >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 100); do
    grep -q "Proxying from" "$work/proxy.log" && break
    kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy.log" >&2; exit 1; }
    sleep 0.1
  done
  perf "$proxy_port" >/dev/null # warm-up: certificate, padding cap, buffers
  t0=$(cpu_ticks "$proxy_pid")
  out=$(perf "$proxy_port")
  t1=$(cpu_ticks "$proxy_pid")
  done_q=$(field "$out" 'Queries completed:')
  rss=$(awk '/VmHWM/ { print $2 " " $3 }' "/proc/$proxy_pid/status")
  us=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$done_q" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }')
  printf '%-34s %9s %8s %8s %12s %10s\n' "proxy -> dnsdist $name" \
    "$(field "$out" 'Queries per second:')" "$(field "$out" 'Queries lost:')" "$done_q" "$us" "$rss"
  kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""
done
