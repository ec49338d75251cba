# One command per job; the same checks run locally and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APP    ?=
ARGS   ?=

.PHONY: run test lint typecheck unit integration check routes clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/gfe-proxy serve $(APP) $(ARGS)

check: $(VENV)/.installed
	$(VENV)/bin/gfe-proxy check $(APP)

routes: $(VENV)/.installed
	$(VENV)/bin/gfe-proxy routes $(APP)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check gfe_proxy tests benchmarks

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

unit: $(VENV)/.installed-test
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed-test
	$(PY) -m pytest -m integration

test: lint typecheck
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
