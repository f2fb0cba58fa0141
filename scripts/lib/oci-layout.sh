# Sourced by the scripts that build images: writes an OCI image layout without a container
# daemon.
#
#   oci_layout ROOTFS OUT NAME:TAG CONFIG
#
# makes OUT an OCI image layout of one layer holding ROOTFS (reproducible: sorted, owned by
# root, timestamps zeroed), for linux/amd64, with CONFIG (JSON) as the image config's "config"
# object (User, Cmd, Labels...). The index names the image both ways tools look for it: the
# OCI ref name TAG, and containerd's io.containerd.image.name NAME:TAG (for `ctr images import`).
# Prints the compressed layer's path.
oci_layout() {
  local rootfs=$1 out=$2 ref=$3 image_config=$4
  local work
  work=$(mktemp -d)
  sha() { sha256sum "$1" | cut -d' ' -f1; }
  size() { stat -c %s "$1"; }
  blob() { # stores stdin as a blob and prints its digest
    cat >"$work/blob"
    local digest
    digest=$(sha "$work/blob")
    mv "$work/blob" "$out/blobs/sha256/$digest"
    echo "$digest"
  }
  rm -rf "$out"
  mkdir -p "$out/blobs/sha256"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
    -C "$rootfs" -cf "$work/layer.tar" .
  gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
  local diff_id layer config manifest
  diff_id=$(sha "$work/layer.tar")
  layer=$(sha "$work/layer.tar.gz")
  mv "$work/layer.tar.gz" "$out/blobs/sha256/$layer"
  config=$(printf '%s' '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",'\
'"config":'"$image_config"','\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},'\
'"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/lib/oci-layout.sh"}]}' | blob)
  manifest=$(printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$(size "$out/blobs/sha256/$config")"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer"'","size":'"$(size "$out/blobs/sha256/$layer")"'}]}' | blob)
  printf '%s\n' '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
  printf '%s\n' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{'\
'"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest"'","size":'"$(size "$out/blobs/sha256/$manifest")"','\
'"platform":{"architecture":"amd64","os":"linux"},'\
'"annotations":{"org.opencontainers.image.ref.name":"'"${ref##*:}"'","io.containerd.image.name":"'"$ref"'"}}]}' >"$out/index.json"
  rm -rf "$work"
  echo "$out/blobs/sha256/$layer"
}

# copy_with_libraries BINARY ROOTFS DEST: BINARY at ROOTFS/DEST, stripped, and every library
# the dynamic loader resolves for it (and the loader itself) at the same path.
copy_with_libraries() {
  local binary=$1 rootfs=$2 dest=$3 lib
  mkdir -p "$rootfs$(dirname "$dest")"
  strip -o "$rootfs$dest" "$binary"
  ldd "$binary" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}
