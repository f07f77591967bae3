# The two set-up commands of the README: `make demo` and `make test`.
# Each installs what it needs into .venv first (pinned by constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,postgres]'
	touch $@

install: $(INSTALLED)

# The main job on the seed reports, with the embedded defaults (SQLite store
# in the user data dir, or EXECUTOR_HOME if set).
demo: install
	$(BIN)/executor ingest examples/reports
	$(BIN)/executor list
	$(BIN)/executor show fsar_bfb8a8d5-dd74-41a6-887b-a6603faeef6a
	$(BIN)/executor approve fsar_51f8aa7f-7563-46d2-b8f2-a4e2eb2402f9 --by demo --note "make demo"
	$(BIN)/executor log --limit 5

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n auto

bench: install
	$(BIN)/python -m bench.parse_throughput
	$(BIN)/python -m bench.help_startup
	$(BIN)/python -m bench.sandbox_pool

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
