#!/usr/bin/env bash
# The container image, built for real (scripts/image.sh: buildah, a Debian base
# made with debootstrap) and run: the binaries start, the user is 65532, every
# library resolves, nothing but /tmp and /checkpoints is writable, and a short
# real `stella run` of a two-cluster job succeeds inside the image writing only
# under /tmp. Slow (a cold build compiles Stella), so it is not in the default
# ctest set: `make image-test` runs it, and CI through that.
#
# Environment: STELLA_IMAGE_TEST_DIR (storage, default <repo>/build-image-test,
# removed at the end unless STELLA_IMAGE_KEEP=1) and STELLA_IMAGE_TMP (the
# build's ccache, kept: scripts/image.sh). All three targets are built; the
# second and third reuse the first's layers and differ only in entrypoint.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
export STELLA_IMAGE_DIR=${STELLA_IMAGE_TEST_DIR:-$repo/build-image-test}
export VARIANT=cpu
export TAG=image-test
export TARGETS="stella stella-runtime stella-operator"
IMAGE=localhost/stella:$TAG
work=$(mktemp -d)
passed=0
failed=0
ctr=""

img() { bash "$repo/scripts/image.sh" "$@"; }

cleanup() {
  [ -n "$ctr" ] && img buildah rm "$ctr" >/dev/null 2>&1 || true
  if [ "${STELLA_IMAGE_KEEP:-0}" = 1 ]; then
    echo "image_test: kept $IMAGE in $STELLA_IMAGE_DIR (STELLA_IMAGE_KEEP=1)"
  else
    # Images, intermediate layers and containers: vfs keeps a full copy of
    # the root file system per layer, so none of it may outlive the test.
    img buildah rm --all >/dev/null 2>&1 || true
    rm -rf "$STELLA_IMAGE_DIR"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
# expect NAME WANT GOT
expect() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "want \"$2\", got \"$3\""; fi; }
# in_image CMD...: runs CMD in the test container as the image's user.
in_image() { img buildah run "$ctr" -- "$@"; }

# ---- build (cold when STELLA_IMAGE_DIR and the ccache are empty)
start=$(date +%s)
img build
build_seconds=$(( $(date +%s) - start ))
echo "image_test: build took $build_seconds s"
if size=$(img size "$IMAGE"); then pass "size: $size"; else fail "image size" "scripts/image.sh size failed"; fi

# ---- image configuration: one content, an entrypoint per target (the Helm
# chart runs stella-operator and stella-runtime images with arguments only)
cfg() { img buildah inspect --type image --format "$2" "localhost/$1:$TAG"; }
for target in $TARGETS; do
  expect "$target: user" "65532:65532" "$(cfg "$target" '{{.OCIv1.Config.User}}')"
  expect "$target: entrypoint" "[$target]" "$(cfg "$target" '{{.OCIv1.Config.Entrypoint}}')"
  expect "$target: workdir" "/opt/stella" "$(cfg "$target" '{{.OCIv1.Config.WorkingDir}}')"
done
expect "stella: cmd" "[--help]" "$(cfg stella '{{.OCIv1.Config.Cmd}}')"
expect "targets share their layers" "$(cfg stella '{{.OCIv1.RootFS.DiffIDs}}')" "$(cfg stella-operator '{{.OCIv1.RootFS.DiffIDs}}')"

ctr=$(img buildah from --pull-never "$IMAGE")

# ---- the binaries start, as uid 65532
expect "id -u" 65532 "$(in_image id -u)"
version=$(sed -n 's/^project(stella VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
out=$(in_image stella --version 2>&1) || true
case "$out" in *"$version"*) pass "stella --version ($out)" ;; *) fail "stella --version" "want $version in \"$out\"" ;; esac
if out=$(in_image stella-runtime --help 2>&1) && [[ "$out" == *"usage: stella-runtime"* ]]; then
  pass "stella-runtime --help"
else
  fail "stella-runtime --help" "$out"
fi
# The operator is in the image exactly when the source tree defines its
# executable; then it must start.
if grep -rqs --include=CMakeLists.txt --exclude-dir='build*' --exclude-dir=.git 'add_executable(stella-operator' "$repo"; then
  if out=$(in_image stella-operator --help 2>&1); then pass "stella-operator --help"; else fail "stella-operator --help" "$out"; fi
