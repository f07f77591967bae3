# The two set-up commands of the README: `make demo` and `make test`.
# Each installs what it needs into .venv first (pinned by constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install sandbox demo test lint bench clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,postgres]'
	touch $@

install: $(INSTALLED)

# A Docker engine (started if none answers; needs root the first time) and the
# sandbox image of the current definition (built offline from the host's apt
# sources where no registry answers; reused while the definition is unchanged).
sandbox: install
	bash scripts/ensure-docker.sh
	$(BIN)/executor sandbox build

# The main job on the seed reports, with the embedded defaults (SQLite store
# in the user data dir, or EXECUTOR_HOME if set).
demo: sandbox
	$(BIN)/executor ingest examples/reports
	$(BIN)/executor list
	$(BIN)/executor show fsar_bfb8a8d5-dd74-41a6-887b-a6603faeef6a
	$(BIN)/executor approve fsar_51f8aa7f-7563-46d2-b8f2-a4e2eb2402f9 --by demo --note "make demo"
	$(BIN)/executor log --limit 5
	$(BIN)/executor sandbox up
	$(BIN)/executor doctor

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint sandbox
	$(BIN)/pytest -n auto

bench: sandbox
	$(BIN)/python -m bench.parse_throughput
	$(BIN)/python -m bench.help_startup
	$(BIN)/python -m bench.sandbox_pool
	$(BIN)/python -m bench.sql_validation

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
