#!/usr/bin/env bash
# Prints, one per line and sorted, the Debian/Ubuntu packages that own the
# shared libraries the given binaries link directly (their DT_NEEDED entries,
# resolved to files as ldd resolves them), so the image's runtime stage
# installs exactly those runtime packages, never -dev ones; apt brings what
# those libraries need in turn through the packages' own dependencies.
# Runs inside the image's builder stage (Dockerfile); needs binutils (readelf).
#
#   runtime-packages.sh [--unpackaged PREFIX]... [--host-provided SONAME]... BINARY...
#
# A library under an --unpackaged PREFIX (the cuda variant's libtorch, which
# the image copies instead of installing) is skipped; a --host-provided SONAME
# (the cuda variant's libcuda.so.1, which the NVIDIA container runtime mounts
# from the host driver) may be unresolved. Fails, naming the binary or
# library, when ldd cannot resolve any other library or no package owns one:
# an image missing a library must not build.
set -euo pipefail

usage="usage: runtime-packages.sh [--unpackaged PREFIX]... [--host-provided SONAME]... BINARY..."
unpackaged=()
host_provided=()
while [ $# -gt 0 ]; do
  case "$1" in
    --unpackaged|--host-provided)
      [ $# -ge 2 ] || { echo "runtime-packages.sh: $1 needs a value" >&2; echo "$usage" >&2; exit 2; }
      if [ "$1" = --unpackaged ]; then unpackaged+=("${2%/}/"); else host_provided+=("$2"); fi
      shift 2 ;;
    -*) echo "runtime-packages.sh: unknown flag $1" >&2; echo "$usage" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }

# Which package owns PATH? dpkg knows the path as the package shipped it, which
# on a merged-/usr system may differ from ldd's by a /usr prefix or a symlink.
owner() {
  local path=$1 real candidates c out
  real=$(readlink -f "$path")
  candidates=("$path" "$real")
  for c in "$path" "$real"; do
    case "$c" in
      /usr/lib/*) candidates+=("${c#/usr}") ;;
      /lib/*) candidates+=("/usr$c") ;;
    esac
  done
  for c in "${candidates[@]}"; do
    if out=$(dpkg-query -S "$c" 2>/dev/null); then
      # "libfoo1:amd64: /usr/lib/..." or "libfoo1, libfoo1-dbg: ..." -> libfoo1
      echo "${out%%:*}" | awk -F', ' '{print $1}' | head -n1
      return 0
    fi
  done
  return 1
}

declare -A packages=()
for bin in "$@"; do
  [ -x "$bin" ] || { echo "runtime-packages.sh: $bin: not an executable file" >&2; exit 1; }
  out=$(ldd "$bin") || { echo "runtime-packages.sh: ldd $bin failed" >&2; exit 1; }
  missing=$(grep 'not found' <<<"$out" || true)
  for soname in "${host_provided[@]}"; do
    missing=$(grep -v "^[[:space:]]*$soname " <<<"$missing" || true)
  done
  if [ -n "$missing" ]; then
    echo "runtime-packages.sh: $bin: libraries not found:" >&2
    echo "$missing" >&2
    exit 1
  fi
  # ldd lines "libfoo.so.1 => /path/libfoo.so.1 (0x...)" map each soname to
  # its file; the dynamic loader (no "=>") belongs to libc6, present anywhere.
  declare -A path_of=()
  while read -r soname path; do path_of[$soname]=$path; done \
    < <(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$out")
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*Shared library: \[\(.*\)\]/\1/p')
  for soname in $needed; do
    lib=${path_of[$soname]:-}
    if [ -z "$lib" ]; then
      case "$soname" in ld-linux*) continue ;; esac
      for h in "${host_provided[@]}"; do [ "$soname" = "$h" ] && continue 2; done
      echo "runtime-packages.sh: $bin needs $soname, which ldd did not resolve" >&2
      exit 1
    fi
    skip=0
    for prefix in "${unpackaged[@]}"; do
      case "$lib" in "$prefix"*) skip=1 ;; esac
    done
    [ $skip -eq 1 ] && continue
    pkg=$(owner "$lib") || { echo "runtime-packages.sh: $bin needs $lib, which no installed package owns" >&2; exit 1; }
    packages[$pkg]=1
  done
  unset path_of
done
printf '%s\n' "${!packages[@]}" | sort
