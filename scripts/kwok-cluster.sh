#!/usr/bin/env bash
# Turns a control plane started by scripts/control-plane.sh into a small
# "cluster" whose pods run without kubelets: kube-controller-manager (service
# accounts and their tokens, namespace deletion, ownerReference garbage
# collection), kube-scheduler, and kwok simulating N GPU nodes.
#
#   scripts/kwok-cluster.sh start DIR [--nodes N] [--gpus-per-node G]
#                                     [--pods-per-node P] [--controllers LIST]
#   scripts/kwok-cluster.sh stop DIR    # stops what start started, not the control plane
#
# DIR is the control plane's directory (it holds DIR/kubeconfig and the
# service-account key DIR/certs/sa.key). Everything this script writes goes
# under DIR/kwok/ (pids, logs, configs), so control-plane.sh stop removes it.
# start prints a one-line summary and exits 0 once every node is Ready;
# on any failure it stops what it started, prints the failing log and exits 1.
#
# Nodes: fake-gpu-0 .. fake-gpu-(N-1), annotated kwok.x-k8s.io/node=fake (kwok
# manages only those), labelled type=kwok, untainted (the not-ready taint the
# API server puts on new nodes is lifted here: no node-lifecycle controller
# runs, so nodes never turn NotReady either), with capacity and
# allocatable cpu 32, memory 256Gi, pods P (default 110), nvidia.com/gpu G
# (default 8), and an InternalIP 10.240.X.Y set at creation (kwok keeps it).
# Pod IPs come from kwok's pool 10.64.0.0/12.
#
# Pod lifecycle (kwok 0.7 Stages, written to DIR/kwok/kwok.yaml; they replace
# kwok's built-in pod stages, so nothing else moves pods):
#   stella-pod-ready      Pending pod bound to a fake node, no podIP yet
#                         -> Running, Ready/ContainersReady True, podIP, hostIP.
#   stella-pod-succeeded  Running pod annotated kwok.stella.dev/phase=Succeeded
#                         -> Succeeded, containers terminated exitCode 0.
#   stella-pod-failed     Running pod annotated kwok.stella.dev/phase=Failed
#                         -> Failed, containers terminated with exitCode from
#                         kwok.stella.dev/exit-code (default 1), reason from
#                         kwok.stella.dev/reason (default Error).
#   stella-pod-delete     pod with deletionTimestamp -> finalizers cleared and
#                         deleted at once (there is no kubelet to do it).
# So a test finishes a pod by annotating it (kubectl annotate pod P
# kwok.stella.dev/phase=Failed); a pod created with the annotation runs and then
# finishes on its own. Unlike kwok's default stages, Job-owned pods do NOT
# complete by themselves. Writing the pod's status through the /status
# subresource also works: kwok only acts on Pending pods without a podIP and on
# Running pods with the annotation, so a status a test writes (Failed without
# a podIP, Ready False, ...) is left as it is.
#
# Scale: kwok's client has no rate limiter (sigs.k8s.io/kwok pkg/utils/client
# uses a fake always-allow limiter); its pod stage workers are raised to 32.
# kube-scheduler runs with clientConnection qps 5000 / burst 10000 and
# kube-controller-manager with --kube-api-qps 1000 --kube-api-burst 2000.
set -euo pipefail

usage() {
  echo "usage: kwok-cluster.sh start DIR [--nodes N] [--gpus-per-node G] [--pods-per-node P] [--controllers LIST]" >&2
  echo "       kwok-cluster.sh stop DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
if ! dir=$(cd "$2" 2>/dev/null && pwd); then
  [ "$cmd" = stop ] && exit 0  # nothing to stop (control-plane.sh stop already removed it)
  echo "kwok-cluster.sh: control-plane directory '$2' does not exist" >&2
  exit 1
fi
shift 2
here=$(cd "$(dirname "$0")" && pwd)
kdir=$dir/kwok
components=(kwok kube-scheduler kube-controller-manager)

# Stops the components: SIGTERM to all, up to 5 s for them to exit, then
# SIGKILL. A pid is signalled only if its command line mentions DIR, so a
# recycled pid is never killed.
stop_all() {
  local c pid pids=()
  for c in "${components[@]}"; do
    [ -f "$kdir/$c.pid" ] || continue
    pid=$(cat "$kdir/$c.pid")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/"; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  for c in "${components[@]}"; do rm -f "$kdir/$c.pid"; done
}

case "$cmd" in
  stop) stop_all; exit 0 ;;
  start) ;;
  *) echo "kwok-cluster.sh: unknown command '$cmd' (expected start or stop)" >&2; usage ;;
esac