else
  expect "no stella-operator target, none in the image" absent \
    "$(in_image sh -c 'test -e /opt/stella/bin/stella-operator && echo present || echo absent')"
fi

# ---- every library resolves; no -dev package came along
out=$(in_image sh -c 'ldd /opt/stella/bin/*' 2>&1)
if grep -q 'not found' <<<"$out"; then fail "ldd" "$(grep 'not found' <<<"$out")"; else pass "ldd: every library resolves"; fi
expect "no -dev packages" "" "$(in_image dpkg-query -W -f '${Package}\n' | grep -- '-dev$' | tr '\n' ' ' || true)"
expect "dataset-fashion-mnist installed" "install ok installed" "$(in_image dpkg-query -W -f '${Status}' dataset-fashion-mnist)"

# ---- writable only where needed: /tmp (and /var/tmp, /run/lock: world-
# writable sticky dirs of every Debian base) and /checkpoints.
# (find exits non-zero on the directories it may not enter; the list is what counts.)
writable=$(in_image sh -c 'find / -xdev -type d -writable 2>/dev/null; true' | sort | tr '\n' ' ')
expect "directories writable by 65532" "/checkpoints /run/lock /tmp /var/tmp " "$writable"
expect "no setuid/setgid files" "" "$(in_image sh -c 'find / -xdev -type f -perm /6000 2>/dev/null; true' | tr '\n' ' ')"
expect "/checkpoints owner" "65532:65532 700" "$(in_image stat -c '%u:%g %a' /checkpoints)"

# ---- a short real training run inside the image
cat > "$work/tiny.yaml" <<'EOF'
# Two clusters of one worker, 20 steps of an MLP on the image's Fashion-MNIST,
# compressed (stella) exchange over a 100 Mbit/s emulated link.
apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: image-test
spec:
  model: {name: mlp}
  dataset: {name: fashion-mnist, path: /usr/share/datasets/fashion-mnist}
  optimizer: {name: adam, learningRate: 0.002}
  batchSize: 32
  training: {steps: 20, evalEvery: 20, seed: 1}
  sync: {mode: stella, density: 0.05}
  clusters:
    - {name: a, workers: 1, wan: {bandwidthMbps: 100, latencyMs: 5}}
    - {name: b, workers: 1, wan: {bandwidthMbps: 100, latencyMs: 5}}
  metrics: {port: 0}
EOF
img buildah copy --chown 65532:65532 "$ctr" "$work/tiny.yaml" /tmp/tiny.yaml >/dev/null
# The examples are readable and valid where the image puts them.
expect "stella validate examples/demo.yaml" ok "$(in_image stella validate examples/demo.yaml 2>&1)"
in_image true  # buildah's own per-run files (/etc/hosts, ...) are written now, not during the job
mnt=$(img buildah mount "$ctr")
touch "$work/marker"
sleep 1
if in_image stella run /tmp/tiny.yaml --json /tmp/summary.json --timeout 600; then
  pass "stella run (20 steps, 2 clusters)"
else
  fail "stella run" "exit $?; worker logs under /tmp/stella-image-test-* in the container"
  in_image sh -c 'tail -n 20 /tmp/stella-image-test-*/*' || true
fi
summary=$(in_image cat /tmp/summary.json 2>/dev/null || true)
expect "summary steps" 20 "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["steps"])' "$summary" 2>/dev/null || echo unreadable)"
expect "summary workers" 2 "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["done_workers"])' "$summary" 2>/dev/null || echo unreadable)"
# Read-only root friendly: the run wrote nothing outside /tmp. What buildah
# itself bind-mounts or creates for every run (/etc/hosts, resolv.conf,
# hostname, /run/.containerenv: /run's own times change) is not the job's.
written=$(cd "$mnt" && find . -xdev \( -newer "$work/marker" -o -cnewer "$work/marker" \) \
  ! -path './tmp' ! -path './tmp/*' ! -path './etc/hosts' ! -path './etc/resolv.conf' ! -path './etc/hostname' \
  ! -path './run' ! -path './dev' ! -path './proc' ! -path './sys' ! -path '.' | sort | tr '\n' ' ')
expect "nothing written outside /tmp" "" "$written"

echo "image_test: build ${build_seconds}s"
echo "image_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
