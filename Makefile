PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test demo bench clean

# The environment is rebuilt only when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Lint, format, strict typing, the whole suite with branch coverage of runway_provider, then the packaging gate.
test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy runway_provider
	$(BIN)/python -m pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=90
	$(BIN)/python scripts/check_package.py

demo: venv
	$(BIN)/python scripts/demo.py

# Regenerates docs/performance.md and docs/img/triggerer-scaling.png (about 8 minutes).
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .airflow-demo .pytest_cache dist
