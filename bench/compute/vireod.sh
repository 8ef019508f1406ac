#!/usr/bin/env bash
# VM benchmarks through vireod and the CLI (issue 6):
#  1. `vireo vm start` to VIREO-GUEST-READY on the serial console, vs the same QEMU command line
#     run directly (the argv vireod gave QEMU, read from /proc, with its own files and the serial
#     port in a file), alternating, REPS each. Both are timed the same way: from the command to
#     the READY line appearing in the console file, polled every 5 ms.
#  2. COUNT VMs started at once (COUNT `vireo vm start` in parallel): the time until every console
#     shows READY, vireod's resident memory before and after, and the QEMUs' total.
#   bench/compute/vireod.sh [BUILD_DIR] [REPS] [COUNT]   (root; defaults: build 7 10)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$repo/build}
reps=${2:-7}
count=${3:-10}
[[ $(id -u) == 0 ]] || { echo "vireod.sh: needs root" >&2; exit 1; }
for bin in vireod vireo vireo-netd vireo-storaged; do
  [[ -x $build/bin/$bin ]] || { echo "vireod.sh: no $build/bin/$bin" >&2; exit 1; }
done
"$repo/scripts/guest-image" >/dev/null
eval "$("$repo/scripts/guest-image" --print)"
work=$(mktemp -d /var/tmp/vireo-vm-bench.XXXXXX)
sock=$work/vireod.sock
vireod_pid=
direct_pid=
vireo() { "$build/bin/vireo" --socket "$sock" "$@"; }
cleanup() {
  [[ -n $direct_pid ]] && kill -9 "$direct_pid" 2>/dev/null
  if [[ -n $vireod_pid ]]; then
    for vm in $(vireo --format json vm ls 2>/dev/null |
                python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin)))' 2>/dev/null); do
      vireo vm rm -f "$vm" >/dev/null 2>&1 || true
    done
    kill "$vireod_pid" 2>/dev/null || true
    wait "$vireod_pid" 2>/dev/null || true
  fi
  # vireo-netd and vireo-storaged outlive vireod by design: stop this root's.
  for pidfile in "$work"/root/network/netd.pid "$work"/root/storage/storaged.pid; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Waits until FILE contains VIREO-GUEST-READY (at most 120 s).
wait_ready() {
  for _ in $(seq 24000); do
    grep -q VIREO-GUEST-READY "$1" 2>/dev/null && return 0
    sleep 0.005
  done
  echo "vireod.sh: no READY in $1" >&2
  exit 1
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

"$build/bin/vireod" --root "$work/root" --socket "$sock" --foreground --log-level warn \
  >"$work/vireod.log" 2>&1 &
vireod_pid=$!
for _ in $(seq 200); do vireo info >/dev/null 2>&1 && break; sleep 0.05; done
echo "host: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), accelerator $(vireo --format json info | python3 -c 'import json,sys; print(json.load(sys.stdin).get("host",{}).get("accelerator","?"))'), $(qemu-system-x86_64 --version | head -1)"

vm_args=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "console=ttyS0 quiet"
         --memory 256M --cpus 1)
vireo vm create bench "${vm_args[@]}" >/dev/null
console=$work/root/vms/bench/console.log

# The direct command line: what vireod ran, with its own sockets and files, not paused, the
# serial port in a file.
vireo vm start bench >/dev/null
wait_ready "$console"
qemu_pid=$(vireo --format json vm show bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"]["pid"])')
mapfile -d '' argv <"/proc/$qemu_pid/cmdline"
vireo vm stop bench --force >/dev/null
mkdir -p "$work/direct"
direct=()
for a in "${argv[@]}"; do
  [[ $a == -S ]] && continue
  a=${a//$work\/root\/vms\/bench/$work\/direct}
  [[ $a == chardev:console ]] && a="file:$work/direct/serial.out"
  direct+=("$a")
done

vireo_ms=() direct_ms=()
for i in $(seq "$reps"); do
  : >"$console"
  t0=$(now_ms)
  vireo vm start bench >/dev/null
  wait_ready "$console"
  vireo_ms+=($(($(now_ms) - t0)))
  vireo vm stop bench --force >/dev/null

  rm -f "$work/direct/serial.out" "$work/direct/"*.sock "$work/direct/qemu.pid"
  t0=$(now_ms)
  "${direct[@]}" >/dev/null 2>&1 &
  direct_pid=$!
  wait_ready "$work/direct/serial.out"
  direct_ms+=($(($(now_ms) - t0)))
  kill -9 "$direct_pid"; wait "$direct_pid" 2>/dev/null || true; direct_pid=
  echo "run $i: vireo vm start ${vireo_ms[-1]} ms, direct QEMU ${direct_ms[-1]} ms"
done
v=$(printf '%s\n' "${vireo_ms[@]}" | median)
d=$(printf '%s\n' "${direct_ms[@]}" | median)
vmin=$(printf '%s\n' "${vireo_ms[@]}" | sort -n | head -1)
dmin=$(printf '%s\n' "${direct_ms[@]}" | sort -n | head -1)
echo "median to READY: vireo $v ms, direct $d ms, overhead $(python3 -c "print(f'{$v-$d:+.0f} ms ({($v-$d)/$d*100:+.1f} %)')")"
echo "fastest to READY: vireo $vmin ms, direct $dmin ms, difference $((vmin - dmin)) ms"

# COUNT VMs at once.
rss_before=$(rss_kb "$vireod_pid")
for i in $(seq "$count"); do vireo vm create "many$i" "${vm_args[@]}" >/dev/null; done
t0=$(now_ms)
for i in $(seq "$count"); do vireo vm start "many$i" >/dev/null & done
wait $(jobs -p | grep -v "^$vireod_pid$") 2>/dev/null || true
for i in $(seq "$count"); do wait_ready "$work/root/vms/many$i/console.log"; done
total=$(($(now_ms) - t0))
qemu_kb=0
for i in $(seq "$count"); do
  pid=$(vireo --format json vm show "many$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"]["pid"])')
  qemu_kb=$((qemu_kb + $(rss_kb "$pid")))
done
echo "$count VMs started at once: all READY in $total ms; vireod RSS $rss_before KiB before, $(rss_kb "$vireod_pid") KiB with them running; QEMUs $((qemu_kb / 1024)) MiB in total"
