"""Which version to load: the serving pointer's or a given one, checked against its manifest and S3."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from recsys.contracts import MODEL_MANIFEST, MODELS_PREFIX, RATED_ITEMS, SERVING_POINTER_KEY, artifact_key
from recsys.core.aws import client, is_missing
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.pipeline.artifacts import read_manifest, serving_version
from recsys.pipeline.vector_load.tables import RATED, TABLES

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")  # same rule as sql/embeddings.sql


@dataclass(frozen=True)
class ModelVersion:
    """A published model version in the artifacts bucket."""

    version: str
    bucket: str
    dimension: int
    manifest: dict[str, Any] = field(repr=False)

    def key(self, filename: str) -> str:
        return artifact_key(self.version, filename)

    @property
    def source_uri(self) -> str:
        return f"s3://{self.bucket}/{MODELS_PREFIX}{self.version}/"

    @property
    def has_rated_items(self) -> bool:
        """Whether the version ships ``rated_items.csv`` (versions trained before it do not)."""
        return RATED_ITEMS in (self.manifest.get("files") or {})


def required_serving_version(settings: Settings) -> str:
    """The version the serving pointer ``models/serving.json`` names; PipelineError when there is none."""
    version = serving_version(settings)
    if not version:
        raise PipelineError(
            f"no serving pointer s3://{settings.artifacts_bucket}/{SERVING_POINTER_KEY}: "
            "train a model (`recsys train`) or pass --version"
        )
    return version


def resolve_model_version(settings: Settings, version: str) -> ModelVersion:
    """The published version with its manifest; refuses unknown, malformed or incomplete versions."""
    if not VERSION_PATTERN.match(version):
        raise PipelineError(
            f"invalid model version {version!r}: expected letters, digits, '.', '_', '-' "
            "(e.g. 20261126T154500Z-1a2b3c4d)"
        )
    bucket = settings.artifacts_bucket
    manifest = read_manifest(settings, version)
    dimension = manifest.get("embedding_dim")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= 16000:
        raise PipelineError(f"model version {version}: {MODEL_MANIFEST} has no valid embedding_dim (got {dimension!r})")
    model = ModelVersion(version, bucket, dimension, manifest)
    s3 = client("s3", settings)
    for table in (*TABLES, *([RATED] if model.has_rated_items else [])):
        try:
            s3.head_object(Bucket=bucket, Key=model.key(table.csv_file))
        except s3.exceptions.ClientError as exc:
            if is_missing(exc):
                raise PipelineError(
                    f"model version {version} is incomplete: s3://{bucket}/{model.key(table.csv_file)} does not exist"
                ) from exc
            raise
    return model


def expected_sha256(model: ModelVersion, filename: str) -> str | None:
    """The sha256 the manifest records for ``filename`` (``"files": {name: {"sha256": hex}}``), if any."""
    entry = (model.manifest.get("files") or {}).get(filename)
    return entry.get("sha256") if isinstance(entry, dict) else None
