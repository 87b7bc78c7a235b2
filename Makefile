# Two commands for a new user: `make demo` and `make test`. Both build .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(PY) -m jobs.augment --runner=DirectRunner

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) out build *.egg-info
