"""Session fixtures for the streaming tests: a served model, the Lambda zip, and S3 readers.

``streaming_model`` trains implicit ALS on the seeded ratings, publishes the artifacts in the
contract layout (docs/contracts.md section 2) with ``recsys.artifacts.publish_version`` and makes
them live in pgvector with ``recsys.vectordb.load_embeddings`` (the real loader).
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HANDLERS_DIR = Path(__file__).parent / "streaming_handlers"
ALPHA, RATING_OFFSET, REGULARIZATION, FACTORS = 2.0, 2.0, 0.05, 16


@dataclass(frozen=True)
class ServedModel:
    """The model the streaming tests serve."""

    version: str
    product_codes: list[str]
    customer_numbers: list[int]
    rated: dict[int, set[str]]


def train_and_publish(settings, *, seed: int = 7) -> ServedModel:
    """ALS on the source's ratings, published and loaded into pgvector."""
    import implicit
    import scipy.sparse as sp

    from inference.foldin import confidence, max_item_norm, to_item_embedding, to_query_vector
    from recsys import artifacts
    from recsys.db import connect_mysql
    from recsys.vectordb import load_embeddings

    conn = connect_mysql(settings)
    with conn.cursor() as cur:
        cur.execute("SELECT customerNumber, productCode, productRating FROM ratings")
        rows = cur.fetchall()
    conn.close()
    customers = sorted({r[0] for r in rows})
    products = sorted({r[1] for r in rows})
    cu, pi = {c: i for i, c in enumerate(customers)}, {p: i for i, p in enumerate(products)}
    conf = confidence([r[2] for r in rows], ALPHA, RATING_OFFSET)
    matrix = sp.csr_matrix((conf, ([cu[r[0]] for r in rows], [pi[r[1]] for r in rows])),
                           shape=(len(customers), len(products)), dtype=np.float32)
    model = implicit.cpu.als.AlternatingLeastSquares(factors=FACTORS, regularization=REGULARIZATION, alpha=1.0,
                                                     iterations=8, random_state=seed)
    model.fit(matrix, show_progress=False)
    items, users = np.asarray(model.item_factors), np.asarray(model.user_factors)
    transform = "mips-augment"
    item_emb = to_item_embedding(items, transform, max_item_norm(items))
    user_emb = to_query_vector(users, transform)
    counts = np.bincount([pi[r[1]] for r in rows], minlength=len(products))
    order = np.argsort(-counts, kind="stable")
    popular = [{"product_code": products[j], "score": round(float(counts[j] / counts.max()), 4)} for j in order[:50]]
    version = artifacts.new_version()
    files = {
        "item_embeddings.csv": artifacts.embeddings_csv(products, item_emb),
        "user_embeddings.csv": artifacts.embeddings_csv(customers, user_emb),
        "model.npz": artifacts.npz_bytes({
            "item_factors": items.astype(np.float32), "user_factors": users.astype(np.float32),
            "item_ids": np.array(products), "user_ids": np.array(customers, dtype=np.int64),
            "regularization": np.float64(REGULARIZATION), "alpha": np.float64(ALPHA), "factors": np.int64(FACTORS)}),
        "popular_items.json": json.dumps(popular).encode(),
    }
    manifest = {"version": version, "created_at": artifacts.utc_now_iso(), "embedding_dim": FACTORS + 1,
                "embedding_transform": transform, "factors": FACTORS,
                "confidence": {"formula": "1 + alpha * max(rating - rating_offset, 0)", "alpha": ALPHA,
                               "rating_offset": RATING_OFFSET},
                "hyperparameters": {"factors": FACTORS, "regularization": REGULARIZATION, "alpha": ALPHA,
                                    "iterations": 8}}
    artifacts.publish_version(settings, version, files, manifest)
    load_embeddings(settings, version)
    rated: dict[int, set[str]] = {}
    for c, p, _ in rows:
        rated.setdefault(int(c), set()).add(p)
    return ServedModel(version, products, [int(c) for c in customers], rated)


@pytest.fixture(scope="session")
def streaming_model(stack, seeded) -> ServedModel:
    """A trained model, published to S3 and live in pgvector."""
    return train_and_publish(stack)


@pytest.fixture(scope="session")
def streaming_zip(stack, tmp_path_factory) -> Path:
    """``recsys lambda-zip`` output for this session; ``RECSYS_LAMBDA_ZIP`` points at it."""
    from recsys.lambda_zip import build_lambda_zip

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
    from recsys import aws

    s3 = aws.client("s3", settings)
    bucket = settings.buckets["recommendations"]
    ok_keys, error_keys, recs, errors = [], [], [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            if obj["Key"].startswith("processing-failed/"):
                error_keys.append(obj["Key"])
                errors.extend(lines)
            else:
                ok_keys.append(obj["Key"])
                recs.extend(lines)
    return DeliveredObjects(ok_keys, error_keys, recs, errors)


@pytest.fixture(scope="session")
def streaming_handlers_dir() -> Path:
    return HANDLERS_DIR
