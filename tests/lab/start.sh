#!/usr/bin/env bash
# Start the DNSCrypt lab on 127.0.0.1: an authoritative backend (unbound),
# dnsdist as a DNSCrypt server in front of it, a second DNSCrypt server
# (ameshkov/dnscrypt, Go), and two SOCKS5 servers (microsocks).
#
# Usage: start.sh [STATE_DIR]     (default: $LAB_STATE_DIR or /tmp/dnscrypt-lab)
#
# Optional environment:
#   LAB_PORT_XSALSA=8443 LAB_PORT_XCHACHA=8444 LAB_PORT_MIXED=8445 LAB_PORT_GO=8446
#   LAB_PORT_SOCKS=8450 LAB_PORT_SOCKS_AUTH=8451 LAB_PORT_CONSOLE=8452
#   LAB_PORT_BACKEND=8453 LAB_PORT_PLAIN=8455
#                               the ports (all on 127.0.0.1); give other ones to
#                               run several labs at once
#   LAB_CERT_TTL=86400          resolver certificate lifetime in seconds
#   LAB_STAMP_PROPS=7           props byte of the sdns:// stamps (1 DNSSEC, 2 no-log, 4 no-filter)
#   LAB_DNSSEC=1                sign lab.test (set 0 to serve it unsigned)
#   LAB_DNSSEC_KEY_CACHE=DIR    reuse the DNSSEC key pair kept in DIR (made there once)
#   LAB_REUSE_PROVIDER_KEY=0    1: keep the provider key pair of a previous start
#   LAB_GO_SERVER=auto          1: the Go DNSCrypt server must start; 0: do not
#                               start it; auto: start it if it is built
#   LAB_GO_DNSCRYPT=PATH        the Go server binary (default tests/.bin/dnscrypt)
#   LAB_OWNER_PID=PID           stop the lab by itself once process PID exits
#
# Writes $STATE_DIR/lab.env and prints it on stdout; see README.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lab_set_state_dir "${1:-}"
# If whoever reads our output goes away (a killed test binary), carry on
# instead of dying of SIGPIPE half-way, which would leave daemons behind:
# the watchdog or the final failing write (and the EXIT trap) stop them.
trap '' PIPE

for bin in unbound unbound-checkconf dnsdist dig microsocks ldns-keygen ldns-signzone setsid od base64 sha256sum timeout; do
  command -v "$bin" >/dev/null || die "$bin not found; run $LAB_DIR_SCRIPTS/install.sh first"
done
check_ports
cert_ttl="${LAB_CERT_TTL:-86400}"
[[ "$cert_ttl" =~ ^[1-9][0-9]{0,9}$ ]] && ((10#$cert_ttl > 0)) || die "LAB_CERT_TTL must be a positive number of seconds"
stamp_props="${LAB_STAMP_PROPS:-7}"
[[ "$stamp_props" =~ ^(0|[1-9][0-9]{0,2})$ ]] && ((10#$stamp_props < 256)) || die "LAB_STAMP_PROPS must be 0..255"
dnssec="${LAB_DNSSEC:-1}"
[[ "$dnssec" == [01] ]] || die "LAB_DNSSEC must be 0 or 1"
go_mode="${LAB_GO_SERVER:-auto}"
case "$go_mode" in
  0) go_server=0 ;;
  1) [[ -x "$GO_DNSCRYPT" ]] || die "Go DNSCrypt server $GO_DNSCRYPT not built (see install.sh)"; go_server=1 ;;
  auto) go_server=0; if [[ -x "$GO_DNSCRYPT" ]]; then go_server=1; else log "skipping the Go DNSCrypt server: $GO_DNSCRYPT not built (see install.sh)"; fi ;;
  *) die "LAB_GO_SERVER must be 0, 1 or auto" ;;
esac
owner="${LAB_OWNER_PID:-}" owner_st=""
if [[ -n "$owner" ]]; then
  owner_st="$(proc_starttime "$owner")" || die "owner process $owner (LAB_OWNER_PID) does not run"
fi
LAB_OWNER="$owner" LAB_OWNER_ST="$owner_st"   # for wait_for

