#!/usr/bin/env bash
# Builds the Kubernetes control plane used by end-to-end tests from the Go
# module proxy (see hack/tools/k8s and hack/tools/etcd) into .cache/k8s/bin:
#   etcd (v3.5.35), kube-apiserver and kube-scheduler (v1.33.13).
# Idempotent: binaries already built are kept. A cold build takes ~5-7 min on
# 2 cores (GOCACHE grows by ~3 GB; keep it); a warm run takes well under 1 s.
# Usage: hack/k8s-bins.sh [NAME...]   (default: etcd kube-apiserver kube-scheduler)
# Prints the bin directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
K8S_VERSION=v1.33.13
ETCD_VERSION=v3.5.35
BIN="$ROOT/.cache/k8s/bin"
mkdir -p "$BIN"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(etcd kube-apiserver kube-scheduler)
export CGO_ENABLED=0 GOFLAGS=-mod=mod
for name in "${names[@]}"; do
  case "$name" in
    etcd) version=$ETCD_VERSION ;;
    *) version=$K8S_VERSION ;;
  esac
  out="$BIN/$name-$version"
  if [ ! -x "$out" ]; then
    echo "k8s-bins: building $name $version (cold: minutes)" >&2
    case "$name" in
      etcd)
        (cd hack/tools/etcd && go build -trimpath -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3)
        ;;
      kube-apiserver|kube-scheduler|kube-controller-manager|kubelet|kubectl)
        minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
        ld="-s -w"
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
          ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        done
        (cd hack/tools/k8s && go build -trimpath -ldflags "$ld" -o "$out.tmp" "k8s.io/kubernetes/cmd/$name")
        ;;
      *) echo "k8s-bins: unknown binary $name" >&2; exit 2 ;;
    esac
    mv "$out.tmp" "$out"
  fi
  ln -sf "$name-$version" "$BIN/$name"
done
echo "$BIN"
