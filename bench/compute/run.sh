#!/usr/bin/env bash
# Benchmark: time from starting a VM through the compute runner to VIREO-GUEST-READY, vs the
# same QEMU command line run directly; same kernel and initrd, alternating in one run.
# Usage: bench/compute/run.sh [REPETITIONS]   (env BUILD_DIR, default build)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
reps=${1:-5}
"$repo/scripts/guest-image" >&2
eval "$("$repo/scripts/guest-image" --print)"
[ -f "$build/build.ninja" ] || cmake -S "$repo" -B "$build" -G Ninja >/dev/null
nice -n 5 ninja -C "$build" compute_vm_start_bench >/dev/null
echo "host: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(qemu-system-x86_64 --version | head -1)"
exec "$build/bin/compute_vm_start_bench" "$GUEST_KERNEL" "$GUEST_INITRD" "$reps"
