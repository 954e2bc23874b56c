#!/usr/bin/env bash
# Fetches NCCL and CUDA runtime headers/libraries from their PyPI wheels (NCCL
# is not packaged in Debian) into a cache keyed by version, and prints the
# prefix to pass as -DSTELLA_NCCL_ROOT. Only needed to build the GPU
# intra-cluster path (-DSTELLA_WITH_NCCL=ON); CPU builds never call this.
set -euo pipefail

NCCL_VERSION=${NCCL_VERSION:-2.32.3}
CUDART_VERSION=${CUDART_VERSION:-12.9.79}
# nvcc's wheel carries the crt/ headers that cuda_runtime.h includes.
NVCC_VERSION=${NVCC_VERSION:-12.9.86}
# CCCL's wheel carries nv/target, which cuda_fp16.h includes.
CCCL_VERSION=${CCCL_VERSION:-12.9.27}
cache=${STELLA_CACHE:-$HOME/.cache/stella}/nccl/${NCCL_VERSION}-${CUDART_VERSION}-${NVCC_VERSION}-${CCCL_VERSION}

if [ ! -f "$cache/.complete" ]; then
  rm -rf "$cache" && mkdir -p "$cache/wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheels" \
    "nvidia-nccl-cu12==${NCCL_VERSION}" "nvidia-cuda-runtime-cu12==${CUDART_VERSION}" \
    "nvidia-cuda-nvcc-cu12==${NVCC_VERSION}" "nvidia-cuda-cccl-cu12==${CCCL_VERSION}" >&2
  for whl in "$cache"/wheels/*.whl; do
    python3 -m zipfile -e "$whl" "$cache/unpacked" >&2
  done
  mkdir -p "$cache/include" "$cache/lib"
  cp -r "$cache"/unpacked/nvidia/nccl/include/. "$cache"/unpacked/nvidia/cuda_runtime/include/. "$cache/include/"
  cp -r "$cache"/unpacked/nvidia/cuda_nvcc/include/crt "$cache"/unpacked/nvidia/cuda_cccl/include/nv "$cache/include/"
  cp "$cache"/unpacked/nvidia/nccl/lib/libnccl.so.2 "$cache"/unpacked/nvidia/cuda_runtime/lib/libcudart.so.12 "$cache/lib/"
  ln -sf libnccl.so.2 "$cache/lib/libnccl.so"
  ln -sf libcudart.so.12 "$cache/lib/libcudart.so"
  rm -rf "$cache/wheels" "$cache/unpacked"
  touch "$cache/.complete"
fi
echo "$cache"
