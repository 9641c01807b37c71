#!/usr/bin/env bash
# Install what the lab needs. Idempotent: when everything is already there it
# does nothing and returns in well under a second.
#
#  1. Debian packages (apt; needs root). Package scripts may not start daemons
#     while we install (a temporary policy-rc.d), so nothing grabs port 53 or
#     9050.
#  2. staticcheck (pinned), for tests/run.sh, into tests/.bin/tools (or
#     $LAB_TOOLS_BIN) unless that version is there. Skipped with LAB_SKIP_GO=1.
#  3. The second DNSCrypt server, github.com/ameshkov/dnscrypt/v2 (Go), built
#     from the pinned module in tests/tools into tests/.bin/dnscrypt (or
#     $LAB_GO_DNSCRYPT), unless that binary is already built from the current
#     tests/tools/go.mod and go.sum. Skipped with LAB_SKIP_GO=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKGS=(
  dnsdist          # DNSCrypt server (built with libsodium)
  unbound          # authoritative backend for lab.test
  ldnsutils        # ldns-keygen / ldns-signzone: DNSSEC-sign lab.test
  bind9-dnsutils   # dig
  knot-dnsutils    # kdig
  dnsperf          # load generator
  microsocks       # SOCKS5 server (no auth and user/password)
  stubby           # DNS-over-TLS stub resolver, the DoT peer to compare with (stubby.sh)
  openssl          # the lab's self-signed TLS certificates
  socat
  tor              # installed only; the lab does not start it
  ca-certificates
  iptables
  nftables
  iproute2         # ip, ss
  procps           # ps, pgrep (inspection only)
)

command -v dpkg-query >/dev/null || die "install.sh needs a Debian-like system (dpkg-query, apt-get)"
# One dpkg-query call for all packages; a package it does not know is missing.
declare -A have=()
while read -r pkg status; do
  [[ "$status" == "install ok installed" ]] && have[$pkg]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null || true)
missing=()
for p in "${PKGS[@]}"; do
  [[ -n "${have[$p]:-}" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "install.sh: need root for apt-get (missing: ${missing[*]})"
  log "installing ${missing[*]}"
  # Keep maintainer scripts from starting unbound, dnsdist, tor... (exit 101 =
  # action not allowed). Only add a policy-rc.d if there is none already.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap 'if [[ $made_policy == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get -qq -o DPkg::Lock::Timeout=300 update
  apt-get -qq -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" >/dev/null
  # On a host where systemd really runs, also keep the packaged services from
  # starting at boot: the lab runs its own instances on other ports.
  if [[ -d /run/systemd/system ]]; then
    for unit in unbound dnsdist tor stubby; do
      systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    done
  fi
fi

# --- staticcheck, for tests/run.sh ------------------------------------------------
# The pinned version, installed with go install into tests/.bin/tools (or
# $LAB_TOOLS_BIN), which run.sh puts first on PATH, unless that directory
# already holds this version. Skipped with LAB_SKIP_GO=1.
STATICCHECK_VERSION=0.8.2
tools_bin="${LAB_TOOLS_BIN:-$LAB_REPO_ROOT/tests/.bin/tools}"
if [[ "${LAB_SKIP_GO:-0}" != 1 ]] &&
  ! "$tools_bin/staticcheck" -version 2>/dev/null | grep -qF "($STATICCHECK_VERSION)"; then
  sc_go="$(command -v go || true)"
  [[ -n "$sc_go" || ! -x /usr/local/go/bin/go ]] || sc_go=/usr/local/go/bin/go
  [[ -n "$sc_go" ]] || die "no go command: cannot install staticcheck (LAB_SKIP_GO=1 skips it)"
  log "installing staticcheck $STATICCHECK_VERSION into $tools_bin"
  mkdir -p "$tools_bin"
  GOBIN="$tools_bin" GOWORK=off GOFLAGS= "$sc_go" install "honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION" ||
    die "installing staticcheck $STATICCHECK_VERSION failed"
  if [[ $(id -u) == 0 && -z "${LAB_TOOLS_BIN:-}" ]]; then
    owner="$(stat -c %u:%g "$LAB_REPO_ROOT")"
    [[ "$owner" == 0:0 ]] || chown -R "$owner" "$(dirname "$tools_bin")" 2>/dev/null || true
  fi
fi

# --- the Go DNSCrypt server -----------------------------------------------------
[[ "${LAB_SKIP_GO:-0}" == 1 ]] && exit 0
go_cmd="$(command -v go || true)"
[[ -n "$go_cmd" || ! -x /usr/local/go/bin/go ]] || go_cmd=/usr/local/go/bin/go
[[ -n "$go_cmd" ]] || die "no go command: cannot build $GO_DNSCRYPT (LAB_SKIP_GO=1 skips it)"
want="$(go_server_stamp)"
if [[ -x "$GO_DNSCRYPT" && "$(cat "$GO_DNSCRYPT.stamp" 2>/dev/null)" == "$want" ]]; then
  exit 0
fi
log "building $GO_DNSCRYPT (github.com/ameshkov/dnscrypt/v2/cmd from tests/tools)"
bindir="$(dirname "$GO_DNSCRYPT")"
mkdir -p "$bindir"
tmp="$GO_DNSCRYPT.tmp.$$"
(cd "$LAB_REPO_ROOT/tests/tools" && GOWORK=off GOFLAGS=-mod=readonly "$go_cmd" build -o "$tmp" github.com/ameshkov/dnscrypt/v2/cmd) ||
  { rm -f "$tmp"; die "building the Go DNSCrypt server failed"; }
mv -f "$tmp" "$GO_DNSCRYPT"
printf '%s\n' "$want" >"$GO_DNSCRYPT.stamp"
# Run as root (sudo) in someone's checkout: give the build back to the owner
# of the checkout, so tests run as that user can rebuild it later.
if [[ $(id -u) == 0 && -z "${LAB_GO_DNSCRYPT:-}" ]]; then
  owner="$(stat -c %u:%g "$LAB_REPO_ROOT")"
  [[ "$owner" == 0:0 ]] || chown "$owner" "$bindir" "$GO_DNSCRYPT" "$GO_DNSCRYPT.stamp" 2>/dev/null || true
fi
