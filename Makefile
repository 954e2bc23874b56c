# Entry points. `make demo` and `make test` work on a fresh Debian machine:
# each installs what is missing, configures, builds, then runs.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
WERROR ?= OFF
CTEST_ARGS ?=

.PHONY: setup configure build testbin test demo nccl-check clean setup-fuzz fuzz sanitize tsan image image-test image-clean

setup:
	bash scripts/setup.sh

configure: setup
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTELLA_WERROR=$(WERROR)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The Kubernetes binaries the operator tests run against are built once,
# here, before ctest (minutes when cold, cached after): never inside a test's
# own timeout. Without them those tests report themselves skipped.
testbin: setup
	bash scripts/testbin.sh >/dev/null || echo "WARNING: scripts/testbin.sh failed; the Kubernetes tests will be skipped"

test: build testbin
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The demo needs only the two binaries, not the test suites.
demo: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target stella stella-runtime
	$(BUILD_DIR)/bin/stella run examples/demo.yaml --json $(BUILD_DIR)/demo-summary.json

# Compiles and links the NCCL (GPU) intra-cluster path against NCCL's PyPI
# wheel; no GPU is needed to build it.
nccl-check: setup
	cmake -S . -B $(BUILD_DIR)-nccl -G Ninja -DSTELLA_WERROR=$(WERROR) -DSTELLA_BUILD_TESTS=OFF \
	  -DSTELLA_BUILD_BENCH=OFF -DSTELLA_WITH_NCCL=ON -DSTELLA_NCCL_ROOT=$$(bash scripts/fetch-nccl.sh)
	cmake --build $(BUILD_DIR)-nccl -j $(JOBS) --target stella_exchange stella-runtime

clean:
	rm -rf $(BUILD_DIR)

# ---- Hardening (issue 7): fuzzing and sanitizer builds, all with clang and
# without libtorch (it is not sanitizer-instrumented, so the torch-dependent
# tests -- compute, exchange, optim_torch, runtime e2e, bench smoke -- are out
# of scope here; the ordinary `make test` runs them).
FUZZ_BUILD_DIR ?= build-fuzz
ASAN_BUILD_DIR ?= build-asan
TSAN_BUILD_DIR ?= build-tsan
HARDENING_CMAKE = -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DSTELLA_WITH_TORCH=OFF -DSTELLA_BUILD_BENCH=OFF -DSTELLA_WERROR=$(WERROR)
# Concurrency-heavy suites that `make tsan` builds and runs (net_shaper_rate_test
# is left out: it asserts wall-clock rates, which TSan's slowdown would skew;
# the operator suites that go through cpprestsdk are left out too: the
# distro's libcpprest is not instrumented, so TSan reports its internal
# pplx/exception_ptr handoffs as races).
TSAN_TESTS ?= net_frame_test net_tcp_test base_token_bucket_test net_shaped_stream_test \
  net_framed_connection_test net_tls_stream_test metrics_test cli_supervisor_test optim_test pipeline_test \
  operator_kube_workqueue_test wan_mesh_test
# "^(a|b|...)$" for ctest -R ($(eval) is empty, so the subst replaces spaces).
TSAN_TEST_REGEX = ^($(subst $(eval) ,|,$(strip $(TSAN_TESTS))))$$

setup-fuzz:
	bash scripts/setup-fuzz.sh

# libFuzzer targets (tests/fuzz) from the committed seeds; fails on any
# finding or if fewer than 1,000,000 inputs ran in total. Findings are saved
# under $(FUZZ_BUILD_DIR)/artifacts.
fuzz: setup setup-fuzz
	cmake -S . -B $(FUZZ_BUILD_DIR) $(HARDENING_CMAKE) -DSTELLA_FUZZ=ON \
	  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target stella_fuzzers
	bash tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD_DIR)

# The whole torch-free test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: setup setup-fuzz
	cmake -S . -B $(ASAN_BUILD_DIR) $(HARDENING_CMAKE) \
	  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The concurrency-heavy suites under ThreadSanitizer. The optimizer's
# target_clones are off: their ifunc resolvers run before TSan is initialized
# and crash in __tsan_func_entry.
tsan: setup setup-fuzz
	cmake -S . -B $(TSAN_BUILD_DIR) $(HARDENING_CMAKE) \
	  -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer -DSTELLA_OPTIM_NO_MULTIVERSION"
	cmake --build $(TSAN_BUILD_DIR) -j $(JOBS) --target $(TSAN_TESTS)
	cd $(TSAN_BUILD_DIR) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TEST_REGEX)' $(CTEST_ARGS)

# ---- Container image (issue 6): the Dockerfile built with buildah on a Debian
# base made by debootstrap; no Docker engine or registry needed for the cpu
# variant. VARIANT=cuda needs a registry and LIBTORCH_URL (docs/container.md).
VARIANT ?= cpu

image:
	VARIANT=$(VARIANT) bash scripts/image.sh build

# Builds the cpu image in a storage of its own, runs the binaries and a short
# real job inside it, then removes every image and layer it made.
image-test:
	bash tests/image/image_test.sh

image-clean:
	bash scripts/image.sh clean
