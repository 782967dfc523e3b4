#!/usr/bin/env bash
# A Kubernetes v1.33 cluster of one or more real nodes for end-to-end tests, on
# this one machine. A node is a process tree in namespaces of its own:
#   network  10.200.0.N on a bridge in node 1, pods on 10.244.(N-1).0/24
#            (bridge CNI), routes to the other nodes' pods;
#   mount    the paths a standard node has, bound to the node's directory:
#            /var/lib/kubelet (kubelet's root), /var/lib/alcove, /var/log,
#            /run/netns, /run/containerd, /etc/resolv.conf (cluster DNS), and
#            a tmpfs of its own at /dev/shm;
#   PID      its /proc shows the node's processes only; PID 1 is the node's
#            init (hack/pause), so tools that enter "the host" through
#            /proc/1/ns/mnt (the storage suite's host-exec pods) reach the node.
# Each node runs containerd + runc, a real kubelet (cgroup root
# /alcove-e2e-<id>/nN) and kube-proxy (iptables). Node 1 also runs the control
# plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (with the
# Alcove extender entry of deploy/scheduler-config.yaml) and CoreDNS
# (cluster.local) on 10.200.0.1. Nodes are named alcove-e2e-N and labelled
# alluxio=true. Nothing listens outside the namespaces.
#
#   hack/cluster.sh up [--nodes N]  build what is missing (hack/k8s-bins.sh,
#                                   hack/k8s-images.sh), start everything, wait
#                                   until every node is Ready (N: 1..9, default 1)
#   hack/cluster.sh down            stop every process, unmount, remove the
#                                   namespaces, cgroups and state
#   hack/cluster.sh images [suite]  rebuild and import the images into every node
#                                   (suite: the storage suite's test images)
#   hack/cluster.sh run CMD...      run CMD on the host, in node 1's network
#                                   namespace, with KUBECONFIG and the variables
#                                   of `env` set (hack/cluster.sh run kubectl get pods -A)
#   hack/cluster.sh node N CMD...   run CMD inside node N (its network, mount and
#                                   PID namespaces), as ssh to a node would
#   hack/cluster.sh env             print the variables `run` sets
#
# State (logs, PKI, node directories, containerd) lives in $ALCOVE_CLUSTER_DIR
# (default /tmp/alcove-cluster-<hash of this checkout>, short for unix
# sockets); node N's directory is n<N>. Kubelet's fixed paths (the
# device-plugin socket under /var/lib/kubelet, /var/log/containers) are per
# node. The host sees every node's kubelet mounts under n<N>/kubelet.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ID=$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)
D=${ALCOVE_CLUSTER_DIR:-/tmp/alcove-cluster-$ID}
CP_IP=10.200.0.1                      # node 1: the control plane, CoreDNS
SVC_CIDR=10.96.0.0/16
CLUSTER_CIDR=10.244.0.0/16
CGROOT=alcove-e2e-$ID                 # every node's kubelet --cgroup-root lives under it
BIN=$ROOT/.cache/k8s/bin
CNI_BIN=$ROOT/.cache/k8s/cni/bin
IMAGES=$ROOT/.cache/k8s/images
export KUBECONFIG=$D/admin.kubeconfig

log() { echo "cluster: $*" >&2; }
nodes() { cat "$D/nodes" 2>/dev/null || echo 1; }
node_name() { echo "alcove-e2e-$1"; }
node_ip() { echo "10.200.0.$1"; }
pod_cidr() { echo "10.244.$(($1 - 1)).0/24"; }
ctr_sock() { echo "$D/n$1/containerd/containerd.sock"; }

