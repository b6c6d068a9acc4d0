PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The demo needs only the provider and Airflow: no browser driver, S3 server or docs builder.
DEMO_STAMP := $(VENV)/.demo-stamp
# The Airflow 3 matrix (docs/index.md's support table): `make test` runs everything on the newest
# release (3.3); the lowest supported release (pyproject: apache-airflow>=3.0.6) and the newest patch
# of 3.1 and of 3.2 run the in-process kinds, and 3.0 the money promise's DAG tests too.
AIRFLOW_3_0 := 3.0.6
AIRFLOW_3_1 := 3.1.8
AIRFLOW_3_2 := 3.2.2
# ... on the lowest declared Python (pyproject: requires-python >=3.10), where the machine has it.
PYTHON_LOWEST ?= $(firstword $(wildcard /root/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null) $(PYTHON))
# Airflow 3.0.6's requirements allow releases it breaks on, which its constraints file avoids
# (docs/index.md#airflow-30-and-its-dependencies): with universal-pathlib 0.3 its ObjectStoragePath
# fails on every path (3.1 requires <0.3 itself), and with today's fastapi, starlette, cadwyn,
# pydantic and httpx its in-process Execution API refuses to start a task under `airflow dags test`
# ("Remote server returned validation error"). Pinned to the minors of its time.
PINS_3.0 := "universal-pathlib<0.3" "cadwyn<6" "fastapi<0.117" "starlette<0.48" "pydantic<2.12" "httpx<0.29"

.PHONY: venv chromium test check test-matrix test-airflow-3.0 test-airflow-3.1 test-airflow-3.2 demo bench mutation screenshots clean

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
# The cluster's system and browser tests (one process: they share one Airflow cluster per session)
# run beside every other kind: they spend most of their time waiting on that cluster (about 0.4 of
# a core), so two cores run both in little more than the time of the longer. The others run in
# $(TEST_WORKERS) xdist workers that steal work from each other: the `airflow dags test` modules are
# long, and a worker that inherits one keeps its module's sandbox only for the tests it runs.
# Each half writes its own coverage data; the report combines them. The cluster's output is
# printed after the rest's (interleaved it would be unreadable).
TEST_WORKERS ?= 4
test: venv chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy runway_provider
	rm -f .coverage .coverage.*
	COVERAGE_FILE=.coverage.cluster $(BIN)/python -m pytest -m "system or browser" --cov --cov-report= \
		> .cluster-tests.log 2>&1 & cluster=$$!; \
	COVERAGE_FILE=.coverage.rest $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal \
		-m "not (system or browser)" --cov --cov-report=; rest=$$?; \
	wait $$cluster; clustered=$$?; \
	echo "--- the cluster's system and browser tests (run beside the above) ---"; cat .cluster-tests.log; \
	test $$rest = 0 && test $$clustered = 0
	$(BIN)/python -m coverage combine --quiet .coverage.rest .coverage.cluster
	$(BIN)/python -m coverage report --show-missing --skip-covered --fail-under=90
	$(BIN)/python scripts/check_package.py

# .venv-airflow-X.Y: the pinned Airflow, this provider and its `test-base` extra, on the lowest Python.
.PRECIOUS: .venv-airflow-%/.installed-stamp
.venv-airflow-%/.installed-stamp: pyproject.toml
	rm -rf .venv-airflow-$*
	$(PYTHON_LOWEST) -m venv .venv-airflow-$*
	.venv-airflow-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-airflow-$*/bin/python -m pip install --quiet "apache-airflow==$(AIRFLOW_$(subst .,_,$*))" $(PINS_$*) -e '.[test-base]'
	touch $@

# The in-process kinds (unit, timing, soak, docs: no Airflow process) on an older Airflow 3 release.
IN_PROCESS := -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) -m "unit or timing or soak or docs"
SAY_VERSIONS := -c 'import sys, airflow; print(f"Python {sys.version.split()[0]}, Airflow {airflow.__version__}")'

test-airflow-3.1 test-airflow-3.2: test-airflow-%: .venv-airflow-%/.installed-stamp
	@.venv-airflow-$*/bin/python $(SAY_VERSIONS)
	.venv-airflow-$*/bin/python $(IN_PROCESS)

# The lowest supported release also runs the money promise (spend and resume) and the example DAGs
# under a real `airflow dags test`, with the submission record in Airflow Variables. The review
# example needs Airflow 3.1's human-in-the-loop operators: on 3.0 it defines no DAG, so its DAG
# tests do not apply (tests/test_compat.py checks that it parses without an import error). The DAG
# tests wait on the emulator most of the time: in workers that steal work, as in `make test`.
test-airflow-3.0: .venv-airflow-3.0/.installed-stamp
	@.venv-airflow-3.0/bin/python $(SAY_VERSIONS)
	.venv-airflow-3.0/bin/python $(IN_PROCESS)
	.venv-airflow-3.0/bin/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal \
		-m dags -k "not review" tests/system/test_retries_dags_test.py tests/system/test_example_dags.py

test-matrix: test-airflow-3.0 test-airflow-3.1 test-airflow-3.2

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
	rm -rf $(VENV) .venv-airflow-3.* .airflow-demo .pytest_cache dist mutants
