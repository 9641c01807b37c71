#!/usr/bin/env bash
# Start the DNSCrypt lab on 127.0.0.1: an authoritative backend (unbound, also
# serving DNS-over-TLS and DNS-over-HTTPS), dnsdist as a DNSCrypt, plain DNS,
# DoT and DoH server in front of it, a second DNSCrypt server (ameshkov/dnscrypt,
# Go), and two SOCKS5 servers (microsocks).
#
# Usage: start.sh [STATE_DIR]     (default: $LAB_STATE_DIR or /tmp/dnscrypt-lab)
#
# Optional environment:
#   LAB_PORT_XSALSA=8443 LAB_PORT_XCHACHA=8444 LAB_PORT_MIXED=8445 LAB_PORT_GO=8446
#   LAB_PORT_SOCKS=8450 LAB_PORT_SOCKS_AUTH=8451 LAB_PORT_CONSOLE=8452
#   LAB_PORT_BACKEND=8453 LAB_PORT_PLAIN=8455 LAB_PORT_DOT=8456 LAB_PORT_DOH=8457
#   LAB_PORT_BACKEND_DOT=8458 LAB_PORT_BACKEND_DOH=8459
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

for bin in unbound unbound-checkconf dnsdist dig kdig openssl microsocks ldns-keygen ldns-signzone setsid od base64 sha256sum timeout; do
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

