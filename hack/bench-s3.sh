#!/usr/bin/env bash
# S3 benchmark (issue 10): a 1 GiB object in MinIO read cold through
# `alcove fs cat` and through FUSE, each next to a raw parallel ranged GET of
# the same object with the same SDK in the same run, then a warm read that
# must go through FUSE passthrough. Needs root (FUSE); builds MinIO first.
# ALCOVE_BENCH_MB (default 1024) and ALCOVE_BENCH_REPS (default 3) tune it.
# MinIO runs on loopback; ALCOVE_BENCH_S3_RATES="10gbit 5gbit" runs the
# benchmark again for each rate with MinIO behind a link of that speed (a
# veth pair into a network namespace shaped by tc tbf; needs iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."
./hack/minio.sh >/dev/null
for rate in "" ${ALCOVE_BENCH_S3_RATES:-}; do
  ALCOVE_BENCH_S3=1 ALCOVE_BENCH_S3_RATE="$rate" go test -count=1 -timeout 30m -run TestBenchS3 -v ./test/bench/ |
    grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok' -e '^[IWE][0-9]\{4\} '
done
