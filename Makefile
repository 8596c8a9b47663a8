# `make run` and `make test` are the two commands that set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make test` runs the suite on this many pytest-xdist workers (0: in one process).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(); print(min(8, n or 1))")

# pip installs without compiling byte-code (20 s less); each module is compiled once, when it
# is first imported: by `make run` or `make test` at the latest, which write it even where the
# shell sets PYTHONDONTWRITEBYTECODE (there, .venv/bin/dlexp run before either compiles anew).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test lint format install clean bench gpu-prepare gpu-dry-run

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install --no-compile -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Trains the default experiment (LeNet-5 on the bundled MNIST sample), offline.
run: $(STAMP)
	$(VENV)/bin/dlexp

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# A module's tests stay on one worker (--dist loadscope): its shared fixtures are built once.
test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

bench: $(STAMP)
	$(PY) benchmarks/parity.py

# The wheels a lent GPU machine lacks, into .whl/ (carried by the device call; see README, Speed).
gpu-prepare:
	PYTHON=$(PYTHON) bash benchmarks/gpu_prepare.sh

# benchmarks/gpu.sh end to end on the CPU, in an environment holding only what the GPU machine's
# image holds (.venv-gpu/, built once: a few minutes), with the wheels installed as it installs them.
gpu-dry-run:
	PYTHON=$(PYTHON) bash benchmarks/gpu_dry_run.sh

clean:
	rm -rf $(VENV) .venv-gpu .whl build dist *.egg-info .pytest_cache .ruff_cache
