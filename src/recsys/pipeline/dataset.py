"""Reader of the published training set (docs/contracts.md section 1).

Only the files the manifest lists are read, so a run that died half-way (no new manifest) or a
snapshot still being written is never seen. The partition column comes back from the Hive-style
path (``productLine=Classic Cars/part-….parquet``), is cast to the manifest's type, and the
columns are restored to contract order and types.
"""

from __future__ import annotations

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from recsys.contracts import TRAINING_MANIFEST, TRAINING_PREFIX
from recsys.core.aws import client, is_missing, read_object
from recsys.core.config import Settings
from recsys.core.errors import PipelineError

MANIFEST_KEY = TRAINING_PREFIX + TRAINING_MANIFEST
HIVE_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Spark's directory name for a null partition value

_SIMPLE_TYPES = {
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}
_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")


class _ManifestMoved(Exception):
    """A listed file vanished because a newer run published and removed the old snapshot."""


def arrow_type(spark_type: str) -> pa.DataType:
    """The Arrow type of a Spark SQL simple type string (``int``, ``decimal(10,2)``, ...)."""
    if spark_type in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[spark_type]
    decimal = _DECIMAL.match(spark_type)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    raise PipelineError(f"training set manifest names an unsupported column type {spark_type!r}")


def manifest_schema(manifest: dict[str, Any]) -> pa.Schema:
    """The training set's Arrow schema, in contract order, from the manifest's ``columns``."""
    return pa.schema([(c["name"], arrow_type(c["type"])) for c in manifest["columns"]])


def read_manifest(settings: Settings) -> dict[str, Any]:
    """The published manifest; ``PipelineError`` when no training set has been published."""
    bucket = settings.datalake_bucket
    body = read_object(settings, bucket, MANIFEST_KEY)
    if body is None:
        raise PipelineError(f"no published training set at s3://{bucket}/{MANIFEST_KEY}: run `recsys etl` first")
    try:
        manifest: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise PipelineError(f"training set manifest s3://{bucket}/{MANIFEST_KEY} is not JSON: {exc}") from None
    return manifest


def partition_value(key: str, partition_key: str) -> str | None:
    """The partition value encoded in a file key (Spark escapes special characters as %XX)."""
    for part in key.split("/"):
        name, sep, value = part.partition("=")
        if sep and name == partition_key:
            return None if value == HIVE_NULL_PARTITION else unquote(value)
    raise PipelineError(f"training set file {key} has no {partition_key}=… directory")


def _read_file(
    s3: Any, bucket: str, entry: dict[str, Any], partition_key: str, partition_type: pa.DataType
) -> pa.Table:
    """One listed Parquet file with its partition column restored from the path."""
    try:
        body = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            raise _ManifestMoved(entry["key"]) from None
        raise
    if len(body) != entry["size"]:
        raise PipelineError(
            f"training set file s3://{bucket}/{entry['key']} has {len(body)} bytes, "
            f"the manifest says {entry['size']}: rerun `recsys etl`"
        )
    table = pq.read_table(io.BytesIO(body))
    if partition_key not in table.column_names:
        value = pa.scalar(partition_value(entry["key"], partition_key)).cast(partition_type)
        table = table.append_column(partition_key, pa.repeat(value, table.num_rows))
    return table


def _read_snapshot(s3: Any, bucket: str, manifest: dict[str, Any]) -> pa.Table:
    schema = manifest_schema(manifest)
    key = manifest["partition_key"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(
            pool.map(lambda entry: _read_file(s3, bucket, entry, key, schema.field(key).type), manifest["files"])
        )
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])
    if table.num_rows != manifest["row_count"]:
        raise PipelineError(
            f"training set {manifest['run_id']} has {table.num_rows} rows, the manifest says {manifest['row_count']}"
        )
    return table


def read_training_set(settings: Settings) -> pa.Table:
    """The published training set as one Arrow table: the 13 contract columns, in order, with their types."""
    return read_published(settings)[1]


def read_published(settings: Settings) -> tuple[dict[str, Any], pa.Table]:
    """The manifest and the table of the snapshot that was actually read.

    When a newer run publishes (and deletes the old snapshot) while this reads, it reads again
    from the new manifest; the manifest returned is always the one the rows came from.
    """
    s3 = client("s3", settings)
    bucket = settings.datalake_bucket
    manifest = read_manifest(settings)
    for _ in range(3):
        try:
            return manifest, _read_snapshot(s3, bucket, manifest)
        except _ManifestMoved as missing:
            newer = read_manifest(settings)
            if newer["run_id"] == manifest["run_id"]:
                raise PipelineError(
                    f"training set {manifest['run_id']} lists s3://{bucket}/{missing} "
                    "which does not exist: rerun `recsys etl`"
                ) from None
            manifest = newer
    raise PipelineError("the training set kept being replaced while reading it; try again")
