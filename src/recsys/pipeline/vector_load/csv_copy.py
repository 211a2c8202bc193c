"""Streaming a version's CSVs from S3 into its staged tables with ``COPY ... FROM STDIN``."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import psycopg2
from botocore.response import StreamingBody
from tqdm import tqdm

from recsys.contracts import MODEL_MANIFEST
from recsys.core.aws import client
from recsys.core.config import Settings
from recsys.core.db import PgConnection
from recsys.core.errors import PipelineError
from recsys.pipeline.vector_load.manifest import ModelVersion, expected_sha256
from recsys.pipeline.vector_load.tables import ServedTable, copy_sql

log = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1 << 20


class S3CsvStream:
    """File-like view of an S3 object for ``copy_expert``: counts rows for progress, hashes bytes."""

    def __init__(self, body: StreamingBody, bar: tqdm[Any]) -> None:
        self._body = body
        self._bar = bar
        self.sha256 = hashlib.sha256()
        self.lines = 0

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self._body.read(size if size and size > 0 else COPY_CHUNK_BYTES)
        self.sha256.update(chunk)
        newlines = chunk.count(b"\n")
        self.lines += newlines
        self._bar.update(newlines)
        return chunk


def copy_table(conn: PgConnection, settings: Settings, model: ModelVersion, table: ServedTable) -> int:
    """Stream one CSV from S3 into its staged table; returns the row count. Not committed."""
    key = model.key(table.csv_file)
    obj = client("s3", settings).get_object(Bucket=model.bucket, Key=key)
    with (
        tqdm(desc=f"COPY {table.csv_file}", unit=" rows", unit_scale=True, disable=None, leave=False) as bar,
        conn.cursor() as cur,
    ):
        stream = S3CsvStream(obj["Body"], bar)
        try:
            # the stub asks for readline too; psycopg2 reads COPY FROM STDIN input with read() only
            cur.copy_expert(copy_sql(table, model.version), stream, size=COPY_CHUNK_BYTES)  # type: ignore[arg-type]
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:  # bad value, duplicate or missing id
            raise _bad_csv(model, table, exc) from exc
        rows: int = cur.rowcount
    expected = expected_sha256(model, table.csv_file)
    if expected and stream.sha256.hexdigest() != expected:
        raise PipelineError(
            f"model version {model.version}: {table.csv_file} does not match the sha256 in "
            f"{MODEL_MANIFEST} (file {stream.sha256.hexdigest()[:12]}…, manifest {expected[:12]}…)"
        )
    if rows == 0:
        raise PipelineError(f"model version {model.version}: {table.csv_file} has no rows: refusing an empty model")
    log.info("copied %s rows of s3://%s/%s into %s", f"{rows:,}", model.bucket, key, table.staged(model.version))
    return rows


def _bad_csv(model: ModelVersion, table: ServedTable, exc: psycopg2.Error) -> PipelineError:
    """A PipelineError naming version, file and line (from COPY's error context) of a bad row."""
    context = exc.diag.context or ""
    line = re.search(r"line (\d+)", context)
    column = re.search(r"column (\w+)", context)
    where = f" line {line.group(1)}" if line else ""
    where += f" ({column.group(1)})" if column else ""
    detail = f": {exc.diag.message_detail}" if exc.diag.message_detail else ""
    return PipelineError(f"model version {model.version}: {table.csv_file}{where}: {exc.diag.message_primary}{detail}")
