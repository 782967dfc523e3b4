#!/usr/bin/env bash
# make e2e: Alcove's Helm chart on a real two-node cluster (issues 6 and 17).
#  1. builds what is missing (cold ~15 min on 2 cores, warm seconds): the
#     Kubernetes binaries (hack/k8s-bins.sh cluster), the storage conformance
#     suite (hack/storage-suite.sh) and the test binary of test/e2e; checks
#     that deploy/manifests is fresh (hack/manifests.sh --check);
#  2. brings the cluster up (hack/cluster.sh up --nodes N: real kubelets,
#     containerd and kube-proxy in namespaces of their own, kube-scheduler with
#     the Alcove extender, images imported without a registry) and imports the
#     suite's test images;
#  3. runs the test/e2e tests inside node 1's network namespace:
#       TestClusterEndToEnd  helm lint, server-side dry-run of every manifest,
#                            install (mTLS on), TLS enforced and certificates
#                            kept by helm upgrade, tenants kept apart (pods of
#                            two namespaces with ServiceAccount tokens), PVC/pod/Job checks, CSI node
#                            restart under reads, uninstall leaves no mounts
#                            (PASS/FAIL lines)
#       TestPlacement        a Spark-shaped application placed by the real
#                            scheduler + extender next to its data (2 nodes)
#       TestPodPOSIX         subPath of a directory another pod removed,
#                            symlinks in a volume (issue 17's specs, our way)
#       TestConformance      the Kubernetes storage suite, fast subset
#                            (results in .cache/conformance/fast)
#  4. tears the cluster down, whatever happened (also on Ctrl-C).
# Environment: ALCOVE_E2E_NODES (default 2), ALCOVE_E2E_TESTS (a -test.run
# regexp, default the four above), ALCOVE_CONFORMANCE_SUBSET (fast or slow;
# hack/conformance.sh sets these).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
nodes=${ALCOVE_E2E_NODES:-2}
tests=${ALCOVE_E2E_TESTS:-^(TestClusterEndToEnd|TestPlacement|TestPodPOSIX|TestConformance)$}
subset=${ALCOVE_CONFORMANCE_SUBSET:-fast}
./hack/k8s-bins.sh cluster >/dev/null
./hack/manifests.sh --check
suite=$(./hack/storage-suite.sh)
eval "export $(./hack/cluster.sh env)"
go test -c -o "$ALCOVE_CLUSTER_DIR.e2e.test" ./test/e2e
echo "e2e: tools ready in $((SECONDS - t0))s"
if [ -e "$ALCOVE_CLUSTER_DIR" ]; then
  echo "e2e: a cluster from an earlier run is still there; tearing it down" >&2
  ./hack/cluster.sh down
fi
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -d "$ALCOVE_CLUSTER_DIR/logs" ]; then
    for f in "$ALCOVE_CLUSTER_DIR"/logs/kubelet-*.log; do
      echo "---- tail of $(basename "$f") ----"
      tail -n 15 "$f" 2>/dev/null || true
    done
  fi
  ./hack/cluster.sh down || true
  rm -f "$ALCOVE_CLUSTER_DIR.e2e.test"
  echo "e2e: finished in $((SECONDS - t0))s (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
./hack/cluster.sh up --nodes "$nodes"
./hack/cluster.sh images suite
eval "export $(./hack/cluster.sh env)"
t1=$SECONDS
ALCOVE_STORAGE_SUITE=$suite ALCOVE_CONFORMANCE_SUBSET=$subset \
  ALCOVE_CONFORMANCE_RESULTS=${ALCOVE_CONFORMANCE_RESULTS:-$PWD/.cache/conformance/$subset} \
  ./hack/cluster.sh run "$ALCOVE_CLUSTER_DIR.e2e.test" -test.run "$tests" -test.v -test.timeout 150m 2>&1 |
  grep --line-buffered -v -E '^(=== RUN|=== PAUSE|=== CONT)'
echo "e2e: tests took $((SECONDS - t1))s"
