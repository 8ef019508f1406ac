#!/usr/bin/env bash
# Side-by-side pull benchmark: `vireo image pull` (through vireod: download, verify, unpack the
# layers into the image store) against `skopeo copy docker://... oci:` + `umoci unpack` (the
# same result with the peers: blobs on disk and an unpacked root file system), from the same
# vireo-registry, in the same run. The image is the registry benchmark's: SIZE_MIB MiB in LAYERS
# gzip -1 layers of random data (bench/registry/layout.sh). RUNS rounds alternating who goes
# first; before each timed pull the store is emptied (image rm + prune) or the peer's output
# removed, and `sync` runs so that nobody pays for another's writeback. Prints the medians and
# the ratio vireo/peers.
#   bench/image/pull.sh [BUILD_DIR]   (env: SIZE_MIB=512 LAYERS=8 RUNS=3)
set -euo pipefail
build=${1:-$(cd "$(dirname "$0")/../.." && pwd)/build}
size_mib=${SIZE_MIB:-512}
layers=${LAYERS:-8}
runs=${RUNS:-3}
work=$(mktemp -d /var/tmp/vireo-pull-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in skopeo umoci python3 sha256sum tar gzip; do
  command -v $tool >/dev/null || { echo "pull.sh: $tool is missing (scripts/setup)" >&2; exit 1; }
done
for bin in vireo-registry vireod vireo; do
  [[ -x $build/bin/$bin ]] || { echo "pull.sh: no $build/bin/$bin" >&2; exit 1; }
done
source "$(dirname "$0")/../registry/layout.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for CMD...: up to 10 s
  for _ in $(seq 200); do "$@" 2>/dev/null && return 0; sleep 0.05; done
  echo "pull.sh: timed out waiting for: $*" >&2
  exit 1
}
now() { date +%s.%N; }

echo "pull benchmark: $size_mib MiB in $layers layers, $runs rounds, $(nproc) cores," \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
make_layout
addr=127.0.0.1:$(free_port)
"$build/bin/vireo-registry" --root "$work/registry" --listen "$addr" --log-level warn >/dev/null 2>&1 &
pids+=($!)
wait_for python3 -c "import urllib.request; urllib.request.urlopen('http://$addr/v2/', timeout=1)"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/layout:t" "docker://$addr/bench/img:t"

sock=$work/vireod.sock
"$build/bin/vireod" --root "$work/vireod" --socket "$sock" --foreground --log-level warn \
  >"$work/vireod.log" 2>&1 &
pids+=($!)
vireo() { "$build/bin/vireo" --socket "$sock" "$@"; }
wait_for vireo info >/dev/null

ref=$addr/bench/img:t
vireo_round() {
  vireo image rm "$ref" >/dev/null 2>&1 || true
  vireo image prune >/dev/null
  # Nothing left to reuse: every blob and layer moves again.
  [[ -d $work/vireod/images/blobs && -z $(find "$work/vireod/images/layers" "$work/vireod/images/blobs" -mindepth 2 -print -quit) ]] ||
    { echo "pull.sh: prune left blobs or layers behind" >&2; exit 1; }
  sync
  local t0 t1
  t0=$(now)
  vireo image pull "$ref" >/dev/null
  t1=$(now)
  sync
  [[ $(vireo --format json image show "$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])') == "$manifest_digest" ]] ||
    { echo "pull.sh: vireo pulled a different manifest" >&2; exit 1; }
  echo "$t0 $t1" | awk '{printf "%.3f\n", $2-$1}'
}
peer_round() {
  rm -rf "$work/peer" "$work/bundle"
  export HOME=$work/home-peer  # a fresh skopeo blob-info cache
  rm -rf "$HOME"; mkdir -p "$HOME"
  sync
  local t0 t1
  t0=$(now)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$ref" "oci:$work/peer:t"
  umoci unpack --image "$work/peer:t" "$work/bundle" >/dev/null
  t1=$(now)
  sync
  grep -q "$manifest_digest" "$work/peer/index.json" ||
    { echo "pull.sh: skopeo pulled a different manifest" >&2; exit 1; }
  echo "$t0 $t1" | awk '{printf "%.3f\n", $2-$1}'
}

declare -A times
for ((r = 1; r <= runs; r++)); do
  order="vireo peer"
  ((r % 2)) || order="peer vireo"
  for kind in $order; do
    t=$(${kind}_round)
    printf '  round %d %-5s %6.2f s\n' "$r" "$kind" "$t"
    times[$kind]="${times[$kind]:-} $t"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mv_=$(echo "${times[vireo]}" | median)
mp=$(echo "${times[peer]}" | median)
printf 'vireo image pull          median %6.2f s (%4.0f MiB/s)\n' "$mv_" "$(echo "$size_mib $mv_" | awk '{print $1/$2}')"
printf 'skopeo copy + umoci unpack median %6.2f s (%4.0f MiB/s)\n' "$mp" "$(echo "$size_mib $mp" | awk '{print $1/$2}')"
echo "ratio vireo/peers: $(echo "$mv_ $mp" | awk '{printf "%.2f", $1/$2}')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
