"""Fixtures for the vector DB tests: a database and an artifacts bucket of their own on the session
stack, and a helper that publishes synthetic model versions in the contract layout.

The own database/bucket keep these tests independent of other stages' tests that load models
into the stack's default database or move the serving pointer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from recsys.contracts import (
    ITEM_EMBEDDINGS,
    MODEL_MANIFEST,
    RATED_ITEMS,
    SERVING_POINTER_KEY,
    USER_EMBEDDINGS,
    artifact_key,
)
from recsys.pipeline.artifacts import embeddings_csv  # the trainer's writer: the files the loader really gets

VECTORDB_DATABASE = "recsys_vectordb_test"
VECTORDB_BUCKET = "recsys-vectordb-test-artifacts"


@dataclass(frozen=True)
class SyntheticModel:
    """A published synthetic model version: what was uploaded, for comparing with query results."""

    version: str
    item_ids: np.ndarray  # (P,) str
    item_vectors: np.ndarray  # (P, D) float32
    user_ids: np.ndarray  # (C,) int
    user_vectors: np.ndarray  # (C, D) float32

    @property
    def dimension(self) -> int:
        return self.item_vectors.shape[1]

    def exact_top_k(self, queries: np.ndarray, k: int) -> list[list[str]]:
        """Exact top-k item ids by cosine similarity, computed in numpy."""
        items = self.item_vectors / np.linalg.norm(self.item_vectors, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        order = np.argsort(-(q @ items.T), axis=1, kind="stable")[:, :k]
        return [list(self.item_ids[row]) for row in order]


def clustered_vectors(
    rng: np.random.Generator, counts: tuple[int, ...], dim: int, clusters: int, spread: float = 0.5
) -> list[np.ndarray]:
    """One array per entry of ``counts``, all around the same ``clusters`` random centres (items and
    users share one space, as ALS factors do), so nearest neighbours are meaningful."""
    centres = rng.normal(size=(clusters, dim))
    return [
        (centres[rng.integers(clusters, size=n)] + spread * rng.normal(size=(n, dim))).astype(np.float32)
        for n in counts
    ]


def version_id(n: int) -> str:
    """A contract-shaped version id, distinct per ``n``."""
    return f"20261126T{n:06d}Z-{hashlib.sha256(str(n).encode()).hexdigest()[:8]}"


class ModelPublisher:
    """Uploads model versions (CSVs, manifest, optional pointer) to the test artifacts bucket."""

    def __init__(self, settings, s3):
        self.settings = settings
        self.s3 = s3
        self.bucket = settings.artifacts_bucket
        self._next = 0

    def new_version(self) -> str:
        self._next += 1
        return version_id(self._next)

    def synthetic(
        self,
        items: int,
        users: int,
        dim: int,
        *,
        seed: int = 0,
        clusters: int = 20,
        version: str | None = None,
        item_prefix: str = "S",
    ) -> SyntheticModel:
        """A clustered synthetic model, published (not pointed to)."""
        item_vectors, user_vectors = clustered_vectors(np.random.default_rng(seed), (items, users), dim, clusters)
        model = SyntheticModel(
            version=version or self.new_version(),
            item_ids=np.array([f"{item_prefix}{i:05d}" for i in range(items)]),
            item_vectors=item_vectors,
            user_ids=np.arange(1000, 1000 + users),
            user_vectors=user_vectors,
        )
        self.publish(
            model.version,
            embeddings_csv(model.item_ids, model.item_vectors),
            embeddings_csv(model.user_ids, model.user_vectors),
            dim,
        )
        return model

    def publish(
        self,
        version: str,
        item_csv: bytes | None,
        user_csv: bytes | None,
        dim: int | None,
        manifest_extra: dict | None = None,
        checksums: bool = True,
        rated_csv: bytes | None = None,
    ) -> None:
        """Upload the files given (None = leave it out); the manifest records ``dim`` and sha256s."""
        files = {ITEM_EMBEDDINGS: item_csv, USER_EMBEDDINGS: user_csv, RATED_ITEMS: rated_csv}
        for name, body in files.items():
            if body is not None:
                self.s3.put_object(Bucket=self.bucket, Key=artifact_key(version, name), Body=body)
        manifest = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(),
            "embedding_dim": dim,
            "embedding_transform": "none",
        }
        if checksums:
            manifest["files"] = {
                n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items() if b is not None
            }
        manifest.update(manifest_extra or {})
        self.s3.put_object(Bucket=self.bucket, Key=artifact_key(version, MODEL_MANIFEST), Body=json.dumps(manifest))

    def point_to(self, version: str) -> None:
        """Move the serving pointer."""
        pointer = {"version": version, "updated_at": datetime.now(UTC).isoformat()}
        self.s3.put_object(Bucket=self.bucket, Key=SERVING_POINTER_KEY, Body=json.dumps(pointer))


def fresh_pg_database(settings, name: str) -> None:
    """(Re)create an empty PostgreSQL database ``name`` on the settings' server."""
    from psycopg2 import sql

    from recsys.core.db import connect_pg

    conn = connect_pg(settings)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture(scope="session")
def vectordb_settings(stack):
    """The stack's settings pointed at a PostgreSQL database and an artifacts bucket of our own."""
    from recsys.core.aws import client

    fresh_pg_database(stack, VECTORDB_DATABASE)
    client("s3", stack).create_bucket(Bucket=VECTORDB_BUCKET)
    return dataclasses.replace(stack, pg_database=VECTORDB_DATABASE, artifacts_bucket=VECTORDB_BUCKET)


@pytest.fixture(scope="session")
def vectordb_publisher(vectordb_settings) -> ModelPublisher:
    from recsys.core.aws import client

    return ModelPublisher(vectordb_settings, client("s3", vectordb_settings))


@pytest.fixture(scope="session")
def vectordb_base_model(vectordb_publisher) -> SyntheticModel:
    """The main test model: 5,000 items x 32 dims in 20 clusters, 300 users."""
    return vectordb_publisher.synthetic(items=5000, users=300, dim=32, seed=7)


@pytest.fixture
def vectordb_live(vectordb_settings, vectordb_base_model) -> SyntheticModel:
    """``vectordb_base_model`` is live (loaded again only when another test switched away)."""
    from recsys.pipeline.vector_load import load_embeddings

    load_embeddings(vectordb_settings, vectordb_base_model.version)
    return vectordb_base_model


@pytest.fixture
def vectordb_conn(vectordb_settings):
    """A psycopg2 connection to the test database, closed after the test."""
    from recsys.core.db import connect_pg

    conn = connect_pg(vectordb_settings)
    yield conn
    conn.close()
