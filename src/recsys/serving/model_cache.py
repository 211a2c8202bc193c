"""The serving model: artifacts read from S3 at cold start, kept, and switched when the pointer moves.

``models/serving.json`` names the version; ``models/<version>/`` holds ``model.npz`` (item factors,
the confidence settings and the model kind's own fold-in arrays), ``popular_items.json`` (the
fallback) and ``manifest.json`` (model kind, embedding transform, confidence formula). The
manifest's ``model.kind`` picks the fold-in (``recsys.model.registry``). See docs/contracts.md section 2.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.contracts import MODEL_MANIFEST, MODEL_NPZ, POPULAR_ITEMS, SERVING_POINTER_KEY, artifact_key
from recsys.model.als import ALS_KIND
from recsys.model.base import FoldInModel
from recsys.model.foldin import confidence, to_query_vector
from recsys.model.registry import UnknownModelKind, fold_in_class

if TYPE_CHECKING:  # stubs only: the Lambda zips ship boto3 without them
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# A browse is weaker evidence than a purchase rating: looking at an item reads as a 4-star
# interaction, more units or putting it in the cart as 5 (the top of the trained 1..5 scale).
BROWSE_RATING_BASE = 3.0
MAX_RATING = 5.0


class ModelUnavailable(RuntimeError):
    """No serving model could be read (no pointer yet, or artifacts missing)."""


@dataclass(frozen=True)
class PopularItem:
    product_code: str
    score: float


@dataclass
class ServingModel:
    """Everything the Lambda needs from one model version."""

    version: str
    item_factors: np.ndarray  # (P, F) float32, raw ALS
    item_index: dict[str, int]  # productCode -> row of item_factors
    fold_in: FoldInModel  # the model kind's serving side (recsys.model.registry)
    alpha: float
    rating_offset: float
    embedding_transform: str
    popular: list[PopularItem]
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    def browse_confidences(self, engagements: list[float]) -> np.ndarray:
        """Confidence of browsed items by the manifest's formula, browses read as ratings."""
        ratings = np.minimum(BROWSE_RATING_BASE + np.asarray(engagements, dtype=np.float64), MAX_RATING)
        return confidence(ratings, self.alpha, self.rating_offset)

    def cold_start_query(
        self,
        codes: list[str],
        engagements: list[float],
        *,
        country: str | None = None,
        credit_limit: float | None = None,
    ) -> tuple[str, np.ndarray | None]:
        """(strategy, query vector or None) of a customer without a stored vector, from their browse
        history (items the model does not know are ignored) and attributes (``recsys.model.hybrid_foldin``)."""
        known = [(self.item_index[c], e) for c, e in zip(codes, engagements, strict=True) if c in self.item_index]
        rows, weights = [r for r, _ in known], [e for _, e in known]
        strategy, user = self.fold_in.cold_start_vector(
            self.item_factors, rows, self.browse_confidences(weights), country=country, credit_limit=credit_limit
        )
        return strategy, None if user is None else to_query_vector(user, self.embedding_transform)

    def popular_items(self, k: int, exclude: set[str]) -> list[PopularItem]:
        """The k most popular items not in ``exclude``."""
        return [p for p in self.popular if p.product_code not in exclude][:k]


def _confidence_settings(manifest: dict[str, Any], npz: np.lib.npyio.NpzFile) -> tuple[float, float]:
    """(alpha, rating_offset) from the manifest's confidence formula, else the model archive."""
    conf = manifest.get("confidence") or {}
    if not isinstance(conf, dict):
        conf = {}
    params = manifest.get("hyperparameters") or {}
    alpha = conf.get("alpha", params.get("alpha", float(npz["alpha"]) if "alpha" in npz.files else 1.0))
    offset = conf.get(
        "rating_offset",
        params.get("rating_offset", float(npz["rating_offset"]) if "rating_offset" in npz.files else 0.0),
    )
    return float(alpha), float(offset)


def model_kind(manifest: dict[str, Any]) -> str:
    """The manifest's ``model.kind``; manifests written before there was a choice of model are ALS."""
    model = manifest.get("model")
    return str(model.get("kind", ALS_KIND)) if isinstance(model, dict) else ALS_KIND


def load_version(s3: S3Client, bucket: str, version: str) -> ServingModel:
    """Read one version's artifacts from S3."""

    def read(name: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=artifact_key(version, name))["Body"].read()

    try:
        manifest = json.loads(read(MODEL_MANIFEST))
        raw = read(MODEL_NPZ)
        popular = json.loads(read(POPULAR_ITEMS))
    except s3.exceptions.NoSuchKey as exc:
        raise ModelUnavailable(
            f"model {version}: artifact missing under s3://{bucket}/{artifact_key(version, '')}"
        ) from exc
    try:
        kind_class = fold_in_class(model_kind(manifest))
    except UnknownModelKind as exc:
        raise ModelUnavailable(f"model {version}: {exc}") from None
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        item_ids = [str(x) for x in npz["item_ids"]]
        alpha, offset = _confidence_settings(manifest, npz)
        try:
            fold_in = kind_class.from_arrays(npz)
        except (KeyError, ValueError) as exc:
            raise ModelUnavailable(
                f"model {version}: {MODEL_NPZ} does not hold a {kind_class.kind} model: {exc}"
            ) from None
        model = ServingModel(
            version=version,
            item_factors=np.asarray(npz["item_factors"], dtype=np.float32),
            item_index={code: i for i, code in enumerate(item_ids)},
            fold_in=fold_in,
            alpha=alpha,
            rating_offset=offset,
            embedding_transform=str(manifest.get("embedding_transform", "none")),
            popular=[PopularItem(str(p["product_code"]), float(p["score"])) for p in popular],
            manifest=manifest,
        )
    log.info(
        "loaded %s model %s: %d items, %d factors, transform %s",
        fold_in.kind,
        version,
        len(item_ids),
        model.item_factors.shape[1],
        model.embedding_transform,
    )
    return model


def read_pointer(s3: S3Client, bucket: str) -> str:
    """The version ``models/serving.json`` names."""
    try:
        body = s3.get_object(Bucket=bucket, Key=SERVING_POINTER_KEY)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise ModelUnavailable(
            f"no serving pointer s3://{bucket}/{SERVING_POINTER_KEY}: train and publish a model first"
        ) from exc
    return str(json.loads(body)["version"])


class ModelCache:
    """Keeps the serving model across invocations; re-reads the pointer at most every ``ttl`` seconds.

    Thread-safe (the API serves requests from a thread pool): one thread loads, the others wait for it.
    """

    def __init__(
        self, s3: S3Client, bucket: str, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._s3, self._bucket, self._ttl, self._clock = s3, bucket, ttl_seconds, clock
        self._models: dict[str, ServingModel] = {}
        self._pointer: str | None = None
        self._checked_at = float("-inf")
        self._lock = threading.RLock()

    def current(self) -> ServingModel:
        """The model the pointer names (switching when it moved since the last check)."""
        with self._lock:
            now = self._clock()
            if self._pointer is None or now - self._checked_at >= self._ttl:
                version = read_pointer(self._s3, self._bucket)
                if version != self._pointer:
                    log.info("serving pointer: %s -> %s", self._pointer, version)
                self._pointer, self._checked_at = version, now
            return self.version(self._pointer)

    def version(self, version: str) -> ServingModel:
        """A given version's model (loaded once; only the latest two are kept)."""
        with self._lock:
            if version not in self._models:
                self._models[version] = load_version(self._s3, self._bucket, version)
                for stale in list(self._models)[:-2]:
                    del self._models[stale]
            return self._models[version]
