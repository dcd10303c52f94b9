# Two commands do all set-up on a fresh machine: `make lab` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Jupyter refuses to run as root unless told; CI and these machines run as root
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test bench venv chromium redis openssh-server node peers coverage mutants clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m compileall -q tsm_notebook  # an editable install leaves no bytecode: every `tsm` call would compile
	touch $(STAMP)

venv: $(STAMP)

# Chromium for the browser tests: Debian's package (no browser download works here).
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing and cannot be installed here (not root): browser tests will fail"; \
	  fi; \
	fi

# Redis for the stack tests: Debian's redis-server, installed the same way.
redis:
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing and cannot be installed here (not root): stack tests will be skipped"; \
	  fi; \
	fi

# OpenSSH's server for the tests of other hosts (tsm -H), which run private sshd's on loopback.
openssh-server:
	@if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing openssh-server from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; \
	  else \
	    echo "sshd is missing and cannot be installed here (not root): the tests of other hosts are skipped"; \
	  fi; \
	fi

# The venv's bin leads PATH for the server, so its terminals and kernels (and what they start:
# `tsm`, `uvicorn`, what `%pip install` adds) find what the venv installed.
lab: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/jupyter lab --notebook-dir=notebooks --no-browser --ServerApp.ip=127.0.0.1 $(ROOT_FLAG) $(LAB_ARGS)

# npm for the pinned PM2 the benchmark test compares against: Debian's package when it is missing.
node:
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing npm from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
	  else \
	    echo "npm is missing and cannot be installed here (not root): the PM2 benchmark test will fail, saying so"; \
	  fi; \
	fi

# The pinned PM2 and supervisor (bench/.cache/); a failure is left for tests/test_bench.py to report.
peers: $(STAMP) node
	@$(PY) bench/install_peers.py >/dev/null || echo "the benchmark's peers could not be installed: tests/test_bench.py will say why"

test: $(STAMP) chromium redis openssh-server peers
	$(VENV)/bin/lint-imports --no-cache  # the layers' contracts (pyproject.toml)
	$(PY) -m pytest -p no:cacheprovider

# Branch coverage of the package, the daemons and `tsm` commands the tests start included (see
# [tool.coverage] in pyproject.toml). Not part of `make test` or CI: slower. COVERAGE_TESTS picks
# test files (default: the whole suite).
COVERAGE_VERSION := 7.17.3
COVERAGE_DIR := $(CURDIR)/.coverage-data
COVERAGE_TESTS ?=
COVERAGE_ENV := COVERAGE_DATA_DIR=$(COVERAGE_DIR)
coverage: $(STAMP) chromium peers
	$(PY) -m pip install -q 'coverage==$(COVERAGE_VERSION)'
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	-$(COVERAGE_ENV) COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml $(PY) -m coverage run -m pytest -p no:cacheprovider -q $(COVERAGE_TESTS)
	$(COVERAGE_ENV) $(PY) -m coverage combine -q
	$(COVERAGE_ENV) $(PY) -m coverage report
	@echo "core and engine:"
	@$(COVERAGE_ENV) $(PY) -m coverage report --include='tsm_notebook/core/*,tsm_notebook/engine/*' --format=total

# Mutation testing of the policy, stop, spec, units and rotation code (tools/mutants.py), with the
# pinned tool in a venv of its own. Not part of `make test` or CI: it takes MUTANTS_MINUTES.
COSMIC_RAY_VERSION := 8.7.0
MUTANTS_MINUTES ?= 15
MUTANTS_ARGS ?=
.venv-mutants/.installed:
	$(PYTHON) -m venv .venv-mutants
	.venv-mutants/bin/python -m pip install -q 'cosmic-ray==$(COSMIC_RAY_VERSION)'
	touch $@

mutants: $(STAMP) .venv-mutants/.installed
	.venv-mutants/bin/python tools/mutants.py --python $(PY) --minutes $(MUTANTS_MINUTES) $(MUTANTS_ARGS)

# The full benchmark (about an hour: the table, then bench/extras.py): pinned PM2 and supervisor go into bench/.cache/ first.
# BENCH_ARGS=--quick gives the tiny run the test suite also makes.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) bench/install_peers.py
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/extras.py

clean:
	rm -rf $(VENV) .venv-mutants .coverage-data build *.egg-info
