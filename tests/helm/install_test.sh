#!/usr/bin/env bash
# The Helm chart on real API servers (scripts/control-plane.sh: etcd +
# kube-apiserver with RBAC and Pod Security admission), with the real helm and
# kubectl: install, the operator ServiceAccount's permissions proved with its
# own token (granted: every rule of the operator contract; refused: the rest),
# upgrade (a value change reaches the Deployment; watchNamespaces turns the
# ClusterRole into Roles), a member cluster set up with memberRBAC whose
# kubeconfig goes into the hub's Secrets, and uninstall (all gone but the CRD).
#
# Exit 77 (ctest: skipped) with a loud message only when the binaries cannot
# be built by scripts/testbin.sh.
set -uo pipefail
# Control planes started below die with this script (scripts/control-plane.sh).
export STELLA_OWNER_PID=$$
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
root=$STELLA_ROOT chart=$STELLA_CHART
dir=$(mktemp -d /tmp/stella-helm-install-XXXXXX)
kcm_pid=""
cleanup() {
  [ -n "$kcm_pid" ] && kill "$kcm_pid" 2>/dev/null
  bash "$root/scripts/control-plane.sh" stop "$dir/hub" >/dev/null 2>&1
  bash "$root/scripts/control-plane.sh" stop "$dir/member" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

if ! stella_testbin_path; then
  echo "SKIPPED: helm install_test: the Kubernetes binaries and helm could not be built by scripts/testbin.sh (see above)" >&2
  exit 77
fi

passed=0; failed=0
ok()   { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
check() {  # check DESCRIPTION COMMAND...: ok when the command succeeds
  local what=$1; shift
  if "$@" >"$dir/check.out" 2>&1; then ok "$what"; else fail "$what: $(tail -5 "$dir/check.out")"; fi
}
h() { helm "$@" 2>&1 | grep -v 'found symbolic link in path'; return "${PIPESTATUS[0]}"; }

# can_i KUBECONFIG < TABLE: each line "yes|no VERB RESOURCE [kubectl auth can-i flags]",
# asked with the ServiceAccount's own token (no impersonation).
can_i() {
  local kc=$1 want args got
  while read -r want args; do
    case "$want" in yes|no) ;; *) continue ;; esac
    # shellcheck disable=SC2086  # args is a list of words on purpose
    got=$(kubectl --kubeconfig "$kc" auth can-i $args 2>/dev/null)
    if [ "$got" = "$want" ]; then ok "can-i $args: $want"; else fail "can-i $args: want $want, got '$got'"; fi
  done
}

# rules_in KUBECONFIG NAMESPACE: the resource rules `kubectl auth can-i --list`
# reports, one "resource [names] [verbs]" per line, sorted, without the
# self-review rules every authenticated user has.
rules_in() {
  kubectl --kubeconfig "$1" auth can-i --list -n "$2" | awk 'NR > 1 && $1 !~ /^\[/ && $1 !~ /^self/ {
    line = $1; for (i = 3; i <= NF; i++) line = line " " $i; print line }' | sort
}

if ! hub=$(bash "$root/scripts/control-plane.sh" start "$dir/hub"); then
  echo "install_test: the hub control plane did not start" >&2; exit 1
fi
export KUBECONFIG=$hub
for ns in stella-system team-a team-b other; do kubectl create namespace "$ns" >/dev/null; done
# The release namespace enforces the "restricted" Pod Security Standard.
kubectl label namespace stella-system pod-security.kubernetes.io/enforce=restricted >/dev/null

# === install =================================================================
if ! stella_install_chart "$hub" stella stella-system "$dir/operator.kubeconfig" >"$dir/install.out" 2>&1; then
  echo "install_test: helm install failed:"; cat "$dir/install.out"; exit 1
fi
ok "helm install (default values) and a kubeconfig for the operator ServiceAccount"
check "NOTES say how to run and watch a job and find the dashboards" \
  grep -q -e 'kubectl apply -n stella-system -f examples/demo.yaml' "$dir/install.out"
