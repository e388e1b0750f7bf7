# `make demo` and `make test` set everything up on a fresh machine (a .venv from pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tfjit.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(VENV)/bin/tfjit bench

# On a GPU machine, offline: uses the system python3's packages (PYTHON=... to pick another).
gpu-check:
	PYTHON=$(PYTHON) bench/gpu_check.sh

clean:
	rm -rf $(VENV) build *.egg-info
