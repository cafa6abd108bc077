VENV ?= .venv
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install serve test lint demo-bundle bench

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

install: $(STAMP)

## Run the service on its embedded default (demo bundle built on first use, in-process cache).
## exec: make's shell is replaced by the server, so a SIGTERM to it reaches the server and drains it.
serve: $(STAMP)
	exec env OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/r2ec serve $(ARGS)

## Lint, type-check and run every test.
test: $(STAMP)
	VENV=$(VENV) bash scripts/test.sh $(ARGS)

## ruff (lint + format check) and mypy only.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy r2ec model_export service training loadtests entrypoints tests

demo-bundle: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/r2ec demo-bundle

## The benchmark record: results/bench.json + docs/benchmarks.md (ARGS are passed on, e.g. ARGS=--smoke).
bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/r2ec bench $(ARGS)
