#!/usr/bin/env bash
# The operator's multi-cluster test bed on loopback: a hub and two members,
# each a real control plane (scripts/control-plane.sh) made into a kwok
# cluster (scripts/kwok-cluster.sh: controller manager, scheduler, fake GPU
# nodes whose pods run without kubelets).
#
#   scripts/test-clusters.sh start DIR [--member-nodes N] [--hub-nodes N]
#                                      [--gpus-per-node G] [--pods-per-node P]
#   scripts/test-clusters.sh stop DIR
#
# start makes DIR/hub, DIR/member-a, DIR/member-b (each with its kubeconfig),
# installs crds/stellajob.yaml on the hub (waits for Established), creates in
# the hub's namespace default the Secrets member-a-kubeconfig and
# member-b-kubeconfig (key "kubeconfig": the member's kubeconfig, server on
# 127.0.0.1, admin token), writes DIR/env (HUB_KUBECONFIG=...,
# MEMBER_A_KUBECONFIG=..., MEMBER_B_KUBECONFIG=...; shell syntax) and prints a
# summary. Defaults: 2 nodes per cluster, 8 nvidia.com/gpu and 110 pods each.
# On any failure it stops everything it started, says which step failed with
# the relevant log lines, and exits 1. stop stops all three and removes DIR.
set -euo pipefail

