#!/usr/bin/env bash
# The Helm chart without a cluster, with the real helm (scripts/testbin.sh):
# `helm lint --strict`, renders compared with golden files, values that the
# schema or the templates must refuse (with a message naming the value), the
# single sources of the CRD and the dashboards, and `helm package`.
#
#   bash tests/helm/chart_test.sh                  # check
#   UPDATE_GOLDEN=1 bash tests/helm/chart_test.sh  # rewrite tests/helm/golden/*.yaml
#
# Exit 77 (ctest: skipped) with a loud message only when helm cannot be built.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
root=$STELLA_ROOT chart=$STELLA_CHART
tmp=$(mktemp -d /tmp/stella-helm-chart-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

if ! stella_testbin_path; then
  echo "SKIPPED: helm chart_test: helm could not be built by scripts/testbin.sh (see above)" >&2
  exit 77
fi

passed=0; failed=0
ok()   { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
# helm, with its warnings about the chart's symbolic links dropped.
h() { helm "$@" 2>&1 | grep -v 'found symbolic link in path'; return "${PIPESTATUS[0]}"; }

# --- lint -------------------------------------------------------------------
if out=$(h lint --strict "$chart"); then ok "helm lint --strict"; else fail "helm lint --strict: $out"; fi
# (lint has no --api-versions, so service-monitor.yaml is only rendered below.)
for v in "$here"/values/{watch-namespaces,member-clusters,member-rbac}.yaml; do
  if out=$(h lint --strict "$chart" -f "$v"); then
    ok "helm lint --strict -f values/$(basename "$v")"
  else fail "helm lint --strict -f values/$(basename "$v"): $out"; fi
done

# --- one source of truth ----------------------------------------------------
[ "$(readlink "$chart/crds/stellajob.yaml")" = ../../../crds/stellajob.yaml ] &&
  cmp -s "$chart/crds/stellajob.yaml" "$root/crds/stellajob.yaml" \
  && ok "chart CRD is a link to crds/stellajob.yaml" || fail "chart CRD is a link to crds/stellajob.yaml"
[ "$(readlink "$chart/dashboards")" = ../../dashboards ] \
  && ok "chart dashboards/ is a link to dashboards/" || fail "chart dashboards/ is a link to dashboards/"
h template stella "$chart" --include-crds >"$tmp/with-crds.yaml"
if python3 - "$root/crds/stellajob.yaml" "$tmp/with-crds.yaml" <<'PY'
import sys, yaml
rendered = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d and d.get("kind") == "CustomResourceDefinition"]
source = yaml.safe_load(open(sys.argv[1]))
sys.exit(0 if rendered == [source] else 1)
PY
then ok "helm template --include-crds carries crds/stellajob.yaml unchanged"
else fail "helm template --include-crds carries crds/stellajob.yaml unchanged"; fi

# --- golden renders ---------------------------------------------------------
# render NAME with|without-dashboards [helm args]: release "stella" in
# namespace stella-system; the dashboards are checked against dashboards/.
render() {
  local name=$1 dashboards=$2; shift 2
  local raw="$tmp/$name.raw" norm="$tmp/$name.yaml" expect_none=()
  if ! h template stella "$chart" --namespace stella-system "$@" >"$raw"; then
    fail "golden $name: helm template failed: $(tail -3 "$raw")"; return
  fi
  [ "$dashboards" = without-dashboards ] && expect_none=(--expect-none)
  if ! python3 "$here/dashboards_check.py" "$root/dashboards" "${expect_none[@]}" <"$raw" >"$norm" 2>"$tmp/$name.err"; then
    fail "golden $name: dashboards: $(cat "$tmp/$name.err")"; return
  fi
  local golden="$here/golden/$name.yaml"
  if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$norm" "$golden"; ok "golden $name (rewritten)"; return
  fi
  if diff -u "$golden" "$norm" >"$tmp/$name.diff"; then ok "golden $name"
  else fail "golden $name differs (UPDATE_GOLDEN=1 rewrites it):"; head -60 "$tmp/$name.diff"; fi
}
render default with-dashboards
render watch-namespaces with-dashboards -f "$here/values/watch-namespaces.yaml"
render service-monitor with-dashboards --api-versions monitoring.coreos.com/v1/ServiceMonitor -f "$here/values/service-monitor.yaml"
render member-clusters with-dashboards -f "$here/values/member-clusters.yaml"
render member-rbac without-dashboards -f "$here/values/member-rbac.yaml"

# --- properties the goldens hold, checked by meaning ------------------------
# A reviewer approving a golden diff should not have to spot these by eye.
if python3 - "$tmp" <<'PY'
import sys, yaml
d = sys.argv[1]
def docs(name):
    return [x for x in yaml.safe_load_all(open(f"{d}/{name}.raw")) if x]
def kinds(name):
    return sorted((x["kind"], x["metadata"].get("namespace", ""), x["metadata"]["name"]) for x in docs(name))
problems = []
def expect(cond, what):
    if not cond: problems.append(what)

dep = [x for x in docs("default") if x["kind"] == "Deployment"][0]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
expect(dep["spec"]["replicas"] == 2, "default replicas 2")
expect("--leader-elect=true" in c["args"] and "--leader-election-namespace=stella-system" in c["args"], "leader election args")
expect(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, "liveness /healthz on metrics")
expect(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, "readiness /readyz on metrics")
expect({"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in c["ports"], "metrics port 8080")
sc = c["securityContext"]
expect(sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
       and sc["runAsUser"] == 65532 and sc["capabilities"] == {"drop": ["ALL"]}
       and sc["seccompProfile"] == {"type": "RuntimeDefault"}, "container securityContext")
expect(pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "pod securityContext")
expect(pod["automountServiceAccountToken"] is True, "pod mounts its token")
env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
expect(env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}, "downward API env")
expect(c["resources"]["requests"] and c["resources"]["limits"], "resources set")
expect(not any(a.startswith("--namespaces") for a in c["args"]), "all namespaces by default")
expect(("ClusterRole", "", "stella") in kinds("default") and not any(k[0] == "Role" and k[2] == "stella" for k in kinds("default")), "default: ClusterRole")
expect(not any(k[0] == "ServiceMonitor" for k in kinds("default")), "default: no ServiceMonitor")

w = kinds("watch-namespaces")
expect(("ClusterRole", "", "stella") not in w, "watch-namespaces: no job ClusterRole")
for ns in ("team-a", "team-b"):
    expect(("Role", ns, "stella") in w and ("RoleBinding", ns, "stella") in w, f"watch-namespaces: Role+Binding in {ns}")
expect(("ClusterRole", "", "stella-nodes") in w, "watch-namespaces: nodes ClusterRole")
expect(("Role", "stella-system", "stella-leader-election") in w, "watch-namespaces: Lease Role in release namespace")
wc = [x for x in docs("watch-namespaces") if x["kind"] == "Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
expect("--namespaces=team-a,team-b" in wc["args"], "watch-namespaces: --namespaces flag")

s = kinds("service-monitor")
expect(("ServiceMonitor", "stella-system", "stella") in s, "service-monitor: ServiceMonitor rendered")
expect(not any(k[2] == "stella-leader-election" for k in s), "no Lease RBAC without leader election")
expect(all(k[1] == "monitoring" for k in s if k[0] == "ConfigMap"), "dashboards in dashboards.namespace")

m = [x for x in docs("member-clusters") if x["kind"] == "Secret"]
got = sorted((x["metadata"]["namespace"], x["metadata"]["name"]) for x in m)
expect(got == [("jobs", "stella-member-onprem"), ("research", "stella-member-lab"), ("research", "stella-member-onprem")],
       f"member-clusters: Secrets per job namespace, none for existingSecret: {got}")

r = kinds("member-rbac")
expect(not any(k[0] in ("Deployment", "Service", "ConfigMap") for k in r), "member-rbac: no operator, no dashboards")
expect(("ServiceAccount", "stella-system", "stella-member") in r and ("Role", "jobs", "stella-member") in r
       and ("Role", "research", "stella-member") in r and ("ClusterRole", "", "stella-member-nodes") in r
       and ("Secret", "stella-system", "stella-member-token") in r, f"member-rbac objects: {r}")
print("\n".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
then ok "renders hold the required fields (probes, security, RBAC shape, Secrets)"
else fail "renders hold the required fields (see above)"; fi

# --- refused values ---------------------------------------------------------
# refuse NAME 'EXPECTED TEXT' [helm args]: helm template must fail, and its
# error must contain the text (the value's path and what was wrong).
refuse() {
  local name=$1 expect=$2; shift 2
  local out
  if out=$(h template stella "$chart" --namespace stella-system "$@"); then
    fail "refuses $name (was accepted)"; return
  fi
  if grep -qF -- "$expect" <<<"$out"; then ok "refuses $name: $expect"
  else fail "refuses $name: want '$expect' in: $out"; fi
}
refuse negative-replicas "at '/replicaCount': minimum: got -1, want 0" --set replicaCount=-1
refuse string-replicas "at '/replicaCount': got string, want integer" --set-string replicaCount=two
refuse bad-logLevel "at '/logLevel': value must be one of 'debug', 'info', 'warn', 'error'" --set logLevel=verbose
refuse bad-pullPolicy "at '/image/pullPolicy': value must be one of" --set image.pullPolicy=Sometimes
refuse bad-namespace "at '/watchNamespaces/0': 'Bad_NS' does not match pattern" --set 'watchNamespaces[0]=Bad_NS'
refuse namespace-not-list "at '/watchNamespaces': got string, want array" --set watchNamespaces=team-a
refuse port-range "at '/metrics/port': maximum: got 70,000, want 65,535" --set metrics.port=70000
refuse workers-zero "at '/workers': minimum: got 0, want 1" --set workers=0
refuse unknown-key "additional properties 'replicas' not allowed" --set replicas=3
refuse typo-nested "at '/serviceMonitor': additional properties 'enable' not allowed" --set serviceMonitor.enable=true
refuse bool-as-string "at '/leaderElection/enabled': got string, want boolean" --set-string leaderElection.enabled=yes
refuse bad-quantity "at '/resources/limits/cpu'" --set resources.limits.cpu=lots
refuse extra-arg-not-flag "at '/extraArgs/0': 'verbose' does not match pattern '^--'" --set 'extraArgs[0]=verbose'
refuse member-without-source "at '/memberClusters/0': missing property 'kubeconfig'" --set 'memberClusters[0].name=onprem'
refuse member-bad-name "at '/memberClusters/0/name': 'On_Prem' does not match pattern" \
  --set 'memberClusters[0].name=On_Prem' --set 'memberClusters[0].existingSecret=s'
refuse member-both-sources "memberClusters[0] (onprem): both kubeconfig and existingSecret are set; expected exactly one" \
  --set 'memberClusters[0].name=onprem' --set 'memberClusters[0].existingSecret=s' --set-file "memberClusters[0].kubeconfig=$root/helm/stella/Chart.yaml"
refuse member-not-kubeconfig "memberClusters[0].kubeconfig (onprem): has no clusters list" \
  --set 'memberClusters[0].name=onprem' --set-file "memberClusters[0].kubeconfig=$root/helm/stella/Chart.yaml"
printf 'apiVersion: v1\nkind: Config\nclusters: [{name: a, cluster: {server: "https://a"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: a, context: {cluster: a, user: u}}]\n' >"$tmp/no-context.kubeconfig"
refuse member-no-current-context "memberClusters[0].kubeconfig (onprem): has no current-context" \
  --set 'memberClusters[0].name=onprem' --set-file "memberClusters[0].kubeconfig=$tmp/no-context.kubeconfig"
refuse member-duplicate 'memberClusters[1].name: "a" is listed twice' \
  --set 'memberClusters[0].name=a' --set 'memberClusters[0].existingSecret=s' \
  --set 'memberClusters[1].name=a' --set 'memberClusters[1].existingSecret=t'
refuse replicas-without-election "replicaCount: 2 replicas with leaderElection.enabled=false would all reconcile at once" \
  --set leaderElection.enabled=false
refuse servicemonitor-without-crd "serviceMonitor.enabled: true, but the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor" \
  --set serviceMonitor.enabled=true
refuse existing-sa-without-name "serviceAccount.name: must name an existing ServiceAccount when serviceAccount.create is false" \
  --set serviceAccount.create=false
# ...and the same value file is accepted once fixed.
if h template stella "$chart" --set replicaCount=0 --set leaderElection.enabled=false >/dev/null; then
  ok "accepts replicaCount 0 without leader election"
else fail "accepts replicaCount 0 without leader election"; fi

# --- scripts/sa-kubeconfig.sh refuses bad flags, writing nothing -----------
sa_refuse() {
  local expect=$1; shift
  local out
  if out=$(bash "$root/scripts/sa-kubeconfig.sh" "$@" --out "$tmp/sa.kubeconfig" 2>&1); then
    fail "sa-kubeconfig.sh $* is refused (was accepted)"
  elif [ -e "$tmp/sa.kubeconfig" ]; then fail "sa-kubeconfig.sh $*: wrote its output although refused"
  elif grep -qF -- "$expect" <<<"$out"; then ok "sa-kubeconfig.sh refuses $*: $expect"
  else fail "sa-kubeconfig.sh $*: want '$expect' in: $out"; fi
}
sa_refuse "--namespace: required" --service-account s
sa_refuse "--service-account: required" --namespace n
sa_refuse "--duration: '1year' is not a duration; expected e.g. 3600s, 90m or 8760h" --namespace n --service-account s --duration 1year
sa_refuse "--duration '1h' and --token-secret 't': expected at most one" --namespace n --service-account s --duration 1h --token-secret t
sa_refuse "unknown argument '--bogus'" --namespace n --service-account s --bogus

# --- package ----------------------------------------------------------------
# The packaged chart must carry the linked files' content (not the links)
# and render exactly as the chart directory does.
if out=$(h package "$chart" --destination "$tmp"); then
  tgz="$tmp/stella-0.1.0.tgz"
  tar -m -C "$tmp" -xzf "$tgz"
  if [ -f "$tmp/stella/crds/stellajob.yaml" ] && [ ! -L "$tmp/stella/crds/stellajob.yaml" ] &&
     cmp -s "$tmp/stella/crds/stellajob.yaml" "$root/crds/stellajob.yaml" &&
     diff -r "$tmp/stella/dashboards" "$root/dashboards" >/dev/null; then
    ok "helm package holds the CRD and dashboards as files"
  else fail "helm package holds the CRD and dashboards as files"; fi
  if diff <(h template stella "$tgz" -n stella-system) <(h template stella "$chart" -n stella-system) >/dev/null; then
    ok "packaged chart renders as the directory"
  else fail "packaged chart renders as the directory"; fi
  if out=$(h lint --strict "$tgz"); then ok "helm lint --strict on the package"; else fail "helm lint --strict on the package: $out"; fi
else fail "helm package: $out"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
