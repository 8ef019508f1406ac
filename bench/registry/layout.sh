# Shared by the registry and image benchmarks: make_layout builds, under $work/layout, an OCI
# layout of $size_mib MiB in $layers tar layers of random data (incompressible), gzip -1, tagged
# "t", and sets $manifest_digest. Needs $work, $size_mib and $layers.

# put_blob FILE: moves FILE into the layout's blob store, prints "digest size".
put_blob() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$work/layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

make_layout() {
  mkdir -p "$work/layout/blobs/sha256" "$work/files"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  local per=$((size_mib / layers)) layer_json="" diff_ids="" i d s
  for ((i = 0; i < layers; i++)); do
    head -c "${per}M" /dev/urandom >"$work/files/data-$i"
    tar -C "$work/files" -cf "$work/layer.tar" "data-$i"
    rm "$work/files/data-$i"
    diff_ids+="${diff_ids:+,}\"sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)\""
    gzip -1 "$work/layer.tar"
    read -r d s < <(put_blob "$work/layer.tar.gz")
    layer_json+="${layer_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$d\",\"size\":$s}"
  done
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}' \
    "$diff_ids" >"$work/config.json"
  read -r d s < <(put_blob "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$d" "$s" "$layer_json" >"$work/manifest.json"
  read -r d s < <(put_blob "$work/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"t"}}]}' \
    "$d" "$s" >"$work/layout/index.json"
  manifest_digest=$d
}
