#!/usr/bin/env bash
# Builds the container images of the end-to-end cluster without a registry or
# a docker daemon: static binaries packed with umoci into OCI layouts, then
# written by skopeo as docker-archive tarballs that `ctr images import` takes.
#   localhost/alcove:e2e           the alcove binary (CGO_ENABLED=0) + busybox
#                                  (sh, and mount/umount for k8s.io/mount-utils)
#   localhost/pause:e2e            hack/pause (pod sandbox)
#   localhost/busybox:e2e          Debian's busybox-static
#   localhost/csi-provisioner:e2e  external-provisioner v5.1.0 (hack/k8s-bins.sh)
# With `suite`, instead the images the Kubernetes storage suite
# (hack/conformance.sh) runs, under the exact names it pulls:
#   registry.k8s.io/e2e-test-images/agnhost:2.53      agnhost built from
#       k8s.io/kubernetes v1.33.13 (hack/tools/storage-e2e) + busybox applets
#       (sh, nsenter: host-exec pods enter the node with them)
#   registry.k8s.io/e2e-test-images/busybox:1.36.1-1  Debian's busybox-static
#   registry.k8s.io/pause:3.10                        hack/pause
#   registry.k8s.io/e2e-test-images/nginx:1.14-4 and jessie-dnsutils:1.7:
#       busybox stand-ins (the storage specs only run sh, dd, sha256sum,
#       base64 and sleep in them), named as stand-ins in their image author
# The alcove image is rebuilt every run; the others only when missing.
# Usage: hack/k8s-images.sh OUTDIR [suite]   (prints the tarballs, one a line)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: hack/k8s-images.sh OUTDIR [suite]}
mode=${2:-}
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
work=$(mktemp -d "${TMPDIR:-/tmp}/alcove-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# image FILE REF AUTHOR ENTRYPOINT CMD SRC:DST... : a one-layer image REF
# (name:tag) from the given files, written to OUTDIR/FILE.tar. CMD may be "".
image() {
  local file=$1 ref=$2 author=$3 entry=$4 cmd=$5; shift 5
  local layout="$work/oci/$file" rootfs="$work/rootfs/$file" cmdargs=() f
  mkdir -p "$rootfs/tmp" "$work/oci"
  chmod 1777 "$rootfs/tmp"
  for f in "$@"; do
    local src=${f%%:*} dst=${f#*:}
    mkdir -p "$rootfs$(dirname "$dst")"
    cp -a "$(readlink -f "$src")" "$rootfs$dst"
  done
  [ -n "$cmd" ] && cmdargs=(--config.cmd "$cmd")
  { umoci init --layout "$layout"
  umoci new --image "$layout:img"
  # umoci insert adds a layer from a directory tree (owned by root).
  umoci insert --image "$layout:img" "$rootfs" /
  umoci config --image "$layout:img" --config.entrypoint "$entry" "${cmdargs[@]}" \
    --config.env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --author "$author"; } >&2
  rm -f "$out/$file.tar"
  skopeo copy -q "oci:$layout:img" "docker-archive:$out/$file.tar:$ref"
  echo "$out/$file.tar"
}

# busybox applets as symlinks in DIR/bin: a few, or every one (all).
applets() {
  local a list="sh ls cat echo sleep mount umount mkdir rm awk sort uniq wc tr grep sed head tail
                dd cmp md5sum sha256sum find stat test true false env date id touch cp mv ps kill"
  mkdir -p "$1/bin"
  cp /bin/busybox "$1/bin/busybox"
  [ "${2:-}" = all ] && list=$(/bin/busybox --list)
  for a in $list; do
    [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"
  done
}

if [ "$mode" = suite ]; then
  applets "$work/bb" all
  # The /etc files the upstream images have (ls -l, id and chown look users up).
  mkdir -p "$work/etc"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$work/etc/group"
  base=("$work/bb/bin:/bin" "$work/etc/passwd:/etc/passwd" "$work/etc/group:/etc/group")
  if [ ! -f "$out/suite-agnhost.tar" ]; then
    (cd hack/tools/storage-e2e && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
      -o "$work/agnhost" k8s.io/kubernetes/test/images/agnhost)
    image suite-agnhost registry.k8s.io/e2e-test-images/agnhost:2.53 alcove-e2e /agnhost pause \
      "${base[@]}" "$work/agnhost:/agnhost" >/dev/null
  fi
  echo "$out/suite-agnhost.tar"
  if [ ! -f "$out/suite-busybox.tar" ]; then
    image suite-busybox registry.k8s.io/e2e-test-images/busybox:1.36.1-1 alcove-e2e /bin/sh "" "${base[@]}" >/dev/null
  fi
  echo "$out/suite-busybox.tar"
  if [ ! -f "$out/suite-pause.tar" ]; then
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./hack/pause
    image suite-pause registry.k8s.io/pause:3.10 alcove-e2e /pause "" "$work/pause:/pause" >/dev/null
  fi
  echo "$out/suite-pause.tar"
  for s in nginx:1.14-4 jessie-dnsutils:1.7; do
    f=suite-${s%%:*}
    if [ ! -f "$out/$f.tar" ]; then
      image "$f" "registry.k8s.io/e2e-test-images/$s" "alcove-e2e stand-in: busybox, not $s" /bin/sh "" "${base[@]}" >/dev/null
    fi
    echo "$out/$f.tar"
  done
  exit 0
fi

bins=$(./hack/k8s-bins.sh csi-provisioner)
# alcove: rebuilt every run (the code under test).
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=e2e" -o "$work/alcove" ./cmd/alcove
applets "$work/bb"
image alcove localhost/alcove:e2e alcove-e2e /usr/local/bin/alcove "" "$work/alcove:/usr/local/bin/alcove" "$work/bb/bin:/bin"

if [ ! -f "$out/busybox.tar" ]; then
  image busybox localhost/busybox:e2e alcove-e2e /bin/sh "" "$work/bb/bin:/bin" >/dev/null
fi
echo "$out/busybox.tar"
if [ ! -f "$out/pause.tar" ]; then
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./hack/pause
  image pause localhost/pause:e2e alcove-e2e /pause "" "$work/pause:/pause" >/dev/null
fi
echo "$out/pause.tar"
if [ ! -f "$out/csi-provisioner.tar" ]; then
  image csi-provisioner localhost/csi-provisioner:e2e alcove-e2e /csi-provisioner "" "$bins/csi-provisioner:/csi-provisioner" >/dev/null
fi
echo "$out/csi-provisioner.tar"
# minio: the S3 server of the S3 checks (a test server only; hack/minio.sh).
if [ ! -f "$out/minio.tar" ]; then
  image minio localhost/minio:e2e alcove-e2e /minio "" "$(./hack/minio.sh):/minio" >/dev/null
fi
echo "$out/minio.tar"
