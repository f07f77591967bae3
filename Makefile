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
# in the user data dir, or EXECUTOR_HOME if set): ingest, approve, run every
# approved proposal against a fresh demo repository (.demo/target), with CI
# reports, then undo seed 003's rollout. 002 and 004 fail their gates with
# located errors (exit 1), which the demo expects.
DEMO := .demo
SEED_002 := fsar_3f4f1333-91c8-4a6d-89bc-a193ce80357e
SEED_003 := fsar_51f8aa7f-7563-46d2-b8f2-a4e2eb2402f9
SEED_004 := fsar_bfb8a8d5-dd74-41a6-887b-a6603faeef6a
demo: sandbox
	$(BIN)/executor ingest examples/reports
	$(BIN)/executor list
	$(BIN)/executor show $(SEED_004)
	$(BIN)/executor approve $(SEED_002) --by demo --note "make demo"
	$(BIN)/executor approve $(SEED_003) --by demo --note "make demo"
	$(BIN)/executor approve $(SEED_004) --by demo --note "make demo"
	$(BIN)/executor sandbox up
	rm -rf $(DEMO)/target && mkdir -p $(DEMO)/target
	git -C $(DEMO)/target init -q -b main
	printf '# demo target\n' > $(DEMO)/target/README.md
	git -C $(DEMO)/target add README.md
	git -C $(DEMO)/target -c user.name=demo -c user.email=demo@localhost -c core.hooksPath=/dev/null commit -qm "initial commit"
	-$(BIN)/executor run --all-approved --repo $(DEMO)/target --junit $(DEMO)/junit.xml --sarif $(DEMO)/results.sarif
	$(BIN)/executor rollbacks --repo $(DEMO)/target
	git -C $(DEMO)/target log --oneline --all
	$(BIN)/executor rollback $(SEED_003) --repo $(DEMO)/target
	$(BIN)/executor log --limit 8
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
	$(BIN)/python -m bench.run_e2e

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