nodes=2 gpus=8 max_pods=110
controllers=serviceaccount-token-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes|--gpus-per-node|--pods-per-node|--controllers)
      [ $# -ge 2 ] || { echo "kwok-cluster.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --nodes) nodes=$2 ;; --gpus-per-node) gpus=$2 ;;
        --pods-per-node) max_pods=$2 ;; --controllers) controllers=$2 ;;
      esac
      shift 2 ;;
    *) echo "kwok-cluster.sh: unknown option '$1'" >&2; usage ;;
  esac
done
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
is_int "$nodes" && [ "$nodes" -ge 1 ] && [ "$nodes" -le 5000 ] ||
  { echo "kwok-cluster.sh: --nodes '$nodes': expected an integer in 1..5000" >&2; exit 2; }
is_int "$gpus" && [ "$gpus" -le 1024 ] ||
  { echo "kwok-cluster.sh: --gpus-per-node '$gpus': expected an integer in 0..1024" >&2; exit 2; }
is_int "$max_pods" && [ "$max_pods" -ge 1 ] && [ "$max_pods" -le 100000 ] ||
  { echo "kwok-cluster.sh: --pods-per-node '$max_pods': expected an integer in 1..100000" >&2; exit 2; }
[[ $controllers =~ ^[a-z*,-]+$ ]] ||
  { echo "kwok-cluster.sh: --controllers '$controllers': expected a comma-separated list of kube-controller-manager controller names" >&2; exit 2; }

kubeconfig=$dir/kubeconfig
[ -f "$kubeconfig" ] || { echo "kwok-cluster.sh: $kubeconfig not found: start the control plane first (scripts/control-plane.sh start $dir)" >&2; exit 1; }
[ -f "$dir/certs/sa.key" ] || { echo "kwok-cluster.sh: $dir/certs/sa.key not found (the service-account signing key control-plane.sh writes)" >&2; exit 1; }
for c in "${components[@]}"; do
  if [ -f "$kdir/$c.pid" ] && kill -0 "$(cat "$kdir/$c.pid")" 2>/dev/null; then
    echo "kwok-cluster.sh: $c is already running for $dir (pid $(cat "$kdir/$c.pid")); run 'kwok-cluster.sh stop $dir' first" >&2
    exit 1
  fi
done

bin=$(bash "$here/testbin.sh")
export PATH="$bin:$PATH"
export KUBECONFIG=$kubeconfig
server=$(awk '/server:/ {print $2; exit}' "$kubeconfig")
kubectl get --raw /readyz >/dev/null 2>&1 ||
  { echo "kwok-cluster.sh: the API server $server of $kubeconfig is not ready" >&2; exit 1; }
mkdir -p "$kdir"