# on_node N CMD...: CMD in node N's network, mount and PID namespaces.
on_node() {
  local n=$1; shift
  nsenter -t "$(cat "$D/n$n/init.pid")" --net --mount --pid --wd="$ROOT" -- "$@"
}
# in_net CMD...: CMD in node 1's network namespace, on the host's files.
in_net() { nsenter --net="$D/n1/net" -- "$@"; }
kubectl() { in_net "$BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

# start N NAME CMD...: a daemon in node N, output to logs/NAME.log. The pid
# file holds nsenter's pid; the daemon is its child (daemon_pid).
start() {
  local n=$1 name=$2; shift 2
  on_node "$n" "$@" </dev/null >"$D/logs/$name.log" 2>&1 &
  echo $! >"$D/pids/$name"
}
daemon_pid() { [ -f "$D/pids/$1" ] && pgrep -P "$(cat "$D/pids/$1")"; }

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
  cluster: {server: "https://$CP_IP:6443", certificate-authority: "$D/pki/ca.crt"}
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

# import_images [suite]: the cluster's images (or the storage suite's test
# images, hack/k8s-images.sh) into every node's containerd.
import_images() {
  local t n
  for t in $(./hack/k8s-images.sh "$IMAGES" ${1:-}); do
    for ((n = 1; n <= $(nodes); n++)); do
      ctr -a "$(ctr_sock "$n")" -n k8s.io images import "$t" >/dev/null
    done
  done
}

# node_init ND D PAUSE: PID 1 of a node (run by start_node in fresh mount and
# PID namespaces cloned from the host's). It binds the node's directories at
# the standard paths, then becomes hack/pause (reaps orphans until killed).
node_init() {
  local nd=$1 d=$2 pause=$3 m
  # Copies of other tests' FUSE mounts would keep them alive after their
  # owners unmount: drop them (lazily, without stat: a dead one would hang).
  for m in $(awk '{split($0, a, " - "); split(a[2], f, " "); if (f[1] ~ /^fuse/) print $5}' /proc/self/mountinfo); do
    umount -l -c "$m" 2>/dev/null || true
  done
  # Only kubelet's directory stays shared with the host (which then sees
  # kubelet's mounts, as tests and teardown need); nothing else propagates
  # either way.
  for m in $(awk -v k="$nd/kubelet" '$5 != k && $0 ~ / shared:[0-9]+ .* - / {print $5}' /proc/self/mountinfo); do
    mount --make-private "$m" 2>/dev/null || true
  done
  mount --bind "$nd/kubelet" /var/lib/kubelet || exit 1
  mount --bind "$nd/alcove" /var/lib/alcove || exit 1
  mount --bind "$nd/log" /var/log || exit 1
  mount --bind "$nd/run-netns" /run/netns || exit 1
  mount --bind "$nd/run-containerd" /run/containerd || exit 1
  mount --bind "$nd/resolv.conf" /etc/resolv.conf || exit 1
  # The node's own /dev/shm (the chart's MEM tier is a hostPath in it).
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || exit 1
  # The copies of the cluster's own host mounts (netns files, every node's
  # kubelet dir) are not this node's business: private first, so the
  # unmount does not propagate, then gone.
  for m in $(awk -v d="$d" 'index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    mount --make-private "$m" 2>/dev/null || true
    umount -l -c "$m" 2>/dev/null || true
  done
  : >"$nd/ready"
  exec "$pause"
}

# start_node N: node N's directories and namespaces, its init as PID 1.
start_node() {
  local n=$1 nd=$D/n$1 up i
  mkdir -p "$nd"/{kubelet,alcove,log,run-netns,run-containerd,containerd,cni/net.d,cni/ipam}
  # The mount points of node_init's binds, on the host (empty directories).
  mkdir -p /var/lib/kubelet /var/lib/alcove /run/netns /run/containerd
  printf 'nameserver %s\nsearch svc.cluster.local cluster.local\noptions ndots:5\n' "$CP_IP" >"$nd/resolv.conf"
  # kubelet's root: a shared mount, for Bidirectional mount propagation (CSI)
  # and so that the host sees the node's volume mounts.
  mount --bind "$nd/kubelet" "$nd/kubelet"
  mount --make-shared "$nd/kubelet"
  touch "$nd/net"
  unshare --net="$nd/net" true
  nsenter --net="$nd/net" -- unshare --mount --propagation unchanged --pid --fork --mount-proc \
    bash -c "$(declare -f node_init); node_init '$nd' '$D' '$BIN/pause'" </dev/null >"$nd/init.log" 2>&1 &
  up=$!
  wait_for "node $n's namespaces" 20 test -e "$nd/ready" || { cat "$nd/init.log" >&2; return 1; }
  for i in 1 2 3 4 5; do
    pgrep -P "$up" >"$nd/init.pid" && break
    sleep 0.2
  done
  stat -L -c %i "/proc/$(cat "$nd/init.pid")/ns/pid" >"$nd/pidns"
}

# setup_network: a bridge e2e0 in node 1 (10.200.0.1) with one veth per node;
# node N (N > 1) has the other end as eth0. Every node routes to the others'
# pod ranges; ClusterIPs go to kube-proxy's rules through the default route.
setup_network() {
  local n i
  in_net ip link add e2e0 type bridge
  in_net ip addr add "$CP_IP/24" dev e2e0
  in_net ip link set e2e0 up
  for ((n = 1; n <= $(nodes); n++)); do
    on_node "$n" ip link set lo up
    on_node "$n" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'   # the namespace's own setting
    if [ "$n" = 1 ]; then
      # A port for the bridge's carrier even with one node.
      in_net ip link add e2e1 type veth peer name e2e1p
      in_net ip link set e2e1p up
    else
      in_net ip link add "e2e$n" type veth peer name eth0 netns "$(cat "$D/n$n/init.pid")"
      on_node "$n" ip addr add "$(node_ip "$n")/24" dev eth0
      on_node "$n" ip link set eth0 up
    fi
    in_net ip link set "e2e$n" master e2e0
    in_net ip link set "e2e$n" up
  done
  in_net ip route add default dev e2e0
  for ((n = 2; n <= $(nodes); n++)); do
    on_node "$n" ip route add default via "$CP_IP"
  done
  for ((n = 1; n <= $(nodes); n++)); do
    for ((i = 1; i <= $(nodes); i++)); do
      [ "$i" = "$n" ] || on_node "$n" ip route add "$(pod_cidr "$i")" via "$(node_ip "$i")"
    done
    cat >"$D/n$n/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "alcove-e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$D/n$n/cni/ipam", "ranges": [[{"subnet": "$(pod_cidr "$n")"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
  done
}

start_containerd() { # N
  local n=$1 c=$D/n$1/containerd
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$(ctr_sock "$n")"
[ttrpc]
  address = "$(ctr_sock "$n").ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
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
    conf_dir = "$D/n$n/cni/net.d"
EOF
  start "$n" "containerd-$n" containerd --config "$c/config.toml"
  wait_for "containerd on node $n" 30 ctr -a "$(ctr_sock "$n")" version
}

start_control_plane() {
  local p=$D/pki n
  kubeconfig "$KUBECONFIG" admin
  kubeconfig "$D/controller-manager.kubeconfig" controller-manager
  kubeconfig "$D/scheduler.kubeconfig" scheduler
  kubeconfig "$D/kube-proxy.kubeconfig" kube-proxy
  for ((n = 1; n <= $(nodes); n++)); do
    kubeconfig "$D/n$n/kubelet.kubeconfig" "node-$(node_name "$n")"
  done
  start 1 etcd "$BIN/etcd" --name=e2e --data-dir="$D/etcd" \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=e2e=http://127.0.0.1:2380 --log-level=warn
  start 1 kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$CP_IP" --secure-port=6443 \
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
  start 1 kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$D/controller-manager.kubeconfig" --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SVC_CIDR" \
    --bind-address=127.0.0.1 --secure-port=10257 --v=1
  # The scheduler with the extender entry users add (deploy/scheduler-config.yaml):
  # it resolves alcove-extender.alcove.svc through CoreDNS (node 1's
  # /etc/resolv.conf) and reaches it through kube-proxy; until the chart is
  # installed, the extender is ignorable and pods schedule without it.
  { cat deploy/scheduler-config.yaml
    printf 'clientConnection:\n  kubeconfig: "%s"\nleaderElection:\n  leaderElect: false\n' "$D/scheduler.kubeconfig"
  } >"$D/scheduler.yaml"
  start 1 kube-scheduler "$BIN/kube-scheduler" --config="$D/scheduler.yaml" \
    --bind-address=127.0.0.1 --secure-port=10259 --v=1
  # DNS for cluster.local, served on the node IP (the kubelets' clusterDNS).
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
  start 1 coredns "$BIN/coredns" -conf "$D/Corefile" -dns.port 53
}

start_kubelet() { # N
  local n=$1 nd=$D/n$1 name h
  name=$(node_name "$n")
  # The cgroup root must exist in every hierarchy before kubelet starts.
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -f "$h/cgroup.procs" ] && mkdir -p "$h$CGROOT/n$n"
  done
  cat >"$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$D/pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$D/pki/kubelet-$name.crt"
tlsPrivateKeyFile: "$D/pki/kubelet-$name.key"
cgroupDriver: cgroupfs
cgroupRoot: /$CGROOT/n$n
failSwapOn: false
containerRuntimeEndpoint: "unix://$(ctr_sock "$n")"
clusterDNS: ["$CP_IP"]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
volumePluginDir: "$nd/volume-plugins"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
  # Root dir: the default /var/lib/kubelet (the node's own, see node_init).
  start "$n" "kubelet-$n" "$BIN/kubelet" --config="$nd/kubelet.yaml" --kubeconfig="$nd/kubelet.kubeconfig" \
    --cert-dir="$nd/kubelet-pki" --hostname-override="$name" \
    --node-ip="$(node_ip "$n")" --node-labels=alluxio=true --v=1
}

start_kube_proxy() { # N
  local n=$1
  cat >"$D/n$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$D/kube-proxy.kubeconfig"}
hostnameOverride: $(node_name "$n")
mode: iptables
clusterCIDR: $CLUSTER_CIDR
# Pods on one bridge reach each other's Services: masquerade all service traffic.
iptables: {masqueradeAll: true, localhostNodePorts: false}
# Leave the machine's conntrack settings alone (not ours to change).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
EOF
  start "$n" "kube-proxy-$n" "$BIN/kube-proxy" --config="$D/n$n/kube-proxy.yaml" --v=1
}