mkdir -p "$STATE/keys" "$STATE/dnssec" "$STATE/tls" "$PIDS"
rm -f "$STATE"/stamp-*.txt "$STATE"/provider-key.* "$STATE/lab.env" "$STATE"/tls/*
now=$(date +%s)

# --- 1. keys, in parallel: TLS certificates, DNSSEC keys + signed zone, DNSCrypt keys + certs
# Self-signed P-256 certificates for the DoT and DoH listeners: dnsdist's for
# $TLS_NAME, unbound's for $BACKEND_TLS_NAME, each with PREFIX.tbs-sha256: the
# hex SHA-256 of the certificate's TBS part, the hash DNS stamps pin.
T="$STATE/tls"
make_tls_cert() {
  local prefix="$1" name="$2" pem sum
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name" -keyout "$T/$prefix.key" -out "$T/$prefix.pem" 2>/dev/null || return 1
  # The TBS part is the first element inside the certificate's SEQUENCE. A
  # DER that starts 30 82 (base64 "MII") has a 4-byte header: it is at offset 4.
  mapfile -t pem <"$T/$prefix.pem"
  [[ "${pem[1]}" == MII* ]] || { echo "unexpected DER header in $T/$prefix.pem"; return 1; }
  openssl asn1parse -in "$T/$prefix.pem" -strparse 4 -noout -out "$T/$prefix.tbs" >/dev/null || return 1
  sum=$(sha256sum "$T/$prefix.tbs") || return 1
  echo "${sum:0:64}" >"$T/$prefix.tbs-sha256"
}
make_tls_cert dnsdist "$TLS_NAME" >"$T/dnsdist.log" 2>&1 &
tls_pid=$!
make_tls_cert backend "$BACKEND_TLS_NAME" >"$T/backend.log" 2>&1 &
tls_backend_pid=$!

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
wait "$tls_pid" || { cat "$T/dnsdist.log" >&2; die "making dnsdist's TLS certificate failed (openssl)"; }
wait "$tls_backend_pid" || { cat "$T/backend.log" >&2; die "making unbound's TLS certificate failed (openssl)"; }
for f in dnsdist.pem dnsdist.key dnsdist.tbs-sha256 backend.pem backend.key backend.tbs-sha256; do
  [[ -s "$T/$f" ]] || die "openssl did not make $T/$f"
done
tls_tbs=$(<"$T/dnsdist.tbs-sha256") backend_tls_tbs=$(<"$T/backend.tbs-sha256")
log "TLS certificates made"

# --- 2. configuration files -------------------------------------------------------
cat >"$STATE/unbound.conf" <<EOF
# Generated by start.sh. Authoritative only: anything outside lab.test is
# refused, and unbound may not send queries to any address at all.
server:
  interface: $LAB_IP@$PORT_BACKEND
  port: $PORT_BACKEND
  # DNS-over-TLS and DNS-over-HTTPS (HTTP/2 only: unbound's DoH needs ALPN h2)
  # with the self-signed certificate for $BACKEND_TLS_NAME. unbound also
  # answers plain DNS over UDP on these two ports.
  interface: $LAB_IP@$PORT_BACKEND_DOT
  interface: $LAB_IP@$PORT_BACKEND_DOH
  tls-port: $PORT_BACKEND_DOT
  https-port: $PORT_BACKEND_DOH
  http-endpoint: "/dns-query"
  http-notls-downstream: no
  tls-service-pem: "$T/backend.pem"
  tls-service-key: "$T/backend.key"
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
  # Room for every test's TCP and TLS clients at once: with more than half
  # of its (default 10) TCP slots busy, unbound closes an idle connection
  # after 200 ms, which breaks the tests that count one persistent
  # connection per upstream while other tests run beside them.
  incoming-num-tcp: 256
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
  # Reverse names of the public-looking addresses pub and pub6 (the zone file
  # explains them): 20.84.0.0/16 and 2a02:84::/32.
  local-zone: "84.20.in-addr.arpa." static
  local-data-ptr: "20.84.0.10 pub.$ZONE."
  local-zone: "4.8.0.0.2.0.a.2.ip6.arpa." static
  local-data-ptr: "2a02:84::10 pub6.$ZONE."
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
-- DNS-over-TLS and DNS-over-HTTPS with the self-signed certificate for $TLS_NAME
addTLSLocal("$LAB_IP:$PORT_DOT", "$T/dnsdist.pem", "$T/dnsdist.key")
addDOHLocal("$LAB_IP:$PORT_DOH", "$T/dnsdist.pem", "$T/dnsdist.key", "/dns-query")
newServer({address="$LAB_IP:$PORT_BACKEND", name="backend", checkName="$ZONE.", checkType="SOA", mustResolve=true})
-- DoH queries reach the backend over TCP only. dnsdist 1.7 forwards them over
-- UDP otherwise, and an answer over 4 KB that the backend sends over UDP (it
-- does, for a query with a large EDNS size) comes out of dnsdist cut short,
-- as a malformed DoH answer.
newServer({address="$LAB_IP:$PORT_BACKEND", name="backend-tcp", pool="tcp", tcpOnly=true, checkName="$ZONE.", checkType="SOA", mustResolve=true})
addAction(DSTPortRule($PORT_DOH), PoolAction("tcp"))
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
# DoT and DoH: one kdig run asks both listeners of a server (PREFIX NAME
# DOT_PORT DOH_PORT), checking the certificate against its PEM file and name.
tls_ok() {
  local out
  out="$(kdig +short +time=1 +retry=0 +tls-ca="$T/$1.pem" +tls-hostname="$2" @"$LAB_IP" -p "$3" +tls "www.$ZONE" A \
    @"$LAB_IP" -p "$4" +https=/dns-query "txt.$ZONE" TXT 2>/dev/null)"
  [[ "$out" == $'127.0.84.10\n"hello from lab.test"' ]]
}
wait_for unbound "backend (unbound) on $LAB_IP:$PORT_BACKEND" "$STATE/unbound.log" 20 backend_ok
wait_for unbound "backend (unbound) DoT on $LAB_IP:$PORT_BACKEND_DOT, DoH on $LAB_IP:$PORT_BACKEND_DOH" "$STATE/unbound.log" 20 \
  tls_ok backend "$BACKEND_TLS_NAME" "$PORT_BACKEND_DOT" "$PORT_BACKEND_DOH"
wait_for dnsdist "dnsdist DNSCrypt on $LAB_IP:$PORT_DNSCRYPT" "$STATE/dnsdist.log" 20 cert_ok "$PORT_DNSCRYPT"
wait_for dnsdist "dnsdist DNSCrypt on $LAB_IP:$PORT_DNSCRYPT_XCHACHA" "$STATE/dnsdist.log" 20 cert_ok "$PORT_DNSCRYPT_XCHACHA"
wait_for dnsdist "dnsdist DNSCrypt on $LAB_IP:$PORT_DNSCRYPT_MIXED" "$STATE/dnsdist.log" 20 cert_ok "$PORT_DNSCRYPT_MIXED"
wait_for dnsdist "dnsdist plain DNS on $LAB_IP:$PORT_PLAIN" "$STATE/dnsdist.log" 20 plain_ok
wait_for dnsdist "dnsdist console on $LAB_IP:$PORT_CONSOLE" "$STATE/dnsdist.log" 20 console_ok
wait_for dnsdist "dnsdist DoT on $LAB_IP:$PORT_DOT, DoH on $LAB_IP:$PORT_DOH" "$STATE/dnsdist.log" 20 \
  tls_ok dnsdist "$TLS_NAME" "$PORT_DOT" "$PORT_DOH"
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
up=${pk_hex^^} pk_colon=""
for ((i = 0; i < 64; i += 4)); do pk_colon+="${pk_colon:+:}${up:i:4}"; done

# sdns:// stamps, as the DNS stamps spec builds them. Each is put together as
# a hex string and encoded in bash itself (a start should not wait for forks).
# hex S: the bytes of the ASCII string S; lp S: its length byte, then S;
# props8: the props as 8 bytes, little-endian; b64u HEX: URL-safe base64 of
# the bytes HEX, without padding. Each sets REPLY.
hex() {
  local s="$1" i c out=""
  for ((i = 0; i < ${#s}; i++)); do printf -v c '%02x' "'${s:i:1}"; out+=$c; done
  REPLY=$out
}
lp() { local n; printf -v n '%02x' "${#1}"; hex "$1"; REPLY=$n$REPLY; }
props8() { printf -v REPLY '%02x00000000000000' "$stamp_props"; }
B64U=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_
b64u() {
  local h="$1" out="" i v a b c d
  for ((i = 0; i + 6 <= ${#h}; i += 6)); do
    v=$((16#${h:i:6})) a=$((v >> 18 & 63)) b=$((v >> 12 & 63)) c=$((v >> 6 & 63)) d=$((v & 63))
    out+=${B64U:a:1}${B64U:b:1}${B64U:c:1}${B64U:d:1}
  done
  case $((${#h} - i)) in
    2) v=$((16#${h:i:2} << 16)) a=$((v >> 18 & 63)) b=$((v >> 12 & 63)); out+=${B64U:a:1}${B64U:b:1} ;;
    4) v=$((16#${h:i:4} << 8)) a=$((v >> 18 & 63)) b=$((v >> 12 & 63)) c=$((v >> 6 & 63)); out+=${B64U:a:1}${B64U:b:1}${B64U:c:1} ;;
  esac
  REPLY=$out
}
# stamp KIND ADDR [HASH HOST [PATH]]: the stamp, in REPLY.
#   01 DNSCrypt: props, LP(addr), LP(provider pk), LP(provider name)
#   00 plain DNS: props, LP(addr)
#   03 DoT: props, LP(addr), VLP(hashes), LP(host); 02 DoH: the same, then LP(path)
# For DoT and DoH the address is the bare IP and a port other than 853/443
# goes with the host name, as in "dns.lab.test:8456".
stamp() {
  local kind="$1" s
  props8; s=$kind$REPLY
  lp "$2"; s+=$REPLY
  case $kind in
    01) lp "$PROVIDER_NAME"; s+=20$pk_hex$REPLY ;;
    02 | 03) s+=20$3; lp "$4"; s+=$REPLY; [[ $kind == 03 ]] || { lp "$5"; s+=$REPLY; } ;;
  esac
  b64u "$s"
  REPLY=sdns://$REPLY
}

stamp 01 "$LAB_IP:$PORT_DNSCRYPT"; stamp=$REPLY
stamp 01 "$LAB_IP:$PORT_DNSCRYPT_XCHACHA"; stamp_xchacha=$REPLY
stamp 01 "$LAB_IP:$PORT_DNSCRYPT_MIXED"; stamp_mixed=$REPLY
stamp_go="" addr_go=""
if [[ $go_server == 1 ]]; then
  addr_go="$LAB_IP:$PORT_DNSCRYPT_GO"
  stamp 01 "$addr_go"; stamp_go=$REPLY
  printf '%s\n' "$stamp_go" >"$STATE/stamp-go.txt"
fi
stamp 00 "$LAB_IP:$PORT_PLAIN"; stamp_plain=$REPLY
stamp 03 "$LAB_IP" "$tls_tbs" "$TLS_NAME:$PORT_DOT"; stamp_dot=$REPLY
stamp 02 "$LAB_IP" "$tls_tbs" "$TLS_NAME:$PORT_DOH" /dns-query; stamp_doh=$REPLY
stamp 00 "$LAB_IP:$PORT_BACKEND"; stamp_backend=$REPLY
stamp 03 "$LAB_IP" "$backend_tls_tbs" "$BACKEND_TLS_NAME:$PORT_BACKEND_DOT"; stamp_backend_dot=$REPLY
stamp 02 "$LAB_IP" "$backend_tls_tbs" "$BACKEND_TLS_NAME:$PORT_BACKEND_DOH" /dns-query; stamp_backend_doh=$REPLY
printf '%s\n' "$pk_colon" >"$STATE/provider-key.colon"
printf '%s\n' "$pk_hex" >"$STATE/provider-key.hex"
printf '%s\n' "$stamp" >"$STATE/stamp-xsalsa.txt"
printf '%s\n' "$stamp_xchacha" >"$STATE/stamp-xchacha.txt"
printf '%s\n' "$stamp_mixed" >"$STATE/stamp-mixed.txt"
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
export LAB_STAMP=$stamp
export LAB_STAMP_XCHACHA=$stamp_xchacha
export LAB_STAMP_MIXED=$stamp_mixed
export LAB_STAMP_GO=$stamp_go
export LAB_CERT_NOT_BEFORE=$not_before
export LAB_CERT_NOT_AFTER=$not_after
export LAB_BACKEND=$LAB_IP:$PORT_BACKEND
export LAB_PLAIN=$LAB_IP:$PORT_PLAIN
export LAB_STAMP_PLAIN=$stamp_plain
export LAB_STAMP_BACKEND=$stamp_backend
export LAB_DOT=$LAB_IP:$PORT_DOT
export LAB_DOH=https://$TLS_NAME:$PORT_DOH/dns-query
export LAB_DOH_ADDR=$LAB_IP:$PORT_DOH
export LAB_TLS_NAME=$TLS_NAME
export LAB_TLS_CERT=$T/dnsdist.pem
export LAB_TLS_TBS_SHA256=$tls_tbs
export LAB_STAMP_DOT=$stamp_dot
export LAB_STAMP_DOH=$stamp_doh
export LAB_BACKEND_DOT=$LAB_IP:$PORT_BACKEND_DOT
export LAB_BACKEND_DOH=https://$BACKEND_TLS_NAME:$PORT_BACKEND_DOH/dns-query
export LAB_BACKEND_DOH_ADDR=$LAB_IP:$PORT_BACKEND_DOH
export LAB_BACKEND_TLS_NAME=$BACKEND_TLS_NAME
export LAB_BACKEND_TLS_CERT=$T/backend.pem
export LAB_BACKEND_TLS_TBS_SHA256=$backend_tls_tbs
export LAB_STAMP_BACKEND_DOT=$stamp_backend_dot
export LAB_STAMP_BACKEND_DOH=$stamp_backend_doh
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
