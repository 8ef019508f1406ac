#!/usr/bin/env bash
# Benchmark: create + start + wait + delete of a busybox bundle running /bin/true, N times in a
# row (default 100), with vireo-runtime and with runc on the same bundle in the same run, cycles
# alternating between the two.
# Prints both wall times, the ratio (target <= 0.5) and the peak RSS of each runtime's processes.
#   bench/runtime/run.sh [BUILD_DIR] [ITERATIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
n=${2:-100}
vireo=$build/bin/vireo-runtime
harness=$build/bench/runtime_bench
runc=$(command -v runc || echo /usr/sbin/runc)
for f in "$vireo" "$harness" "$runc" /bin/busybox; do
  [ -x "$f" ] || { echo "run.sh: $f missing (build runtime_bench and vireo-runtime; run scripts/setup)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/vireo-runtime-bench.XXXXXX)
cleanup() {
  for r in vireo runc; do
    for d in "$work/$r-state"/*/; do [ -d "$d" ] && "${!r:-$vireo}" --root "$work/$r-state" delete -f "$(basename "$d")" >/dev/null 2>&1 || true; done
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The bundle: busybox-static, /bin/true, the runtime's default profile minus the terminal.
mkdir -p "$work/bundle/rootfs/bin" "$work/vireo-state" "$work/runc-state"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/true"
ln -s busybox "$work/bundle/rootfs/bin/sh"
mkdir -p "$work/bundle/rootfs/"{proc,sys,dev,tmp}
"$vireo" spec --bundle "$work/bundle"
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' "$work/bundle/config.json"
grep -q '"/bin/true"' "$work/bundle/config.json"

echo "bench: $n x (create, start, wait, delete), busybox /bin/true, $(nproc) CPUs, $(uname -r)"
# Cycles alternate between the runtimes so that both see the same machine load.
results=$("$harness" "$work/bundle" "$n" "$vireo" "$work/vireo-state" "$runc" "$work/runc-state")
read -r _ _ v_total v_ms v_rss <<<"$(sed -n 1p <<<"$results")"
read -r _ _ r_total r_ms r_rss <<<"$(sed -n 2p <<<"$results")"
printf '%-14s %8s s total %8s ms/cycle  peak RSS %6s KiB\n' vireo-runtime "$v_total" "$v_ms" "$v_rss"
printf '%-14s %8s s total %8s ms/cycle  peak RSS %6s KiB\n' runc "$r_total" "$r_ms" "$r_rss"
awk -v a="$v_total" -v b="$r_total" 'BEGIN { printf "ratio vireo/runc: %.2f (target <= 0.50)\n", a / b }'
