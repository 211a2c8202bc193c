"""Model artifacts in S3 (docs/contracts.md section 2): the serving pointer, readers and the publisher.

Layout in the ml-artifacts bucket::

    models/<version>/item_embeddings.csv   header id,embedding; pgvector text form "[0.1,0.2,...]"
    models/<version>/user_embeddings.csv
    models/<version>/model.npz             raw ALS factors + everything fold-in needs
    models/<version>/popular_items.json    the fallback, best first
    models/<version>/rated_items.csv       header user_id,item_id: what exclude_rated removes
    models/<version>/evaluation.png|html   the offline evaluation report
    models/<version>/manifest.json         written after the files above; sha256 of each
    models/serving.json                    the pointer, moved last

``publish_version`` writes in that order, so a run that fails part-way never moves the pointer
(and removes what it had written); the previous version keeps serving.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsys.contracts import MODEL_MANIFEST, SERVING_POINTER_KEY, artifact_key
from recsys.core.aws import client, read_object
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.serving.vector_store import to_pgvector_text

log = logging.getLogger(__name__)


def new_version(now: datetime | None = None) -> str:
    """A sortable version id ``YYYYMMDDTHHMMSSZ-<8 hex>`` (UTC)."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# -- readers ------------------------------------------------------------------------------------


def serving_version(settings: Settings) -> str | None:
    """The version ``models/serving.json`` points at, or None when nothing was published yet."""
    body = read_object(settings, settings.artifacts_bucket, SERVING_POINTER_KEY)
    return json.loads(body)["version"] if body else None


def read_artifact(settings: Settings, version: str, name: str) -> bytes:
    """The bytes of one artifact; PipelineError when it does not exist."""
    key = artifact_key(version, name)
    body = read_object(settings, settings.artifacts_bucket, key)
    if body is None:
        raise PipelineError(f"model artifact s3://{settings.artifacts_bucket}/{key} does not exist")
    return body


def read_manifest(settings: Settings, version: str) -> dict[str, Any]:
    """The parsed ``manifest.json`` of ``version``; PipelineError when it is missing or not a JSON object."""
    key = artifact_key(version, MODEL_MANIFEST)
    body = read_object(settings, settings.artifacts_bucket, key)
    if body is None:
        raise PipelineError(f"model version {version} not found: s3://{settings.artifacts_bucket}/{key} does not exist")
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        raise PipelineError(f"model {version}: {MODEL_MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise PipelineError(f"model {version}: {MODEL_MANIFEST} is not a JSON object")
    return manifest


# -- formats ------------------------------------------------------------------------------------


def embeddings_csv(ids: Iterable[object], vectors: np.ndarray) -> bytes:
    """CSV with header ``id,embedding`` as ``aws_s3.table_import_from_s3 (format csv, header true)`` reads it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "embedding"])
    for ident, vector in zip(ids, vectors, strict=True):
        writer.writerow([ident, to_pgvector_text(vector)])
    return out.getvalue().encode("utf-8")


def rated_items_csv(user_ids: Iterable[object], item_ids: Iterable[object]) -> bytes:
    """CSV with header ``user_id,item_id``, one row per rating, as COPY and ``aws_s3`` read it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["user_id", "item_id"])
    writer.writerows(zip(user_ids, item_ids, strict=True))
    return out.getvalue().encode("utf-8")


def npz_bytes(arrays: Mapping[str, np.ndarray | np.generic]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle's bool
    return buf.getvalue()


# -- publishing ---------------------------------------------------------------------------------


def _put_object(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _content_type(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1]
    return {"csv": "text/csv", "json": "application/json", "png": "image/png", "html": "text/html; charset=utf-8"}.get(
        suffix, "application/octet-stream"
    )


def publish_version(
    settings: Settings, version: str, files: Mapping[str, bytes], manifest: dict[str, Any], *, move_pointer: bool = True
) -> dict[str, Any]:
    """Write ``files``, then ``manifest.json`` (with their sha256), then move the serving pointer
    (unless ``move_pointer`` is False: a candidate the pipeline's quality gate promotes or not).

    On any failure the objects written for this version are deleted (best effort), the pointer
    is left where it was, and a PipelineError names the step that failed. Returns the manifest.
    """
    s3 = client("s3", settings)
    bucket = settings.artifacts_bucket
    manifest = {
        **manifest,
        "files": {name: {"sha256": sha256_hex(body), "size": len(body)} for name, body in files.items()},
    }
    written: list[str] = []
    step = "?"
    try:
        for name, body in [*files.items(), (MODEL_MANIFEST, json.dumps(manifest, indent=2).encode())]:
            step = name
            key = artifact_key(version, name)
            _put_object(s3, bucket, key, body, _content_type(name))
            written.append(key)
            log.info("wrote s3://%s/%s (%s bytes)", bucket, key, f"{len(body):,}")
        if move_pointer:
            step = SERVING_POINTER_KEY
            write_serving_pointer(settings, version)
    except Exception as exc:
        _delete_quietly(s3, bucket, written)
        raise PipelineError(
            f"publishing model {version} failed while writing {step}: {exc}; "
            f"serving still points to {_previous_version(settings)}"
        ) from exc
    return manifest


def write_serving_pointer(settings: Settings, version: str) -> None:
    """Point ``models/serving.json`` at ``version`` (publish, promote and roll back all move it here)."""
    pointer = {"version": version, "updated_at": utc_now_iso()}
    _put_object(
        client("s3", settings),
        settings.artifacts_bucket,
        SERVING_POINTER_KEY,
        json.dumps(pointer).encode(),
        "application/json",
    )
    log.info("serving pointer s3://%s/%s -> %s", settings.artifacts_bucket, SERVING_POINTER_KEY, version)


def _previous_version(settings: Settings) -> str:
    try:
        return serving_version(settings) or "nothing"
    except Exception:  # the store that just failed may still be failing
        return "the previous version (pointer unreadable right now)"


def _delete_quietly(s3: Any, bucket: str, keys: list[str]) -> None:
    if not keys:
        return
    try:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    except Exception:  # the pointer never named these keys, so leftovers are harmless
        log.warning("could not delete %d partial objects of a failed publish", len(keys), exc_info=True)
