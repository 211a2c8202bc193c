# The project image for the compose stack: the `recsys` CLI (seeder, trainer, loader, replay
# producer, local Firehose delivery, web page). The Glue job runs in AWS's Glue 5.0 image instead.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 OPENBLAS_NUM_THREADS=1
RUN apt-get update && apt-get install -y --no-install-recommends make zip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/recsys
COPY pyproject.toml README.md ./
COPY requirements/runtime.txt ./requirements/
COPY src ./src
COPY seed ./seed
COPY lambda ./lambda
COPY sql ./sql
COPY glue ./glue
# The RDS certificate authorities: the pipeline's tasks verify the vector DB's certificate (verify-full).
ADD --chmod=644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /opt/recsys/rds-ca-bundle.pem
RUN pip install --require-hashes -r requirements/runtime.txt && pip install --no-deps -e . \
    && useradd --create-home recsys
USER recsys
ENTRYPOINT ["recsys"]
