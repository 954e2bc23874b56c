# Shared by the chart's tests, and for other tests that need the operator's
# real permissions (source it; it sets no shell options of its own).
#
#   source tests/helm/lib.sh
#   stella_testbin_path || exit 77        # helm, kubectl, ... on PATH
#   stella_install_chart HUB_KUBECONFIG RELEASE NAMESPACE SA_KUBECONFIG [helm args...]
#
# stella_install_chart installs (or upgrades) helm/stella as RELEASE in
# NAMESPACE (created when missing) on the API server of HUB_KUBECONFIG, and
# writes to SA_KUBECONFIG a kubeconfig that authenticates as the chart's
# operator ServiceAccount (a TokenRequest token, 24 h): run the operator
# with --kubeconfig SA_KUBECONFIG to give it exactly the chart's RBAC. Out of
# a pod, also pass --leader-election-namespace NAMESPACE (its Lease rights
# are there only) and, with watchNamespaces set, the same --namespaces.
# The test API servers run no scheduler, so the chart's own pods never start.

STELLA_ROOT=${STELLA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
STELLA_CHART=$STELLA_ROOT/helm/stella

# Puts the testbin binaries (scripts/testbin.sh) first on PATH. Returns 1 with
# the reason on stderr when they cannot be built.
stella_testbin_path() {
  local bin log
  log=$(mktemp)
  if ! bin=$(bash "$STELLA_ROOT/scripts/testbin.sh" 2>"$log"); then
    echo "scripts/testbin.sh could not build helm/kubectl/kube-apiserver:" >&2
    tail -5 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  export PATH="$bin:$PATH"
}

# Helm warns on stderr for each symbolic link in the chart (crds/ and
# dashboards/ link to the repository's single copies); drop those lines only.
stella_helm() {
  helm "$@" 2> >(grep -v 'found symbolic link in path' >&2)
}

stella_install_chart() {
  local kubeconfig=$1 release=$2 namespace=$3 out=$4
  shift 4
  KUBECONFIG=$kubeconfig kubectl get namespace "$namespace" >/dev/null 2>&1 ||
    KUBECONFIG=$kubeconfig kubectl create namespace "$namespace" >/dev/null || return 1
  KUBECONFIG=$kubeconfig stella_helm upgrade --install "$release" "$STELLA_CHART" \
    --namespace "$namespace" "$@" || return 1
  local sa
  sa=$(KUBECONFIG=$kubeconfig stella_helm get manifest "$release" -n "$namespace" |
       python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] == "Deployment":
        print(d["spec"]["template"]["spec"]["serviceAccountName"])
') || return 1
  [ -n "$sa" ] || { echo "stella_install_chart: release $release has no operator Deployment" >&2; return 1; }
  KUBECONFIG=$kubeconfig bash "$STELLA_ROOT/scripts/sa-kubeconfig.sh" \
    --namespace "$namespace" --service-account "$sa" --out "$out"
}
