# recsys: run `make help` for the targets. Everything runs on the embedded local stack unless a
# Docker engine answers (`make up`) or AWS_ENDPOINT_URL / hosts point elsewhere.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RECSYS := $(BIN)/recsys
STAMP := $(VENV)/.installed
TOOLS_STAMP := .venv-tools/.installed
HCL_TOOLS := .venv-tools/node_modules/@cdktf/hcl-tools/package.json
# The Lambda runs locally under its runtime's Python minor (contracts.LAMBDA_RUNTIME, python3.13)
LAMBDA_VENV := .venv-lambda
LAMBDA_STAMP := $(LAMBDA_VENV)/.installed
# the first that runs and is 3.13 (a pyenv shim for a version not selected does not run)
LAMBDA_PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python; do \
  "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { command -v "$$p"; break; }; done)
LAMBDA_ZIP := build/lambda.zip
LAMBDA_SOURCES := $(wildcard lambda/inference/*.py) lambda/requirements.txt src/recsys/contracts.py src/recsys/__init__.py
LOCALSTACK_STAMP := .venv-localstack/.installed
LOCALSTACK_FILES := $(addprefix localstack/host/,install.sh requirements.txt constraints.txt kinesis-mock/package-lock.json)
APT_PACKAGES := libmariadb-java chromium chromium-driver

# seeding scale (the lab's by default)
CUSTOMERS ?= 122
PRODUCTS ?= 110
RATINGS ?= 2500
SEED ?= 42
EVENTS ?= 200
RATE ?= 200

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip>=24.2'  # 24.2+: installs cp313 wheels for the Lambda from 3.11
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(TOOLS_STAMP):
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install --quiet --upgrade pip
	.venv-tools/bin/pip install --quiet 'checkov>=3.2,<4'
	touch $@

# terraform fmt's formatter (HashiCorp's hclwrite as WebAssembly, npm): no terraform binary needed
$(HCL_TOOLS): | $(TOOLS_STAMP)
	@if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix .venv-tools @cdktf/hcl-tools@0.21.0; \
	else echo "npm not found: the terraform fmt check will be skipped (apt-get install npm)"; fi

$(LAMBDA_STAMP): lambda/runtime-requirements.txt
	@if [ -z "$(LAMBDA_PYTHON)" ]; then \
	  echo "no Python 3.13 for $(LAMBDA_VENV) (the Lambda runs python3.13 locally under the same Python): get one with 'uv python install 3.13', 'pyenv install 3.13', 'apt install python3.13-venv' or 'brew install python@3.13', then make install"; \
	else \
	  $(LAMBDA_PYTHON) -m venv $(LAMBDA_VENV) && \
	  $(LAMBDA_VENV)/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: -r lambda/runtime-requirements.txt && \
	  touch $@; \
	fi

# LocalStack community for `recsys stack up --emulator localstack`: Python 3.13 venv, pinned, + kinesis-mock
$(LOCALSTACK_STAMP): $(LOCALSTACK_FILES)
	localstack/host/install.sh .venv-localstack
	touch $@

.PHONY: system-deps
system-deps: ## Install the Debian packages the stack needs (MariaDB JDBC driver, Chromium)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "run: sudo apt-get install$$missing"; exit 1; fi; fi

.PHONY: install
install: system-deps $(STAMP) $(TOOLS_STAMP) $(HCL_TOOLS) $(LAMBDA_STAMP) $(LOCALSTACK_STAMP) ## Create the venvs and install the project (idempotent)

# the offline image set's names, once `make images` wrote them (docs/compose.md)
COMPOSE := $(strip docker compose $(if $(wildcard build/images.env),--env-file build/images.env))

.PHONY: up
up: install $(LAMBDA_ZIP) ## Start the local stack (docker compose when a Docker engine answers, else embedded)
	@if docker info >/dev/null 2>&1; then $(COMPOSE) up -d --wait; else $(RECSYS) stack up; fi

.PHONY: down
down: ## Stop the local stack
	@if docker info >/dev/null 2>&1; then $(COMPOSE) down; else $(RECSYS) stack down; fi

.PHONY: engine
engine: ## Install and start a Docker engine + Compose v2 here when none answers (root; docker/engine.sh)
	docker/engine.sh install
	docker/engine.sh start

.PHONY: images
images: ## Build the offline image set from Debian + PyPI (no registry) and write build/images.env
	docker/images.sh

.PHONY: status
status: ## Show each local service as up/down
	$(RECSYS) stack status

.PHONY: seed
seed: install ## Seed the MySQL source (CUSTOMERS, PRODUCTS, RATINGS, SEED)
	$(RECSYS) seed --customers $(CUSTOMERS) --products $(PRODUCTS) --ratings $(RATINGS) --seed $(SEED)

.PHONY: run-etl
run-etl: install ## Run the Glue job locally: MySQL -> partitioned Parquet training set in S3
	$(RECSYS) etl

.PHONY: train
train: install ## Train implicit ALS, evaluate, publish model artifacts to S3
	$(RECSYS) train

.PHONY: load-embeddings
load-embeddings: install ## Load the serving model's embeddings into pgvector
	$(RECSYS) load-embeddings

.PHONY: lambda-zip
lambda-zip: install ## Build the Firehose transformation Lambda zip (build/lambda.zip)
	$(RECSYS) lambda-zip

$(LAMBDA_ZIP): $(LAMBDA_SOURCES) | $(STAMP)
	$(RECSYS) lambda-zip --output $@
.PHONY: api-zip
api-zip: install ## Build the recommendations API's Lambda zip (build/api.zip)
	$(RECSYS) lambda-zip --api

.PHONY: api
api: install ## Serve the recommendations API on 127.0.0.1:8000 (docs at /docs)
	$(RECSYS) api

.PHONY: replay
replay: install ## Send activity events to Kinesis (EVENTS, RATE)
	$(RECSYS) replay --events $(EVENTS) --rate $(RATE)

.PHONY: firehose
firehose: install ## Run local Firehose delivery (Kinesis -> Lambda -> S3) until interrupted
	$(RECSYS) firehose

.PHONY: web
web: install ## Serve the recommendations page on 127.0.0.1
	$(RECSYS) web

.PHONY: demo
demo: install ## Run the whole pipeline end to end on the embedded stack and write the report (DEMO_ARGS)
	$(RECSYS) demo $(DEMO_ARGS)

.PHONY: test
test: install ## Run the test suite: unit, then integration (starts and stops its own services)
	$(BIN)/pytest

.PHONY: test-unit
test-unit: install ## Run the unit tests only (no service needed, seconds)
	$(BIN)/pytest tests/unit

.PHONY: bench
bench: install ## Run the benchmarks in benchmarks/ (minutes; prints figures and ratios)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

.PHONY: fmt
fmt: install ## Format terraform/ as `terraform fmt` does (hclwrite from @cdktf/hcl-tools; no terraform binary)
	node tests/tools/terraform_fmt.cjs --write $$(find terraform -name '*.tf' -not -path '*/.terraform/*')

.PHONY: clean
clean: ## Remove build output and local stack state (stop the stack first)
	rm -rf build reports .recsys .pytest_cache spark-warehouse
