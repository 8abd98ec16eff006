# Engram's two set-up commands: `make serve` and `make test` (each creates .venv on first use).
# Set-up output goes to stderr so that `make serve` keeps stdout clean for the stdio protocol.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.engram-installed
PYTEST_ARGS ?=

MODEL := src/engram/embeddings/minilm/manifest.json

.PHONY: install model wheel serve test test-fast bench lint mcp-config clean

$(STAMP): pyproject.toml
	@echo "engram: setting up $(VENV) (CPU torch 2.13.0 first, then Engram and its dev tools)" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 1>&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 1>&2
	@touch $@

# The int8 ONNX model shipped in the package, built from the bundled weights without torch (seconds).
$(MODEL): $(STAMP) src/engram/embeddings/bert_graph.py src/engram/embeddings/bundle_build.py
	@echo "engram: building the shipped int8 ONNX model (python -m engram.embeddings.bundle_build)" >&2
	@$(BIN)/python -m engram.embeddings.bundle_build 1>&2
	@touch $@

install: $(STAMP) $(MODEL)

model: $(MODEL)

# A wheel with the shipped model inside (what `pip install engram-server` installs), in dist/.
wheel: $(MODEL)
	@rm -f dist/engram_server-*.whl
	@$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps -w dist . 1>&2
	@ls dist/*.whl

serve: $(STAMP) $(MODEL)
	@exec $(BIN)/engram serve

test: $(STAMP) $(MODEL) lint
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(MODEL)
	@$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) $(MODEL)
	@$(BIN)/python benchmarks/startup.py

lint: $(STAMP)
	@$(BIN)/ruff check src tests benchmarks
	@$(BIN)/ruff format --check src tests benchmarks
	@$(BIN)/mypy

mcp-config:
	@sed "s#/path/to/engram#$(CURDIR)#g" mcp.json

clean:
	rm -rf $(VENV) .pytest_cache src/engram/embeddings/minilm dist
