#!/usr/bin/env bash
# Bounded fuzz run for CI (`make fuzz`): runs every libFuzzer target from its
# committed seeds (tests/fuzz/corpus/<target>) for a fixed number of
# executions, with a time cap per target as a safety net, and prints the
# execution counts from libFuzzer's final stats.
#
#   tests/fuzz/run_fuzzers.sh <build dir>
#
# Fails if any target finds a crash, leak, timeout or out-of-memory (the input
# is saved as <build dir>/artifacts/<target>-<kind>-<sha1>; reproduce with
# `<build dir>/tests/fuzz/<target> <that file>`), or if fewer than
# MIN_TOTAL_EXECS (default 1,000,000) executions ran in total.
# New inputs found go to <build dir>/fuzz-corpus/<target>, never to the seeds.
set -euo pipefail

BUILD_DIR=${1:?usage: run_fuzzers.sh <build dir>}
MIN_TOTAL_EXECS=${MIN_TOTAL_EXECS:-1000000}
SRC_DIR=$(cd "$(dirname "$0")" && pwd)

# target  runs  max seconds. The byte decoders run ~300k inputs/s here under
# ASan+UBSan, the frame target (memory streams) ~17k/s, the manifest target
# (yaml-cpp) ~4k/s, the Kubernetes JSON target (nlohmann + yaml-cpp for the
# kubeconfig and the StellaJob spec) ~4-5k/s; the caps bound the wall time on
# a slower CI machine while the totals keep a wide margin over MIN_TOTAL_EXECS.
TARGETS=(
  "frame_fuzzer        300000  60"
  "sparse_wire_fuzzer 1000000  30"
  "manifest_fuzzer     150000  60"
  "kube_json_fuzzer    150000  60"
  "decision_fuzzer    1000000  30"
  "idx_fuzzer         1000000  30"
)

ARTIFACTS="$BUILD_DIR/artifacts"
mkdir -p "$ARTIFACTS"
total=0
failed=()
printf '%-20s %10s %8s  %s\n' target executions seconds result
for entry in "${TARGETS[@]}"; do
  read -r target runs max_time <<<"$entry"
  binary="$BUILD_DIR/tests/fuzz/$target"
  [ -x "$binary" ] || { echo "run_fuzzers: $binary is not built" >&2; exit 1; }
  work="$BUILD_DIR/fuzz-corpus/$target"
  log="$BUILD_DIR/fuzz-logs/$target.log"
  rm -rf "$work"
  mkdir -p "$work" "$(dirname "$log")"
  extra=()
  [ -f "$SRC_DIR/${target%_fuzzer}.dict" ] && extra+=("-dict=$SRC_DIR/${target%_fuzzer}.dict")
  start=$(date +%s)
  rc=0
  # The outer KILL is the last resort: a libFuzzer out-of-memory report can
  # hang in ptrace-restricted sandboxes while it prints the heap profile.
  timeout -s KILL $((max_time + 120)) "$binary" \
    -runs="$runs" -max_total_time="$max_time" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2560 -malloc_limit_mb=512 -print_final_stats=1 \
    -artifact_prefix="$ARTIFACTS/$target-" "${extra[@]}" \
    "$work" "$SRC_DIR/corpus/$target" >"$log" 2>&1 || rc=$?
  seconds=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  execs=${execs:-0}
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc)"
    [ "$rc" -ne 137 ] || result="FAILED (killed: hang or out of memory)"
    failed+=("$target")
  fi
  printf '%-20s %10s %8s  %s\n' "$target" "$execs" "$seconds" "$result"
  total=$((total + execs))
done
printf '%-20s %10s\n' total "$total"

for target in "${failed[@]}"; do
  echo
  echo "=== $target: the report in $BUILD_DIR/fuzz-logs/$target.log"
  # From the first report line (invariant, sanitizer or libFuzzer) on.
  sed -n '/fuzz invariant failed\|==[0-9]*== *ERROR\|runtime error:\|ERROR: libFuzzer/,$p' \
    "$BUILD_DIR/fuzz-logs/$target.log" | grep -av '^#[0-9]' | head -120
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_fuzzers: findings in ${failed[*]}; inputs in $ARTIFACTS" >&2
  exit 1
fi
if [ "$total" -lt "$MIN_TOTAL_EXECS" ]; then
  echo "run_fuzzers: only $total executions, expected at least $MIN_TOTAL_EXECS" >&2
  exit 1
fi
echo "run_fuzzers: $total executions over ${#TARGETS[@]} targets, no findings"
