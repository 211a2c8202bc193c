# The project image for the compose stack: the `recsys` CLI (seeder, local Spark ETL, trainer, loader,
# replay producer, local Firehose delivery with the Lambda zip under awslambdaric, API, web page).
# The Glue job itself runs in AWS's Glue 5.0 image (the compose `glue` service) where it can be pulled.
# BASE_IMAGE / LAMBDA_PYTHON_IMAGE default to the official Python images; `make images` builds Debian
# stand-ins where no registry answers (docs/compose.md). Extra CA certificates for pip: the BuildKit
# secret `ca_bundle` (a PEM file), used while downloading and never stored in the image.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
ARG LAMBDA_PYTHON_IMAGE=python:3.13.1-slim-bookworm
FROM ${LAMBDA_PYTHON_IMAGE} AS lambda-python

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 OPENBLAS_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Java 17 + MariaDB Connector/J: `recsys etl` (local Spark, as Glue 5.0's); libgomp1: implicit's ALS (OpenMP;
# its wheels do not bundle it, slim images lack it); make, zip: `recsys lambda-zip`
RUN apt-get update && apt-get install -y --no-install-recommends make zip openjdk-17-jre-headless libmariadb-java \
       libgomp1 \
    && rm -rf /var/lib/apt/lists/*
# The Lambda runtime's Python (3.13) with what the runtime provides (awslambdaric, boto3): the firehose
# service runs the deployment zip under it (RECSYS_LAMBDA_INVOKE=runtime) where no Lambda service runs it
COPY --from=lambda-python /usr/local /opt/lambda-python
COPY lambda/runtime-requirements.txt /tmp/runtime-requirements.txt
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    /opt/lambda-python/bin/python3.13 -m pip install --only-binary=:all: -r /tmp/runtime-requirements.txt
ENV RECSYS_LAMBDA_PYTHON=/opt/lambda-python/bin/python3.13
WORKDIR /opt/recsys
# dependencies first (their layer survives source changes), then the project without them
COPY pyproject.toml README.md ./
COPY requirements/runtime.txt ./requirements/
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    pip install --require-hashes -r requirements/runtime.txt
COPY src ./src
COPY seed ./seed
COPY lambda ./lambda
COPY sql ./sql
COPY glue ./glue
# The RDS certificate authorities (`make rds-ca-bundle`): the pipeline's tasks verify the vector DB's
# certificate (verify-full)
COPY build/rds-ca-bundle.pem /opt/recsys/rds-ca-bundle.pem
# The state directory exists, owned by recsys, before a named volume is mounted there: Docker copies
# its ownership into a new volume (else the volume is root's and recsys cannot write it)
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    pip install --no-deps -e . && useradd --create-home --uid 1000 recsys \
    && mkdir -p /var/lib/recsys && chown recsys:recsys /var/lib/recsys
USER recsys
# commands write relative paths (train's reports/, Spark's scratch): into the state dir, writable by recsys
# and kept in the compose volume, not the root-owned install
WORKDIR /var/lib/recsys
ENTRYPOINT ["recsys"]
