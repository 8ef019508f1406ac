#!/usr/bin/env bash
# Side-by-side registry benchmark: vireo-registry vs docker-registry (Debian's Go distribution
# server, filesystem storage), in the same run. Builds an OCI layout of SIZE_MIB MiB in LAYERS
# tar layers of random data (incompressible), gzip -1 (skopeo would otherwise
# compress uncompressed layers while pushing, and the run would measure gzip), then for each registry and each of
# RUNS rounds (fresh storage, fresh skopeo blob cache): skopeo pushes the layout and pulls it
# back into a new layout (`sync` before each timed step, so that neither pays for the other's
# writeback). Prints the times and the ratio vireo/docker of the medians' totals. Each round also
# pushes to null_registry.py, a registry that drops what it receives (no hash, no file): its push
# time is what skopeo and this machine cost by themselves, the floor any registry's push can reach.
#   bench/registry/run.sh [BUILD_DIR]   (env: SIZE_MIB=512 LAYERS=8 RUNS=5)
set -euo pipefail
build=${1:-$(cd "$(dirname "$0")/../.." && pwd)/build}
size_mib=${SIZE_MIB:-512}
layers=${LAYERS:-8}
runs=${RUNS:-5}
work=$(mktemp -d /var/tmp/vireo-registry-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in skopeo docker-registry python3 sha256sum tar gzip; do
  command -v $tool >/dev/null || { echo "run.sh: $tool is missing (scripts/setup)" >&2; exit 1; }
done
[[ -x $build/bin/vireo-registry ]] || { echo "run.sh: no $build/bin/vireo-registry" >&2; exit 1; }

source "$(dirname "$0")/layout.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {
  for _ in $(seq 200); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$1/v2/', timeout=1)" \
      2>/dev/null && return 0
    sleep 0.05
  done
  echo "run.sh: registry on $1 did not come up" >&2
  exit 1
}

# start_registry KIND ROOT: starts it, sets $addr.
start_registry() {
  local port
  port=$(free_port)
  addr=127.0.0.1:$port
  if [[ $1 == vireo ]]; then
    "$build/bin/vireo-registry" --root "$2" --listen "$addr" --log-level warn >/dev/null 2>&1 &
  elif [[ $1 == null ]]; then
    python3 "$(dirname "$0")/null_registry.py" "$addr" &
  else
    cat >"$2.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $2}, delete: {enabled: true}}
http: {addr: $addr}
YML
    docker-registry serve "$2.yml" >/dev/null 2>&1 &
  fi
  pids+=($!)
  wait_http "$addr"
}

now() { date +%s.%N; }

stop_last_server() {
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  unset 'pids[-1]'
}

# one_round KIND N: prints "push pull" seconds.
one_round() {
  local root=$work/$1-root-$2 t0 t1 t2
  start_registry "$1" "$root"
  export HOME=$work/home-$1-$2  # a fresh skopeo blob-info cache: no shortcut from earlier rounds
  mkdir -p "$HOME"
  sync  # the other registry's (or the last round's) dirty pages are not charged to this one
  t0=$(now)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/layout:t" \
    "docker://$addr/bench/img:t"
  sync
  t1=$(now)
  if [[ $1 == null ]]; then  # nothing stored: nothing to pull
    stop_last_server
    rm -rf "$HOME"
    echo "$t0 $t1" | awk '{printf "%.3f -\n", $2-$1}'
    return
  fi
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$addr/bench/img:t" \
    "oci:$work/pulled-$1-$2:t"
  t2=$(now)
  sync
  grep -q "$manifest_digest" "$work/pulled-$1-$2/index.json" ||
    { echo "run.sh: $1 pulled a different manifest" >&2; exit 1; }
  stop_last_server
  rm -rf "$root" "$work/pulled-$1-$2" "$HOME"
  echo "$t0 $t1 $t2" | awk '{printf "%.3f %.3f\n", $2-$1, $3-$2}'
}

echo "registry benchmark: $size_mib MiB in $layers layers, $runs rounds, $(nproc) cores," \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
make_layout
declare -A push pull
for ((r = 1; r <= runs; r++)); do
  order="vireo docker null"
  ((r % 2)) || order="docker vireo null"  # alternate who goes first
  for kind in $order; do
    one_round $kind $r >"$work/round"  # in this shell, so that the EXIT trap sees its server
    read -r p q <"$work/round"
    [[ $q == - ]] || q=$(printf '%.2f' "$q")
    printf '  round %d %-7s push %6.2f s  pull %6s s\n' "$r" "$kind" "$p" "$q"
    push[$kind]="${push[$kind]:-} $p"
    pull[$kind]="${pull[$kind]:-} $q"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for kind in vireo docker; do
  mp=$(echo "${push[$kind]}" | median); mq=$(echo "${pull[$kind]}" | median)
  printf '%-7s median push %6.2f s (%4.0f MiB/s)  pull %6.2f s (%4.0f MiB/s)  total %6.2f s\n' \
    "$kind" "$mp" "$(echo "$size_mib $mp" | awk '{print $1/$2}')" "$mq" \
    "$(echo "$size_mib $mq" | awk '{print $1/$2}')" "$(echo "$mp $mq" | awk '{print $1+$2}')"
  eval "total_$kind=$(echo "$mp $mq" | awk '{print $1+$2}')"
done
echo "ratio vireo/docker (total): $(echo "$total_vireo $total_docker" | awk '{printf "%.2f", $1/$2}')"
floor_push=$(echo "${push[null]}" | median)
vireo_pull=$(echo "${pull[vireo]}" | median)
printf 'floor: a registry that stores nothing, push %.2f s; with vireo'"'"'s pull, ratio %.2f\n' \
  "$floor_push" "$(echo "$floor_push $vireo_pull $total_docker" | awk '{print ($1+$2)/$3}')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