node_ready() {
  [ "$(kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

cmd_up() {
  local want=1 n certs=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) want=${2:?--nodes N}; shift 2 ;;
      --nodes=*) want=${1#--nodes=}; shift ;;
      *) log "unknown flag $1"; exit 2 ;;
    esac
  done
  case "$want" in [1-9]) ;; *) log "--nodes: 1..9, not $want"; exit 2 ;; esac
  if [ -e "$D" ]; then
    log "already up in $D (hack/cluster.sh down first)"
    exit 1
  fi
  install_packages
  ./hack/k8s-bins.sh cluster >/dev/null
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/pause" ./hack/pause
  local t0=$SECONDS
  mkdir -p "$D/logs" "$D/pids" "$D/ufs"
  echo "$want" >"$D/nodes"
  for ((n = 1; n <= want; n++)); do
    start_node "$n"
    certs+=("$(node_name "$n")" "$(node_ip "$n")")
  done
  setup_network
  ./hack/k8s-certs.sh "$D/pki" "${certs[@]}"
  for ((n = 1; n <= want; n++)); do start_containerd "$n"; done
  import_images
  start_control_plane
  for ((n = 1; n <= want; n++)); do
    start_kubelet "$n"
    start_kube_proxy "$n"
  done
  for ((n = 1; n <= want; n++)); do
    wait_for "node $(node_name "$n") Ready" 120 node_ready "$(node_name "$n")"
  done
  wait_for "default ServiceAccount" 60 kubectl get serviceaccount default
  log "up in $((SECONDS - t0))s: $D ($want node(s), KUBECONFIG=$KUBECONFIG)"
}

