# Quick start: `make demo` (set up + run the study on simulated instruments)
#              `make test` (set up + run the whole test suite)
#              `make lint` (ruff, ruff format --check, import-linter layers, mypy)
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.labctl-installed

.PHONY: demo test lint setup bench clean browser mdbtools

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "labctl needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/labctl demo --out out/demo

# The dashboard's browser tests drive Debian's chromium (playwright-driven, no browser download).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { echo "installing Debian's chromium for the browser tests"; \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive sh -c \
	      'apt-get update -qq && apt-get install -y -qq chromium >/dev/null'; }

# `labctl import` reads Arbin .res (MS Access) files with Debian's mdbtools when it is installed
# (else with the pure-Python access-parser); the tests check both readers.
mdbtools:
	@command -v mdb-export >/dev/null || \
	  { echo "installing Debian's mdbtools for the Arbin .res import tests"; \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive sh -c \
	      'apt-get update -qq && apt-get install -y -qq mdbtools >/dev/null'; }

test: $(STAMP) browser mdbtools
	mkdir -p out/test-artifacts
	$(PY) -m pytest -q -p no:cacheprovider

# mypy and import-linter read the package as installed (drivers/ -> labctl.drivers...): see tools/.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/lint_imports.py
	$(PY) tools/typecheck.py

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out build *.egg-info
