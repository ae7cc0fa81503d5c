# The two commands: `make serve` runs staffgraph, `make test` checks it. Both set up what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8123
HOST   ?= 127.0.0.1
STAMP  := $(VENV)/.installed

.PHONY: serve test lint typecheck unit integration bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,local]"
	touch $(STAMP)

install: $(STAMP)

# The LangGraph JS SDK for tests/integration/server/test_js_sdk.py (npm registry, pinned by
# tests/js/package-lock.json).
JS_SDK := tests/js/node_modules/.package-lock.json
$(JS_SDK): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >/dev/null; \
	  else \
	    echo "node/npm are missing: install them (apt-get install nodejs npm)" >&2; exit 1; \
	  fi; }
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

serve: $(STAMP)
	$(BIN)/staffgraph serve --host $(HOST) --port $(PORT)

.PHONY: redis
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; \
	  else \
	    echo "redis-server is missing: install it (apt-get install redis-server) or set REDIS_URL" >&2; exit 1; \
	  fi; }

# The console's browser tests drive Debian's Chromium headless through its chromedriver.
.PHONY: chromium
chromium:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null; \
	  else \
	    echo "chromium/chromedriver are missing: install them (apt-get install chromium chromium-driver)" >&2; exit 1; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) redis chromium $(JS_SDK) lint typecheck
	$(BIN)/python -m pytest -q --timeout 600 --durations 15

bench: $(STAMP)
	$(BIN)/python bench/server_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
