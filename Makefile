# Gureum - the two commands a user needs: `make run` (a local 3-node cluster) and `make test`.
# Both install what they need first (deploy/install-deps.sh), so a fresh Debian machine works.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
PYTEST     ?= .venv/bin/python -m pytest

.PHONY: all deps build asan run test unit unit-asan cluster-test bench clean

all: build

deps:
	./deploy/install-deps.sh

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(ASAN_BUILD)/Makefile:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGUREUM_SANITIZE=ON

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

asan: deps $(ASAN_BUILD)/Makefile
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# A local cluster: 3 nodes on 127.0.0.1-3 with every role; Ctrl-C stops it cleanly.
run: build
	./deploy/run-local.sh $(BUILD)/gureum

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit-asan: asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/deploy/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

cluster-test: build
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum $(PYTEST) -v -p no:cacheprovider cluster-test

# Unit tests (plain and under ASan+UBSan), then the multi-node tests against real processes.
test: unit unit-asan cluster-test

# Benchmarks against named peers (Serf, etcd, nginx), printed as tables; not part of `make test`.
bench: build
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/gossip_bench.py
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/raft_bench.py
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/s3_bench.py

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
