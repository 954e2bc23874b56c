#!/usr/bin/env bash
# scripts/kwok-cluster.sh on a real control plane (scripts/control-plane.sh):
# fake GPU nodes are Ready with the advertised capacity and an InternalIP;
# a pod asking for a GPU is scheduled to one and becomes Running+Ready; the
# kwok.stella.dev/phase annotation makes it Succeeded or Failed (exit code and
# reason honoured); a status written through /status is not overwritten; a pod
# asking for more GPUs than a node has stays Pending as Unschedulable; the
# garbage collector and namespace deletion work; stop leaves no process.
# Exit code 77 (skipped, said loudly) only when scripts/testbin.sh cannot
# build the binaries. Every wait is bounded (60 s) and checks a state, not a time.
set -uo pipefail
# Control planes started below die with this script (scripts/control-plane.sh).
export STELLA_OWNER_PID=$$
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/stella-kwok-XXXXXX)
cp=$dir/cp
cleanup() {
  bash "$root/scripts/kwok-cluster.sh" stop "$cp" >/dev/null 2>&1
  bash "$root/scripts/control-plane.sh" stop "$cp" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

passed=0; failed=0
ok()   { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }

if ! bin=$(bash "$root/scripts/testbin.sh" 2>"$dir/testbin.log"); then
  echo "SKIPPED: kwok_cluster_test: the Kubernetes binaries could not be built by scripts/testbin.sh:" >&2
  tail -5 "$dir/testbin.log" >&2
  exit 77
fi
export PATH="$bin:$PATH"
if ! KUBECONFIG=$(bash "$root/scripts/control-plane.sh" start "$cp"); then
  echo "kwok_cluster_test: the control plane did not start" >&2
  exit 1
fi
export KUBECONFIG

# Bad options are refused before anything starts, naming the flag and value.
out=$(bash "$root/scripts/kwok-cluster.sh" start "$cp" --nodes 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -qF -- "--nodes '0': expected an integer in 1..5000" <<<"$out" &&
  [ ! -e "$cp/kwok" ] && ok "rejects --nodes 0" || fail "rejects --nodes 0 (rc $rc): $out"
out=$(bash "$root/scripts/kwok-cluster.sh" start "$cp" --gpus-per-node eight 2>&1); rc=$?
[ $rc -eq 2 ] && grep -qF -- "--gpus-per-node 'eight'" <<<"$out" && ok "rejects --gpus-per-node eight" ||
  fail "rejects --gpus-per-node eight (rc $rc): $out"

if ! out=$(bash "$root/scripts/kwok-cluster.sh" start "$cp" --nodes 2 --gpus-per-node 8 2>&1); then
  echo "kwok_cluster_test: kwok-cluster.sh start failed: $out" >&2
  exit 1
fi
ok "kwok-cluster starts: $out"
out=$(bash "$root/scripts/kwok-cluster.sh" start "$cp" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "already running" <<<"$out" && ok "refuses a second start" || fail "refuses a second start (rc $rc): $out"

# --- nodes ---------------------------------------------------------------------
nodes=$(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address} {.status.allocatable.nvidia\.com/gpu} {.status.allocatable.pods} {.status.capacity.cpu} {.status.capacity.memory} {.spec.taints}{"\n"}{end}')
[ "$nodes" = "fake-gpu-0 True 10.240.0.1 8 110 32 256Gi 
fake-gpu-1 True 10.240.0.2 8 110 32 256Gi " ] && ok "2 Ready, untainted nodes with InternalIP, 8 GPUs, 110 pods, 32 cpu, 256Gi" ||
  fail "nodes: got
$nodes"

# --- pod lifecycle -------------------------------------------------------------
kubectl create namespace kwok-test >/dev/null
# Pods are refused until the service-account controller created "default".
for _ in $(seq 120); do kubectl get serviceaccount default -n kwok-test >/dev/null 2>&1 && break; sleep 0.5; done
# pod NAME GPUS [ANNOTATIONS-YAML]: creates a pod asking for GPUS nvidia.com/gpu.
pod() {
  kubectl create -n kwok-test -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  annotations: {${3:-}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: stella/worker:test
    resources: {limits: {nvidia.com/gpu: "$2"}}
EOF
}
wait_phase() { kubectl wait -n kwok-test "pod/$1" --for=jsonpath='{.status.phase}'="$2" --timeout=60s >/dev/null 2>&1; }
field() { kubectl get -n kwok-test "pod/$1" -o jsonpath="$2"; }

pod gpu-1 1
if kubectl wait -n kwok-test pod/gpu-1 --for=condition=Ready --timeout=60s >/dev/null 2>&1; then
  got=$(field gpu-1 '{.status.phase} {.spec.nodeName} {.status.hostIP} {.status.containerStatuses[0].ready}')
  ip=$(field gpu-1 '{.status.podIP}')
  [[ $got =~ ^Running\ fake-gpu-[01]\ 10\.240\.0\.[12]\ true$ ]] && [[ $ip == 10.* ]] &&
    ok "GPU pod scheduled to a fake node, Running+Ready ($got $ip)" || fail "GPU pod Running on a fake node: got '$got' podIP '$ip'"
else
  fail "GPU pod becomes Ready: $(field gpu-1 '{.status}')"
fi

kubectl annotate -n kwok-test pod/gpu-1 kwok.stella.dev/phase=Succeeded >/dev/null
if wait_phase gpu-1 Succeeded; then
  got=$(field gpu-1 '{.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason} {.status.conditions[?(@.type=="Ready")].status}')
  [ "$got" = "0 Completed False" ] && ok "annotation phase=Succeeded completes it (exit 0, Completed, not Ready)" || fail "Succeeded pod status: got '$got'"
else
  fail "annotation phase=Succeeded: phase is $(field gpu-1 '{.status.phase}')"
fi

pod gpu-2 2
if kubectl wait -n kwok-test pod/gpu-2 --for=condition=Ready --timeout=60s >/dev/null 2>&1; then
  kubectl annotate -n kwok-test pod/gpu-2 kwok.stella.dev/phase=Failed kwok.stella.dev/exit-code=3 kwok.stella.dev/reason=NCCLTimeout >/dev/null
  if wait_phase gpu-2 Failed; then
    got=$(field gpu-2 '{.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}')
    [ "$got" = "3 NCCLTimeout" ] && ok "annotation phase=Failed fails it (exit code 3, reason NCCLTimeout)" || fail "Failed pod status: got '$got'"
  else
    fail "annotation phase=Failed: phase is $(field gpu-2 '{.status.phase}')"
  fi
else
  fail "second GPU pod becomes Ready"
fi

# Annotated at creation: runs, then finishes by itself.
pod born-failed 1 'kwok.stella.dev/phase: Failed'
wait_phase born-failed Failed && [ -n "$(field born-failed '{.status.podIP}')" ] &&
  ok "pod created with phase=Failed runs, then fails" || fail "pod created with phase=Failed: phase $(field born-failed '{.status.phase}')"

# A terminal status written through /status stays, even without a podIP
# (kwok's own default stage would restart such a pod: its selector is only
# "no podIP"): touch the pod afterwards (kwok re-evaluates it) and wait until
# kwok has started a later pod.
pod by-status 1
if kubectl wait -n kwok-test pod/by-status --for=condition=Ready --timeout=60s >/dev/null 2>&1 &&
   kubectl patch -n kwok-test pod/by-status --subresource=status --type=merge \
     -p '{"status":{"phase":"Failed","reason":"Evicted","message":"written by the test","podIP":null,"podIPs":null}}' >/dev/null; then
  kubectl annotate -n kwok-test pod/by-status touched=yes >/dev/null
  pod sentinel 1
  kubectl wait -n kwok-test pod/sentinel --for=condition=Ready --timeout=60s >/dev/null 2>&1
  got=$(field by-status '{.status.phase} {.status.reason}')
  [ "$got" = "Failed Evicted" ] && ok "status written through /status is kept by kwok" || fail "status written through /status: now '$got'"
else
  fail "writing a pod status through /status"
fi

pod too-big 9
if kubectl wait -n kwok-test pod/too-big --for=jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}'=Unschedulable --timeout=60s >/dev/null 2>&1; then
  got=$(field too-big '{.status.phase} [{.spec.nodeName}]')
  msg=$(field too-big '{.status.conditions[?(@.type=="PodScheduled")].message}')
  [ "$got" = "Pending []" ] && grep -q "Insufficient nvidia.com/gpu" <<<"$msg" &&
    ok "pod asking for 9 GPUs stays Pending, Unschedulable (Insufficient nvidia.com/gpu)" || fail "9-GPU pod: '$got' '$msg'"
else
  fail "9-GPU pod marked Unschedulable: $(field too-big '{.status}')"
fi

# --- controller manager: garbage collection and namespace deletion --------------
kubectl create configmap owner -n kwok-test >/dev/null
uid=$(kubectl get configmap owner -n kwok-test -o jsonpath='{.metadata.uid}')
kubectl create -n kwok-test -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: owned
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: "$uid"}]
spec:
  containers: [{name: main, image: stella/worker:test}]
EOF
kubectl wait -n kwok-test pod/owned --for=condition=Ready --timeout=60s >/dev/null 2>&1
kubectl delete configmap owner -n kwok-test >/dev/null
kubectl wait -n kwok-test pod/owned --for=delete --timeout=60s >/dev/null 2>&1 &&
  ok "garbage collector deletes a pod whose owner is gone" || fail "garbage collector: pod 'owned' still there"
kubectl delete namespace kwok-test --timeout=60s >/dev/null 2>&1 &&
  ! kubectl get namespace kwok-test >/dev/null 2>&1 &&
  ok "namespace with running and finished pods is deleted" || fail "namespace deletion: $(kubectl get namespace kwok-test -o jsonpath='{.status}' 2>&1)"

# --- stop --------------------------------------------------------------------------
pids=$(cat "$cp"/kwok/*.pid)
bash "$root/scripts/kwok-cluster.sh" stop "$cp"
left=""
for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
[ -z "$left" ] && ! pgrep -f "kube-scheduler --config $cp/" >/dev/null && ! pgrep -f "kwok -c $cp/" >/dev/null &&
  ! pgrep -f "kube-controller-manager --kubeconfig $cp/" >/dev/null &&
  ok "kwok-cluster stop ends kwok, kube-scheduler and kube-controller-manager" || fail "processes left after stop:$left"
kubectl get --raw /readyz >/dev/null 2>&1 && ok "the control plane itself keeps running" || fail "control plane stopped by kwok-cluster stop"
bash "$root/scripts/control-plane.sh" stop "$cp"
pgrep -f -- "$cp/" >/dev/null && fail "processes left after control-plane stop: $(pgrep -af -- "$cp/")" || ok "no process left"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
