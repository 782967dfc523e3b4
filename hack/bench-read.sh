#!/usr/bin/env bash
# Read-path benchmark: prints GB/s of short-circuit and remote gRPC reads of a
# cached file with their ratios to tmpfs and raw TCP, all measured in this run.
# ALCOVE_BENCH_MB (default 1024) and ALCOVE_BENCH_REPS (default 3) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
ALCOVE_BENCH=1 go test -count=1 -timeout 30m -run TestReadThroughput -v ./test/bench/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok'
