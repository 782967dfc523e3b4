#!/usr/bin/env bash
# A one-node Kubernetes v1.33 cluster for end-to-end tests, in a private network
# namespace on this machine: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, CoreDNS (cluster.local), containerd + runc and a real kubelet
# (node alcove-e2e-node, labelled alluxio=true). Nothing listens outside the
# namespace. Facts and traps: ../shared/notes/real-cluster.md.
#
#   hack/cluster.sh up        build what is missing (hack/k8s-bins.sh, hack/k8s-images.sh),
#                             start everything, wait until the node is Ready
#   hack/cluster.sh down      stop every process, unmount, remove the netns, cgroups, state
#   hack/cluster.sh images    rebuild and import the images (localhost/alcove:e2e, ...)
#   hack/cluster.sh run CMD.. run CMD inside the namespace with KUBECONFIG set
#                             (e.g. hack/cluster.sh run kubectl get pods -A)
#   hack/cluster.sh env       print the variables `run` sets
#
# State (logs, PKI, kubelet root, containerd) lives in $ALCOVE_CLUSTER_DIR
# (default /tmp/alcove-cluster-<hash of this checkout>, short for unix sockets).
# Why one real node: a second kubelet on one host would fight the first over
# ports, cgroups and the runtime; locality scoring (which needs >= 2 feasible
# nodes) is covered by test/e2e's extender test. The one node carries
# alluxio=true, the label the chart's node selector uses.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ID=$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)
D=${ALCOVE_CLUSTER_DIR:-/tmp/alcove-cluster-$ID}
NODE=alcove-e2e-node
NODE_IP=10.200.0.1
POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/16
CGROOT=alcove-e2e-$ID                 # kubelet --cgroup-root: every pod lives under it
NETNS=$D/netns
SHARED=$D/shared                      # rshared bind mount: kubelet root and pod host paths
BIN=$ROOT/.cache/k8s/bin
CNI_BIN=$ROOT/.cache/k8s/cni/bin
IMAGES=$ROOT/.cache/k8s/images
CTR_SOCK=$D/containerd/containerd.sock
export KUBECONFIG=$D/admin.kubeconfig

log() { echo "cluster: $*" >&2; }
in_ns() { nsenter --net="$NETNS" -- "$@"; }
kubectl() { in_ns "$BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

# start NAME CMD...: a daemon in the namespace, output to logs/NAME.log.
start() {
  local name=$1; shift
  # nsenter execs the daemon, so $! is the daemon's pid.
  nsenter --net="$NETNS" -- "$@" </dev/null >"$D/logs/$name.log" 2>&1 &
  echo $! >"$D/pids/$name"
}

# wait_for WHAT SECONDS CMD...: poll CMD every second until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local i
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "timed out after ${secs}s waiting for $what"
  return 1
}

kubeconfig() { # FILE CERT-NAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$D/pki/ca.crt"}
users:
- name: u
  user: {client-certificate: "$D/pki/$2.crt", client-key: "$D/pki/$2.key"}
contexts:
- name: e2e
  context: {cluster: e2e, user: u}
current-context: e2e
EOF
}

install_packages() {
  local need=()
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  command -v iptables >/dev/null || need+=(iptables)
  command -v nsenter >/dev/null || need+=(util-linux)
  command -v ip >/dev/null || need+=(iproute2)
  command -v pgrep >/dev/null || need+=(procps)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null
  fi
}

import_images() {
  local t
  for t in $(./hack/k8s-images.sh "$IMAGES"); do
    in_ns ctr -a "$CTR_SOCK" -n k8s.io images import "$t" >/dev/null
  done
}

setup_network() {
  touch "$NETNS"
  unshare --net="$NETNS" true
  in_ns ip link set lo up
  in_ns ip link add e2e0 type veth peer name e2e1
  in_ns ip addr add "$NODE_IP/24" dev e2e0
  in_ns ip link set e2e0 up
  in_ns ip link set e2e1 up
  in_ns ip route add default dev e2e0   # so ClusterIPs route (then DNAT below)
  in_ns sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'   # this namespace's own setting
  # The kubernetes Service without kube-proxy: 10.96.0.1:443 -> the apiserver.
  local chain
  for chain in PREROUTING OUTPUT; do
    in_ns iptables -t nat -A "$chain" -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:6443"
  done
  mkdir -p "$D/cni/net.d" "$D/cni/ipam"
  cat >"$D/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "alcove-e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$D/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
}

