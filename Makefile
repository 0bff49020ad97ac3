# Every target bootstraps .venv itself, so a fresh clone needs only python3.11 and PyPI.
# The dev environment is the exact set of versions in requirements/dev.txt; `make lock`
# is the one deliberate way to move it.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := $(wildcard src tests examples benchmarks scripts docs/snippets)
# The docs' JavaScript (mermaid) comes from npm, pinned by docs-js/package-lock.json.
DOCS_JS := docs-js
NPM_STAMP := $(DOCS_JS)/node_modules/.installed
MERMAID := docs/assets/mermaid/mermaid.min.js

# The grpc-js interop peers (tests/interop/node), pinned by their package-lock.json.
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: lock test test-fast lint typecheck pytest pytest-fast node-deps system-packages \
	wheel-check demo protos protos-check docs docs-check bench bench-quick clean

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

# Everything CI runs (.ci/run): lint, types, every test, the docs build and its offline
# check in a headless browser, and the built wheel in a fresh venv.
test: $(STAMP) lint typecheck pytest docs-check wheel-check

# The quick loop while developing: no test marked slow, no docs, no wheel.
test-fast: $(STAMP) lint typecheck pytest-fast

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

# The soak tests hold streams for minutes; they run in a second pytest process started
# beside the main one, so `make test` takes as long as the longer of the two. Both must
# pass; the soak output is printed after the main run's.
pytest: $(STAMP) $(NODE_STAMP) system-packages
	@rm -f .pytest-soak.log; \
	$(BIN)/python -m pytest -q -m soak -p no:cacheprovider >.pytest-soak.log 2>&1 & soak=$$!; \
	$(BIN)/python -m pytest -q; main=$$?; \
	wait $$soak; soak_rc=$$?; \
	echo "---- soak tests (run in parallel with the above) ----"; cat .pytest-soak.log; \
	rm -f .pytest-soak.log; \
	test $$main -eq 0 && test $$soak_rc -eq 0

# System packages the tests need, from Debian, installed only when missing: redis-server
# (the Redis Streams tests start their own on an ephemeral port; CI never skips them).
system-packages:
	scripts/ensure_system_packages.sh redis-server

pytest-fast: $(STAMP) $(NODE_STAMP) system-packages
	$(BIN)/python -m pytest -q -m "not slow"

# Node (Debian's nodejs and npm if `node` is missing) and exactly the locked grpc-js
# packages; the stamp makes it idempotent.
node-deps: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	scripts/ensure_system_packages.sh nodejs npm
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Build sdist + wheel, twine check, install the wheel in fresh venvs, run the smoke suite
# and the pip-only quickstart (scripts/wheel_check.py says what each step proves).
wheel-check: $(STAMP)
	$(BIN)/python scripts/wheel_check.py

demo: $(STAMP)
	$(BIN)/python -m examples.logs.demo

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

$(NPM_STAMP): $(DOCS_JS)/package.json $(DOCS_JS)/package-lock.json
	scripts/ensure_system_packages.sh nodejs npm
	cd $(DOCS_JS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(MERMAID): $(NPM_STAMP)
	mkdir -p $(dir $@)
	cp $(DOCS_JS)/node_modules/mermaid/dist/mermaid.min.js $@

docs: $(STAMP) $(MERMAID)
	$(BIN)/mkdocs build --strict

# Open the built site from disk in headless Chromium with the network off: diagrams must
# render (bundled mermaid) and sidebar links must reach .html pages.
docs-check: docs
	scripts/ensure_system_packages.sh chromium
	$(BIN)/python scripts/docs_check.py

bench: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.broadcast
	$(BIN)/python -m benchmarks.scale_out
	$(BIN)/python -m benchmarks.telemetry

bench-quick: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.run --quick
	$(BIN)/python -m benchmarks.broadcast --quick
	$(BIN)/python -m benchmarks.scale_out --quick
	$(BIN)/python -m benchmarks.telemetry --quick --output-dir /tmp/grpcstream-bench-quick

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache $(DOCS_JS)/node_modules \
		docs/assets/mermaid build/docs-check $(NODE_DIR)/node_modules
