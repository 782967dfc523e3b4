#!/usr/bin/env bash
# Fails when the committed generated code differs from what the protos produce.
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/gen-proto.sh
if ! git diff --quiet -- engine/api/v1; then
  echo "generated code in engine/api/v1 is stale: run 'make proto' and commit the result" >&2
  git --no-pager diff --stat -- engine/api/v1 >&2
  exit 1
fi
echo "proto: generated code is fresh"
