#!/usr/bin/env bash
# Regenerates engine/api/v1/*.pb.go with pinned plugins. protoc comes from
# Debian's protobuf-compiler; the Go plugins from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
BIN="$PWD/.cache/bin"
mkdir -p "$BIN"
if ! command -v protoc >/dev/null; then
  echo "gen-proto: installing protobuf-compiler (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler) >/dev/null
fi
if [ ! -x "$BIN/protoc-gen-go-$PROTOC_GEN_GO_VERSION" ]; then
  GOBIN="$BIN" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  mv "$BIN/protoc-gen-go" "$BIN/protoc-gen-go-$PROTOC_GEN_GO_VERSION"
fi
if [ ! -x "$BIN/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC_VERSION" ]; then
  GOBIN="$BIN" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  mv "$BIN/protoc-gen-go-grpc" "$BIN/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC_VERSION"
fi
protoc -I . \
  --plugin=protoc-gen-go="$BIN/protoc-gen-go-$PROTOC_GEN_GO_VERSION" \
  --plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC_VERSION" \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  engine/api/v1/*.proto
