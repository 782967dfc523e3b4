#!/usr/bin/env bash
# Writes a throwaway PKI for a test cluster into DIR:
#   ca.{crt,key}; apiserver.{crt,key} (127.0.0.1, localhost, kubernetes.default.svc,
#   10.96.0.1 and the first node's IP, where the control plane runs); admin
#   (O=system:masters); sa.{key,pub} (service-account signing); and with nodes
#   also client certs for kube-controller-manager, kube-scheduler, kube-proxy
#   (system:kube-proxy), the apiserver->kubelet client and CoreDNS
#   (system:coredns), and per node NAME the kubelet's client cert
#   node-NAME (system:node:NAME, O=system:nodes) and serving cert kubelet-NAME
#   (NAME, IP). Existing files are kept.
# Installs openssl from apt when it is missing.
# Usage: hack/k8s-certs.sh DIR [NODE IP]...
set -euo pipefail
dir=${1:?usage: hack/k8s-certs.sh DIR [NODE IP]...}
shift
if [ $(($# % 2)) -ne 0 ]; then
  echo "usage: hack/k8s-certs.sh DIR [NODE IP]..." >&2
  exit 2
fi
cp_ip=${2:-10.200.0.1}
if ! command -v openssl >/dev/null; then
  echo "k8s-certs: installing openssl (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >/dev/null
fi
mkdir -p "$dir"
cd "$dir"
sign() { # name subject extfile-content
  [ -f "$1.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=alcove-test-ca" 2>/dev/null
fi
sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:$cp_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
sign admin "/O=system:masters/CN=alcove-admin" "extendedKeyUsage=clientAuth"
if [ ! -f sa.key ]; then
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi
[ $# -gt 0 ] || exit 0
sign controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
sign scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
sign coredns "/CN=system:coredns" "extendedKeyUsage=clientAuth"
while [ $# -gt 0 ]; do
  sign "node-$1" "/O=system:nodes/CN=system:node:$1" "extendedKeyUsage=clientAuth"
  sign "kubelet-$1" "/CN=$1" "subjectAltName=IP:$2,DNS:$1
extendedKeyUsage=serverAuth"
  shift 2
done
