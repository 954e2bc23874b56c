# Stella's container image: `stella` (CLI), `stella-runtime` (one training
# process) and `stella-operator` (when the source tree defines that target),
# with the Fashion-MNIST data set and examples/, running as uid 65532.
#
#   VARIANT=cpu  (default) Debian bookworm and Debian's libtorch (CPU).
#   VARIANT=cuda a CUDA devel/runtime base pair, libtorch with CUDA from
#                LIBTORCH_URL and NCCL from the base image. Untested here: see
#                docs/container.md for the arguments it expects.
#
#   buildah bud --layers -t stella:dev .           # or docker build -t stella:dev .
#   buildah bud --layers --target stella-operator -t stella-operator:dev .
#   make image / make image-test                   # scripts/image.sh: buildah, local base
#
# Layer order is deliberate: with the vfs storage driver (what works here)
# every instruction, metadata ones included, stores a full copy of the root
# file system, so metadata goes before the big layers, while the file system
# is still small, and the heavy steps are few.

# Builder base; the runtime base defaults to the same image.
ARG BASE=debian:bookworm-slim
ARG RUNTIME_BASE=${BASE}

# ---------------------------------------------------------------- builder
FROM ${BASE} AS builder
# VARIANT: cpu | cuda. JOBS: compile jobs. LIBTORCH_URL (cuda only): a
# cxx11-ABI "shared-with-deps" libtorch zip built for the base image's CUDA,
# unpacked at /opt/stella/libtorch: the path it keeps in the runtime image, so
# the binaries' build-tree RUNPATH finds it there too.
ARG VARIANT=cpu
ARG JOBS=2
ARG LIBTORCH_URL=

