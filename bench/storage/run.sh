#!/usr/bin/env bash
# Side-by-side NBD benchmark: vireo-nbd vs qemu-nbd, each serving a fresh qcow2 image (64 KiB
# clusters) over a Unix socket, and vireo-storaged serving a fresh thin-pool volume (64 KiB
# extents) of the same size, measured with fio's nbd engine (libnbd) in the same run:
# 1 MiB sequential write (which also allocates the image), 1 MiB sequential read, 4 KiB random
# read and 4 KiB random write at iodepth 16. Then the thin-pool snapshot creation time for a
# 1 GiB and a 64 GiB volume (storage_snapshot_bench).
#   bench/storage/run.sh [BUILD_DIR]   (env: SIZE=1G RUNTIME=10)
set -euo pipefail
build=${1:-$(cd "$(dirname "$0")/../.." && pwd)/build}
size=${SIZE:-1G}
runtime=${RUNTIME:-10}
work=$(mktemp -d /var/tmp/vireo-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in fio qemu-img qemu-nbd python3 numfmt; do
  command -v $tool >/dev/null || { echo "run.sh: $tool is missing (scripts/setup)" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "run.sh: fio lacks the nbd engine" >&2; exit 1; }

# uri SERVER: the NBD URI of the server's device
uri() {
  if [[ $1 == thin ]]; then echo "nbd+unix:///bench/vol?socket=$work/thin.sock"
  else echo "nbd+unix:///?socket=$work/$1.sock"; fi
}

# Waits until a URI accepts connections.
wait_socket() {
  for _ in $(seq 100); do
    nbdinfo --size "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "run.sh: server on $1 did not come up" >&2
  exit 1
}

# fio_job NAME URI RW BS -> prints "IOPS bytes/s" of the job's read or write side
fio_job() {
  local u=$2 rw=$3 bs=$4 timed=1
  [[ $rw == write ]] && timed=0  # the sequential write covers the whole image once
  fio --name="$1" --ioengine=nbd --uri="$u" --rw="$rw" --bs="$bs" \
    --iodepth=16 --size="$size" --runtime="$runtime" --time_based="$timed" \
    --output-format=terse --output="$work/fio.txt" >/dev/null 2>&1
  # terse v3: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS
  awk -F';' '{ if ($49 > 0) print $49, $48 * 1024; else print $8, $7 * 1024 }' "$work/fio.txt"
}

# The servers run side by side; each test runs on one, then the others, so that a noisy
# neighbour hurts all alike.
servers=(vireo qemu thin)
for server in "${servers[@]}"; do
  img=$work/$server.qcow2
  sock=$work/$server.sock
  if [[ $server == thin ]]; then
    "$build/bin/vireo-storaged" --state "$work/storaged" --control "$work/ctl.sock" \
      --nbd-socket "$sock" >/dev/null 2>"$work/$server.log" &
    pids+=($!)
    for _ in $(seq 100); do [[ -S $work/ctl.sock ]] && break; sleep 0.1; done
    # A pool with room for the volume and its metadata; one volume of SIZE.
    pool_bytes=$(($(numfmt --from=iec "$size") * 2 + (64 << 20)))
    python3 - "$work" "$pool_bytes" "$size" <<'PY'
import json, socket, sys
work, pool_bytes, size = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.connect(work + "/ctl.sock")
f = s.makefile("rw")
for req in ({"op": "pool.create", "name": "bench", "type": "thin", "path": work + "/thin.pool",
             "size": pool_bytes},
            {"op": "vol.create", "pool": "bench", "name": "vol", "size": size}):
    f.write(json.dumps(req) + "\n")
    f.flush()
    reply = json.loads(f.readline())
    if not reply.get("ok"):
        sys.exit("run.sh: vireo-storaged: " + reply.get("error", "?"))
PY
    wait_socket "$(uri thin)"
    continue
  fi
  qemu-img create -q -f qcow2 "$img" "$size"
  if [[ $server == vireo ]]; then
    "$build/bin/vireo-nbd" --socket "$sock" "d=$img" >/dev/null 2>"$work/$server.log" &
  else
    qemu-nbd --persistent --format=qcow2 --cache=writeback --aio=threads --shared=8 \
      --socket="$sock" "$img" 2>"$work/$server.log" &
  fi
  pids+=($!)
  wait_socket "$(uri $server)"
done

declare -A result
tests=(seqwrite:write:1M seqread:read:1M randread:randread:4k randwrite:randwrite:4k)
for t in "${tests[@]}"; do
  IFS=: read -r name rw bs <<<"$t"
  for server in "${servers[@]}"; do
    result[$server.$name]=$(fio_job "$name" "$(uri $server)" "$rw" "$bs")
  done
done

printf "%-18s %16s %16s %8s %18s %8s\n" "test ($size)" "vireo-nbd qcow2" "qemu-nbd qcow2" \
  "ratio" "storaged thin" "ratio"
for t in seqwrite seqread randread randwrite; do
  read -r v_iops v_bw <<<"${result[vireo.$t]}"
  read -r q_iops q_bw <<<"${result[qemu.$t]}"
  read -r t_iops t_bw <<<"${result[thin.$t]}"
  if [[ $t == seq* ]]; then
    awk -v t="$t 1M qd16" -v v="$v_bw" -v q="$q_bw" -v h="$t_bw" \
      'BEGIN { printf "%-18s %10.0f MiB/s %10.0f MiB/s %8.2f %12.0f MiB/s %8.2f\n", t,
               v / 1048576, q / 1048576, v / q, h / 1048576, h / q }'
  else
    awk -v t="$t 4K qd16" -v v="$v_iops" -v q="$q_iops" -v h="$t_iops" \
      'BEGIN { printf "%-18s %11.0f IOPS %11.0f IOPS %8.2f %13.0f IOPS %8.2f\n", t, v, q, v / q, h,
               h / q }'
  fi
done
echo "(thin ratios are storaged thin / qemu-nbd qcow2)"
echo
if [[ -x $build/bin/storage_snapshot_bench ]]; then
  echo "thin-pool snapshot creation (20 snapshots each, pool file under $work):"
  "$build/bin/storage_snapshot_bench" "$work" 20
fi
