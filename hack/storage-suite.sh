#!/usr/bin/env bash
# Builds the Kubernetes storage conformance suite (k8s.io/kubernetes v1.33.13
# test/e2e/storage/external, with the framework flags) as a test binary from
# the tools module hack/tools/storage-e2e, cached in .cache/k8s/bin under a
# name keyed by that module's files. Cold (empty Go build cache) ~4 min on 2
# cores; warm: instant. Prints the binary's path.
# (The whole k8s.io/kubernetes/test/e2e package does not build from the Go
# module proxy: it imports k8s.io/sample-apiserver, which is not served.)
set -euo pipefail
cd "$(dirname "$0")/.."
mod=hack/tools/storage-e2e
key=$(cat "$mod"/go.mod "$mod"/go.sum "$mod"/*_test.go | sha256sum | cut -c1-12)
bin=$PWD/.cache/k8s/bin/storage-e2e-v1.33.13-$key.test
if [ ! -x "$bin" ]; then
  echo "storage-suite: building the storage suite (cold: minutes)" >&2
  mkdir -p "$(dirname "$bin")"
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go test -c -trimpath -ldflags "-s -w" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