start_containerd() {
  mkdir -p "$D/containerd"
  cat >"$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:e2e"
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$D/cni/net.d"
EOF
  start containerd containerd --config "$D/containerd/config.toml"
  wait_for containerd 30 in_ns ctr -a "$CTR_SOCK" version
}

start_control_plane() {
  ./hack/k8s-certs.sh "$D/pki" "$NODE" "$NODE_IP"
  local p=$D/pki
  kubeconfig "$KUBECONFIG" admin
  kubeconfig "$D/controller-manager.kubeconfig" controller-manager
  kubeconfig "$D/scheduler.kubeconfig" scheduler
  kubeconfig "$D/node.kubeconfig" node
  start etcd "$BIN/etcd" --name=e2e --data-dir="$D/etcd" \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=e2e=http://127.0.0.1:2380 --log-level=warn
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range="$SVC_CIDR" --authorization-mode=Node,RBAC \
    --allow-privileged=true --v=1
  wait_for kube-apiserver 90 kubectl get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$D/controller-manager.kubeconfig" --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SVC_CIDR" \
    --bind-address=127.0.0.1 --secure-port=10257 --v=1
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$D/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259 --v=1
  # DNS for cluster.local, served on the node IP (the kubelet's clusterDNS).
  cat >"$D/Corefile" <<EOF
.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
  start coredns "$BIN/coredns" -conf "$D/Corefile" -dns.port 53
}

start_kubelet() {
  local k=$SHARED/kubelet
  mkdir -p "$k" "$D/kubelet-pki" "$D/logs/pods"
  # The cgroup root must exist in every hierarchy before kubelet starts.
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -f "$h/cgroup.procs" ] && mkdir -p "$h$CGROOT"
  done
  [ -f /sys/fs/cgroup/cgroup.procs ] && mkdir -p "/sys/fs/cgroup/$CGROOT"
  echo "nameserver $NODE_IP" >"$D/resolv.conf"
  cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$D/pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$D/pki/kubelet.crt"
tlsPrivateKeyFile: "$D/pki/kubelet.key"
cgroupDriver: cgroupfs
cgroupRoot: /$CGROOT
failSwapOn: false
containerRuntimeEndpoint: "unix://$CTR_SOCK"
clusterDNS: ["$NODE_IP"]
clusterDomain: cluster.local
resolvConf: "$D/resolv.conf"
podLogsDir: "$D/logs/pods"
volumePluginDir: "$D/volume-plugins"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
maxPods: 40
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
  start kubelet "$BIN/kubelet" --config="$D/kubelet.yaml" --kubeconfig="$D/node.kubeconfig" \
    --root-dir="$k" --cert-dir="$D/kubelet-pki" --hostname-override="$NODE" \
    --node-ip="$NODE_IP" --node-labels=alluxio=true --v=1
  wait_for "node $NODE Ready" 120 node_ready
}

