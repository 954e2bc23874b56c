#!/usr/bin/env bash
# Builds Stella's container image (Dockerfile) with buildah, without a Docker
# engine or a registry: the Debian base image is made locally with
# debootstrap from the apt mirror this machine uses.
#
#   scripts/image.sh build          base image if missing, then the Dockerfile's
#                                   targets -> localhost/<target>:$TAG each
#   scripts/image.sh base           only the local base image (localhost/debian:bookworm)
#   scripts/image.sh buildah ARGS   any buildah command on this script's storage
#   scripts/image.sh size [IMAGE]   uncompressed size and gzip-compressed (pull) size, bytes
#   scripts/image.sh clean          removes $STELLA_IMAGE_DIR and $STELLA_IMAGE_TMP (images, layer cache, ccache)
#
# Environment (defaults in brackets):
#   STELLA_IMAGE_DIR  storage root and run root [<repo>/build-image]
#   STELLA_IMAGE_TMP  buildah's TMPDIR, which holds the build's ccache
#                     (RUN --mount=type=cache), kept across clones and CI runs
#                     [${XDG_CACHE_HOME:-~/.cache}/stella/image]
#   LAYERS            1: keep a layer per instruction and reuse them on the
#                     next build and the next target; 0: one layer per stage
#                     (less disk: vfs copies the whole file system per layer,
#                     but every target rebuilds from scratch) [1]
#   VARIANT           cpu | cuda [cpu]
#   TARGETS           Dockerfile stages to tag, the same image with a different
#                     entrypoint each [stella stella-runtime stella-operator]
#   TAG               tag of each [dev, or dev-cuda]
#   BASE              builder base [cpu: localhost/debian:bookworm, made by `base`;
#                     cuda: nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04]
#   RUNTIME_BASE      runtime base [cpu: BASE; cuda: nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04]
#   LIBTORCH_URL      cuda only, required: a cxx11-ABI CUDA libtorch zip
#   PULL              buildah --pull policy [cpu: never; cuda: missing (needs a registry)]
#   JOBS              compile jobs inside the build [2]
#
# Storage is private to STELLA_IMAGE_DIR and uses the vfs driver (no overlay
# or fuse needed), so it never touches /var/lib/containers or anyone else's
# images; RUN steps use chroot isolation. Needs root (debootstrap, buildah).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${STELLA_IMAGE_DIR:-$repo/build-image}
tmpdir=${STELLA_IMAGE_TMP:-${XDG_CACHE_HOME:-$HOME/.cache}/stella/image}
variant=${VARIANT:-cpu}
local_base=localhost/debian:bookworm
case "$variant" in
  cpu)
    tag=${TAG:-dev}
    base=${BASE:-$local_base}
    runtime_base=${RUNTIME_BASE:-$base}
    pull=${PULL:-never} ;;
  cuda)
    tag=${TAG:-dev-cuda}
    base=${BASE:-nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04}
    runtime_base=${RUNTIME_BASE:-nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04}
    pull=${PULL:-missing} ;;
  *) echo "image.sh: VARIANT must be cpu or cuda, got \"$variant\"" >&2; exit 2 ;;
esac
targets=${TARGETS:-stella stella-runtime stella-operator}
image=localhost/stella:$tag

die() { echo "image.sh: $*" >&2; exit 1; }

b() {
  mkdir -p "$tmpdir"
  # buildah keeps RUN --mount=type=cache directories (the ccache) under TMPDIR.
  BUILDAH_ISOLATION=chroot TMPDIR="$tmpdir" buildah --root "$dir/storage" --runroot "$dir/run" --storage-driver vfs "$@"
}

need_tools() {
  [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and buildah's chroot isolation); run as root or with sudo"
  command -v buildah >/dev/null && command -v debootstrap >/dev/null || bash "$repo/scripts/setup.sh" buildah debootstrap
}

have_image() { b images --quiet "$1" >/dev/null 2>&1 && [ -n "$(b images --quiet "$1" 2>/dev/null)" ]; }

# The URI of this machine's apt source for SUITE (first match), from one-line
# (.list) and deb822 (.sources) files.
apt_uri() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                        if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; hit = 0; enabled = 1
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
          if ($i ~ /^Suites:/) { n = split($i, a, /[ \t]+/); for (j = 2; j <= n; j++) if (a[j] == s) hit = 1 }
          if ($i ~ /^Types:/ && $i !~ /[ \t]deb([ \t]|$)/) hit = 0
          if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
        }
        if (hit && enabled && uri != "") { print uri; exit } }' "$f"
  done | head -n1
}

