#!/usr/bin/env bash
# make e2e: the real-cluster end-to-end test of issue 6.
#  1. builds what is missing (hack/k8s-bins.sh cluster: cold ~10 min, warm < 1 s)
#     and checks that deploy/manifests is fresh (hack/manifests.sh --check);
#  2. brings the one-node cluster up (hack/cluster.sh up: real kubelet + containerd
#     in a private network namespace, images imported without a registry);
#  3. runs test/e2e's TestClusterEndToEnd inside that namespace: helm lint,
#     server-side dry-run of every manifest, helm install, PVC/pod/Job checks,
#     CSI node restart under reads, helm uninstall leaves no mounts;
#  4. tears the cluster down, whatever happened (also on Ctrl-C).
# Prints PASS/FAIL per check and "e2e: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
./hack/k8s-bins.sh cluster >/dev/null
./hack/manifests.sh --check
echo "e2e: tools ready in $((SECONDS - t0))s"
eval "export $(./hack/cluster.sh env)"
if [ -e "$ALCOVE_CLUSTER_NETNS" ]; then
  echo "e2e: a cluster from an earlier run is still there; tearing it down" >&2
  ./hack/cluster.sh down
fi
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -d "$ALCOVE_CLUSTER_DIR/logs" ]; then
    echo "---- tail of kubelet.log ----"
    tail -n 15 "$ALCOVE_CLUSTER_DIR/logs/kubelet.log" 2>/dev/null || true
  fi
  ./hack/cluster.sh down || true
  echo "e2e: finished in $((SECONDS - t0))s (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
go test -c -o "$ALCOVE_CLUSTER_DIR.e2e.test" ./test/e2e
./hack/cluster.sh up
t1=$SECONDS
./hack/cluster.sh run "$ALCOVE_CLUSTER_DIR.e2e.test" \
  -test.run '^TestClusterEndToEnd$' -test.v -test.timeout 25m 2>&1 |
  grep -v -E '^(=== RUN|=== PAUSE|=== CONT)' || { rm -f "$ALCOVE_CLUSTER_DIR.e2e.test"; exit 1; }
rm -f "$ALCOVE_CLUSTER_DIR.e2e.test"
echo "e2e: checks took $((SECONDS - t1))s"
