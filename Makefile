PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The demo needs only the provider and Airflow: no browser driver, S3 server or docs builder.
DEMO_STAMP := $(VENV)/.demo-stamp
# The lowest Airflow this provider declares (pyproject: apache-airflow>=3.3.0); CI runs the unit suite on it.
LOWEST_AIRFLOW := 3.3.0
VENV_LOWEST := .venv-lowest
# ... on the lowest declared Python (pyproject: requires-python >=3.10), where the machine has it.
PYTHON_LOWEST ?= $(firstword $(wildcard /root/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null) $(PYTHON))

.PHONY: venv chromium test check test-lowest demo bench mutation screenshots clean

# The environment is rebuilt only when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The browser test drives Debian's Chromium: installed here when missing (as root, or with sudo).
chromium:
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# Tests are selected by their kind marker (tests/kinds.py, docs/testing.md), never by path.
# Lint, format, strict typing, every kind with branch coverage of runway_provider, then the packaging gate.
# First every kind but the cluster's in $(TEST_WORKERS) xdist workers, one test file per worker at a time
# (--dist loadfile: a dags module keeps its module's sandbox in one worker); then the system and browser
# tests in one process, since they share one Airflow cluster per session. (--dist loadgroup cannot keep
# them together: pytest-xdist 3.8 renames the test ids, which pytest 9.2 no longer reads.)
TEST_WORKERS ?= 3
test: venv chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy runway_provider
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not (system or browser)" --cov --cov-report=
	$(BIN)/python -m pytest -m "system or browser" --cov --cov-append \
		--cov-report=term-missing:skip-covered --cov-fail-under=90
	$(BIN)/python scripts/check_package.py

$(VENV_LOWEST)/.installed-stamp: pyproject.toml
	$(PYTHON_LOWEST) -m venv $(VENV_LOWEST)
	$(VENV_LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_LOWEST)/bin/python -m pip install --quiet "apache-airflow==$(LOWEST_AIRFLOW)" -e '.[test]'
	touch $@

# The in-process kinds (unit, timing, soak, docs: no Airflow process) on the lowest declared Airflow.
test-lowest: $(VENV_LOWEST)/.installed-stamp
	@$(VENV_LOWEST)/bin/python -c 'import sys, airflow; print(f"Unit suite on Python {sys.version.split()[0]}, Airflow {airflow.__version__}")'
	$(VENV_LOWEST)/bin/python -m pytest -q -n 4 -m "unit or timing or soak or docs"

demo: $(DEMO_STAMP)
	$(BIN)/python scripts/demo.py

# The inner loop: lint, types and the unit tests (-m unit: no Airflow process, browser, timing, soak or
# docs build) in 4 workers: on 2 cores many of them wait on the emulator's clock, not on the CPU.
# One test file per worker at a time (--dist loadfile): a module's moto server and its heavy imports
# (boto3, s3fs, OpenLineage) are then paid in one worker, not in each.
# Each worker compiles and assertion-rewrites every test module it collects: with PYTHONDONTWRITEBYTECODE
# set (as some shells set it) nothing is cached in __pycache__ and that costs each worker about 2 s of
# CPU on every run, so the tests run with it unset.
check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy runway_provider
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -x -n 4 --dist loadfile -m unit

# Regenerates docs/performance.md and its plots in docs/img/ (about 12 minutes; the polling
# schedules alone: `python benchmarks/run_all.py --only polling`, about 4 minutes).
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

# Mutation testing of the modules that decide outcomes, with their fast tests; prints the score
# per module (docs/testing.md). Not part of make test: a complete run took about 2.5 hours on
# 2 cores. Four children on 2 cores: many mutants' tests wait on the emulator rather than compute.
mutation: venv
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	rm -rf mutants
	$(BIN)/python -m mutmut run --max-children 4 || true
	# mutmut 3.8 now and then reports a killed mutant as surviving (seen under load): check each survivor
	# once more, by name, so that a survivor is one no test kills.
	$(BIN)/python -m mutmut run --max-children 4 \
		$$($(BIN)/python -m mutmut results | awk -F': ' '/: survived$$/ {print $$1}') || true
	$(BIN)/python scripts/mutation_report.py

# Retakes the UI screenshots in docs/img/ui/ with the browser tests (about a minute).
screenshots: venv chromium
	RUNWAY_SCREENSHOTS=docs/img/ui $(BIN)/python -m pytest -q -m browser

clean:
	rm -rf $(VENV) $(VENV_LOWEST) .airflow-demo .pytest_cache dist mutants