# A second start replaces the first one.
"$LAB_DIR_SCRIPTS/stop.sh" "$STATE" 2>/dev/null || true

for port in $(all_ports); do
  if [[ $go_server == 0 && $port == "$PORT_DNSCRYPT_GO" ]]; then continue; fi
  port_busy "$port" && die "port $LAB_IP:$port is already in use (not by this lab's state dir $STATE); see: ss -lntup"
done

# If anything below fails, stop what was already started (logs stay).
trap 'rc=$?; if ((rc)); then log "start failed; stopping what was started"; "$LAB_DIR_SCRIPTS/stop.sh" "$STATE" || true; fi' EXIT

mkdir -p "$STATE/keys" "$STATE/dnssec" "$PIDS"
rm -f "$STATE"/stamp-*.txt "$STATE"/provider-key.* "$STATE/lab.env"
now=$(date +%s)

# --- 1. keys, in parallel: DNSSEC keys + signed zone, DNSCrypt keys + certs ---------
cp "$LAB_DIR_SCRIPTS/lab.test.zone" "$STATE/lab.test.zone"
zonefile="$STATE/lab.test.zone"
sign_pid=""
if [[ "$dnssec" == 1 ]]; then
  # RSA-2048 keys make the signed answers large. Making them is the slowest
  # step of a start, so LAB_DNSSEC_KEY_CACHE may name a directory to keep one
  # key pair in and reuse (the first start that finds none fills it).
  rm -f "$STATE/dnssec"/*
  cache="${LAB_DNSSEC_KEY_CACHE:-}"
  (
    cd "$STATE/dnssec"
    ksk="" zsk=""
    if [[ -n "$cache" && -s "$cache/names" ]] && read -r ksk zsk <"$cache/names" &&
       cp "$cache/$ksk.key" "$cache/$ksk.private" "$cache/$ksk.ds" "$cache/$zsk.key" "$cache/$zsk.private" .; then
      echo "reusing the DNSSEC keys in $cache"
    else
      [[ -z "$cache" || ! -e "$cache" ]] || echo "unusable key cache $cache; making new keys"
      ksk=$(ldns-keygen -r /dev/urandom -a RSASHA256 -b 2048 -k "$ZONE")
      zsk=$(ldns-keygen -r /dev/urandom -a RSASHA256 -b 2048 "$ZONE")
      if [[ -n "$cache" && ! -e "$cache" ]]; then
        mkdir -p "$(dirname "$cache")"
        tmp=$(mktemp -d "$cache.tmp.XXXXXX")
        cp "$ksk".* "$zsk".* "$tmp/"
        echo "$ksk $zsk" >"$tmp/names"
        # Atomic: if another lab filled the cache meanwhile, keep that one.
        mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
      fi
    fi
    ldns-signzone -i $((now - 3600)) -e $((now + 30 * 86400)) -o "$ZONE." \
      -f "$STATE/lab.test.zone.signed" "$STATE/lab.test.zone" "$zsk" "$ksk"
    cp "$ksk.ds" trust-anchor.ds
    cp "$ksk.key" trust-anchor.dnskey
  ) >"$STATE/dnssec/sign.log" 2>&1 &
  sign_pid=$!
  zonefile="$STATE/lab.test.zone.signed"
fi

K="$STATE/keys"
not_before=$((now - 3600))
not_after=$((now + cert_ttl))
if [[ "${LAB_REUSE_PROVIDER_KEY:-0}" == 1 && -s "$K/provider.key" && -s "$K/provider.pub" ]]; then
  genprov=""
else
  rm -f "$K"/*
  genprov="generateDNSCryptProviderKeys('$K/provider.pub', '$K/provider.key')"
fi
cat >"$K/generate.lua" <<EOF
$genprov
generateDNSCryptCertificate('$K/provider.key', '$K/xsalsa.cert', '$K/xsalsa.key', 1, $not_before, $not_after, DNSCryptExchangeVersion.VERSION1)
generateDNSCryptCertificate('$K/provider.key', '$K/xchacha.cert', '$K/xchacha.key', 1, $not_before, $not_after, DNSCryptExchangeVersion.VERSION2)
generateDNSCryptCertificate('$K/provider.key', '$K/mixed1.cert', '$K/mixed1.key', 1, $not_before, $not_after, DNSCryptExchangeVersion.VERSION1)
generateDNSCryptCertificate('$K/provider.key', '$K/mixed2.cert', '$K/mixed2.key', 2, $not_before, $not_after, DNSCryptExchangeVersion.VERSION2)
EOF
# --check-config runs the Lua file without starting any listener.
dnsdist --check-config -C "$K/generate.lua" >"$K/generate.log" 2>&1 || { cat "$K/generate.log" >&2; die "key generation failed"; }
for f in provider.pub provider.key xsalsa.cert xsalsa.key xchacha.cert xchacha.key mixed1.cert mixed2.cert; do
  [[ -s "$K/$f" ]] || { cat "$K/generate.log" >&2; die "dnsdist did not write $K/$f"; }
done
log "dnscrypt keys and certificates made"
if [[ -n "$sign_pid" ]]; then
  wait "$sign_pid" || { cat "$STATE/dnssec/sign.log" >&2; die "signing lab.test failed"; }
  log "lab.test signed"
fi

# --- 2. configuration files -------------------------------------------------------
cat >"$STATE/unbound.conf" <<EOF
# Generated by start.sh. Authoritative only: anything outside lab.test is
# refused, and unbound may not send queries to any address at all.
server:
  interface: $LAB_IP@$PORT_BACKEND
  port: $PORT_BACKEND
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  username: ""
  chroot: ""
  directory: "$STATE"
  pidfile: "$STATE/unbound.pid"
  use-syslog: no
  logfile: ""          # stderr, which start_bg sends to unbound.log
  verbosity: 1
  do-daemonize: no
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  do-not-query-localhost: yes
  do-not-query-address: 0.0.0.0/0
  do-not-query-address: ::/0
  local-zone: "." refuse
  local-zone: "$ZONE." transparent
  # Reverse names for the zone's addresses, so PTR queries have answers.
  local-zone: "84.0.127.in-addr.arpa." static
  local-data-ptr: "127.0.84.10 www.$ZONE."
  local-data-ptr: "127.0.84.1 $ZONE."
  # UDP answers as large as the query's EDNS size allows (65536: no cap of
  # unbound's own). The Go DNSCrypt server forwards every query over UDP
  # with the client's OPT and never retries over TCP, so only this lets a
  # 13 KB answer reach it for a client that asks over TCP with a large
  # EDNS size (the Tor tests do).
  edns-buffer-size: 4096
  max-udp-size: 65536
remote-control:
  control-enable: no
auth-zone:
  name: "$ZONE."
  zonefile: "$zonefile"
  for-downstream: yes
  for-upstream: no
  fallback-enabled: no
EOF
unbound-checkconf "$STATE/unbound.conf" >/dev/null || die "bad unbound.conf"

console_key=$(head -c 32 /dev/urandom | base64 -w0)
cat >"$STATE/console.conf" <<EOF
-- Used by 'dnsdist -C console.conf -c -e CMD' (see console.sh, rotate-cert.sh).
setKey("$console_key")
controlSocket("$LAB_IP:$PORT_CONSOLE")
EOF
cat >"$STATE/dnsdist.conf" <<EOF
-- Generated by start.sh.
setSecurityPollSuffix("")   -- no security-poll queries to the system resolver
setKey("$console_key")
controlSocket("$LAB_IP:$PORT_CONSOLE")
setConsoleACL("127.0.0.1/32")
setACL({"127.0.0.0/8"})
setLocal("$LAB_IP:$PORT_PLAIN")   -- plain DNS (UDP+TCP), replaces the default 127.0.0.1:53
newServer({address="$LAB_IP:$PORT_BACKEND", name="backend", checkName="$ZONE.", checkType="SOA", mustResolve=true})
-- bind 0: ES version 1 (X25519-XSalsa20Poly1305)
addDNSCryptBind("$LAB_IP:$PORT_DNSCRYPT", "$PROVIDER_NAME", "$K/xsalsa.cert", "$K/xsalsa.key")
-- bind 1: ES version 2 (X25519-XChacha20Poly1305)
addDNSCryptBind("$LAB_IP:$PORT_DNSCRYPT_XCHACHA", "$PROVIDER_NAME", "$K/xchacha.cert", "$K/xchacha.key")
-- bind 2: both, ES 1 with serial 1 and ES 2 with serial 2
addDNSCryptBind("$LAB_IP:$PORT_DNSCRYPT_MIXED", "$PROVIDER_NAME", {"$K/mixed1.cert", "$K/mixed2.cert"}, {"$K/mixed1.key", "$K/mixed2.key"})

-- Helpers for the console (rotate-cert.sh). They return text to the caller.
labProviderKey = "$K/provider.key"

-- One line per certificate of every DNSCrypt bind.
function labCerts()
  local out = {}
  for b = 0, 2 do
    local ctx = getDNSCryptBind(b)
    for _, p in pairs(ctx:getCertificatePairs()) do
      local c = p:getCertificate()
      table.insert(out, string.format("bind=%d serial=%d es=%d active=%s from=%d until=%d",
        b, c:getSerial(), string.byte(c:getEsVersion(), 2), tostring(p:isActive()), c:getTSStart(), c:getTSEnd()))
    end
  end
  return table.concat(out, "\n")
end

-- Add a certificate to bind b. serial 0 means highest serial + 1; es 0 means
-- the ES version of the current highest-serial certificate. With retire,
-- older certificates stop being advertised (but still decrypt queries); with
-- remove, they are dropped entirely.
function labRotate(b, es, serial, from, till, retire, remove)
  local ctx = getDNSCryptBind(b)
  local old = {}
  local max, maxes = 0, 1
  for _, p in pairs(ctx:getCertificatePairs()) do
    local c = p:getCertificate()
    table.insert(old, {serial = c:getSerial(), active = p:isActive()})
    if c:getSerial() >= max then
      max = c:getSerial()
      maxes = string.byte(c:getEsVersion(), 2)
    end
  end
  if serial == 0 then serial = max + 1 end
  if es == 0 then es = maxes end
  local v = DNSCryptExchangeVersion.VERSION1
  if es == 2 then v = DNSCryptExchangeVersion.VERSION2 end
  ctx:generateAndLoadInMemoryCertificate(labProviderKey, serial, from, till, v)
  if retire or remove then
    for _, o in ipairs(old) do
      if o.serial ~= serial then
        if o.active then ctx:markInactive(o.serial) end
        if remove then ctx:removeInactiveCertificate(o.serial) end
      end
    end
  end
  return string.format("bind=%d added serial=%d es=%d from=%d until=%d", b, serial, es, from, till)
end
EOF
dnsdist --check-config -C "$STATE/dnsdist.conf" >/dev/null 2>"$STATE/dnsdist.check" || { cat "$STATE/dnsdist.check" >&2; die "bad dnsdist.conf"; }

if [[ $go_server == 1 ]]; then
  cat >"$K/go-server.yaml" <<EOF
provider_name: $PROVIDER_NAME
public_key: $(od -An -v -tx1 "$K/provider.pub" | tr -d ' \n')
private_key: $(od -An -v -tx1 "$K/provider.key" | tr -d ' \n')
es_version: 1
certificate_ttl: ${cert_ttl}s
EOF
fi

log "configuration written"

# --- 3. start every daemon, then wait until each one really answers ---------------
start_bg unbound "$STATE/unbound.log" unbound -d -c "$STATE/unbound.conf"
start_bg dnsdist "$STATE/dnsdist.log" dnsdist --supervised --disable-syslog -C "$STATE/dnsdist.conf"
if [[ $go_server == 1 ]]; then
  # Same provider name and key as dnsdist; it does answer the certificate query
  # over TCP. It forwards every query to the backend over UDP. Always give -f
  # and -l: its defaults are a public resolver and 0.0.0.0.
  start_bg go-dnscrypt "$STATE/go-dnscrypt.log" "$GO_DNSCRYPT" server -c "$K/go-server.yaml" \
    -f "$LAB_IP:$PORT_BACKEND" -l "$LAB_IP" -p "$PORT_DNSCRYPT_GO"
fi
# SOCKS5. -b 127.0.0.1: outgoing connections use 127.0.0.1 as their source address.
start_bg socks "$STATE/socks.log" microsocks -i "$LAB_IP" -p "$PORT_SOCKS" -b "$LAB_IP"
start_bg socks-auth "$STATE/socks-auth.log" microsocks -i "$LAB_IP" -p "$PORT_SOCKS_AUTH" -b "$LAB_IP" -u "$SOCKS_USER" -P "$SOCKS_PASS"

backend_ok() {
  [[ "$(dig_short -p "$PORT_BACKEND" @"$LAB_IP" "www.$ZONE" A)" == 127.0.84.10 ]] &&
  [[ "$(dig_short +tcp -p "$PORT_BACKEND" @"$LAB_IP" "www.$ZONE" A)" == 127.0.84.10 ]]
}
# The certificate query is plain DNS, so dig can check the DNSCrypt ports.
# dnsdist 1.7.3 answers it over UDP only: over TCP it sends an empty
# (zero-length) message, so for TCP we only check that the port accepts.
cert_ok() {
  local port="$1"
  [[ "$(dig_short -p "$port" @"$LAB_IP" "$PROVIDER_NAME" TXT)" == '"DNSC'* ]] && tcp_accepts "$port"
}
cert_ok_tcp() {
  local port="$1"
  cert_ok "$port" && [[ "$(dig_short +tcp -p "$port" @"$LAB_IP" "$PROVIDER_NAME" TXT)" == '"DNSC'* ]]
}
plain_ok() {
  [[ "$(dig_short -p "$PORT_PLAIN" @"$LAB_IP" "www.$ZONE" A)" == 127.0.84.10 ]]
}
console_ok() {
  dnsdist -C "$STATE/console.conf" -c -e 'labCerts()' | grep -q 'bind=2 serial=2'
}
wait_for unbound "backend (unbound) on $LAB_IP:$PORT_BACKEND" "$STATE/unbound.log" 20 backend_ok
wait_for dnsdist "dnsdist DNSCrypt on $LAB_IP:$PORT_DNSCRYPT" "$STATE/dnsdist.log" 20 cert_ok "$PORT_DNSCRYPT"
wait_for dnsdist "dnsdist DNSCrypt on $LAB_IP:$PORT_DNSCRYPT_XCHACHA" "$STATE/dnsdist.log" 20 cert_ok "$PORT_DNSCRYPT_XCHACHA"
wait_for dnsdist "dnsdist DNSCrypt on $LAB_IP:$PORT_DNSCRYPT_MIXED" "$STATE/dnsdist.log" 20 cert_ok "$PORT_DNSCRYPT_MIXED"
wait_for dnsdist "dnsdist plain DNS on $LAB_IP:$PORT_PLAIN" "$STATE/dnsdist.log" 20 plain_ok
wait_for dnsdist "dnsdist console on $LAB_IP:$PORT_CONSOLE" "$STATE/dnsdist.log" 20 console_ok
if [[ $go_server == 1 ]]; then
  wait_for go-dnscrypt "Go DNSCrypt server on $LAB_IP:$PORT_DNSCRYPT_GO" "$STATE/go-dnscrypt.log" 20 cert_ok_tcp "$PORT_DNSCRYPT_GO"
fi
wait_for socks "SOCKS5 on $LAB_IP:$PORT_SOCKS" "$STATE/socks.log" 20 socks_dns_check "$PORT_SOCKS"
wait_for socks-auth "SOCKS5 with auth on $LAB_IP:$PORT_SOCKS_AUTH" "$STATE/socks-auth.log" 20 socks_dns_check "$PORT_SOCKS_AUTH" "$SOCKS_USER" "$SOCKS_PASS"

# Started last, with the complete pid list. If the owner died meanwhile, it
# stops the lab right away.
if [[ -n "$owner" ]]; then
  pidlist=""
  for f in "$PIDS"/*.pid; do read -r line <"$f" && pidlist+="$line"$'\n'; done
  start_bg watchdog "$STATE/watchdog.log" "$LAB_DIR_SCRIPTS/watchdog.sh" "$STATE" "$owner" "$owner_st" "$pidlist"
fi

# --- 4. provider key in both notations, stamps, lab.env ----------------------------
pk_hex=$(od -An -v -tx1 "$K/provider.pub" | tr -d ' \n')
pk_colon=$(printf '%s' "$pk_hex" | tr 'a-f' 'A-F' | sed -E 's/(....)/\1:/g; s/:$//')

# sdns:// DNSCrypt stamp: 0x01, props (8 bytes LE), LP(addr), LP(provider pk), LP(provider name)
make_stamp() {
  local addr="$1"
  {
    printf '\x01'
    printf "\\x$(printf %02x "$stamp_props")"'\x00\x00\x00\x00\x00\x00\x00'
    printf "\\x$(printf %02x ${#addr})%s" "$addr"
    printf '\x20'
    cat "$K/provider.pub"
    printf "\\x$(printf %02x ${#PROVIDER_NAME})%s" "$PROVIDER_NAME"
  } | base64 -w0 | tr '+/' '-_' | tr -d '='
}
stamp=$(make_stamp "$LAB_IP:$PORT_DNSCRYPT")
stamp_xchacha=$(make_stamp "$LAB_IP:$PORT_DNSCRYPT_XCHACHA")
stamp_mixed=$(make_stamp "$LAB_IP:$PORT_DNSCRYPT_MIXED")
stamp_go="" addr_go=""
if [[ $go_server == 1 ]]; then
  addr_go="$LAB_IP:$PORT_DNSCRYPT_GO"
  stamp_go=sdns://$(make_stamp "$addr_go")
  printf '%s\n' "$stamp_go" >"$STATE/stamp-go.txt"
fi
printf '%s\n' "$pk_colon" >"$STATE/provider-key.colon"
printf '%s\n' "$pk_hex" >"$STATE/provider-key.hex"
printf 'sdns://%s\n' "$stamp" >"$STATE/stamp-xsalsa.txt"
printf 'sdns://%s\n' "$stamp_xchacha" >"$STATE/stamp-xchacha.txt"
printf 'sdns://%s\n' "$stamp_mixed" >"$STATE/stamp-mixed.txt"
ds_file=""
[[ "$dnssec" == 1 ]] && ds_file="$STATE/dnssec/trust-anchor.ds"

cat >"$STATE/lab.env.tmp" <<EOF
# Generated by start.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ). Source it: . $STATE/lab.env
export LAB_STATE_DIR=$STATE
export LAB_PROVIDER_NAME=$PROVIDER_NAME
export LAB_PROVIDER_KEY=$pk_colon
export LAB_PROVIDER_KEY_HEX=$pk_hex
export LAB_RESOLVER_ADDRESS=$LAB_IP:$PORT_DNSCRYPT
export LAB_RESOLVER_ADDRESS_XCHACHA=$LAB_IP:$PORT_DNSCRYPT_XCHACHA
export LAB_RESOLVER_ADDRESS_MIXED=$LAB_IP:$PORT_DNSCRYPT_MIXED
export LAB_RESOLVER_ADDRESS_GO=$addr_go
export LAB_STAMP=sdns://$stamp
export LAB_STAMP_XCHACHA=sdns://$stamp_xchacha
export LAB_STAMP_MIXED=sdns://$stamp_mixed
export LAB_STAMP_GO=$stamp_go
export LAB_CERT_NOT_BEFORE=$not_before
export LAB_CERT_NOT_AFTER=$not_after
export LAB_BACKEND=$LAB_IP:$PORT_BACKEND
export LAB_PLAIN=$LAB_IP:$PORT_PLAIN
export LAB_SOCKS=$LAB_IP:$PORT_SOCKS
export LAB_SOCKS_AUTH=$LAB_IP:$PORT_SOCKS_AUTH
export LAB_SOCKS_USER=$SOCKS_USER
export LAB_SOCKS_PASS=$SOCKS_PASS
export LAB_CONSOLE=$LAB_IP:$PORT_CONSOLE
export LAB_CONSOLE_KEY=$console_key
export LAB_ZONE=$ZONE.
export LAB_DNSSEC_DS_FILE=$ds_file
EOF
mv "$STATE/lab.env.tmp" "$STATE/lab.env"

log "lab is up; environment in $STATE/lab.env"
cat "$STATE/lab.env"
