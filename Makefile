# One command per job; the same checks run locally and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APP    ?=
ARGS   ?=

.PHONY: run test lint typecheck unit integration check routes clean bench

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

# Benchmarks (issue 6, benchmarks/README.md): Debian's nginx, varnish and wrk when absent,
# py-spy into the venv for benchmarks/profile.py, then every system; ARGS=--quick for ~4 min.
bench: $(VENV)/.installed
	@missing=""; for p in nginx varnish wrk; do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "bench: installing$$missing"; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(VENV)/bin/py-spy || $(PY) -m pip install --quiet py-spy
	$(PY) benchmarks/bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