fail() {
  echo "kwok-cluster.sh: $1" >&2
  if [ -n "${2:-}" ] && [ -f "$kdir/$2.log" ]; then
    echo "--- last lines of $kdir/$2.log:" >&2
    tail -20 "$kdir/$2.log" >&2
  fi
  stop_all
  exit 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
alive() { kill -0 "$(cat "$kdir/$1.pid")" 2>/dev/null; }
# wait_healthz NAME PORT: the component's own /healthz (always allowed
# without credentials), up to 60 s.
wait_healthz() {
  for _ in $(seq 120); do
    curl -skf "https://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return 0
    alive "$1" || fail "$1 exited during start-up" "$1"
    sleep 0.5
  done
  fail "$1 did not report healthy on 127.0.0.1:$2 within 60 s" "$1"
}

# --- kube-controller-manager --------------------------------------------------
# The CA handed to pods (kube-root-ca.crt, token secrets): a CA if the control
# plane has one, else the API server's self-signed serving certificate.
root_ca=()
for f in "$dir/certs/ca.crt" "$dir/certs/apiserver.crt"; do
  if [ -f "$f" ]; then root_ca=(--root-ca-file "$f"); break; fi
done
kcm_port=$(free_port)
kube-controller-manager \
  --kubeconfig "$kubeconfig" \
  --controllers "$controllers" \
  --service-account-private-key-file "$dir/certs/sa.key" "${root_ca[@]}" \
  --use-service-account-credentials=false --leader-elect=false \
  --kube-api-qps 1000 --kube-api-burst 2000 \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" \
  </dev/null >"$kdir/kube-controller-manager.log" 2>&1 &
echo $! >"$kdir/kube-controller-manager.pid"

# --- kube-scheduler -------------------------------------------------------------
sched_port=$(free_port)
cat >"$kdir/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $kubeconfig
  qps: 5000
  burst: 10000
leaderElection:
  leaderElect: false
EOF
kube-scheduler --config "$kdir/scheduler.yaml" \
  \
  --bind-address 127.0.0.1 --secure-port "$sched_port" \
  </dev/null >"$kdir/kube-scheduler.log" 2>&1 &
echo $! >"$kdir/kube-scheduler.pid"

# --- kwok: configuration and the pod stages described in the header --------------
cat >"$kdir/kwok.yaml" <<'EOF'
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.64.0.1/12
  manageAllNodes: false
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  podPlayStageParallelism: 32
  nodePlayStageParallelism: 8
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: stella-pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Pending]}
    - {key: '.status.podIP', operator: DoesNotExist}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: ContainersReady}
      {{ range .spec.readinessGates }}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: {{ .conditionType | Quote }}}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: stella-pod-succeeded
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
    - {key: '.metadata.annotations["kwok.stella.dev/phase"]', operator: In, values: [Succeeded]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $started := or .status.startTime $now }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "False", reason: PodCompleted, type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "False", reason: PodCompleted, type: ContainersReady}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $started | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: stella-pod-failed
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
    - {key: '.metadata.annotations["kwok.stella.dev/phase"]', operator: In, values: [Failed]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $started := or .status.startTime $now }}
      {{ $annotations := or .metadata.annotations dict }}
      {{ $exitCode := or ( index $annotations "kwok.stella.dev/exit-code" ) "1" }}
      {{ $reason := or ( index $annotations "kwok.stella.dev/reason" ) "Error" }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "False", reason: PodFailed, type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "False", reason: PodFailed, type: ContainersReady}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated: {exitCode: {{ $exitCode }}, reason: {{ $reason | Quote }}, startedAt: {{ $started | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
      phase: Failed
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: stella-pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: Exists}
  next:
    finalizers: {empty: true}
    delete: true
EOF
kwok -c "$kdir/kwok.yaml" --kubeconfig "$kubeconfig" \
  </dev/null >"$kdir/kwok.log" 2>&1 &
echo $! >"$kdir/kwok.pid"

wait_healthz kube-controller-manager "$kcm_port"
wait_healthz kube-scheduler "$sched_port"
alive kwok || fail "kwok exited during start-up" kwok

# --- fake GPU nodes ---------------------------------------------------------------
{
  echo "apiVersion: v1"
  echo "kind: List"
  echo "items:"
  for ((i = 0; i < nodes; i++)); do
    ip="10.240.$((i / 250)).$((i % 250 + 1))"
    cat <<EOF
- apiVersion: v1
  kind: Node
  metadata:
    name: fake-gpu-$i
    annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
    labels: {type: kwok, kubernetes.io/hostname: fake-gpu-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, nvidia.com/gpu.present: "true"}
  status:
    addresses: [{type: InternalIP, address: "$ip"}, {type: Hostname, address: fake-gpu-$i}]
    capacity: {cpu: "32", memory: 256Gi, pods: "$max_pods", nvidia.com/gpu: "$gpus"}
    allocatable: {cpu: "32", memory: 256Gi, pods: "$max_pods", nvidia.com/gpu: "$gpus"}
EOF
  done
} >"$kdir/nodes.yaml"
# Nodes left from an earlier start of the same control plane are kept as they
# are (kwok takes them over again); any other error is fatal.
if ! out=$(kubectl create -f "$kdir/nodes.yaml" 2>&1); then
  other=$(grep -v 'AlreadyExists' <<<"$out" | grep -v '^node/.* created$' || true)
  [ -z "$other" ] || fail "creating the fake nodes failed: $other"
fi
# The API server's TaintNodesByCondition admission gives every new Node the
# node.kubernetes.io/not-ready:NoSchedule taint; the node-lifecycle controller
# would lift it, but it is not run here (on a loaded 2-core machine its
# heartbeat deadlines would make nodes flap), so lift it once ourselves.
kubectl taint nodes -l type=kwok node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true

# Ready = kwok took the nodes over; the default ServiceAccount = the
# controller manager's service-account controller works (pods need it).
ready=0 tainted=0
for _ in $(seq 240); do
  ready=$(kubectl get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c '^True$' || true)
  tainted=$(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.spec.taints[*].key}{"\n"}{end}' 2>/dev/null |
    grep -c 'node.kubernetes.io/not-ready' || true)
  if [ "$ready" -ge "$nodes" ] && [ "$tainted" -eq 0 ] && kubectl get serviceaccount default -n default >/dev/null 2>&1; then
    echo "kwok-cluster: $server: $nodes fake nodes x $gpus nvidia.com/gpu, $max_pods pods each; logs in $kdir"
    exit 0
  fi
  for c in "${components[@]}"; do alive "$c" || fail "$c exited during start-up" "$c"; done
  sleep 0.25
done
fail "after 60 s: $ready of $nodes nodes Ready, $tainted still tainted not-ready, default ServiceAccount: $(kubectl get serviceaccount default -n default -o name 2>&1)" kwok