# Build dependencies; binutils gives readelf to scripts/runtime-packages.sh.
# libcpprest-dev is for stella-operator. In the cuda variant libtorch comes
# from LIBTORCH_URL (Debian's is CPU-only) and NCCL/cuda_runtime.h from the
# CUDA devel base, gathered into one prefix as STELLA_NCCL_ROOT expects.
RUN set -eu; \
    case "$VARIANT" in \
      cpu) variant_packages="libtorch-dev libgloo-dev" ;; \
      cuda) variant_packages="libgloo-dev curl ca-certificates unzip"; \
        [ -n "$LIBTORCH_URL" ] || { echo "build-arg LIBTORCH_URL: required for VARIANT=cuda (a cxx11-ABI CUDA libtorch zip), got an empty value" >&2; exit 1; }; \
        [ -f /usr/include/nccl.h ] && [ -f /usr/local/cuda/include/cuda_runtime.h ] || { echo "build-arg BASE: VARIANT=cuda needs a CUDA devel image with NCCL (e.g. nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04); /usr/include/nccl.h or /usr/local/cuda/include/cuda_runtime.h is missing" >&2; exit 1; } ;; \
      *) echo "build-arg VARIANT: must be cpu or cuda, got \"$VARIANT\"" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ make pkg-config ccache binutils \
      libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev libssl-dev libcpprest-dev $variant_packages; \
    if [ "$VARIANT" = cuda ]; then \
      curl -fsSL "$LIBTORCH_URL" -o /tmp/libtorch.zip; \
      mkdir -p /opt/stella; unzip -q /tmp/libtorch.zip -d /opt/stella; rm /tmp/libtorch.zip; \
      [ -f /opt/stella/libtorch/share/cmake/Torch/TorchConfig.cmake ] || { echo "build-arg LIBTORCH_URL: $LIBTORCH_URL did not unpack to libtorch/share/cmake/Torch" >&2; exit 1; }; \
      mkdir -p /opt/nccl/lib; cp -as /usr/local/cuda/include /opt/nccl/include; \
      ln -s /usr/include/nccl.h /opt/nccl/include/nccl.h; \
      ln -s "$(readlink -f /usr/lib/*-linux-gnu/libnccl.so)" /opt/nccl/lib/libnccl.so; \
      ln -s "$(readlink -f /usr/local/cuda/lib64/libcudart.so)" /opt/nccl/lib/libcudart.so; \
    fi; \
    rm -rf /var/lib/apt/lists/*

# Only what the build reads changes this layer's cache key (.dockerignore
# drops docs, tests, benches and build trees).
COPY . /src

# Compiles only the image's binaries, tests and benches off, at -O2 like the
# default RelWithDebInfo build but without -g (the binaries are stripped, and
# debug info is most of the compile time). The ccache cache
# mount survives between builds of the same storage (not in the image). The
# operator is built when the source tree defines its target, so the image
# picks it up without a change here. /out ends up holding stella/{bin,
# examples} (and stella/libtorch/lib for cuda) and runtime-packages.txt;
# nothing else from the build is kept.
RUN --mount=type=cache,id=stella-ccache,target=/ccache \
    set -eu; \
    export CCACHE_DIR=/ccache CCACHE_MAXSIZE=2G; \
    extra=""; unpackaged=""; \
    if [ "$VARIANT" = cuda ]; then \
      extra="-DCMAKE_PREFIX_PATH=/opt/stella/libtorch -DSTELLA_WITH_NCCL=ON -DSTELLA_NCCL_ROOT=/opt/nccl"; \
      unpackaged="--unpackaged /opt/stella/libtorch --host-provided libcuda.so.1"; \
    fi; \
    cmake -S /src -B /tmp/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DSTELLA_BUILD_TESTS=OFF -DSTELLA_BUILD_BENCH=OFF $extra; \
    targets="stella stella-runtime"; \
    if ninja -C /tmp/build -t targets all | grep -q '^stella-operator:'; then targets="$targets stella-operator"; \
    else echo "note: this source tree defines no stella-operator target; the image has stella and stella-runtime only"; fi; \
    cmake --build /tmp/build -j "$JOBS" --target $targets; \
    mkdir -p /out/stella/bin; \
    for t in $targets; do \
      f=$(find /tmp/build -type f -name "$t" -perm -u+x | head -n1); \
      [ -n "$f" ] || { echo "built target $t but found no executable named $t under /tmp/build" >&2; exit 1; }; \
      install -m 0755 -s "$f" /out/stella/bin/; \
    done; \
    cp -r /src/examples /out/stella/examples; \
    if [ "$VARIANT" = cuda ]; then mkdir -p /out/stella/libtorch; cp -a /opt/stella/libtorch/lib /out/stella/libtorch/; fi; \
    bash /src/scripts/runtime-packages.sh $unpackaged /out/stella/bin/* > /out/runtime-packages.txt; \
    echo "runtime packages:" $(cat /out/runtime-packages.txt); \
    ccache --show-stats | grep -Ei 'hits|misses' || true; \
    rm -rf /tmp/build

# ---------------------------------------------------------------- runtime
FROM ${RUNTIME_BASE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="stella" \
      org.opencontainers.image.description="Stella: one model trained across clusters joined by slow WAN links"
# Writable at run time: /tmp (worker logs, --json summaries) and /checkpoints
# (mount a volume; spec.checkpoint.path). The root file system can be mounted
# read-only. HOME=/tmp so nothing looks for a home directory elsewhere.
ENV PATH=/opt/stella/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    STELLA_IMAGE_VARIANT=${VARIANT}
WORKDIR /opt/stella
ENTRYPOINT ["stella"]
CMD ["--help"]

# Runtime packages of the binaries (computed in the builder, so this layer is
# reused while the list is unchanged), the data set, the user, and no setuid
# or setgid file (su, mount, passwd...: nothing to escalate through). Packages
# the base already has are left alone (CUDA bases pin theirs). Package docs,
# man pages and locales are not installed, as debian:bookworm-slim does.
COPY --from=builder /out/runtime-packages.txt /usr/share/stella/runtime-packages.txt
RUN set -eu; \
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
      > /etc/dpkg/dpkg.cfg.d/stella-slim; \
    want=""; \
    for p in $(cat /usr/share/stella/runtime-packages.txt) dataset-fashion-mnist; do \
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want="$want $p"; \
    done; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $want; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    groupadd --gid 65532 stella; \
    useradd -K UID_MAX=65534 --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin stella; \
    install -d -o 65532 -g 65532 -m 0700 /checkpoints; \
    find / -xdev -type f -perm /6000 -exec chmod ug-s {} +

# Binaries and examples (and the cuda variant's libtorch/lib, which the
# binaries' RUNPATH names), root-owned and read-only for the user.
COPY --from=builder /out/stella /opt/stella
USER 65532:65532

# ---------------------------------------------------------------- targets
# One image content, three entry points. The Helm chart runs the operator
# image with arguments only (image stella-operator) and gives the operator
# stella-runtime as the workers' default image, so each gets its binary as
# ENTRYPOINT: `--target stella-operator`, `--target stella-runtime`. The
# last stage, `stella` (the CLI), is what a plain build produces.
FROM runtime AS stella-operator
ENTRYPOINT ["stella-operator"]
CMD []

FROM runtime AS stella-runtime
ENTRYPOINT ["stella-runtime"]
CMD []

FROM runtime AS stella
