#!/usr/bin/env bash
# The Kubernetes storage conformance suite (k8s.io/kubernetes v1.33.13
# test/e2e/storage/external) against Alcove's chart, on its own cluster:
#   make conformance           the fast subset (also part of make e2e)
#   make conformance-slow      the [Slow] specs
# Disruptive, Serial and Feature: specs run in no subset. The driver
# definition is test/e2e/testdata/storage-driver.yaml; the run prints specs
# run / passed / failed / skipped, every failure and every skipped spec with
# what excludes it, and leaves junit_01.xml, suite.log and summary.txt in
# .cache/conformance/<subset>/ (ALCOVE_CONFORMANCE_RESULTS).
# Steps, cluster and teardown are hack/e2e.sh's; ALCOVE_E2E_NODES (default 2).
# Usage: hack/conformance.sh [fast|slow]
set -euo pipefail
cd "$(dirname "$0")/.."
subset=${1:-fast}
tests='^TestConformance$'
case "$subset" in
  fast|slow) ;;
  *) echo "usage: hack/conformance.sh [fast|slow]" >&2; exit 2 ;;
esac
ALCOVE_E2E_TESTS=$tests ALCOVE_CONFORMANCE_SUBSET=$subset exec ./hack/e2e.sh
