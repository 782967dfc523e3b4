#!/usr/bin/env bash
# CSI conformance: csi-sanity (csi-test v5.6.0) against the real driver —
# controller and node services, real FUSE daemons and mounts, a real master
# and worker. Prints the suite's summary line; the full log is kept in
# .cache/sanity.log.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
go test -count=1 -timeout 10m -v ./test/sanity/ > .cache/sanity.log 2>&1
rc=$?
sed 's/\x1b\[[0-9;]*m//g' .cache/sanity.log | grep -E '^Ran [0-9]+ of|Passed \||^\s*\[FAIL\]|^(ok|FAIL|---)' | sort -u
[ $rc -eq 0 ] || echo "csi-sanity failed: see .cache/sanity.log" >&2
exit $rc
