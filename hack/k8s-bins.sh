#!/usr/bin/env bash
# Builds the Kubernetes binaries end-to-end tests use from the Go module proxy
# (tools modules under hack/tools/) into .cache/k8s/bin:
#   etcd                     v3.5.35  (hack/tools/etcd)
#   kube-apiserver, kube-scheduler, kube-controller-manager, kube-proxy, kubelet, kubectl
#                            v1.33.13 (hack/tools/k8s)
#   csi-provisioner          v5.1.0   (hack/tools/csi-provisioner)
#   helm                     v3.18.6  (hack/tools/helm)
#   coredns                  v1.14.7  (hack/tools/coredns: only the plugins the test DNS needs)
#   cni                      v1.9.1   bridge, host-local, loopback into .cache/k8s/cni/bin
#                                     (hack/tools/cni)
# Idempotent: binaries already built are kept (a versioned file plus a symlink).
# A cold build of everything takes ~10-15 min on 2 cores (GOCACHE grows by
# ~4 GB; keep it); a warm run takes well under 1 s.
# Usage: hack/k8s-bins.sh [NAME...|control-plane|cluster]
#   default / control-plane: etcd kube-apiserver kube-scheduler
#   cluster: everything hack/cluster.sh and make e2e need
# Prints the bin directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
K8S_VERSION=v1.33.13
ETCD_VERSION=v3.5.35
PROVISIONER_VERSION=v5.1.0
HELM_VERSION=v3.18.6
COREDNS_VERSION=v1.14.7
CNI_VERSION=v1.9.1
BIN="$ROOT/.cache/k8s/bin"
CNI_BIN="$ROOT/.cache/k8s/cni/bin"
mkdir -p "$BIN" "$CNI_BIN"
names=()
for a in "$@"; do
  case "$a" in
    control-plane) names+=(etcd kube-apiserver kube-scheduler) ;;
    cluster) names+=(etcd kube-apiserver kube-scheduler kube-controller-manager kube-proxy kubelet
                     kubectl csi-provisioner helm coredns cni) ;;
    *) names+=("$a") ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(etcd kube-apiserver kube-scheduler)
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# build MODULE_DIR OUT PKG [LDFLAGS]: go build into OUT atomically.
build() {
  (cd "hack/tools/$1" && go build -trimpath -ldflags "${4:--s -w}" -o "$2.tmp" "$3")
  mv "$2.tmp" "$2"
}

for name in "${names[@]}"; do
  case "$name" in
    etcd) version=$ETCD_VERSION ;;
    csi-provisioner) version=$PROVISIONER_VERSION ;;
    helm) version=$HELM_VERSION ;;
    coredns) version=$COREDNS_VERSION ;;
    cni) version=$CNI_VERSION ;;
    *) version=$K8S_VERSION ;;
  esac
  if [ "$name" = cni ]; then
    for p in bridge host-local loopback; do
      if [ ! -x "$CNI_BIN/$p-$version" ]; then
        echo "k8s-bins: building CNI $p $version" >&2
        case $p in host-local) pkg=plugins/ipam/host-local ;; *) pkg=plugins/main/$p ;; esac
        build cni "$CNI_BIN/$p-$version" "github.com/containernetworking/plugins/$pkg"
      fi
      ln -sf "$p-$version" "$CNI_BIN/$p"
    done
    continue
  fi
  out="$BIN/$name-$version"
  if [ ! -x "$out" ]; then
    echo "k8s-bins: building $name $version (cold: minutes)" >&2
    case "$name" in
      etcd) build etcd "$out" go.etcd.io/etcd/server/v3 ;;
      kube-apiserver|kube-scheduler|kube-controller-manager|kube-proxy|kubelet|kubectl)
        minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
        ld="-s -w"
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
          ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        done
        build k8s "$out" "k8s.io/kubernetes/cmd/$name" "$ld"
        ;;
      csi-provisioner)
        build csi-provisioner "$out" github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner \
          "-s -w -X main.version=$version"
        ;;
      helm)
        # As helm's Makefile: the default Kubernetes version for template/lint.
        ld="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
        for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
          ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=33"
        done
        build helm "$out" helm.sh/helm/v3/cmd/helm "$ld"
        ;;
      coredns) build coredns "$out" . ;;
      *) echo "k8s-bins: unknown binary $name" >&2; exit 2 ;;
    esac
  fi
  ln -sf "$name-$version" "$BIN/$name"
done
echo "$BIN"
