#!/usr/bin/env bash
# Container start-up benchmark, side by side with podman in the same run:
#   `vireo ct run --rm --net none IMAGE true`  vs  `podman run --rm --network=none IMAGE true`
# and, without a peer, the same on Vireo's default network (veth, address, netd port);
# (the same busybox image in both stores: exported by vireo as an OCI archive, `podman load`ed),
# N runs each, alternating; medians and the ratio vireo/podman. Then IDLE detached containers
# (`sleep`) are started one after another: the time to start them all, the monitors' resident
# memory (each, and in total with vireod's), then they are removed.
#   bench/containers/run.sh [BUILD_DIR] [N] [IDLE]   (root; defaults: build 20 200)
# Podman on this host needs --cgroup-manager=cgroupfs, --runtime runc and ulimits below the hard
# open-files limit (see the engineering notes); its storage is its own under the work dir.
set -euo pipefail
build=${1:-$(cd "$(dirname "$0")/../.." && pwd)/build}
runs=${2:-20}
idle=${3:-200}
[[ $(id -u) == 0 ]] || { echo "run.sh: needs root" >&2; exit 1; }
for bin in vireod vireo vireo-runtime vireo-monitor; do
  [[ -x $build/bin/$bin ]] || { echo "run.sh: no $build/bin/$bin" >&2; exit 1; }
done
have_podman=1
command -v podman >/dev/null && command -v runc >/dev/null || have_podman=0
work=$(mktemp -d /var/tmp/vireo-ct-bench.XXXXXX)
vireod_pid=
cleanup() {
  if [[ -n $vireod_pid ]]; then
    for c in $(vireo --format json ct ps -a 2>/dev/null |
               python3 -c 'import json,sys; print(" ".join(c["name"] for c in json.load(sys.stdin)))' 2>/dev/null); do
      vireo ct rm -f "$c" >/dev/null 2>&1 || true
    done
    kill "$vireod_pid" 2>/dev/null || true
    wait "$vireod_pid" 2>/dev/null || true
  fi
  if ((have_podman)); then podman_ rm -af >/dev/null 2>&1 || true; fi
  umount -R "$work/podman" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

sock=$work/vireod.sock
vireo() { "$build/bin/vireo" --socket "$sock" "$@"; }
podman_() {
  podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver overlay \
    --cgroup-manager=cgroupfs --runtime runc "$@"
}
"$build/bin/vireod" --root "$work/vireod" --socket "$sock" --foreground --log-level warn \
  >"$work/vireod.log" 2>&1 &
vireod_pid=$!
for _ in $(seq 200); do vireo info >/dev/null 2>&1 && break; sleep 0.05; done
vireo info >/dev/null

# The image: busybox-static as one layer.
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/busybox"
for t in sh true sleep; do ln -s busybox "$work/rootfs/bin/$t"; done
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
vireo image import "$work/busybox.tar" --tag bench/busybox:1 >/dev/null
if ((have_podman)); then
  vireo image export bench/busybox:1 --type oci-archive --output "$work/busybox-oci.tar" >/dev/null
  podman_ load -q -i "$work/busybox-oci.tar" >/dev/null
  podman_ tag "$(podman_ images -q | head -1)" localhost/bench/busybox:1
fi

now() { date +%s.%N; }
time_it() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t0 $t1" | awk '{printf "%.4f\n", $2-$1}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "container benchmark: $runs runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
vireo ct run --rm --net none bench/busybox:1 true  # warm caches on both sides
((have_podman)) && podman_ run --rm --network=none --ulimit nofile=1024:1024 \
  --ulimit nproc=1024:1024 localhost/bench/busybox:1 true
: >"$work/vireo.times"
: >"$work/podman.times"
: >"$work/vireo-net.times"
for ((i = 0; i < runs; i++)); do
  time_it vireo ct run --rm --net none bench/busybox:1 true >>"$work/vireo.times"
  time_it vireo ct run --rm bench/busybox:1 true >>"$work/vireo-net.times"
  ((have_podman)) && time_it podman_ run --rm --network=none --ulimit nofile=1024:1024 \
    --ulimit nproc=1024:1024 localhost/bench/busybox:1 true >>"$work/podman.times"
done
v=$(median <"$work/vireo.times")
printf 'vireo ct run --rm --net none IMAGE true   median %6.1f ms\n' "$(echo "$v" | awk '{print $1*1000}')"
vn=$(median <"$work/vireo-net.times")
printf 'vireo ct run --rm IMAGE true (on vireo0)   median %6.1f ms\n' "$(echo "$vn" | awk '{print $1*1000}')"
if ((have_podman)); then
  p=$(median <"$work/podman.times")
  printf 'podman run --rm --network=none IMAGE true median %6.1f ms\n' "$(echo "$p" | awk '{print $1*1000}')"
  echo "ratio vireo/podman: $(echo "$v $p" | awk '{printf "%.2f", $1/$2}')"
else
  echo "podman or runc missing: no ratio"
fi

# Idle containers (network none, as the earlier figures; a /24 default network would also hold
# 200, each with a veth and a netd port).
t0=$(now)
for ((i = 0; i < idle; i++)); do
  vireo ct run -d --net none --name "idle-$i" bench/busybox:1 sleep 100000 >/dev/null
done
t1=$(now)
total=0 count=0 max=0
for pid in $(pgrep -x vireo-monitor); do
  kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  total=$((total + kb)) count=$((count + 1))
  ((kb > max)) && max=$kb
done
daemon_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$vireod_pid/status")
echo "$idle idle containers started in $(echo "$t0 $t1" | awk '{printf "%.1f", $2-$1}') s;" \
  "monitors: $count, VmRSS max $max KiB, mean $((total / (count ? count : 1))) KiB;" \
  "vireod $daemon_kb KiB; vireod + monitors $(((total + daemon_kb) / 1024)) MiB"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
