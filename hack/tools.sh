#!/usr/bin/env bash
# Installs the pinned developer tools into .cache/bin (idempotent).
# Usage: hack/tools.sh TOOL...   (staticcheck)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.cache/bin"
mkdir -p "$BIN"
STATICCHECK_VERSION=v0.8.2   # staticcheck 2026.2.2
for tool in "$@"; do
  case "$tool" in
    staticcheck)
      if [ ! -x "$BIN/staticcheck-$STATICCHECK_VERSION" ]; then
        GOBIN="$BIN" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
        mv "$BIN/staticcheck" "$BIN/staticcheck-$STATICCHECK_VERSION"
      fi
      ln -sf "staticcheck-$STATICCHECK_VERSION" "$BIN/staticcheck"
      ;;
    *) echo "hack/tools.sh: unknown tool $tool" >&2; exit 2 ;;
  esac
done