check "NOTES: kubectl get sj" grep -q 'kubectl get sj -A -w' "$dir/install.out"
check "NOTES: dashboards" grep -q 'get configmaps -l grafana_dashboard=1' "$dir/install.out"
check "CRD installed and established" kubectl wait --for condition=Established crd/stellajobs.stella.dev --timeout=60s
for obj in deployment/stella serviceaccount/stella service/stella-metrics role/stella-leader-election rolebinding/stella-leader-election; do
  check "created $obj" kubectl -n stella-system get "$obj"
done
for obj in clusterrole/stella clusterrolebinding/stella clusterrole/stella-nodes clusterrolebinding/stella-nodes; do
  check "created $obj" kubectl get "$obj"
done

# The Deployment as the API server stored it.
kubectl -n stella-system get deployment stella -o json >"$dir/deploy.json"
check "Deployment: 2 replicas, leader election, probes, downward API, hardened" python3 - "$dir/deploy.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
pod = d["spec"]["template"]["spec"]; c = pod["containers"][0]
assert d["spec"]["replicas"] == 2, d["spec"]["replicas"]
for a in ("--leader-elect=true", "--leader-election-namespace=stella-system", "--leader-election-id=stella-operator",
          "--metrics-bind-address=0.0.0.0:8080", "--log-level=info"):
    assert a in c["args"], (a, c["args"])
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["livenessProbe"]["httpGet"]["port"] == "metrics"
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["readinessProbe"]["httpGet"]["port"] == "metrics"
assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]} == \
    {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["runAsUser"] == 65532
assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
assert pod["serviceAccountName"] == "stella" and pod["automountServiceAccountToken"] is True
PY

# Pod Security admission: a pod made from the Deployment's template is
# admitted in the "restricted" namespace; the same pod loosened is refused
# (so the first check is not vacuous).
python3 - "$dir/deploy.json" "$dir" <<'PY'
import copy, json, sys
d = json.load(open(sys.argv[1]))
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "stella-template-check", "namespace": "stella-system"},
       "spec": d["spec"]["template"]["spec"]}
