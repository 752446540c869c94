# Two commands for a fresh machine: `make run` (the runtime only, then the gateway on the embedded SQLite
# default) and `make test` (the runtime plus the test extra, then the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
# LiteLLM's proxy, the third-party upstream of tests/clients/test_third_party_upstream.py, in a virtualenv of its
# own: its extra pins websockets and rich older than the test extra's (constraints-litellm-proxy.txt).
PROXY_VENV ?= .venv-litellm-proxy
PROXY := $(PROXY_VENV)/.installed

.PHONY: run test install bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(RUNTIME) $(STAMP)

$(PROXY): constraints-litellm-proxy.txt
	$(PYTHON) -m venv $(PROXY_VENV)
	$(PROXY_VENV)/bin/pip install -q --upgrade pip
	$(PROXY_VENV)/bin/pip install -q -c constraints-litellm-proxy.txt 'litellm[proxy]==1.108.7'
	touch $(PROXY)

install: $(STAMP) $(PROXY)

run: $(RUNTIME)
	$(BIN)/llm-gateway serve

# PostgreSQL: LLM_GATEWAY_TEST_DATABASE_URL, else the documented default when a server answers there (tests/parts.py);
# without one its tests skip saying so. The run ends with one line per part (SQLite, PostgreSQL, browser, Node).
test: $(STAMP) $(PROXY)
	LLM_GATEWAY_TEST_DATABASE_URL="$$($(BIN)/python -m tests.parts)" \
	TEST_LITELLM_PROXY_VENV=$(abspath $(PROXY_VENV)) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or an undocumented setting fails.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PROXY_VENV) build site *.egg-info
