# Sourced by the load scripts: lab_ports picks free ports for every port of
# the lab (tests/lab/start.sh takes them from the environment) and one more
# for the proxy, in $proxy_port: random ones below the kernel's ephemeral
# range, unused over TCP and UDP, so that a run never meets another lab.
lab_ports() {
  local eph_low used p
  local names=(XSALSA XCHACHA MIXED GO SOCKS SOCKS_AUTH CONSOLE BACKEND PLAIN DOT DOH BACKEND_DOT BACKEND_DOH)
  read -r eph_low _ </proc/sys/net/ipv4/ip_local_port_range
  used=$(ss -Htuan | awk '{ n = split($5, a, ":"); print a[n] }' | sort -u)
  local ports=()
  while ((${#ports[@]} < ${#names[@]} + 1)); do
    p=$((10000 + RANDOM % (eph_low - 10000)))
    grep -qx "$p" <<<"$used" && continue
    [[ " ${ports[*]} " == *" $p "* ]] && continue
    ports+=("$p")
  done
  local i
  for i in "${!names[@]}"; do
    export "LAB_PORT_${names[$i]}=${ports[$i]}"
  done
  proxy_port=${ports[${#names[@]}]}
}
