#!/usr/bin/env bash
# scripts/test-clusters.sh, the hub + two members bed of the operator's e2e
# tests: the three API servers answer; the StellaJob CRD is on the hub only;
# the hub's member-*-kubeconfig Secrets reach the right member; pods run on a
# member and on the hub; a failure half-way (a member's kwok refused) stops
# everything already started and says which step failed; stop leaves no
# process and no directory. Exit code 77 (skipped, said loudly) only when
# scripts/testbin.sh cannot build the binaries. Waits are bounded (60 s).
set -uo pipefail
# Control planes started below die with this script (scripts/control-plane.sh).
export STELLA_OWNER_PID=$$
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/stella-tc-XXXXXX)
dir=$work/clusters
trap 'bash "$root/scripts/test-clusters.sh" stop "$dir" >/dev/null 2>&1; rm -rf "$work"' EXIT

passed=0; failed=0
ok()   { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }

if ! bin=$(bash "$root/scripts/testbin.sh" 2>"$work/testbin.log"); then
  echo "SKIPPED: test_clusters_test: the Kubernetes binaries could not be built by scripts/testbin.sh:" >&2
  tail -5 "$work/testbin.log" >&2
  exit 77
fi
export PATH="$bin:$PATH"

out=$(bash "$root/scripts/test-clusters.sh" start "$dir" --member-nodes two 2>&1); rc=$?
[ $rc -eq 2 ] && grep -qF -- "--member-nodes 'two'" <<<"$out" && [ ! -e "$dir" ] &&
  ok "rejects --member-nodes two before starting anything" || fail "rejects --member-nodes two (rc $rc): $out"

# A failure after the control planes are up: everything is stopped again.
out=$(bash "$root/scripts/test-clusters.sh" start "$dir" --gpus-per-node 5000 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "kwok-cluster.sh start failed for" <<<"$out" && grep -qF -- "--gpus-per-node '5000'" <<<"$out" &&
  [ ! -e "$dir" ] && ! pgrep -f -- "$dir/" >/dev/null &&
  ok "a failed start names the step, stops what it started, removes DIR" ||
  fail "failed start (rc $rc): $out; left: $(pgrep -af -- "$dir/")"

if ! out=$(bash "$root/scripts/test-clusters.sh" start "$dir" 2>&1); then
  echo "test_clusters_test: test-clusters.sh start failed: $out" >&2
  exit 1
fi
ok "starts: $(head -1 <<<"$out")"
out2=$(bash "$root/scripts/test-clusters.sh" start "$dir" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "not empty" <<<"$out2" && ok "refuses to start over running clusters" || fail "second start (rc $rc): $out2"

# shellcheck disable=SC1091
. "$dir/env"
[ "$HUB_KUBECONFIG" = "$dir/hub/kubeconfig" ] && [ "$MEMBER_A_KUBECONFIG" = "$dir/member-a/kubeconfig" ] &&
  [ "$MEMBER_B_KUBECONFIG" = "$dir/member-b/kubeconfig" ] && ok "DIR/env names the three kubeconfigs" || fail "DIR/env: $(cat "$dir/env")"
servers=""
for kc in "$HUB_KUBECONFIG" "$MEMBER_A_KUBECONFIG" "$MEMBER_B_KUBECONFIG"; do
  servers="$servers $(kubectl --kubeconfig "$kc" config view -o jsonpath='{.clusters[0].cluster.server}')"
  kubectl --kubeconfig "$kc" get --raw /readyz >/dev/null 2>&1 || fail "API server of $kc answers"
done
[ "$(tr ' ' '\n' <<<"$servers" | grep -c '^https://127\.0\.0\.1:[0-9]*$')" -eq 3 ] &&
  [ "$(tr ' ' '\n' <<<"$servers" | sort -u | grep -c .)" -eq 3 ] &&
  ok "three distinct loopback API servers ($servers )" || fail "servers:$servers"

hub() { kubectl --kubeconfig "$HUB_KUBECONFIG" "$@"; }
hub get crd stellajobs.stella.dev -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' | grep -qx True &&
  ! kubectl --kubeconfig "$MEMBER_A_KUBECONFIG" get crd stellajobs.stella.dev >/dev/null 2>&1 &&
  ok "StellaJob CRD Established on the hub, absent on members" || fail "CRD placement"
hub apply -f "$root/examples/demo.yaml" >/dev/null 2>&1 && ok "hub accepts a StellaJob (examples/demo.yaml)" || fail "hub accepts examples/demo.yaml"

for m in member-a member-b; do
  hub get secret "$m-kubeconfig" -n default -o jsonpath='{.data.kubeconfig}' | base64 -d >"$work/$m.kc"
  want=$(kubectl --kubeconfig "$dir/$m/kubeconfig" get namespace kube-system -o jsonpath='{.metadata.uid}')
  got=$(kubectl --kubeconfig "$work/$m.kc" get namespace kube-system -o jsonpath='{.metadata.uid}' 2>&1)
  [ -n "$want" ] && [ "$got" = "$want" ] && ok "Secret default/$m-kubeconfig reaches $m" || fail "Secret $m-kubeconfig: '$got' vs '$want'"
done

# Pods run on a member (through the Secret's kubeconfig) and on the hub.
kubectl --kubeconfig "$work/member-b.kc" run w0 --image=stella/worker:test --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"w0","image":"stella/worker:test","resources":{"limits":{"nvidia.com/gpu":"8"}}}]}}' >/dev/null
kubectl --kubeconfig "$work/member-b.kc" wait pod/w0 --for=condition=Ready --timeout=60s >/dev/null 2>&1 &&
  ok "an 8-GPU pod runs on member-b" || fail "8-GPU pod on member-b: $(kubectl --kubeconfig "$work/member-b.kc" get pod w0 -o jsonpath='{.status}')"
hub run h0 --image=stella/gateway:test --restart=Never >/dev/null
hub wait pod/h0 --for=condition=Ready --timeout=60s >/dev/null 2>&1 && ok "a pod runs on the hub" || fail "pod on the hub"

bash "$root/scripts/test-clusters.sh" stop "$dir"
[ ! -e "$dir" ] && ! pgrep -f -- "$dir/" >/dev/null && ok "stop leaves no process and no directory" ||
  fail "after stop: $(ls -A "$dir" 2>&1) $(pgrep -af -- "$dir/")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
