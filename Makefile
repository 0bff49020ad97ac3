# Every target bootstraps .venv itself, so a fresh clone needs only python3.11 and PyPI.
# The dev environment is the exact set of versions in requirements/dev.txt; `make lock`
# is the one deliberate way to move it.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := $(wildcard src tests examples benchmarks scripts docs/snippets)

.PHONY: lock test lint typecheck pytest system-packages demo protos protos-check docs bench bench-quick clean

$(STAMP): pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --requirement requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

# Re-resolve every dev and test dependency to the newest versions pyproject.toml allows.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--upgrade --quiet -o requirements/dev.txt
	rm -f $(STAMP)

test: $(STAMP) lint typecheck pytest docs

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-packages
	$(BIN)/python -m pytest -q

# System packages the tests need, from Debian, installed only when missing: redis-server
# (the Redis Streams tests start their own on an ephemeral port; CI never skips them).
system-packages:
	@command -v redis-server >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; }

demo: $(STAMP)
	$(BIN)/python -m examples.logs.demo

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.broadcast
	$(BIN)/python -m benchmarks.scale_out

bench-quick: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.run --quick
	$(BIN)/python -m benchmarks.broadcast --quick
	$(BIN)/python -m benchmarks.scale_out --quick

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache
