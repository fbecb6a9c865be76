# Gureum - the two commands a user needs: `make run` (a local 3-node cluster) and `make test`.
# Both install what they need first (deploy/install-deps.sh), so a fresh Debian machine works.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
PYTEST     ?= .venv/bin/python -m pytest

# Docker (make image, compose-*): a local base image where no registry can be reached; the
# classic builder (the engine here is 20.10 without BuildKit; set DOCKER_BUILDKIT=1 to use it).
IMAGE          ?= gureum:latest
BASE_IMAGE     ?= gureum-base:bookworm
DOCKER_BUILDKIT ?= 0
PREFIX         ?= /usr/local

.PHONY: all deps build asan run test unit unit-asan cluster-test bench clean install image \
        compose-up compose-down compose-test compose-test-if-docker verify-unit

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

# The compose tests need Docker: they run in compose-test, not here.
cluster-test: build
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum $(PYTEST) -v -p no:cacheprovider --ignore=cluster-test/compose cluster-test

# Unit tests (plain and under ASan+UBSan), the multi-node tests against real processes, then the
# compose tests when a Docker engine answers.
test: unit unit-asan cluster-test compose-test-if-docker

# Install the binary, the systemd unit and example config (share/gureum) and the docs
# (DESTDIR is honoured; docs/deploy.md says what to do next).
install: build
	cmake --install $(BUILD) --prefix $(PREFIX) --strip

# systemd-analyze verify of deploy/gureum.service, in a temporary root (see the script).
verify-unit: build
	./deploy/verify-unit.sh $(BUILD)/gureum

# The node image: a Debian base made locally with debootstrap (cached), then deploy/Dockerfile.
# Any other BASE_IMAGE (e.g. debian:bookworm where a registry answers) is used as it is.
image: deps
	@if [ "$(BASE_IMAGE)" = gureum-base:bookworm ]; then ./deploy/make-base-image.sh; fi
	DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) docker build -f deploy/Dockerfile \
	  --build-arg BASE=$(BASE_IMAGE) -t $(IMAGE) .
	@docker image ls $(IMAGE)

# A five-node cluster in containers (deploy/docker-compose.yml); compose-down removes it all.
compose-up: image
	GUREUM_COMPOSE_IMAGE=$(IMAGE) ./deploy/compose.sh up

compose-down:
	./deploy/compose.sh down

# Faults against the compose cluster (a project of its own, removed at the end).
compose-test: image
	GUREUM_COMPOSE_IMAGE=$(IMAGE) $(PYTEST) -v -p no:cacheprovider cluster-test/compose

compose-test-if-docker:
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory compose-test; \
	else echo "compose tests SKIPPED: no Docker engine answers"; fi

# Benchmarks against named peers (Serf, etcd, nginx), printed as tables; not part of `make test`.
bench: build
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/gossip_bench.py
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/raft_bench.py
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/s3_bench.py
	GUREUM_BIN=$(CURDIR)/$(BUILD)/gureum .venv/bin/python cluster-test/bench/repl_bench.py

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
