#!/usr/bin/env bash
# Side-by-side benchmark of the network functions: TCP through vireo-netd's VXLAN overlay vs
# through the Linux kernel's vxlan + bridge, and TCP through vireo-netd's NAT vs kernel routing
# between the same namespaces (no NAT in the kernel reference: the ratio also counts NAT's
# cost). Same machine, same run.
# Each "host" is a network namespace; the underlay is a veth pair.
#   VXLAN, vireo:  instance -veth- [A: vireo-netd VTEP] =udp 4789= [B: kernel vxlan + bridge]
#   VXLAN, kernel: instance -veth- [A': bridge + kernel vxlan] =udp 4789= [B': kernel vxlan + bridge]
#   NAT, vireo:    lan namespace - vireo-netd (masquerade) - remote namespace
#   routed, kernel: lan namespace - kernel router namespace - remote namespace
# Needs root, iperf3, iproute2, ethtool. Usage: bench/network/overlay.sh [SECONDS] (default 10).
# VIREO_BIN_DIR points at the build's bin/ (default build/bin).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-10}
bin=${VIREO_BIN_DIR:-$root/build/bin}
p=vo$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
work=$(mktemp -d)
nss=()

cleanup() {
  set +e
  for ns in "${nss[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
  done
  sleep 0.3
  for ns in "${nss[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

ns() {  # ns NAME: a namespace with lo up and no IPv6
  ip netns add "$p$1"
  nss+=("$p$1")
  ip -n "$p$1" link set lo up
  ip netns exec "$p$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
}
nx() { local n=$1; shift; ip netns exec "$p$n" "$@"; }
veth() {  # veth NS1 IF1 NS2 IF2
  ip link add "$2" netns "$p$1" type veth peer name "$4" netns "$p$3"
  ip -n "$p$1" link set "$2" up
  ip -n "$p$3" link set "$4" up
}
ctl() {  # ctl SOCKET JSON: one request to vireo-netd
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode()); r = s.makefile().readline()
if '"ok":true' not in r: sys.exit("vireo-netd: " + r)
PY
}
netd() {  # netd NS DIR: starts vireo-netd in NS, prints its pid
  # ip netns exec execs vireo-netd, so $! is its pid.
  ip netns exec "$p$1" "$bin/vireo-netd" --control "$2/netd.sock" >"$2/netd.log" 2>&1 &
  echo $!
  for _ in $(seq 100); do [ -S "$2/netd.sock" ] && break; sleep 0.05; done
}
# kernel_vtep NS LOCAL REMOTE ADDR: a kernel vxlan (VNI 4242) in a bridge holding ADDR.
kernel_vtep() {
  nx "$1" ip link add vx0 type vxlan id 4242 dstport 4789 local "$2" remote "$3" dev u
  nx "$1" ip link add br0 type bridge
  nx "$1" ip link set vx0 master br0
  [ -n "$4" ] && nx "$1" ip addr add "$4" dev br0
  nx "$1" ip link set vx0 up
  nx "$1" ip link set br0 up
}
wait_ping() { for _ in $(seq 50); do nx "$1" ping -c1 -W1 "$2" >/dev/null && return; done; echo "no ping $1 -> $2" >&2; exit 1; }
netd_jiffies() { awk '{print $14+$15}' "/proc/$1/stat"; }
# tcp NAME CLIENT SERVER IP [NETD_PID]: iperf3 for $secs seconds, Gbit/s and vireo-netd CPU.
tcp() {
  local name=$1 c=$2 s=$3 ip=$4 pid=${5:-} hz n0=0 n1=0; hz=$(getconf CLK_TCK)
  nx "$s" iperf3 -s -D -1 -p 5201
  sleep 0.3
  [ -n "$pid" ] && n0=$(netd_jiffies "$pid")
  nx "$c" iperf3 -c "$ip" -p 5201 -t "$secs" -J >"$work/$name.json"
  [ -n "$pid" ] && n1=$(netd_jiffies "$pid")
  echo "scale=0; 100*($n1-$n0)/$hz/$secs" | bc >"$work/$name.cpu"
}

