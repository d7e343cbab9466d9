# The two commands of the README: `make demo` and `make test`. Both create or update .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A CPU build of torch; an unpinned torch would pull a CUDA build of several GB.
TORCH  ?= torch==2.13.0
# llama-cpp-python, built once for a portable CPU baseline (scripts/llama-wheel.sh), never by pip with
# -march=native; the version is the one pyproject.toml pins.
LLAMA_CPP   := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
LLAMA_STAMP := $(VENV)/.llama-cpp-portable

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DO_NOT_TRACK ?= 1

NODE_CLIENT := tests/server/node

.PHONY: install demo test test-fast lint typecheck bench services scaleout clean node-client browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the portable wheel over whatever llama-cpp-python the venv had (a native build of an older set-up).
$(LLAMA_STAMP): scripts/llama-wheel.sh pyproject.toml | $(BIN)/python
	wheel="$$(scripts/llama-wheel.sh $(LLAMA_CPP) $(BIN)/python)" && \
	  $(BIN)/python -m pip install --quiet --no-deps --force-reinstall "$$wheel"
	touch $@

$(STAMP): pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[local,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/contentmill demo

services:
	scripts/services.sh

lint: $(STAMP)
	$(BIN)/ruff check contentmill tests bench
	$(BIN)/mypy

# The openai npm package, for the server's tests under node; without npm those tests skip and say why.
node-client:
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix $(NODE_CLIENT) --no-audit --no-fund --silent; \
	else echo "npm not found: the server's node client tests will skip"; fi

# Debian's Chromium for the web pages' browser tests (Playwright from the dev extra drives it; it cannot download
# its own browsers here). Without root or apt-get those tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "chromium not found and apt-get cannot run as root: the browser tests will skip"; fi

test: $(STAMP) services lint node-client browser
	$(BIN)/pytest

# The edit-test loop: every test but the slow ones (local models, media, browsers) and the scale-out stack.
test-fast: $(STAMP) services
	$(BIN)/pytest -m "not slow and not scaleout"

# Only the scale-out test: a Prefect server on PostgreSQL, two process workers, Redis, S3 (also part of `make test`).
scaleout: $(STAMP) services
	$(BIN)/pytest tests/scaleout

bench: $(STAMP) services
	$(BIN)/python -m pip install --quiet -e ".[local,dev,bench]"
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .contentmill .pytest_cache .mypy_cache .ruff_cache
