#!/usr/bin/env bash
# FUSE benchmark: sequential read of a locally cached file through the mount
# (kernel passthrough) vs the same bytes straight from tmpfs, the first
# uncached read from a local-directory UFS, and 4 KiB random-read IOPS.
# ALCOVE_BENCH_MB (default 1024) sets the file size.
set -euo pipefail
cd "$(dirname "$0")/.."
ALCOVE_BENCH=1 go test -count=1 -timeout 30m -run TestBenchFUSE -v ./engine/fuse/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok' -e '^[IWE][0-9]\{4\} '
