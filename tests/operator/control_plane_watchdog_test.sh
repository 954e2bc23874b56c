#!/usr/bin/env bash
# A control plane dies with the process that started it: scripts/control-plane.sh
# start leaves a watchdog that stops etcd and kube-apiserver once the owner
# (STELLA_OWNER_PID, else the caller) is gone. This is what keeps a test that
# ctest kills at its timeout from leaving an etcd running for hours. The
# owner here is a `sleep` that the test kills with SIGKILL, as ctest would.
# Exit 77 (skipped, said loudly) only when scripts/testbin.sh cannot build
# the binaries.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/stella-watchdog-XXXXXX)
trap 'bash "$root/scripts/control-plane.sh" stop "$dir/cp" >/dev/null 2>&1; rm -rf "$dir"' EXIT

if ! bash "$root/scripts/testbin.sh" >/dev/null 2>"$dir/testbin.log"; then
  echo "SKIPPED: control_plane_watchdog_test: scripts/testbin.sh could not build the binaries:" >&2
  tail -5 "$dir/testbin.log" >&2
  exit 77
fi

sleep 600 &
owner=$!
if ! STELLA_OWNER_PID=$owner bash "$root/scripts/control-plane.sh" start "$dir/cp" >/dev/null; then
  echo "FAIL - the control plane did not start" >&2
  kill "$owner"
  exit 1
fi
etcd=$(cat "$dir/cp/etcd.pid")
apiserver=$(cat "$dir/cp/apiserver.pid")
if ! kill -0 "$etcd" 2>/dev/null || ! kill -0 "$apiserver" 2>/dev/null; then
  echo "FAIL - etcd ($etcd) or kube-apiserver ($apiserver) is not running after start" >&2
  exit 1
fi
echo "ok   - plane running: etcd $etcd, kube-apiserver $apiserver, owner $owner"

kill -9 "$owner"
wait "$owner" 2>/dev/null
# The watchdog polls every second; stopping takes up to 5 s per process.
for _ in $(seq 300); do
  if ! kill -0 "$etcd" 2>/dev/null && ! kill -0 "$apiserver" 2>/dev/null && [ ! -e "$dir/cp" ]; then
    echo "ok   - etcd and kube-apiserver stopped and $dir/cp removed after the owner was killed"
    echo "2 passed, 0 failed"
    exit 0
  fi
  sleep 0.1
done
echo "FAIL - 30 s after the owner died: etcd alive=$(kill -0 "$etcd" 2>/dev/null && echo yes || echo no)," \
  "apiserver alive=$(kill -0 "$apiserver" 2>/dev/null && echo yes || echo no), dir present=$([ -e "$dir/cp" ] && echo yes || echo no)" >&2
echo "1 passed, 1 failed"
exit 1
