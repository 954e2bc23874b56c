# Entry points. `make demo` and `make test` work on a fresh Debian machine:
# each installs what is missing, configures, builds, then runs.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
WERROR ?= OFF
CTEST_ARGS ?=

.PHONY: setup configure build test demo bench clean

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

clean:
	rm -rf $(BUILD_DIR)