cmd_base() {
  need_tools
  if have_image "$local_base"; then echo "image.sh: $local_base present"; return; fi
  local mirror security rootfs ctr
  mirror=$(apt_uri bookworm)
  [ -n "$mirror" ] || die "no apt source for suite bookworm in /etc/apt/sources.list{,.d}: debootstrap needs a Debian mirror"
  security=$(apt_uri bookworm-security)
  rootfs="$dir/rootfs"
  rm -rf "$rootfs"
  echo "image.sh: debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap failed (full log: $dir/debootstrap.log)"; }
  # The same suites as debian:bookworm-slim, from this machine's mirrors.
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror"
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security"
    fi
  } > "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  ctr=$(b from scratch)
  b copy "$ctr" "$rootfs/" / >/dev/null
  b config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  b commit --rm --quiet "$ctr" "$local_base" >/dev/null
  rm -rf "$rootfs"
  echo "image.sh: $local_base committed"
}

cmd_build() {
  local start end layers target
  case "${LAYERS:-1}" in 1) layers=true ;; 0) layers=false ;; *) die "LAYERS must be 0 or 1, got \"$LAYERS\"" ;; esac
  for target in $targets; do
    case "$target" in stella|stella-runtime|stella-operator) ;; *) die "TARGETS: unknown target \"$target\" (stella, stella-runtime, stella-operator)" ;; esac
  done
  local args=(--build-arg "BASE=$base" --build-arg "RUNTIME_BASE=$runtime_base" --build-arg "VARIANT=$variant"
              --build-arg "JOBS=${JOBS:-2}")
  if [ "$variant" = cuda ]; then
    [ -n "${LIBTORCH_URL:-}" ] || die "LIBTORCH_URL: required for VARIANT=cuda (see docs/container.md), got an empty value"
    args+=(--build-arg "LIBTORCH_URL=$LIBTORCH_URL")
  fi
  need_tools
  [ "$base" = "$local_base" ] && cmd_base
  mkdir -p "$tmpdir"
  for target in $targets; do
    start=$(date +%s)
    nice -n 10 env TMPDIR="$tmpdir" buildah --root "$dir/storage" --runroot "$dir/run" --storage-driver vfs \
      bud --layers="$layers" --isolation chroot --pull="$pull" "${args[@]}" --target "$target" \
      -t "localhost/$target:$tag" -f "$repo/Dockerfile" "$repo"
    end=$(date +%s)
    echo "image.sh: built localhost/$target:$tag ($variant) in $((end - start)) s"
  done
}

cmd_size() {
  local img=${1:-$image} tmp
  have_image "$img" || die "no image $img in $dir/storage (scripts/image.sh build first)"
  # The layers as a registry would hold them: gzip-compressed (what a node
  # pulls) and unpacked (what the image takes on disk).
  tmp=$(mktemp -d "$tmpdir/size.XXXXXX")
  b push --quiet "$img" "oci:$tmp/oci" >/dev/null || { rm -rf "$tmp"; die "buildah push $img to an OCI layout failed"; }
  python3 - "$tmp/oci" "$img" <<'PY'
import gzip, json, os, sys
root, name = sys.argv[1], sys.argv[2]
def blob(digest):
    return os.path.join(root, "blobs", *digest.split(":", 1))
index = json.load(open(os.path.join(root, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
packed = unpacked = 0
for layer in manifest["layers"]:
    packed += layer["size"]
    if layer["mediaType"].endswith("+gzip"):
        with gzip.open(blob(layer["digest"])) as f:
            while chunk := f.read(1 << 20):
                unpacked += len(chunk)
    else:
        unpacked += layer["size"]
print(f"image {name} layers {len(manifest['layers'])} unpacked_bytes {unpacked} gzip_bytes {packed}")
PY
  local rc=$?
  rm -rf "$tmp"
  return $rc
}

case "${1:-}" in
  build) cmd_build ;;
  base) cmd_base ;;
  buildah) shift; need_tools; b "$@" ;;
  size) shift; cmd_size "$@" ;;
  clean) rm -rf "$dir" "$tmpdir"; echo "image.sh: removed $dir $tmpdir" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