# VXLAN with vireo-netd as host A's VTEP.
ns a; ns b; ns c
veth a u b u
nx a ip addr add 10.251.0.1/24 dev u
nx b ip addr add 10.251.0.2/24 dev u
nx b ethtool -K u tx off >/dev/null  # a wire completes checksums; a veth would not
kernel_vtep b 10.251.0.2 10.251.0.1 10.90.0.3/24
veth a hc c eth0
nx c ip addr add 10.90.0.2/24 dev eth0
nx c ip link set eth0 mtu 1450
mkdir -p "$work/a"
apid=$(netd a "$work/a")
ctl "$work/a/netd.sock" '{"op":"network.create","name":"ovl","subnet":"10.90.0.0/24","vxlan":{"vni":4242,"remotes":["10.251.0.2"]}}'
ctl "$work/a/netd.sock" '{"op":"port.attach","network":"ovl","iface":"hc"}'
wait_ping c 10.90.0.3

# VXLAN kernel to kernel, the same shape.
ns ka; ns kb; ns kc
veth ka u kb u
nx ka ip addr add 10.252.0.1/24 dev u
nx kb ip addr add 10.252.0.2/24 dev u
nx kb ethtool -K u tx off >/dev/null
kernel_vtep ka 10.252.0.1 10.252.0.2 ""
kernel_vtep kb 10.252.0.2 10.252.0.1 10.90.0.3/24
veth ka hc kc eth0
nx ka ip link set hc master br0
nx kc ip addr add 10.90.0.2/24 dev eth0
nx kc ip link set eth0 mtu 1450
wait_ping kc 10.90.0.3

# NAT through vireo-netd, and plain kernel routing for reference.
ns n; ns nl; ns nr
veth n hl nl eth0; veth n hr nr eth0
nx nl ip addr add 10.87.0.2/24 dev eth0; nx nl ip route add default via 10.87.0.1
nx nr ip addr add 192.168.87.2/24 dev eth0
mkdir -p "$work/n"
npid=$(netd n "$work/n")
ctl "$work/n/netd.sock" '{"op":"network.create","name":"lan","subnet":"10.87.0.0/24","gateway":"10.87.0.1","nat":true}'
ctl "$work/n/netd.sock" '{"op":"network.create","name":"wan","subnet":"192.168.87.0/24","gateway":"192.168.87.1","uplink":true}'
ctl "$work/n/netd.sock" '{"op":"port.attach","network":"lan","iface":"hl"}'
ctl "$work/n/netd.sock" '{"op":"port.attach","network":"wan","iface":"hr"}'
wait_ping nl 192.168.87.2
ns k; ns kl; ns kr
veth k hl kl eth0; veth k hr kr eth0
nx k ip addr add 10.87.0.1/24 dev hl; nx k ip addr add 192.168.87.1/24 dev hr
nx k sysctl -qw net.ipv4.ip_forward=1
nx kl ip addr add 10.87.0.2/24 dev eth0; nx kl ip route add default via 10.87.0.1
nx kr ip addr add 192.168.87.2/24 dev eth0; nx kr ip route add default via 192.168.87.1
wait_ping kl 192.168.87.2

tcp vx_netd c b 10.90.0.3 "$apid"
tcp vx_kernel kc kb 10.90.0.3
tcp vx_netd_rx b c 10.90.0.2 "$apid"
tcp vx_kernel_rx kb kc 10.90.0.2
tcp nat_netd nl nr 192.168.87.2 "$npid"
tcp routed_kernel kl kr 192.168.87.2

python3 - "$work" "$secs" <<'PY'
import json, sys, os
work, secs = sys.argv[1], sys.argv[2]
def g(n): return json.load(open(f"{work}/{n}.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
def cpu(n): return open(f"{work}/{n}.cpu").read().strip()
rows = [("VXLAN TCP, instance -> remote host", "vx_netd", "vx_kernel"),
        ("VXLAN TCP, remote host -> instance", "vx_netd_rx", "vx_kernel_rx"),
        ("TCP through NAT (kernel: routed)", "nat_netd", "routed_kernel")]
print(f"{'Gbit/s':38}{'vireo-netd':>12}{'kernel':>10}{'ratio':>8}{'netd CPU %':>12}")
for label, a, b in rows:
    print(f"{label:38}{g(a):12.2f}{g(b):10.2f}{g(a)/g(b):8.2f}{cpu(a):>12}")
print(f"(each test {secs} s, {os.cpu_count()} CPUs)")
PY