usage() {
  echo "usage: test-clusters.sh start DIR [--member-nodes N] [--hub-nodes N] [--gpus-per-node G] [--pods-per-node P]" >&2
  echo "       test-clusters.sh stop DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
clusters=(hub member-a member-b)
marker=.stella-test-clusters
# The planes die with whoever called this script (control-plane.sh's watchdog).
export STELLA_OWNER_PID=${STELLA_OWNER_PID:-$PPID}

# Stops the three clusters side by side (each takes seconds: components get
# up to 5 s to exit after SIGTERM).
stop_all() {
  local c
  for c in "${clusters[@]}"; do
    if [ -d "$dir/$c" ]; then
      { bash "$here/kwok-cluster.sh" stop "$dir/$c" >/dev/null 2>&1
        bash "$here/control-plane.sh" stop "$dir/$c" >/dev/null 2>&1; } &
    fi
  done
  wait
  # Remove DIR only if this script made it (never someone else's directory).
  if [ -f "$dir/$marker" ]; then
    rm -f "$dir/$marker" "$dir/env" "$dir"/*.log
    rmdir "$dir" 2>/dev/null || true
  fi
}

case "$cmd" in
  stop) stop_all; exit 0 ;;
  start) ;;
  *) echo "test-clusters.sh: unknown command '$cmd' (expected start or stop)" >&2; usage ;;
esac

member_nodes=2 hub_nodes=2 gpus=8 max_pods=110
while [ $# -gt 0 ]; do
  case "$1" in
    --member-nodes|--hub-nodes|--gpus-per-node|--pods-per-node)
      [ $# -ge 2 ] || { echo "test-clusters.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --member-nodes) member_nodes=$2 ;; --hub-nodes) hub_nodes=$2 ;;
        --gpus-per-node) gpus=$2 ;; --pods-per-node) max_pods=$2 ;;
      esac
      shift 2 ;;
    *) echo "test-clusters.sh: unknown option '$1'" >&2; usage ;;
  esac
done
# kwok-cluster.sh validates the ranges; check the form here, before starting anything.
for pair in "--member-nodes=$member_nodes" "--hub-nodes=$hub_nodes" "--gpus-per-node=$gpus" "--pods-per-node=$max_pods"; do
  [[ ${pair#*=} =~ ^[0-9]+$ ]] || { echo "test-clusters.sh: ${pair%%=*} '${pair#*=}': expected a non-negative integer" >&2; exit 2; }
done

if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "test-clusters.sh: $dir exists and is not empty (clusters already started? run 'test-clusters.sh stop $dir')" >&2
  exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
touch "$dir/$marker"
t0=$(date +%s.%N)

bin=$(bash "$here/testbin.sh") || { echo "test-clusters.sh: scripts/testbin.sh could not provide the Kubernetes binaries" >&2; rm -f "$dir/$marker"; rmdir "$dir" 2>/dev/null; exit 1; }
export PATH="$bin:$PATH"

die() {
  echo "test-clusters.sh: $1" >&2
  [ -n "${2:-}" ] && [ -f "$2" ] && { echo "--- $2:" >&2; tail -20 "$2" >&2; }
  stop_all
  exit 1
}

# Control planes in parallel. Each picks its ports by binding port 0 and
# releasing it, so two could race for one port: a failed start is retried once.
start_cp() {
  local c=$1
  for attempt in 1 2; do
    if bash "$here/control-plane.sh" start "$dir/$c" >"$dir/$c.start.log" 2>&1; then return 0; fi
    echo "(attempt $attempt failed)" >>"$dir/$c.start.log"
    cp "$dir/$c.start.log" "$dir/$c.start.$attempt.log"
  done
  return 1
}
pids=()
for c in "${clusters[@]}"; do start_cp "$c" & pids+=($!); done
# Wait for all before acting on a failure, so nothing starts after stop_all.
bad=""
for i in "${!clusters[@]}"; do wait "${pids[$i]}" || bad=${bad:-${clusters[$i]}}; done
[ -z "$bad" ] || die "the $bad control plane did not start (twice)" "$dir/$bad.start.log"

# kwok clusters, in parallel as well.
pids=()
for c in "${clusters[@]}"; do
  n=$member_nodes; [ "$c" = hub ] && n=$hub_nodes
  bash "$here/kwok-cluster.sh" start "$dir/$c" --nodes "$n" --gpus-per-node "$gpus" --pods-per-node "$max_pods" \
    >"$dir/$c.kwok.log" 2>&1 &
  pids+=($!)
done
bad=""
for i in "${!clusters[@]}"; do wait "${pids[$i]}" || bad=${bad:-${clusters[$i]}}; done
[ -z "$bad" ] || die "kwok-cluster.sh start failed for $bad" "$dir/$bad.kwok.log"

# The StellaJob CRD on the hub.
hub=$dir/hub/kubeconfig
out=$(kubectl --kubeconfig "$hub" apply -f "$root/crds/stellajob.yaml" 2>&1) || die "installing crds/stellajob.yaml on the hub failed: $out"
out=$(kubectl --kubeconfig "$hub" wait --for condition=Established crd/stellajobs.stella.dev --timeout=60s 2>&1) ||
  die "the StellaJob CRD did not become Established on the hub within 60 s: $out"

# Member kubeconfigs as hub Secrets (what the operator reads).
for m in member-a member-b; do
  out=$(kubectl --kubeconfig "$hub" create secret generic "$m-kubeconfig" -n default \
        --from-file=kubeconfig="$dir/$m/kubeconfig" 2>&1) || die "creating Secret default/$m-kubeconfig on the hub failed: $out"
done

{
  echo "HUB_KUBECONFIG=$dir/hub/kubeconfig"
  echo "MEMBER_A_KUBECONFIG=$dir/member-a/kubeconfig"
  echo "MEMBER_B_KUBECONFIG=$dir/member-b/kubeconfig"
} >"$dir/env"

secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
echo "test-clusters: started in $secs s under $dir (variables in $dir/env)"
for c in "${clusters[@]}"; do
  server=$(awk '/server:/ {print $2; exit}' "$dir/$c/kubeconfig")
  nodes=$(kubectl --kubeconfig "$dir/$c/kubeconfig" get nodes -l type=kwok --no-headers 2>/dev/null | wc -l)
  printf '  %-9s %s  kubeconfig %s  %s nodes x %s nvidia.com/gpu\n' "$c" "$server" "$dir/$c/kubeconfig" "$nodes" "$gpus"
done
echo "  hub: CRD stellajobs.stella.dev Established; Secrets default/member-a-kubeconfig, default/member-b-kubeconfig (key kubeconfig)"