node_ready() {
  [ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

cmd_up() {
  if [ -e "$NETNS" ]; then
    log "already up in $D (hack/cluster.sh down first)"
    exit 1
  fi
  install_packages
  ./hack/k8s-bins.sh cluster >/dev/null
  local t0=$SECONDS
  mkdir -p "$D/logs" "$D/pids" "$SHARED"
  # A shared mount so that Bidirectional mount propagation (CSI) works.
  mount --bind "$SHARED" "$SHARED"
  mount --make-rshared "$SHARED"
  setup_network
  start_containerd
  import_images
  start_control_plane
  start_kubelet
  wait_for "default ServiceAccount" 60 kubectl get serviceaccount default
  log "up in $((SECONDS - t0))s: $D (node $NODE, KUBECONFIG=$KUBECONFIG)"
}

# pids_in_netns: every process whose network namespace is ours.
pids_in_netns() {
  local want p
  want=$(stat -L -c %i "$NETNS" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
  done
  return 0
}

# pids_in_cgroups: every process under the kubelet's cgroup root (all pods,
# FUSE daemons the chart moves there too).
pids_in_cgroups() {
  local f
  for f in /sys/fs/cgroup/*/"$CGROOT" "/sys/fs/cgroup/$CGROOT"; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
  return 0
}

# pod_netns_files: containerd's /var/run/netns/cni-* files of our pods.
pod_netns_files() {
  local inos="" p f
  for p in $(pids_in_cgroups); do
    inos="$inos $(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null || true)"
  done
  for f in /var/run/netns/cni-*; do
    [ -e "$f" ] || continue
    case " $inos " in *" $(stat -L -c %i "$f" 2>/dev/null) "*) echo "$f" ;; esac
  done
}

# shim_sockets: the socket files our containerd shims listen on (they stay
# behind when a shim is killed).
shim_sockets() {
  local pid inodes
  for pid in $(pgrep -f "containerd-shim.*-address $CTR_SOCK" || true); do
    inodes=" $(ls -l "/proc/$pid/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ') "
    awk -v inodes="$inodes" 'NR > 1 && $8 ~ "^/run/containerd/s/" && index(inodes, " " $7 " ") {print $8}' \
      "/proc/$pid/net/unix" 2>/dev/null
  done
  return 0
}

kill_all() { # SIGNAL PID...
  local sig=$1; shift
  [ $# -gt 0 ] && kill "-$sig" "$@" 2>/dev/null
  return 0
}

cmd_down() {
  [ -d "$D" ] || { log "nothing to tear down ($D)"; return 0; }
  local n pid nsfiles shimsocks
  nsfiles=$(pod_netns_files)
  shimsocks=$(shim_sockets)
  # kubelet first (so it does not restart what we stop), then every pod and
  # everything else in the namespace; the apiserver before etcd.
  for n in kubelet kube-scheduler kube-controller-manager coredns kube-apiserver; do
    [ -f "$D/pids/$n" ] && kill_all TERM "$(cat "$D/pids/$n")"
  done
  sleep 1
  kill_all KILL $(pids_in_cgroups)
  for n in containerd etcd; do
    [ -f "$D/pids/$n" ] && kill_all TERM "$(cat "$D/pids/$n")"
  done
  for _ in 1 2 3 4 5; do
    pid=$( (pids_in_netns; pids_in_cgroups; pgrep -f "containerd-shim.*-address $CTR_SOCK" || true) | sort -u)
    [ -z "$pid" ] && break
    kill_all KILL $pid
    sleep 1
  done
  # Mounts under the state dir (deepest first), then the pod netns files.
  for _ in 1 2 3; do
    local mps
    mps=$(awk -v d="$D" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ -z "$mps" ] && break
    for m in $mps; do umount -l "$m" 2>/dev/null || true; done
  done
  for f in $nsfiles; do umount -l "$f" 2>/dev/null; rm -f "$f"; done
  for f in $shimsocks; do rm -f "$f"; done
  # kubelet's symlinks to our container logs (a fixed path in kubelet).
  find /var/log/containers -maxdepth 1 -type l -lname "$D/*" -delete 2>/dev/null || true
  # Cgroups, deepest first (they are empty now).
  for f in /sys/fs/cgroup/*/"$CGROOT" "/sys/fs/cgroup/$CGROOT"; do
    [ -d "$f" ] && find "$f" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  rm -rf "$D" 2>/dev/null || { sleep 1; rm -rf "$D"; }
  log "down: $D removed"
}

# cluster_env: what `run` exports (test/e2e reads these).
cluster_env() {
  echo "ALCOVE_REPO=$ROOT KUBECONFIG=$KUBECONFIG ALCOVE_CLUSTER_DIR=$D ALCOVE_CLUSTER_SHARED=$SHARED" \
    "ALCOVE_CLUSTER_CGROUP=/$CGROOT ALCOVE_CLUSTER_NODE=$NODE ALCOVE_CLUSTER_NETNS=$NETNS"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  images) import_images ;;
  run) shift; export $(cluster_env) PATH="$BIN:$PATH"; in_ns "$@" ;;
  env) cluster_env ;;
  *) sed -n '2,21p' "$0"; exit 2 ;;
esac
