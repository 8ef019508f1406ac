#!/usr/bin/env bash
# Side-by-side benchmark: two network namespaces joined through vireo-netd vs through a Linux
# bridge, same machine, same run. Measures iperf3 TCP throughput, 64-byte UDP packets per second
# delivered at the same offered load, ping latency (p50/p99) and CPU used, and prints ratios.
# Needs root, iperf3, iproute2. Usage: bench/network/run.sh [SECONDS] (default 10 per test).
# VIREO_BIN_DIR points at the build's bin/ (default build/bin). UDP_RATE sets the
# offered UDP load in bit/s of payload (default 40M, i.e. ~280 kpps of 18-byte payloads; the
# sender may not reach it on a small machine: the offered rate is printed). RING=v3 uses
# TPACKET_V3 rings on the vireo-netd ports instead of V2. THREADS sets vireo-netd's datapath
# threads (default: one per CPU; each of the two ports then has its own).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-10}
bin=${VIREO_BIN_DIR:-$root/build/bin}
udp_rate=${UDP_RATE:-40M}
ring=${RING:-v2}  # AF_PACKET ring of the vireo-netd ports
threads=${THREADS:+--threads $THREADS}
p=vb$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
work=$(mktemp -d)
netd_pid=""

cleanup() {
  set +e
  for ns in ${p}va ${p}vb ${p}ba ${p}bb; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  ip link del ${p}br 2>/dev/null
  [ -n "$netd_pid" ] && kill "$netd_pid" 2>/dev/null && wait "$netd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# host NS HOSTIF ADDR: a namespace whose eth0 is the peer of HOSTIF.
host() {
  ip netns add "$1"
  ip link add "$2" type veth peer name eth0 netns "$1"
  sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$1" ip addr add "$3/24" dev eth0
  ip netns exec "$1" ip link set eth0 up
  ip netns exec "$1" ip link set lo up
}

ctl() {  # one JSON request to vireo-netd
  python3 - "$work/netd.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode()); r = s.makefile().readline()
if '"ok":true' not in r: sys.exit("vireo-netd: " + r)
PY
}

# Setup: vireo-netd between va/vb, a bridge between ba/bb.
"$bin/vireo-netd" --control "$work/netd.sock" $threads >"$work/netd.log" 2>&1 &
netd_pid=$!
for _ in $(seq 100); do [ -S "$work/netd.sock" ] && break; sleep 0.05; done
host ${p}va ${p}hva 10.91.0.1; host ${p}vb ${p}hvb 10.91.0.2
host ${p}ba ${p}hba 10.92.0.1; host ${p}bb ${p}hbb 10.92.0.2
ctl '{"op":"network.create","name":"bench","subnet":"10.91.0.0/24"}'
for h in ${p}hva ${p}hvb; do
  ctl "{\"op\":\"port.attach\",\"network\":\"bench\",\"iface\":\"$h\",\"ring\":\"$ring\"}"
done
ip link add ${p}br type bridge
ip link set ${p}br up
for l in ${p}hba ${p}hbb; do ip link set $l master ${p}br; ip link set $l up; done
for ns in ${p}va:10.91.0.2 ${p}ba:10.92.0.2; do
  for _ in $(seq 50); do ip netns exec ${ns%%:*} ping -c1 -W1 ${ns##*:} >/dev/null && break; done
done

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
netd_jiffies() { awk '{print $14+$15}' /proc/$netd_pid/stat; }

# measure NAME CLIENT_NS SERVER_NS SERVER_IP: runs the three tests, writes $work/NAME.*
measure() {
  local name=$1 cns=$2 sns=$3 ip=$4 hz; hz=$(getconf CLK_TCK)
  ip netns exec "$sns" iperf3 -s -D -B "$ip" -p 5201
  sleep 0.3
  local b0 n0 b1 n1
  b0=$(busy_jiffies); n0=$(netd_jiffies)
  ip netns exec "$cns" iperf3 -c "$ip" -t "$secs" -J >"$work/$name.tcp.json"
  b1=$(busy_jiffies); n1=$(netd_jiffies)
  echo "scale=1; 100*($b1-$b0)/$hz/$secs" | bc >"$work/$name.tcp.cpu"
  echo "scale=1; 100*($n1-$n0)/$hz/$secs" | bc >"$work/$name.tcp.netdcpu"
  b0=$(busy_jiffies); n0=$(netd_jiffies)
  ip netns exec "$cns" iperf3 -c "$ip" -u -l 18 -b "$udp_rate" -t "$secs" -J >"$work/$name.udp.json"
  b1=$(busy_jiffies); n1=$(netd_jiffies)
  echo "scale=1; 100*($b1-$b0)/$hz/$secs" | bc >"$work/$name.udp.cpu"
  echo "scale=1; 100*($n1-$n0)/$hz/$secs" | bc >"$work/$name.udp.netdcpu"
  ip netns exec "$cns" ping -c 300 -i 0.01 -q "$ip" >/dev/null || true
  ip netns exec "$cns" ping -c 500 -i 0.005 "$ip" | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' \
    | sort -n >"$work/$name.ping"
  for pid in $(ip netns pids "$sns"); do kill "$pid" 2>/dev/null || true; done
}

measure netd ${p}va ${p}vb 10.91.0.2
# Frames the kernel dropped before netd read them, over the whole netd run (full rings).
python3 - "$work/netd.sock" >"$work/netd.ringdrops" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"op":"port.list"}\n')
print(sum(p["stats"].get("rx_device_dropped", 0) for p in json.loads(s.makefile().readline())["ports"]))
PY
measure bridge ${p}ba ${p}bb 10.92.0.2

python3 - "$work" "$secs" "$udp_rate" <<'PY'
import json, sys
work, secs, rate = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def tcp(n): return json.load(open(f"{work}/{n}.tcp.json"))["end"]["sum_received"]["bits_per_second"]
def udp(n):
    s = json.load(open(f"{work}/{n}.udp.json"))["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"], s["packets"] / s["seconds"]
def pct(n, q):
    v = [float(x) for x in open(f"{work}/{n}.ping")]
    return v[min(len(v) - 1, int(q * len(v)))] * 1000 if v else float("nan")
def cpu(n, k): return float(open(f"{work}/{n}.{k}").read() or 0)
r = {n: dict(tcp=tcp(n), udp=udp(n), p50=pct(n, .5), p99=pct(n, .99)) for n in ("netd", "bridge")}
print(f"{'':24}{'vireo-netd':>14}{'linux bridge':>14}{'ratio':>8}")
print(f"{'TCP throughput Gbit/s':24}{r['netd']['tcp']/1e9:14.2f}{r['bridge']['tcp']/1e9:14.2f}"
      f"{r['netd']['tcp']/r['bridge']['tcp']:8.2f}")
print(f"{'UDP 64B delivered kpps':24}{r['netd']['udp'][0]/1e3:14.1f}{r['bridge']['udp'][0]/1e3:14.1f}"
      f"{r['netd']['udp'][0]/r['bridge']['udp'][0]:8.2f}")
print(f"{'  (offered kpps)':24}{r['netd']['udp'][1]/1e3:14.1f}{r['bridge']['udp'][1]/1e3:14.1f}")
print(f"{'ping p50 us':24}{r['netd']['p50']:14.0f}{r['bridge']['p50']:14.0f}{r['netd']['p50']/r['bridge']['p50']:8.2f}")
print(f"{'ping p99 us':24}{r['netd']['p99']:14.0f}{r['bridge']['p99']:14.0f}{r['netd']['p99']/r['bridge']['p99']:8.2f}")
for k, label in (("tcp", "TCP"), ("udp", "UDP")):
    print(f"{label+' CPU busy % (all)':24}{cpu('netd', k+'.cpu'):14.0f}{cpu('bridge', k+'.cpu'):14.0f}")
    print(f"{label+' CPU % vireo-netd':24}{cpu('netd', k+'.netdcpu'):14.0f}{'-':>14}")
print(f"{'netd ring drops (run)':24}{open(f'{work}/netd.ringdrops').read().strip():>14}")
threads = open(f"{work}/netd.log").read().split(" datapath threads")[0].rsplit("(", 1)[-1]
print(f"(each test {secs:.0f} s, UDP offered {rate} bit/s of 18-byte payloads = 64-byte frames,"
      f" {__import__('os').cpu_count()} CPUs, {threads} vireo-netd datapath threads)")
PY
