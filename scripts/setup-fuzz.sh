#!/usr/bin/env bash
# Installs the Debian packages the hardening builds need on top of
# scripts/setup.sh: clang with libFuzzer and the sanitizer runtimes (`make
# fuzz`, `make sanitize`, `make tsan`) and llvm-symbolizer for readable stack
# traces. Kept apart so that the everyday build stays lean. Idempotent.
set -euo pipefail
# clang 14 (Debian 12's default); libclang-rt-14-dev holds libFuzzer and the
# ASan/UBSan/TSan runtimes, which clang-14 only recommends; llvm has
# llvm-symbolizer.
exec bash "$(dirname "$0")/setup.sh" clang libclang-rt-14-dev llvm
