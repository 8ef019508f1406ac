#!/bin/bash
# Live migration between two vireods on this host: an idle VM (512 MiB, TCG) with a NIC on a
# VXLAN network spanning the two vireo-netds (VTEPs 127.0.0.51 and .52), migrated back and forth
# REPS times while a namespace on the first host's network pings it every 10 ms. Reports QEMU's
# downtime and total time (vireo vm migrate's answer) and the longest run of lost pings.
#   bench/compute/migrate.sh [BUILD_DIR] [REPS] [MEMORY]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-build}/bin")
REPS=${2:-6}
MEMORY=${3:-512M}
GUEST=$(realpath .cache/guest)
[ -f "$GUEST/vmlinuz" ] || scripts/guest-image >/dev/null
W=$(mktemp -d /tmp/vireo-migbench.XXXXXX)
NS=vmb$$
NET=vmbnet

vireo() { local host=$1; shift; "$BIN/vireo" --socket "$W/$host.sock" "$@"; }

cleanup() {
  for h in a b; do
    vireo "$h" vm stop mb --force >/dev/null 2>&1 || true
    [ -f "$W/$h.pid" ] && kill "$(cat "$W/$h.pid")" 2>/dev/null || true
    for p in "$W/$h/network/netd.pid" "$W/$h/storage/storaged.pid"; do
      [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
  done
  ip netns del "$NS" 2>/dev/null || true
  ip link del "${NS}h" 2>/dev/null || true
  sleep 0.5
  rm -rf "$W"
}
trap cleanup EXIT

start_vireod() {  # host vtep
  "$BIN/vireod" --root "$W/$1" --socket "$W/$1.sock" --foreground --log-level warn \
    --vxlan-local "$2" 2>>"$W/$1.log" &
  echo $! >"$W/$1.pid"
  for _ in $(seq 200); do vireo "$1" info >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "vireod $1 did not start" >&2
  exit 1
}

start_vireod a 127.0.0.51
start_vireod b 127.0.0.52
vireo a net create $NET --subnet 10.79.0.0/24 --gateway 10.79.0.1 --dhcp --vxlan 7901 \
  --remote 127.0.0.52 >/dev/null
vireo b net create $NET --subnet 10.79.0.0/24 --vxlan 7901 --remote 127.0.0.51 >/dev/null
ip netns add "$NS"
ip link add "${NS}h" type veth peer name eth0 netns "$NS"
ip -n "$NS" addr add 10.79.0.200/24 dev eth0
ip -n "$NS" link set eth0 up
ip -n "$NS" link set lo up
ip link set "${NS}h" up
vireo a net port add $NET --iface "${NS}h" >/dev/null

vireo a vm create mb --kernel "$GUEST/vmlinuz" --initrd "$GUEST/initramfs.cpio.gz" \
  --cmdline "console=ttyS0 quiet" --memory "$MEMORY" --nic $NET --start >/dev/null
for _ in $(seq 600); do
  vireo a vm console mb --log | grep -q VIREO-GUEST-READY && break
  sleep 0.2
done
IP=$(vireo a vm console mb --log | grep -o 'eth0 10\.79\.0\.[0-9]*' | head -1 | cut -d' ' -f2)
[ -n "$IP" ] || { echo "the guest has no address" >&2; exit 1; }
ip netns exec "$NS" ping -c 1 -W 5 "$IP" >/dev/null

echo "load: $(cut -d' ' -f1-3 /proc/loadavg); guest $MEMORY, TCG, ping every 10 ms from $NS"
printf '%-6s %10s %12s %12s %14s\n' run total_ms downtime_ms ping_lost longest_gap_ms
from=a to=b
downtimes=()
for i in $(seq "$REPS"); do
  # -O prints "no answer yet" for each lost request, so the longest run of them is the gap.
  ip netns exec "$NS" ping -O -n -i 0.01 -c 500 "$IP" >"$W/ping.$i" 2>&1 &
  pinger=$!
  out=$(vireo "$from" --format json vm migrate mb --to "$W/$to.sock")
  wait $pinger || true
  total=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_ms"])')
  down=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["downtime_ms"])')
  lost=$(grep -o '[0-9]* packets transmitted, [0-9]* received' "$W/ping.$i" |
    awk '{print $1 - $4}')
  gap=$(awk '/no answer yet/ {run++; if (run > max) max = run; next} /bytes from/ {run = 0}
    END {print (max + 0) * 10}' "$W/ping.$i")
  printf '%-6s %10s %12s %12s %14s\n' "$from>$to" "$total" "$down" "$lost" "$gap"
  downtimes+=("$down")
  tmp=$from from=$to to=$tmp
done
sorted=$(printf '%s\n' "${downtimes[@]}" | sort -n)
echo "downtime median $(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms," \
  "max $(echo "$sorted" | tail -1) ms (target: under 300 ms)"
