#!/usr/bin/env bash
# The real stella-operator, run with exactly the Helm chart's RBAC, reconciles
# a job end to end; and without one of the chart's permissions it cannot.
#
# A real control plane with kwok nodes (scripts/control-plane.sh,
# scripts/kwok-cluster.sh), `helm install` of helm/stella, then the operator as
# a local process (there is no kubelet to run its pod) authenticated by a
# token of the chart's ServiceAccount, with the chart's own flags. A job with
# two hub-local clusters (NodePort gateways: nodes are read) must reach
# Running, Succeeded, and be deleted through its finalizer. Then `create` is
# removed from the pods rule of the chart's ClusterRole: a new job must get no
# pods, and the operator must see 403s. Exit 77 = testbin unavailable.
set -uo pipefail
# Control planes started below die with this script (scripts/control-plane.sh).
export STELLA_OWNER_PID=$$
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=${STELLA_BUILD_DIR:-$STELLA_ROOT/build}
operator=$build/bin/stella-operator

if ! stella_testbin_path; then
  echo "======================================================================"
  echo "SKIPPED: the Kubernetes test binaries could not be built (see above)"
  echo "======================================================================"
  exit 77
fi
[ -x "$operator" ] || { echo "FAIL: $operator not built"; exit 1; }

work=$(mktemp -d)
plane=$work/hub
failures=0
op_pid=
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
cleanup() {
  [ -n "$op_pid" ] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null
  bash "$STELLA_ROOT/scripts/kwok-cluster.sh" stop "$plane" >/dev/null 2>&1
  bash "$STELLA_ROOT/scripts/control-plane.sh" stop "$plane" >/dev/null 2>&1
  rm -rf "$work"
}
[ -n "${STELLA_KEEP:-}" ] && trap "echo kept in $work; kill \$op_pid" EXIT || trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.5 s.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  while [ $SECONDS -lt $deadline ]; do
    if "$@" >/dev/null 2>&1; then ok "$what"; return 0; fi
    sleep 0.5
  done
  fail "$what (not within ${secs}s)"
  return 1
}

admin=$(bash "$STELLA_ROOT/scripts/control-plane.sh" start "$plane" | tail -1) || { echo "FAIL: control plane"; exit 1; }
bash "$STELLA_ROOT/scripts/kwok-cluster.sh" start "$plane" --nodes 2 >/dev/null || { echo "FAIL: kwok"; exit 1; }
export KUBECONFIG=$admin
sa_kubeconfig=$work/operator.kubeconfig
stella_install_chart "$admin" stella stella-system "$sa_kubeconfig" --wait=false >/dev/null ||
  { echo "FAIL: helm install"; exit 1; }
kubectl wait --for=condition=Established crd/stellajobs.stella.dev --timeout=60s >/dev/null

# The chart's own operator flags, as rendered, plus what running outside a pod needs.
mapfile -t args < <(helm get manifest stella -n stella-system | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] == "Deployment":
        for a in d["spec"]["template"]["spec"]["containers"][0]["args"]:
            if not a.startswith("--metrics-bind-address"):
                print(a)
')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
POD_NAME=op-test POD_NAMESPACE=stella-system "$operator" --kubeconfig "$sa_kubeconfig" "${args[@]}" \
  --metrics-bind-address "127.0.0.1:$port" --sweep-interval-seconds 5 >"$work/operator.log" 2>&1 &
op_pid=$!

job() {
  cat <<EOF
apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata: {name: $1, namespace: default}
spec:
  model: {name: mlp}
  dataset: {name: fashion-mnist}
  training: {steps: 10}
  clusters:
    - {name: a, workers: 2, devicesPerWorker: 1, gateway: {type: NodePort}}
    - {name: b, workers: 1, devicesPerWorker: 0, gateway: {type: NodePort, port: 29501}}
EOF
}
phase() { [ "$(kubectl get sj "$1" -n default -o jsonpath='{.status.phase}')" = "$2" ]; }
pods() { kubectl get pods -n default -l "stella.dev/job-name=$1" -o name | wc -l; }

wait_for 30 "operator leads with the chart's Lease rights" \
  bash -c "curl -sf http://127.0.0.1:$port/metrics | grep -qx 'stella_operator_is_leader 1'"
job rbac-ok | kubectl apply -f - >/dev/null
wait_for 60 "job Running with the chart's RBAC (pods, services, nodes, status, finalizer)" phase rbac-ok Running
[ "$(pods rbac-ok)" = 3 ] && ok "3 worker pods" || fail "3 worker pods, got $(pods rbac-ok)"
for p in $(kubectl get pods -n default -l stella.dev/job-name=rbac-ok -o name); do
  kubectl annotate -n default "$p" kwok.stella.dev/phase=Succeeded >/dev/null
done
wait_for 60 "job Succeeded" phase rbac-ok Succeeded
n=$(kubectl get events -n default --field-selector involvedObject.name=rbac-ok -o name | wc -l)
[ "$n" -ge 3 ] && ok "events recorded ($n)" || fail "events recorded: $n"
kubectl delete sj rbac-ok -n default --wait=false >/dev/null
wait_for 60 "deleted through the finalizer, children gone" \
  bash -c "! kubectl get sj rbac-ok -n default && [ -z \"\$(kubectl get pods,services -n default -l stella.dev/job-name=rbac-ok -o name)\" ]"

# Without `create` on pods the same job cannot start.
role=$(kubectl get clusterrole -l app.kubernetes.io/instance=stella -o name | head -1)
idx=$(kubectl get "$role" -o json | python3 -c '
import json, sys
rules = json.load(sys.stdin)["rules"]
print([i for i, r in enumerate(rules) if "pods" in r.get("resources", []) and "create" in r["verbs"]][0])')
verbs=$(kubectl get "$role" -o json | python3 -c "
import json, sys
print(json.dumps([v for v in json.load(sys.stdin)['rules'][$idx]['verbs'] if v != 'create']))")
kubectl patch "$role" --type=json -p "[{\"op\":\"replace\",\"path\":\"/rules/$idx/verbs\",\"value\":$verbs}]" >/dev/null
job rbac-denied | kubectl apply -f - >/dev/null
wait_for 30 "operator is refused (HTTP 403 counted)" \
  bash -c "curl -sf http://127.0.0.1:$port/metrics | grep -E '^stella_operator_api_requests_total\\{.*code=\"403\".*verb=\"POST\"' | grep -qv ' 0$'"
sleep 3
[ "$(pods rbac-denied)" = 0 ] && ok "no pods without the permission" || fail "pods created without the permission"
phase rbac-denied Running && fail "job Running without the permission" || ok "job not Running without the permission"
grep -q "403" "$work/operator.log" && ok "the refusal is logged" || fail "the refusal is logged"

if [ "$failures" -ne 0 ]; then
  echo "--- operator log (tail)"; tail -30 "$work/operator.log"
  echo "$failures check(s) failed"; exit 1
fi
echo "all checks passed"
