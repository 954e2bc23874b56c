#!/usr/bin/env bash
# Writes a kubeconfig that authenticates as a ServiceAccount: the server and
# CA of the current context of the caller's kubeconfig, and a token for the
# ServiceAccount. Used to give the Stella hub a member cluster's kubeconfig
# (the chart's memberRBAC ServiceAccount) and by the tests to act as the
# operator's ServiceAccount.
#
#   scripts/sa-kubeconfig.sh --namespace NS --service-account SA --out PATH
#       [--duration 8760h]          token from the TokenRequest API (default 24h)
#       [--token-secret NAME]       or: the token of a service-account-token Secret
#       [--server URL]              the API server address the user of PATH
#                                   reaches (default: the current context's)
#       [--context NAME]            context name in PATH (default: SA@NS)
#
# kubectl (on PATH) uses $KUBECONFIG or ~/.kube/config as usual. PATH is
# written only when everything succeeded (mode 0600).
set -euo pipefail

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; }
die() { echo "sa-kubeconfig.sh: $*" >&2; exit 2; }

ns="" sa="" out="" duration="" secret="" server="" context=""
while [ $# -gt 0 ]; do
  flag=$1
  case "$flag" in
    --namespace|--service-account|--out|--duration|--token-secret|--server|--context)
      [ $# -ge 2 ] && [ -n "$2" ] || die "$flag: missing value"
      case "$flag" in
        --namespace) ns=$2 ;;
        --service-account) sa=$2 ;;
        --out) out=$2 ;;
        --duration) duration=$2 ;;
        --token-secret) secret=$2 ;;
        --server) server=$2 ;;
        --context) context=$2 ;;
      esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument '$flag'" ;;
  esac
done
[ -n "$ns" ] || die "--namespace: required (the ServiceAccount's namespace)"
[ -n "$sa" ] || die "--service-account: required"
[ -n "$out" ] || die "--out: required (the kubeconfig to write)"
[ -z "$duration" ] || [ -z "$secret" ] || die "--duration '$duration' and --token-secret '$secret': expected at most one"
if [ -n "$duration" ] && ! [[ "$duration" =~ ^[0-9]+(s|m|h)$ ]]; then
  die "--duration: '$duration' is not a duration; expected e.g. 3600s, 90m or 8760h"
fi
command -v kubectl >/dev/null || die "kubectl: not found on PATH"

# The current context's cluster, credentials left out.
cluster_json=$(kubectl config view --minify --raw -o json) || die "cannot read the current kubeconfig context"
read -r cur_server ca_data insecure < <(python3 -c '
import json, sys
c = json.load(sys.stdin)["clusters"][0]["cluster"]
ca = c.get("certificate-authority-data", "")
if not ca and c.get("certificate-authority"):
    import base64
    ca = base64.b64encode(open(c["certificate-authority"], "rb").read()).decode()
print(c["server"], ca or "-", "true" if c.get("insecure-skip-tls-verify") else "false")
' <<<"$cluster_json") || die "the current kubeconfig context has no usable cluster entry"
server=${server:-$cur_server}

if [ -n "$secret" ]; then
  # The token controller fills the Secret in shortly after it is created.
  token=""
  for _ in $(seq 60); do
    token=$(kubectl -n "$ns" get secret "$secret" -o jsonpath='{.data.token}' 2>/dev/null | base64 -d || true)
    [ -n "$token" ] && break
    sleep 0.5
  done
  [ -n "$token" ] || die "--token-secret: Secret $ns/$secret has no token after 30 s (is it a kubernetes.io/service-account-token Secret of $sa, and does the cluster run the token controller?)"
else
  token=$(kubectl -n "$ns" create token "$sa" --duration "${duration:-24h}") ||
    die "could not create a token for ServiceAccount $ns/$sa"
fi

context=${context:-$sa@$ns}
tmp=$(mktemp "$(dirname "$out")/.sa-kubeconfig.XXXXXX")
trap 'rm -f "$tmp"' EXIT
chmod 600 "$tmp"
{
  echo "apiVersion: v1"
  echo "kind: Config"
  echo "clusters:"
  echo "- name: cluster"
  echo "  cluster:"
  echo "    server: $server"
  if [ "$ca_data" != "-" ]; then echo "    certificate-authority-data: $ca_data"; fi
  if [ "$insecure" = true ]; then echo "    insecure-skip-tls-verify: true"; fi
  echo "users:"
  echo "- name: $sa"
  echo "  user:"
  echo "    token: $token"
  echo "contexts:"
  echo "- name: $context"
  echo "  context: {cluster: cluster, user: $sa, namespace: $ns}"
  echo "current-context: $context"
} >"$tmp"
mv "$tmp" "$out"
trap - EXIT
