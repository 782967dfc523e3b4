#!/usr/bin/env bash
# Builds the MinIO server the S3 tests run against into .cache/bin/minio
# (idempotent; cold ~2.5 min on 2 cores). MinIO is only a test server run as a
# separate process on 127.0.0.1: it is never linked into Alcove.
# Usage: hack/minio.sh   (prints the binary's path)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.cache/bin"
mkdir -p "$BIN"
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
target="$BIN/minio-$MINIO_VERSION"
if [ ! -x "$target" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOBIN="$tmp" go install "github.com/minio/minio@$MINIO_VERSION"
  mv "$tmp/minio" "$target"
fi
ln -sf "minio-$MINIO_VERSION" "$BIN/minio"
echo "$BIN/minio"
