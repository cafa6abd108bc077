VENV ?= .venv
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install serve test lint demo-bundle bench

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

install: $(STAMP)

## Run the service on its embedded default (demo bundle built on first use, transformers backend, in-process cache).
serve: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/r2ec serve $(ARGS)

## Lint, type-check and run every test.
test: $(STAMP)
	VENV=$(VENV) bash scripts/test.sh $(ARGS)

demo-bundle: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/r2ec demo-bundle
