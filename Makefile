# Entry points. `make demo` and `make test` work on a fresh Debian machine:
# each installs what is missing, configures, builds, then runs.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
WERROR ?= OFF
CTEST_ARGS ?=

.PHONY: setup configure build test demo nccl-check clean

setup:
	bash scripts/setup.sh

configure: setup
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTELLA_WERROR=$(WERROR)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
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
	cmake --build $(BUILD_DIR)-nccl -j $(JOBS) --target stella_exchange

clean:
	rm -rf $(BUILD_DIR)
