"""Session fixtures for the streaming tests: a served model, the Lambda zip, and S3 readers.

``streaming_model`` runs the real trainer on the seeded ratings (``recsys.train``, artifacts in the
contract layout) and makes the model live in pgvector with ``recsys.vectordb.load_embeddings``.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from recsys.contracts import ERROR_KEY_PREFIX, REDRIVE_MARKER_PREFIX


@dataclass(frozen=True)
class ServedModel:
    """The model the streaming tests serve."""

    version: str
    product_codes: list[str]
    customer_numbers: list[int]
    rated: dict[int, set[str]]
    kind: str  # "als" or "hybrid": the validation winner
    serves_features_alone: bool  # the hybrid's features strategy is on (validation beat popularity)

    def expected_strategy(self, event: dict) -> str:
        """The strategy the Lambda must pick for a synthesized event (they carry country and credit limit)."""
        from recsys.contracts import (
            STRATEGY_FEATURES,
            STRATEGY_FEATURES_FOLD_IN,
            STRATEGY_FOLD_IN,
            STRATEGY_KNOWN_CUSTOMER,
            STRATEGY_POPULAR_FALLBACK,
        )

        if event["customer_number"] in self.rated:
            return STRATEGY_KNOWN_CUSTOMER
        browsed = bool(event["browse_history"])
        if self.kind == "als":
            return STRATEGY_FOLD_IN if browsed else STRATEGY_POPULAR_FALLBACK
        return (
            STRATEGY_FEATURES_FOLD_IN
            if browsed
            else STRATEGY_FEATURES
            if self.serves_features_alone
            else STRATEGY_POPULAR_FALLBACK
        )


def train_and_publish(settings, *, seed: int = 7) -> ServedModel:
    """The real batch chain on the seeded source: the training table (the Glue job's join, done in
    SQL) published in the contract layout, ``recsys.train``, then ``recsys.vectordb.load_embeddings``.

    The training set goes to a datalake bucket of its own (the ETL tests own the stack's); the model
    goes to the stack's artifacts bucket, where the Lambda reads it.
    """
    from recsys.local.aws_resources import ensure_bucket
    from recsys.pipeline.train import TrainParams
    from recsys.pipeline.train import train_and_publish as train
    from recsys.pipeline.vector_load import load_embeddings
    from tests.support.fixtures_train import publish_training_table, training_table_from_mysql

    training = replace(settings, datalake_bucket="streaming-test-datalake")
    ensure_bucket(training, training.datalake_bucket)
    table = training_table_from_mysql(training)
    publish_training_table(training, table)
    result = train(training, TrainParams(seed=seed), settings.state_dir / "reports")
    load_embeddings(settings, result.version)
    rated: dict[int, set[str]] = {}
    for customer, code in zip(table["customerNumber"].to_pylist(), table["productCode"].to_pylist(), strict=True):
        rated.setdefault(int(customer), set()).add(code)
    model = result.manifest["model"]
    return ServedModel(
        result.version,
        sorted(set(table["productCode"].to_pylist())),
        sorted(rated),
        rated,
        model["kind"],
        bool(model.get("serve_features_alone", False)),
    )


@pytest.fixture(scope="session")
def streaming_model(stack, seeded) -> ServedModel:
    """A trained model, published to S3 and live in pgvector."""
    return train_and_publish(stack)


@pytest.fixture(scope="session")
def streaming_zip(stack, tmp_path_factory) -> Path:
    """``recsys lambda-zip`` output for this session; ``RECSYS_LAMBDA_ZIP`` points at it."""
    from recsys.deploy.lambda_zip import build_lambda_zip

    path = tmp_path_factory.mktemp("lambda-build") / "lambda.zip"
    build_lambda_zip(path)
    os.environ["RECSYS_LAMBDA_ZIP"] = str(path)
    os.environ["RECSYS_POINTER_TTL_SECONDS"] = "1"
    return path


@dataclass(frozen=True)
class DeliveredObjects:
    """Everything delivery wrote to the recommendations bucket, parsed."""

    ok_keys: list[str]
    error_keys: list[str]
    recommendations: list[dict]  # Ok lines
    errors: list[dict]  # processing-failed lines

    def error_raw(self) -> list[bytes]:
        return [base64.b64decode(e["rawData"]) for e in self.errors]


def read_delivered(settings) -> DeliveredObjects:
    """Parse every object in the recommendations bucket."""
    from recsys.core import aws

    s3 = aws.client("s3", settings)
    bucket = settings.recommendations_bucket
    ok_keys, error_keys, recs, errors = [], [], [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            if obj["Key"].startswith(REDRIVE_MARKER_PREFIX):
                continue  # redrive's markers, not delivered records
            if obj["Key"].startswith(ERROR_KEY_PREFIX):
                error_keys.append(obj["Key"])
                errors.extend(lines)
            else:
                ok_keys.append(obj["Key"])
                recs.extend(lines)
    return DeliveredObjects(ok_keys, error_keys, recs, errors)


def deliver(**kwargs):
    """Run delivery in-process (fresh settings: fixtures may have changed the environment) until idle;
    returns its stats."""
    from recsys.core.config import load_settings
    from recsys.local.firehose.delivery import build_delivery

    delivery = build_delivery(load_settings(), **kwargs)
    try:
        return delivery.run(until_idle=1.5)
    finally:
        delivery.close()


def session_of(raw: bytes) -> str | None:
    """The session id of a raw record, or None when it has none (malformed records included)."""
    try:
        return json.loads(raw)["session_id"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
