#!/usr/bin/env bash
# Side-by-side NBD benchmark: vireo-nbd vs qemu-nbd, each serving a fresh qcow2 image (64 KiB
# clusters) over a Unix socket, measured with fio's nbd engine (libnbd) in the same run:
# 1 MiB sequential write (which also allocates the image), 1 MiB sequential read, 4 KiB random
# read and 4 KiB random write at iodepth 16.
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

for tool in fio qemu-img qemu-nbd; do
  command -v $tool >/dev/null || { echo "run.sh: $tool is missing (scripts/setup)" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "run.sh: fio lacks the nbd engine" >&2; exit 1; }

# Starts a server and waits until its socket accepts connections.
wait_socket() {
  for _ in $(seq 100); do
    nbdinfo --size "nbd+unix:///?socket=$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "run.sh: server on $1 did not come up" >&2
  exit 1
}

# fio_job NAME SOCKET RW BS -> prints "IOPS bytes/s" of the job's read or write side
fio_job() {
  local sock=$2 rw=$3 bs=$4 timed=1
  [[ $rw == write ]] && timed=0  # the sequential write covers the whole image once
  fio --name="$1" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$rw" --bs="$bs" \
    --iodepth=16 --size="$size" --runtime="$runtime" --time_based="$timed" \
    --output-format=terse --output="$work/fio.txt" >/dev/null 2>&1
  # terse v3: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS
  awk -F';' '{ if ($49 > 0) print $49, $48 * 1024; else print $8, $7 * 1024 }' "$work/fio.txt"
}

# Both servers run side by side; each test runs on one, then the other, so that a noisy
# neighbour hurts both alike.
for server in vireo qemu; do
  img=$work/$server.qcow2
  sock=$work/$server.sock
  qemu-img create -q -f qcow2 "$img" "$size"
  if [[ $server == vireo ]]; then
    "$build/bin/vireo-nbd" --socket "$sock" "d=$img" >/dev/null 2>"$work/$server.log" &
  else
    qemu-nbd --persistent --format=qcow2 --cache=writeback --aio=threads --shared=8 \
      --socket="$sock" "$img" 2>"$work/$server.log" &
  fi
  pids+=($!)
  wait_socket "$sock"
done

declare -A result
tests=(seqwrite:write:1M seqread:read:1M randread:randread:4k randwrite:randwrite:4k)
for t in "${tests[@]}"; do
  IFS=: read -r name rw bs <<<"$t"
  for server in vireo qemu; do
    result[$server.$name]=$(fio_job "$name" "$work/$server.sock" "$rw" "$bs")
  done
done

printf "%-22s %16s %16s %8s\n" "test (qcow2, $size)" "vireo-nbd" "qemu-nbd" "ratio"
for t in seqwrite seqread randread randwrite; do
  read -r v_iops v_bw <<<"${result[vireo.$t]}"
  read -r q_iops q_bw <<<"${result[qemu.$t]}"
  if [[ $t == seq* ]]; then
    awk -v t="$t 1M qd16" -v v="$v_bw" -v q="$q_bw" \
      'BEGIN { printf "%-22s %10.0f MiB/s %10.0f MiB/s %8.2f\n", t, v / 1048576, q / 1048576, v / q }'
  else
    awk -v t="$t 4K qd16" -v v="$v_iops" -v q="$q_iops" \
      'BEGIN { printf "%-22s %11.0f IOPS %11.0f IOPS %8.2f\n", t, v, q, v / q }'
  fi
done
