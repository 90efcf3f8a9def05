# Set-up and checks. Every target creates the virtual environment first when it is missing,
# so `make demo` and `make test` work on a fresh machine with Python 3.11.

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

# uv must use the machine's Python 3.11, never download one, and build the project's venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test lint bench ui clean mlflow-server

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

demo: install
	$(BIN)/nextbest demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# The dbt templater compiles the models, and some read event names from the warehouse:
	@# lint against a scratch file so a fresh clone needs no warehouse and a real one is not held.
	mkdir -p .nextbest/lint
	NEXTBEST_WAREHOUSE=$(CURDIR)/.nextbest/lint/warehouse.duckdb \
		$(BIN)/sqlfluff lint dbt_project --processes 2

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench $(BENCH)

ui: install
	$(BIN)/nextbest ui

# MLflow tracking server on PostgreSQL (settings: NEXTBEST_MLFLOW_*; see docs/deploy.md).
mlflow-server: install
	$(BIN)/python -m deploy mlflow-server

clean:
	rm -rf $(VENV) $(TOOLS) target dbt_project/target
