#!/usr/bin/env bash
# Installs every Debian package that Stella's build, tests, benchmarks and demo
# need, or, given arguments, exactly those packages (scripts/setup-fuzz.sh).
# Idempotent: packages already present are skipped without touching apt.
set -euo pipefail

DEFAULT_PACKAGES=(
  # toolchain
  cmake make g++ ninja-build pkg-config
  # libraries (libtorch brings c10d ProcessGroupGloo)
  libtorch-dev libgloo-dev libcpprest-dev libyaml-cpp-dev libssl-dev zlib1g-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  # data, baselines, observability, traffic shaping, plots
  dataset-fashion-mnist python3-torch prometheus iproute2 gnuplot-nox curl procps ccache
  # stella bench (bench/*.py): manifests and the DDP baseline's data
  python3-yaml python3-numpy
)
if [ $# -gt 0 ]; then PACKAGES=("$@"); else PACKAGES=("${DEFAULT_PACKAGES[@]}"); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