json.dump(pod, open(sys.argv[2] + "/pod.json", "w"))
loose = copy.deepcopy(pod)
loose["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
del loose["spec"]["containers"][0]["securityContext"]["capabilities"]
json.dump(loose, open(sys.argv[2] + "/loose-pod.json", "w"))
PY
check "operator pod meets the restricted Pod Security Standard" kubectl create --dry-run=server -f "$dir/pod.json"
if out=$(kubectl create --dry-run=server -f "$dir/loose-pod.json" 2>&1); then
  fail "a loosened pod is refused by Pod Security admission (was admitted)"
elif grep -q 'violates PodSecurity "restricted' <<<"$out"; then ok "a loosened pod is refused by Pod Security admission"
else fail "a loosened pod is refused by Pod Security admission: $out"; fi

# Dashboards: one ConfigMap per dashboards/*.json, same content.
kubectl -n stella-system get configmaps -l grafana_dashboard=1 -o json >"$dir/cms.json"
check "dashboard ConfigMaps labelled grafana_dashboard=1 hold dashboards/*.json" python3 - "$dir/cms.json" "$root/dashboards" <<'PY'
import json, os, sys
got = {}
for cm in json.load(open(sys.argv[1]))["items"]:
    got.update(cm["data"])
files = sorted(f for f in os.listdir(sys.argv[2]) if f.endswith(".json"))
assert sorted(got) == files, (sorted(got), files)
for f in files:
    assert json.loads(got[f]) == json.load(open(os.path.join(sys.argv[2], f))), f
PY

# === RBAC, cluster-wide (watchNamespaces empty) ===============================
op=$dir/operator.kubeconfig
check "the token is the operator ServiceAccount's" \
  bash -c "kubectl --kubeconfig '$op' auth whoami -o jsonpath='{.status.userInfo.username}' | grep -qx system:serviceaccount:stella-system:stella"
can_i "$op" <<'EOF'
yes get stellajobs.stella.dev -n team-a
yes list stellajobs.stella.dev -n other
yes watch stellajobs.stella.dev -n kube-system
yes update stellajobs.stella.dev -n team-a
yes patch stellajobs.stella.dev -n team-a
yes get stellajobs.stella.dev --subresource=status -n team-a
yes update stellajobs.stella.dev --subresource=status -n team-a
yes patch stellajobs.stella.dev --subresource=status -n team-a
yes update stellajobs.stella.dev --subresource=finalizers -n team-a
yes get secrets -n team-a
yes list secrets -n other
yes watch secrets -n team-a
yes create secrets -n team-a
yes update secrets -n team-a
yes get pods -n team-a
yes list pods -n team-a
yes watch pods -n team-a
yes create pods -n team-a
yes delete pods -n team-a
yes get pods --subresource=proxy -n team-a
yes get services -n team-a
yes list services -n team-a
yes watch services -n team-a
yes create services -n team-a
yes delete services -n team-a
yes create events -n team-a
yes patch events -n team-a
yes get nodes
yes list nodes
yes watch nodes
yes create leases.coordination.k8s.io -n stella-system
yes get leases.coordination.k8s.io/stella-operator -n stella-system
yes update leases.coordination.k8s.io/stella-operator -n stella-system
no  create stellajobs.stella.dev -n team-a
no  delete stellajobs.stella.dev -n team-a
no  delete secrets -n team-a
no  patch secrets -n team-a
no  update pods -n team-a
no  create pods --subresource=exec -n team-a
no  create pods --subresource=proxy -n team-a
no  get pods --subresource=log -n team-a
no  create deployments.apps -n team-a
no  get configmaps -n team-a
no  update nodes
no  delete nodes
no  create leases.coordination.k8s.io -n team-a
no  get leases.coordination.k8s.io/kube-scheduler -n stella-system
no  list leases.coordination.k8s.io -n stella-system
no  delete leases.coordination.k8s.io/stella-operator -n stella-system
no  create clusterroles.rbac.authorization.k8s.io
no  create rolebindings.rbac.authorization.k8s.io -n team-a
no  create serviceaccounts --subresource=token -n stella-system
no  list namespaces
EOF
# Nothing beyond the contract: the full list of what the token may do.
cat >"$dir/want-cluster.txt" <<'EOF'
events [] [create patch]
nodes [] [get list watch]
pods [] [get list watch create delete]
pods/proxy [] [get]
secrets [] [get list watch create update]
services [] [get list watch create delete]
stellajobs.stella.dev [] [get list watch update patch]
stellajobs.stella.dev/finalizers [] [update]
stellajobs.stella.dev/status [] [get update patch]
EOF
{ cat "$dir/want-cluster.txt"; printf 'leases.coordination.k8s.io [] [create]\nleases.coordination.k8s.io [stella-operator] [get update]\n'; } |
  sort >"$dir/want-release-ns.txt"
rules_in "$op" team-a >"$dir/got-team-a.txt"
check "can-i --list in a job namespace is exactly the contract" diff -u "$dir/want-cluster.txt" "$dir/got-team-a.txt"
rules_in "$op" stella-system >"$dir/got-release-ns.txt"
check "can-i --list in the release namespace adds only its Lease" diff -u "$dir/want-release-ns.txt" "$dir/got-release-ns.txt"

# The same token doing what the operator does, against the real server.
kubectl apply -n team-a -f "$root/examples/demo.yaml" >/dev/null
K() { kubectl --kubeconfig "$op" "$@"; }
check "operator token: patch a StellaJob's status" \
  K -n team-a patch stellajob fashion-cnn-demo --subresource=status --type=merge -p '{"status":{"phase":"Pending"}}'
check "operator token: create and update a Secret" \
  bash -c "kubectl --kubeconfig '$op' -n team-a create secret generic job-ca --from-literal=ca.crt=x &&
           kubectl --kubeconfig '$op' -n team-a create secret generic job-ca --from-literal=ca.crt=y --dry-run=client -o yaml |
           kubectl --kubeconfig '$op' -n team-a replace -f -"
check "operator token: take the leader Lease" \
  bash -c "printf 'apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: stella-operator}\nspec: {holderIdentity: test}\n' |
           kubectl --kubeconfig '$op' -n stella-system create -f - &&
           kubectl --kubeconfig '$op' -n stella-system get lease stella-operator -o json |
           sed 's/\"holderIdentity\": \"test\"/\"holderIdentity\": \"test-2\"/' |
           kubectl --kubeconfig '$op' -n stella-system replace -f -"
if out=$(K -n team-a delete secret job-ca 2>&1); then fail "operator token cannot delete a Secret (it could)"
else grep -q Forbidden <<<"$out" && ok "operator token cannot delete a Secret (Forbidden)" || fail "operator token cannot delete a Secret: $out"; fi

# === upgrade: a value change reaches the Deployment ==========================
gen1=$(kubectl -n stella-system get deployment stella -o jsonpath='{.metadata.generation}')
if h upgrade stella "$chart" -n stella-system --reuse-values --set logLevel=debug --set replicaCount=3 >"$dir/up1.out"; then
  ok "helm upgrade --set logLevel=debug,replicaCount=3"
else fail "helm upgrade: $(cat "$dir/up1.out")"; fi
kubectl -n stella-system get deployment stella -o json >"$dir/deploy2.json"
check "upgrade changed the Deployment (args, replicas, generation)" python3 - "$dir/deploy2.json" "$gen1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); args = d["spec"]["template"]["spec"]["containers"][0]["args"]
assert "--log-level=debug" in args and "--log-level=info" not in args, args
assert d["spec"]["replicas"] == 3, d["spec"]["replicas"]
assert d["metadata"]["generation"] > int(sys.argv[2]), (d["metadata"]["generation"], sys.argv[2])
PY
check "helm history: revision 2 deployed" \
  bash -c "helm history stella -n stella-system -o json | python3 -c 'import json,sys; h=json.load(sys.stdin); assert [r[\"revision\"] for r in h]==[1,2] and h[-1][\"status\"]==\"deployed\", h'"

# === upgrade to namespaced RBAC ==============================================
if h upgrade stella "$chart" -n stella-system --reuse-values --set 'watchNamespaces={team-a,team-b}' >"$dir/up2.out"; then
  ok "helm upgrade --set watchNamespaces={team-a,team-b}"
else fail "helm upgrade to watchNamespaces: $(cat "$dir/up2.out")"; fi
check "ClusterRole for job namespaces removed" bash -c "! kubectl get clusterrole stella 2>/dev/null"
for ns in team-a team-b; do check "Role+RoleBinding in $ns" kubectl -n "$ns" get role/stella rolebinding/stella; done
check "--namespaces=team-a,team-b passed" \
  bash -c "kubectl -n stella-system get deployment stella -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--namespaces=team-a,team-b'"
can_i "$op" <<'EOF'
yes list stellajobs.stella.dev -n team-a
yes patch stellajobs.stella.dev --subresource=status -n team-b
yes create pods -n team-b
yes get secrets -n team-a
yes list nodes
yes update leases.coordination.k8s.io/stella-operator -n stella-system
no  list stellajobs.stella.dev -n other
no  list stellajobs.stella.dev --all-namespaces
no  list pods -n kube-system
no  get secrets -n kube-system
no  create pods -n other
no  get secrets -n stella-system
EOF
rules_in "$op" team-b >"$dir/got-team-b.txt"
check "can-i --list in a watched namespace is exactly the contract" diff -u "$dir/want-cluster.txt" "$dir/got-team-b.txt"
printf 'nodes [] [get list watch]\n' >"$dir/want-other.txt"
rules_in "$op" other >"$dir/got-other.txt"
check "can-i --list in an unwatched namespace: nodes only" diff -u "$dir/want-other.txt" "$dir/got-other.txt"

# serviceMonitor on a cluster without the prometheus-operator CRDs: refused
# by the real server's capabilities, with the reason.
if out=$(h upgrade stella "$chart" -n stella-system --reuse-values --set serviceMonitor.enabled=true --dry-run=server); then
  fail "serviceMonitor.enabled without the CRD is refused (was accepted)"
elif grep -q 'does not serve monitoring.coreos.com/v1 ServiceMonitor' <<<"$out"; then
  ok "serviceMonitor.enabled without the CRD is refused with the reason"
else fail "serviceMonitor.enabled without the CRD: $out"; fi
if out=$(h upgrade stella "$chart" -n stella-system --reuse-values --set replicaCount=-1 2>&1); then
  fail "upgrade with replicaCount=-1 is refused (was accepted)"
elif grep -qF "at '/replicaCount': minimum: got -1, want 0" <<<"$out"; then ok "upgrade with replicaCount=-1 is refused naming the value"
else fail "upgrade with replicaCount=-1: $out"; fi
check "a refused upgrade left the Deployment at 3 replicas" \
  bash -c "[ \"\$(kubectl -n stella-system get deployment stella -o jsonpath='{.spec.replicas}')\" = 3 ]"

# === a member cluster ========================================================
if ! member=$(bash "$root/scripts/control-plane.sh" start "$dir/member"); then
  echo "install_test: the member control plane did not start" >&2; exit 1
fi
# Only the ServiceAccount controllers: default ServiceAccounts for pods, and
# the token controller filling memberRBAC's long-lived token Secret.
kube-controller-manager --kubeconfig "$member" --controllers serviceaccount-token,serviceaccount --leader-elect=false \
  --service-account-private-key-file "$dir/member/certs/sa.key" --root-ca-file "$dir/member/certs/apiserver.crt" \
  --secure-port 0 >"$dir/kcm.log" 2>&1 &
kcm_pid=$!
for ns in stella-system jobs; do KUBECONFIG=$member kubectl create namespace "$ns" >/dev/null; done
if KUBECONFIG=$member h install stella "$chart" -n stella-system --skip-crds \
     --set operator.enabled=false --set dashboards.enabled=false \
     --set memberRBAC.enabled=true --set 'memberRBAC.namespaces={jobs}' --set memberRBAC.tokenSecret=true >"$dir/member-install.out"; then
  ok "helm install on the member (memberRBAC, --skip-crds)"
else fail "helm install on the member: $(cat "$dir/member-install.out")"; fi
check "member NOTES tell how to write the kubeconfig" grep -q 'scripts/sa-kubeconfig.sh --namespace stella-system --service-account stella-member' "$dir/member-install.out"
check "member: no CRD, no operator" \
  bash -c "! KUBECONFIG='$member' kubectl get crd stellajobs.stella.dev 2>/dev/null && ! KUBECONFIG='$member' kubectl -n stella-system get deployment stella 2>/dev/null"
if KUBECONFIG=$member bash "$root/scripts/sa-kubeconfig.sh" --namespace stella-system --service-account stella-member \
     --token-secret stella-member-token --out "$dir/member.kubeconfig" 2>"$dir/sa.err"; then
  ok "sa-kubeconfig.sh: member kubeconfig from the long-lived token Secret"
else fail "sa-kubeconfig.sh on the member: $(cat "$dir/sa.err")"; fi
if KUBECONFIG=$member bash "$root/scripts/sa-kubeconfig.sh" --namespace stella-system --service-account nobody \
     --out "$dir/nobody.kubeconfig" 2>"$dir/sa.err"; then
  fail "sa-kubeconfig.sh for a missing ServiceAccount fails (it succeeded)"
elif [ -e "$dir/nobody.kubeconfig" ]; then fail "sa-kubeconfig.sh for a missing ServiceAccount wrote a kubeconfig"
elif grep -q 'could not create a token for ServiceAccount stella-system/nobody' "$dir/sa.err"; then
  ok "sa-kubeconfig.sh for a missing ServiceAccount fails, writing nothing"
else fail "sa-kubeconfig.sh for a missing ServiceAccount: $(cat "$dir/sa.err")"; fi
can_i "$dir/member.kubeconfig" <<'EOF'
yes get pods -n jobs
yes list pods -n jobs
yes watch pods -n jobs
yes create pods -n jobs
yes delete pods -n jobs
yes get pods --subresource=proxy -n jobs
yes get services -n jobs
yes create services -n jobs
yes delete services -n jobs
yes list nodes
yes watch nodes
no  create pods -n default
yes get secrets -n jobs
yes create secrets -n jobs
yes delete secrets -n jobs
no  list secrets -n jobs
no  get secrets -n default
no  update pods -n jobs
no  create deployments.apps -n jobs
no  delete nodes
EOF
cat >"$dir/want-member.txt" <<'EOF'
nodes [] [get list watch]
pods [] [get list watch create delete]
pods/proxy [] [get]
secrets [] [get create update delete]
services [] [get list watch create delete]
EOF
rules_in "$dir/member.kubeconfig" jobs >"$dir/got-member.txt"
check "member can-i --list in the job namespace is exactly pods (and their proxy), services, TLS secrets, nodes" diff -u "$dir/want-member.txt" "$dir/got-member.txt"

# The hub gets the member kubeconfig as a Secret in each watched namespace...
if h upgrade stella "$chart" -n stella-system --reuse-values \
     --set 'memberClusters[0].name=onprem' --set-file "memberClusters[0].kubeconfig=$dir/member.kubeconfig" >"$dir/up3.out"; then
  ok "helm upgrade with memberClusters[0] from the member kubeconfig"
else fail "helm upgrade with memberClusters: $(cat "$dir/up3.out")"; fi
check "NOTES name the Secret for spec.clusters[].kubeconfigSecret" grep -q 'onprem: {name: stella-member-onprem} (created in team-a, team-b)' "$dir/up3.out"
for ns in team-a team-b; do
  kubectl -n "$ns" get secret stella-member-onprem -o jsonpath='{.data.kubeconfig}' | base64 -d >"$dir/secret-$ns.kubeconfig"
  check "Secret $ns/stella-member-onprem holds the kubeconfig unchanged" cmp "$dir/member.kubeconfig" "$dir/secret-$ns.kubeconfig"
done
# ...and what the operator will read from it reaches the member with the member RBAC
# (a pod needs the namespace's default ServiceAccount, made by the controller).
for _ in $(seq 60); do KUBECONFIG=$member kubectl -n jobs get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done
check "the kubeconfig from the hub's Secret creates and deletes a pod on the member" bash -c "
  kc='$dir/secret-team-a.kubeconfig'
  printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: probe}\nspec: {containers: [{name: c, image: busybox}]}\n' |
    kubectl --kubeconfig \"\$kc\" -n jobs create -f - && kubectl --kubeconfig \"\$kc\" -n jobs delete pod probe --wait=false"
