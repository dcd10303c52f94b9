# Two commands do all set-up on a fresh machine: `make lab` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Jupyter refuses to run as root unless told; CI and these machines run as root
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test bench venv chromium redis openssh-server clean

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

test: $(STAMP) chromium redis openssh-server
	$(VENV)/bin/lint-imports --no-cache  # the layers' contracts (pyproject.toml)
	$(PY) -m pytest -p no:cacheprovider

# The full benchmark (about half an hour): pinned PM2 and supervisor go into bench/.cache/ first.
# BENCH_ARGS=--quick gives the tiny run the test suite also makes.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) bench/install_peers.py
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
