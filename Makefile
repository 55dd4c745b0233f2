# omicsdw: `make run` builds the warehouse from examples/, `make test` runs lint and the test suite.
# Both create .venv and install the locked dependencies first (Python 3.11+ and the package registries only).

VENV      := .venv
PY        := $(VENV)/bin/python
UV        := $(VENV)/bin/uv
STAMP     := $(VENV)/.synced-$(shell cat uv.lock pyproject.toml | cksum | cut -d' ' -f1)
WAREHOUSE := warehouse_data
FEATURES  := features
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export DO_NOT_TRACK := 1

.PHONY: run test lint dev bench clean

$(STAMP): pyproject.toml uv.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install --quiet uv==0.13.8
	$(UV) sync --locked --inexact --extra dev --python $(PY) --quiet --compile-bytecode
	@rm -f $(VENV)/.synced-* && touch $@

$(DAGSTER_HOME)/dagster.yaml: orchestration/instance/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp $< $@

# Runs land in $(DAGSTER_HOME): `make dev` shows their metadata and plots. Every spec in $(FEATURES)/ is built
# after the studies (a feature set per spec: its Dagster asset features/<name>).
run: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/omicsdw build --landing examples --warehouse $(WAREHOUSE) --features $(FEATURES)

# The suite runs on TEST_WORKERS processes (pytest-xdist), each taking whole test files so that a module's
# fixtures (a built warehouse, an S3 server) are made once.
TEST_WORKERS ?= 2

test: lint $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy transforms schemas warehouse orchestration

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	OMICSDW_LANDING=examples OMICSDW_WAREHOUSE=$(WAREHOUSE) OMICSDW_FEATURES=$(FEATURES) $(VENV)/bin/dg dev

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(WAREHOUSE) $(DAGSTER_HOME)
