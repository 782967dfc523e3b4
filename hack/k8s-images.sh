#!/usr/bin/env bash
# Builds the container images of the end-to-end cluster without a registry or
# a docker daemon: static binaries packed with umoci into OCI layouts, then
# written by skopeo as docker-archive tarballs that `ctr images import` takes.
#   localhost/alcove:e2e           the alcove binary (CGO_ENABLED=0) + busybox
#                                  (sh, and mount/umount for k8s.io/mount-utils)
#   localhost/pause:e2e            hack/pause (pod sandbox)
#   localhost/busybox:e2e          Debian's busybox-static
#   localhost/csi-provisioner:e2e  external-provisioner v5.1.0 (hack/k8s-bins.sh)
# The alcove image is rebuilt every run; the others only when missing.
# Usage: hack/k8s-images.sh OUTDIR      (prints the tarballs, one a line)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
out=${1:?usage: hack/k8s-images.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
need=()
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "k8s-images: installing ${need[*]} (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null
fi
bins=$(./hack/k8s-bins.sh csi-provisioner)
work=$(mktemp -d "${TMPDIR:-/tmp}/alcove-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# image NAME ENTRYPOINT SRC:DST... : a one-layer image from the given files.
image() {
  local name=$1 entry=$2; shift 2
  local layout="$work/oci/$name" rootfs="$work/rootfs/$name"
  mkdir -p "$rootfs/tmp" "$work/oci"
  chmod 1777 "$rootfs/tmp"
  for f in "$@"; do
    local src=${f%%:*} dst=${f#*:}
    mkdir -p "$rootfs$(dirname "$dst")"
    cp -a "$(readlink -f "$src")" "$rootfs$dst"
  done
  { umoci init --layout "$layout"
  umoci new --image "$layout:e2e"
  # umoci insert adds a layer from a directory tree (owned by root).
  umoci insert --image "$layout:e2e" "$rootfs" /
  umoci config --image "$layout:e2e" --config.entrypoint "$entry" \
    --config.env PATH=/usr/local/bin:/bin --author alcove-e2e; } >&2
  rm -f "$out/$name.tar"
  skopeo copy -q "oci:$layout:e2e" "docker-archive:$out/$name.tar:localhost/$name:e2e"
  echo "$out/$name.tar"
}

# busybox applets as symlinks in DIR/bin.
applets() {
  mkdir -p "$1/bin"
  cp /bin/busybox "$1/bin/busybox"
  for a in sh ls cat echo sleep mount umount mkdir rm awk sort uniq wc tr grep sed head tail \
           dd cmp md5sum sha256sum find stat test true false env date id touch cp mv ps kill; do
    ln -sf busybox "$1/bin/$a"
  done
}

# alcove: rebuilt every run (the code under test).
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=e2e" -o "$work/alcove" ./cmd/alcove
applets "$work/bb"
image alcove /usr/local/bin/alcove "$work/alcove:/usr/local/bin/alcove" "$work/bb/bin:/bin"

if [ ! -f "$out/busybox.tar" ]; then
  image busybox /bin/sh "$work/bb/bin:/bin" >/dev/null
fi
echo "$out/busybox.tar"
if [ ! -f "$out/pause.tar" ]; then
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./hack/pause
  image pause /pause "$work/pause:/pause" >/dev/null
fi
echo "$out/pause.tar"
if [ ! -f "$out/csi-provisioner.tar" ]; then
  image csi-provisioner /csi-provisioner "$bins/csi-provisioner:/csi-provisioner" >/dev/null
fi
echo "$out/csi-provisioner.tar"
# minio: the S3 server of the S3 checks (a test server only; hack/minio.sh).
if [ ! -f "$out/minio.tar" ]; then
  image minio /minio "$(./hack/minio.sh):/minio" >/dev/null
fi
echo "$out/minio.tar"
