#!/usr/bin/env bash
# CI hardening stage (issue 7, "Hostile and broken input"): a fresh clone, no
# state. Installs clang, then
#   make fuzz      libFuzzer targets from the committed seeds, >= 1,000,000
#                  executions in total, no crash, leak, timeout or OOM;
#   make sanitize  every torch-free test under ASan + UBSan;
#   make tsan      the concurrency-heavy tests under TSan.
# All three build with -Werror in their own build dirs (build-fuzz,
# build-asan, build-tsan) and fail on the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
make fuzz sanitize tsan WERROR=ON
