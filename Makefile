# bvisor — two commands for a fresh machine:
#   make demo   set up .venv, run one confined command recorded in the default ledger, verify it
#   make test   set up .venv (with test extras) and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PY_SOURCES := bvisor front launcher ledger planner replay
# make puts a variable given on its command line (`make demo PYTHON=/usr/bin/python3`) into
# every recipe's environment. The service `make demo`'s run starts would then hold a
# PYTHON* variable the user's shell lacks, and refuse their later commands as another
# install's (they would run, unserved, until it idled out). The recipes name the
# interpreter themselves.
unexport PYTHON VENV

.PHONY: demo test lint typecheck check bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# compat: the checkout joins sys.path through a plain path in a .pth file. The default
	@# (strict) editable install imports a finder, and pathlib, re and more with it, into
	@# every interpreter of this venv: ~25 ms before any `bvisor` command does anything.
	$(PY) -m pip install --quiet -e '.[test,dev]' --config-settings editable_mode=compat
	@# Bytecode now, so that no command compiles bvisor's modules where the environment
	@# says not to write bytecode (PYTHONDONTWRITEBYTECODE): ~200 ms a command otherwise.
	$(PY) -m compileall -q $(PY_SOURCES)
	touch $(STAMP)

demo: $(STAMP)
	@echo "== what this kernel can enforce"
	$(BIN)/bvisor probe
	@echo "== a confined run (a private root: a scratch directory writable, the system read-only, nothing else; no network; its PID namespace ended with it)"
	@# From a scratch directory: a write root over this checkout (bvisor's own code, with the
	@# editable install) is refused — the workload could rewrite the next bvisor command.
	cd "$$(mktemp -d)" && $(abspath $(BIN))/bvisor run -- /bin/sh -c 'echo "hello from inside the boundary (uid $$(id -u) in a user namespace)"; \
	  touch /etc/bvisor-demo 2>/dev/null || echo "/etc: read-only"; \
	  ls /root >/dev/null 2>&1 || echo "/root: invisible"; \
	  echo "network interfaces: $$(ls /sys/class/net 2>/dev/null || echo none visible)"'

	@echo "== the ledger chain, re-derived from storage"
	$(BIN)/bvisor-ledger verify
	@echo "== the run just made, re-verified from the ledger alone (bvisor-replay audits them all)"
	$(BIN)/bvisor-replay --last

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(PY) benchmarks/targets.py
	$(PY) benchmarks/launch.py
	$(PY) benchmarks/private_root.py
	$(PY) benchmarks/ledger.py
	$(PY) benchmarks/replay.py
	$(PY) benchmarks/capture.py
	$(PY) benchmarks/deadline.py
	$(PY) benchmarks/denials.py
	$(PY) benchmarks/netproxy.py

clean:
	rm -rf $(VENV) build *.egg-info