# pids_in_ns FILE TYPE: every process whose TYPE namespace (net, pid) has the
# inode FILE names (an ns bind mount, or a file holding the inode number).
pids_in_ns() {
  local want p
  if [ "$2" = net ]; then
    want=$(stat -L -c %i "$1" 2>/dev/null) || return 0
  else
    want=$(cat "$1" 2>/dev/null) || return 0
  fi
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/$2" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
  done
  return 0
}

# pids_in_cgroups: every process under the cluster's cgroup root (all pods,
# the FUSE daemons the chart moves there too).
pids_in_cgroups() {
  local f
  for f in /sys/fs/cgroup/*/"$CGROOT" "/sys/fs/cgroup/$CGROOT"; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
  return 0
}

# cluster_pids: every process of the cluster still alive.
cluster_pids() {
  local f
  for f in "$D"/n*/net "$D/netns"; do pids_in_ns "$f" net; done
  for f in "$D"/n*/pidns; do pids_in_ns "$f" pid; done
  pids_in_cgroups
}

kill_all() { # SIGNAL PID... (some may be gone already)
  local sig=$1; shift
  [ $# -eq 0 ] || kill "-$sig" "$@" 2>/dev/null || true
}

# stop NAME...: SIGTERM the daemons, wait up to 10 s for them to exit.
stop() {
  local pids=() name p i
  for name in "$@"; do
    for p in $(daemon_pid "$name" || true); do pids+=("$p"); done
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill_all TERM "${pids[@]}"
  for ((i = 0; i < 50; i++)); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.2
  done
}

cmd_down() {
  [ -d "$D" ] || { log "nothing to tear down ($D)"; return 0; }
  local n pid f m
  # The control plane in order (the apiserver before etcd: stopping both at
  # once can hang the apiserver), then each node's init: killing a PID
  # namespace's init kills every process in it (kubelet, containerd, pods,
  # FUSE daemons).
  stop kube-scheduler kube-controller-manager coredns
  stop kube-apiserver
  stop etcd
  for f in "$D"/n*/init.pid; do
    [ -f "$f" ] && kill_all KILL "$(cat "$f")"
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pid=$(cluster_pids | sort -u)
    [ -z "$pid" ] && break
    kill_all KILL $pid
    sleep 1
  done
  # What the host sees under the state dir (netns files, kubelet dirs and
  # the volume mounts propagated from the nodes), deepest first.
  for _ in 1 2 3; do
    m=$(awk -v d="$D" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ -z "$m" ] && break
    for f in $m; do umount -l -c "$f" 2>/dev/null || true; done
  done
  # Cgroups, deepest first (they are empty now).
  for f in /sys/fs/cgroup/*/"$CGROOT" "/sys/fs/cgroup/$CGROOT"; do
    [ -d "$f" ] && find "$f" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  rm -rf "$D" 2>/dev/null || { sleep 1; rm -rf "$D"; }
  log "down: $D removed"
}

# cluster_env: what `run` exports (test/e2e and hack/conformance.sh read these).
cluster_env() {
  local n names=()
  for ((n = 1; n <= $(nodes); n++)); do names+=("$(node_name "$n")"); done
  echo "ALCOVE_REPO=$ROOT KUBECONFIG=$KUBECONFIG ALCOVE_CLUSTER_DIR=$D" \
    "ALCOVE_CLUSTER_CGROUP=/$CGROOT ALCOVE_CLUSTER_NODES=$(IFS=,; echo "${names[*]}")" \
    "ALCOVE_CLUSTER_NETNS=$D/n1/net"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  images) import_images "${2:-}" ;;
  run) shift; export $(cluster_env) PATH="$BIN:$PATH"; in_net "$@" ;;
  node) shift; n=${1:?node N CMD...}; shift; on_node "$n" "$@" ;;
  env) cluster_env ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
