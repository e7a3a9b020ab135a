# kubegate developer commands. `make demo` and `make test` are the two the README starts with.
VENV := .venv/bin

.PHONY: demo test check fmt lint type test-e2e testenv setup bench bench-proxy

demo: setup ## Build the local test environment if needed and run the demo until Ctrl-C (WORKDIR=DIR keeps its files)
	$(VENV)/python -m testenv.demo $(if $(WORKDIR),--workdir $(WORKDIR))

test: ## Everything CI runs: install, build the test environment, lint, types, all tests
	scripts/test

setup: ## Install the Python environment (.venv) from uv.lock
	scripts/setup

testenv: setup ## Build (or check) the cached Kubernetes test environment
	$(VENV)/python -m testenv

check: fmt lint type ## Format, lint, type-check, then run the tests
	$(VENV)/pytest

fmt:
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

type:
	$(VENV)/mypy

test-e2e: ## Only the tests against real components
	$(VENV)/pytest -m e2e

bench: testenv ## Benchmarks on the real stack (minutes): docs/benchmarks.json, docs/benchmarks.md
	$(VENV)/python -m benchmarks.reconcile
	$(VENV)/python -m benchmarks.proxy

bench-proxy: testenv ## Only the proxy benchmark (GET/LIST, watches, port-forward, token mints)
	$(VENV)/python -m benchmarks.proxy
