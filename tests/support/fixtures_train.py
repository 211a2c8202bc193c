"""Test support for the trainer: a larger seeded source, and training sets published in the
contract layout (docs/contracts.md section 1) straight from MySQL, without Spark.

``publish_training_table`` stands in for the Glue job so the trainer's tests do not depend on
Spark; it writes exactly what the job publishes: Hive-partitioned snappy Parquet, ``_SUCCESS``,
then ``_manifest.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recsys.contracts import SNAPSHOT_SUCCESS, SNAPSHOTS_DIR, TRAINING_MANIFEST, TRAINING_PREFIX
from recsys.core.aws import client
from recsys.core.config import Settings
from recsys.local.aws_resources import ensure_bucket
from recsys.pipeline.artifacts import read_artifact, read_manifest
from recsys.serving.vector_store import parse_pgvector_text

TRAIN_SEED_SPEC = (600, 300, 15_000, 42)  # customers, products, ratings, seed: big enough to be conclusive
TRAINING_SQL = """
SELECT r.customerNumber, c.city, c.state, c.postalCode, c.country, c.creditLimit,
       r.productCode, p.productLine, p.productScale, p.quantityInStock, p.buyPrice, p.MSRP, r.productRating
FROM ratings r
JOIN customers c ON c.customerNumber = r.customerNumber
JOIN products p ON p.productCode = r.productCode
ORDER BY r.customerNumber, r.productCode
"""
TRAINING_SCHEMA = pa.schema(
    [
        ("customerNumber", pa.int32()),
        ("city", pa.string()),
        ("state", pa.string()),
        ("postalCode", pa.string()),
        ("country", pa.string()),
        ("creditLimit", pa.decimal128(10, 2)),
        ("productCode", pa.string()),
        ("productLine", pa.string()),
        ("productScale", pa.string()),
        ("quantityInStock", pa.int16()),
        ("buyPrice", pa.decimal128(10, 2)),
        ("MSRP", pa.decimal128(10, 2)),
        ("productRating", pa.int8()),
    ]
)
_SPARK_TYPES = {
    pa.int8(): "tinyint",
    pa.int16(): "smallint",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.string(): "string",
    pa.float64(): "double",
}


def spark_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    return _SPARK_TYPES[arrow_type]


def load_npz(body: bytes) -> dict[str, np.ndarray]:
    """Every array of a ``model.npz``."""
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def parse_embeddings_csv(body: bytes) -> tuple[list[str], np.ndarray]:
    """Ids (as text) and an (N, D) float32 matrix from an embeddings CSV (header ``id,embedding``)."""
    reader = csv.reader(io.StringIO(body.decode("utf-8")))
    assert next(reader) == ["id", "embedding"]
    ids, rows = [], []
    for ident, text in reader:
        ids.append(ident)
        rows.append(parse_pgvector_text(text))
    return ids, np.vstack(rows)


def verify_version(settings: Settings, version: str) -> dict:
    """Check every file the manifest lists against its sha256; returns the manifest."""
    manifest = read_manifest(settings, version)
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(read_artifact(settings, version, name)).hexdigest() == meta["sha256"], name
    return manifest


def training_table_from_mysql(settings: Settings) -> pa.Table:
    """The 13-column training table, joined in MySQL (what the Glue job computes)."""
    from recsys.core.db import connect_mysql

    conn = connect_mysql(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(TRAINING_SQL)
            rows = cur.fetchall()
    finally:
        conn.close()
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in TRAINING_SCHEMA]
    return pa.table(
        [pa.array(col, type=f.type) for col, f in zip(columns, TRAINING_SCHEMA, strict=True)], schema=TRAINING_SCHEMA
    )


def training_attributes(table: pa.Table) -> dict[int, tuple[str | None, float | None]]:
    """customerNumber -> (country, creditLimit) as the training set carries them."""
    rows = zip(
        table["customerNumber"].to_pylist(), table["country"].to_pylist(), table["creditLimit"].to_pylist(), strict=True
    )
    return {int(c): (country, None if credit is None else float(credit)) for c, country, credit in rows}


def publish_training_table(settings: Settings, table: pa.Table, partition_key: str = "productLine") -> dict:
    """Publish ``table`` as a training-set snapshot + ``_manifest.json`` in the datalake bucket."""
    s3 = client("s3", settings)
    bucket = settings.datalake_bucket
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    prefix = f"{TRAINING_PREFIX}{SNAPSHOTS_DIR}{run_id}/"
    files = []
    if table.num_rows:
        for value in pc.unique(table[partition_key]).to_pylist():
            part = table.filter(pc.equal(table[partition_key], value)).drop_columns([partition_key])
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="snappy")
            partition = f"{partition_key}={quote(str(value), safe=' ')}"
            key = f"{prefix}{partition}/part-00000-{secrets.token_hex(4)}.snappy.parquet"
            s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
            files.append({"key": key, "size": buf.tell(), "rows": part.num_rows})
    s3.put_object(Bucket=bucket, Key=prefix + SNAPSHOT_SUCCESS, Body=b"")
    manifest = {
        "run_id": run_id,
        "created_at": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "snapshot_prefix": prefix,
        "partition_key": partition_key,
        "row_count": table.num_rows,
        "columns": [{"name": f.name, "type": spark_type(f.type)} for f in table.schema],
        "files": files,
        "quality": {},
        "source": settings.mysql_jdbc_url,
        "producer": "tests/support/fixtures_train.py",
    }
    s3.put_object(Bucket=bucket, Key=TRAINING_PREFIX + TRAINING_MANIFEST, Body=json.dumps(manifest).encode())
    return manifest


@pytest.fixture(scope="session")
def train_settings(stack):
    """Settings for a MySQL database and S3 buckets of the trainer's tests alone, seeded larger than the lab."""
    from recsys.apps.source import seed_configured_source
    from recsys.core.db import drop_database
    from recsys_seed import SeedSpec

    settings = replace(
        stack,
        mysql_database=f"recsys_test_{os.getpid()}_train",
        datalake_bucket="train-test-datalake",
        artifacts_bucket="train-test-artifacts",
    )
    for bucket in (settings.datalake_bucket, settings.artifacts_bucket):
        ensure_bucket(settings, bucket)
    seed_configured_source(settings, SeedSpec(*TRAIN_SEED_SPEC), reset=True)
    yield settings
    drop_database(settings)


@pytest.fixture(scope="session")
def train_table(train_settings) -> pa.Table:
    """The training table of the trainer's seeded source."""
    return training_table_from_mysql(train_settings)


@pytest.fixture(scope="session")
def train_dataset(train_settings, train_table) -> dict:
    """That table published as the current training set; returns its manifest."""
    return publish_training_table(train_settings, train_table)


@pytest.fixture(scope="session")
def train_published(train_settings, train_dataset, tmp_path_factory):
    """One full ``train_and_publish`` run with the default hyper-parameters (a TrainResult)."""
    from recsys.apps.source import planted_truth_for
    from recsys.pipeline.train import TrainParams, train_and_publish

    truth, note = planted_truth_for(train_settings)
    return train_and_publish(
        train_settings, TrainParams(), tmp_path_factory.mktemp("train-reports"), truth=truth, ceiling_note=note
    )


@pytest.fixture
def train_bad_settings(train_settings):
    """Settings whose datalake bucket is empty and private to one test (the artifacts bucket is shared)."""
    name = f"train-test-bad-{secrets.token_hex(3)}"
    ensure_bucket(train_settings, name)
    return replace(train_settings, datalake_bucket=name)
