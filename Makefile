# Engram's two set-up commands: `make serve` and `make test` (each creates .venv on first use).
# Set-up output goes to stderr so that `make serve` keeps stdout clean for the stdio protocol.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.engram-installed
PYTEST_ARGS ?=

.PHONY: install serve test test-fast bench lint mcp-config clean

$(STAMP): pyproject.toml
	@echo "engram: setting up $(VENV) (CPU torch 2.13.0 first, then Engram and its dev tools)" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 1>&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 1>&2
	@echo "engram: exporting the embedding model to ONNX once (engram prepare), so the server starts fast" >&2
	@$(BIN)/engram prepare 1>&2 || echo "engram: warning: engram prepare failed (see above); the server will retry the export on its first start" >&2
	@touch $@

install: $(STAMP)

serve: $(STAMP)
	@exec $(BIN)/engram serve

test: $(STAMP) lint
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	@$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	@$(BIN)/python benchmarks/startup.py

lint: $(STAMP)
	@$(BIN)/ruff check src tests benchmarks
	@$(BIN)/ruff format --check src tests benchmarks
	@$(BIN)/mypy

mcp-config:
	@sed "s#/path/to/engram#$(CURDIR)#g" mcp.json

clean:
	rm -rf $(VENV) .pytest_cache
