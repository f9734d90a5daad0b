# The two entry points of a fresh machine: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick lint bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 first: it is the CPU build on local disk; any other spec pulls a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[ray,dashboard,export,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flsim run scenarios/quickstart.yaml --report results/quickstart/report.html

test: $(STAMP)
	sh scripts/install-system-deps.sh
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -ra

test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not ray"

# lint-imports: the layers of docs/architecture.md, written as contracts in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf results .pytest_cache
