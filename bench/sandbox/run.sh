#!/usr/bin/env bash
# Benchmark for vireo app (issue 9), in one run, runs alternating so both sides see the same load:
#  1. `vireo app run -- /bin/true` vs `bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all
#     /bin/true`: mean wall time per run and the ratio (target <= 1.2), as root (kernel overlayfs);
#     the same as an unprivileged user (fuse-overlayfs) is printed too.
#  2. A program writing 1,000 small files into /usr/share (redirected into the app's store) vs the
#     same program writing them into a plain directory on the host, unsandboxed: the ratio.
#   bench/sandbox/run.sh [BUILD_DIR] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
n=${2:-50}
vireo=$build/bin/vireo
bwrap=$(command -v bwrap || true)
[ -x "$vireo" ] || { echo "run.sh: $vireo missing (build first)" >&2; exit 1; }
[ -n "$bwrap" ] || { echo "run.sh: bwrap missing (scripts/setup installs bubblewrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root (the user case uses setpriv)" >&2; exit 1; }

work=$(mktemp -d /tmp/vireo-sandbox-bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/apps" "$work/home" "$work/user-apps" "$work/user-home" "$work/plain"
chown 65534:65534 "$work/user-apps" "$work/user-home"
trap 'rm -rf "$work"' EXIT
export VIREO_APPS_DIR=$work/apps HOME=$work/home
as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups env VIREO_APPS_DIR=$work/user-apps
  HOME=$work/user-home)

now() { date +%s%N; }
# mean milliseconds of one command, run n times, appended to the named accumulator
declare -A total=([vireo]=0 [bwrap]=0 [user]=0)
vireo_true=("$vireo" app run --name bench -- /bin/true)
bwrap_true=("$bwrap" --ro-bind / / --dev /dev --proc /proc --unshare-all /bin/true)
# The sandbox writes a little metadata at each start (the overlay's work folder); writeback left
# over from earlier jobs would stall it behind the journal, so start from a synced disk.
sync
# Warm-up: the first run of an app creates its store.
"${vireo_true[@]}"; "${as_user[@]}" "${vireo_true[@]}"; "${bwrap_true[@]}"
for ((i = 0; i < n; i++)); do
  t=$(now); "${vireo_true[@]}"; total[vireo]=$((total[vireo] + $(now) - t))
  t=$(now); "${bwrap_true[@]}"; total[bwrap]=$((total[bwrap] + $(now) - t))
  t=$(now); "${as_user[@]}" "${vireo_true[@]}"; total[user]=$((total[user] + $(now) - t))
done
ms() { echo "scale=2; $1 / $n / 1000000" | bc; }
v=$(ms "${total[vireo]}"); b=$(ms "${total[bwrap]}"); u=$(ms "${total[user]}")
echo "bench: $n runs each of /bin/true, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(uname -r)"
printf '  vireo app run (root)   %8s ms/run\n' "$v"
printf '  bwrap --unshare-all    %8s ms/run\n' "$b"
printf '  ratio vireo/bwrap      %8s   (target <= 1.2)\n' "$(echo "scale=2; $v / $b" | bc)"
printf '  vireo app run (user)   %8s ms/run (fuse-overlayfs; setpriv adds its own start-up)\n' "$u"

# 1,000 small files: redirected into the store vs a plain directory.
writer='import os, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
for i in range(1000):
    with open(os.path.join(d, "f%d" % i), "w") as f: f.write("x" * 100)'
rounds=5
red=0; plain=0
for ((i = 0; i < rounds; i++)); do
  "$vireo" app store reset files >/dev/null 2>&1 || true
  rm -rf "$work/plain/out"
  t=$(now); "$vireo" app run --name files -- python3 -c "$writer" /usr/share/vireo-bench; red=$((red + $(now) - t))
  t=$(now); python3 -c "$writer" "$work/plain/out"; plain=$((plain + $(now) - t))
done
r=$(echo "scale=2; $red / $rounds / 1000000" | bc); p=$(echo "scale=2; $plain / $rounds / 1000000" | bc)
echo "bench: 1,000 files of 100 bytes, $rounds rounds"
printf '  redirected into the store (/usr/share, sandboxed) %8s ms\n' "$r"
printf '  plain directory (unsandboxed)                     %8s ms\n' "$p"
printf '  ratio                                             %8s\n' "$(echo "scale=2; $r / $p" | bc)"