check "no member Secret outside the watched namespaces" bash -c "! kubectl -n other get secret stella-member-onprem 2>/dev/null"

# === uninstall ===============================================================
sel=app.kubernetes.io/instance=stella
release_objects() {
  kubectl get deployments,serviceaccounts,services,configmaps,secrets,roles,rolebindings -A -l "$sel" -o name 2>&1
  kubectl get clusterroles,clusterrolebindings -l "$sel" -o name 2>&1
}
before=$(release_objects | wc -l)
[ "$before" -ge 12 ] && ok "before uninstall: $before objects carry the release label" ||
  fail "before uninstall: only $before objects carry the release label: $(release_objects)"
if h uninstall stella -n stella-system >"$dir/uninstall.out"; then ok "helm uninstall (hub)"; else fail "helm uninstall: $(cat "$dir/uninstall.out")"; fi
left=$(release_objects)
[ -z "$left" ] && ok "uninstall removed every object of the release" || fail "uninstall left: $left"
check "uninstall kept the CRD (Helm's CRD policy)" kubectl get crd stellajobs.stella.dev
check "uninstall kept the StellaJobs" kubectl -n team-a get stellajob fashion-cnn-demo
check "helm list is empty" bash -c "[ -z \"\$(helm list -n stella-system -q)\" ]"
check "the old operator token is refused (its ServiceAccount is gone)" \
  bash -c "! kubectl --kubeconfig '$op' -n team-a get stellajobs 2>/dev/null"
if KUBECONFIG=$member h uninstall stella -n stella-system >"$dir/member-uninstall.out"; then ok "helm uninstall (member)"
else fail "helm uninstall (member): $(cat "$dir/member-uninstall.out")"; fi
left=$(KUBECONFIG=$member kubectl get serviceaccounts,secrets,roles,rolebindings -A -l "$sel" -o name 2>&1;
       KUBECONFIG=$member kubectl get clusterroles,clusterrolebindings -l "$sel" -o name 2>&1)
[ -z "$left" ] && ok "member uninstall removed every object" || fail "member uninstall left: $left"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
