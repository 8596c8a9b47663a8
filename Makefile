# `make run` and `make test` are the two commands that set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint format install clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
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

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/parity.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
