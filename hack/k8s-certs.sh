#!/usr/bin/env bash
# Writes a throwaway PKI for a loopback test control plane into DIR:
#   ca.{crt,key}, apiserver.{crt,key} (127.0.0.1, localhost), admin.{crt,key}
#   (O=system:masters), sa.{key,pub} (service-account signing).
# Installs openssl from apt when it is missing. Usage: hack/k8s-certs.sh DIR
set -euo pipefail
dir=${1:?usage: hack/k8s-certs.sh DIR}
if ! command -v openssl >/dev/null; then
  echo "k8s-certs: installing openssl (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >/dev/null
fi
mkdir -p "$dir"
cd "$dir"
[ -f ca.crt ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=alcove-test-ca" 2>/dev/null
sign() { # name subject extfile-content
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
sign admin "/O=system:masters/CN=alcove-admin" "extendedKeyUsage=clientAuth"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
