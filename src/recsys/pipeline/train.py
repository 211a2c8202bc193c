"""The trainer: implicit ALS on the published training set, offline evaluation, versioned artifacts.

Steps: read the complete published training set (``pipeline.dataset``) → validate it → encode the
customer × product confidence matrix → hold out a seeded 20 % per customer and evaluate the model
against popularity, random and the planted-truth ceiling, ranking by cosine on the serving
embeddings → fit the final model on every rating → write the artifacts and report, then move the
serving pointer (``pipeline.artifacts.publish_version``). The planted-truth ceiling, when the
caller has one (a source seeded by ``recsys_seed``), is passed in.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inference.foldin import (TRANSFORM_MIPS, TRANSFORM_NONE, TRANSFORMS, confidence, max_item_norm,
                              to_item_embedding, to_query_vector)
from recsys import contracts
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.pipeline import artifacts, dataset, evaluate, evaluation_report

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("customerNumber", "productCode", "productRating")
CONFIDENCE_FORMULA = "c = 1 + alpha * max(rating - rating_offset, 0); unobserved: p = 0, c = 1"
# The fallback list: the API's largest k plus room for a long browse history to be excluded.
POPULAR_ITEMS_KEPT = 1000
MODEL_RANKER = "als"
PLAIN_COSINE_RANKER = "als (cosine, no transform)"
MIPS_RANKER = "als (mips-augment)"


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters and evaluation protocol; defaults were tuned on a validation split (docs/train.md)."""

    factors: int = 16
    iterations: int = 15
    regularization: float = 20.0
    alpha: float = 5.0
    rating_offset: float = 2.0
    seed: int = 42
    embedding_transform: str = TRANSFORM_MIPS
    holdout_fraction: float = 0.2
    relevant_min_rating: float = 4.0
    k: int = 10

    def hyperparameters(self) -> dict:
        return {name: getattr(self, name) for name in
                ("factors", "iterations", "regularization", "alpha", "rating_offset", "seed")}


@dataclass(frozen=True)
class Factors:
    """A fitted ALS model: raw factors, rows aligned with ``Interactions.user_ids``/``item_ids``."""

    user_factors: np.ndarray  # (C, F) float32
    item_factors: np.ndarray  # (P, F) float32
    seconds: float


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer read: the manifest's run id and row count, and where it lives."""

    run_id: str
    row_count: int
    snapshot_prefix: str


@dataclass(frozen=True)
class TrainResult:
    version: str
    manifest: dict
    report: evaluate.EvaluationReport
    report_dir: Path


# -- input ------------------------------------------------------------------------------------

def read_published_training_set(settings: Settings) -> tuple[pa.Table, DatasetInfo]:
    """The complete, published training set and its identity; PipelineError when there is none."""
    manifest, table = dataset.read_published(settings)
    info = DatasetInfo(str(manifest.get("run_id", "unknown")), int(manifest.get("row_count", table.num_rows)),
                       str(manifest.get("snapshot_prefix", "")))
    return table, info


def validate_training_table(table: pa.Table, run_id: str) -> None:
    """Refuse a training set ALS cannot learn from, naming the problem."""
    where = f"training set {run_id}"
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise PipelineError(f"{where} lacks column(s) {', '.join(missing)} "
                            f"(has: {', '.join(table.column_names) or 'none'})")
    if table.num_rows == 0:
        raise PipelineError(f"{where} is empty: no ratings to train on")
    for column in REQUIRED_COLUMNS:
        nulls = table[column].null_count
        if nulls:
            raise PipelineError(f"{where} has {nulls} null {column} value(s)")
    ratings = pc.cast(table["productRating"], pa.float64())
    low, high = pc.min(ratings).as_py(), pc.max(ratings).as_py()
    if low < 1 or high > 5:
        raise PipelineError(f"{where} has productRating outside 1..5 (min {low:g}, max {high:g})")
    customers = pc.count_distinct(table["customerNumber"]).as_py()
    products = pc.count_distinct(table["productCode"]).as_py()
    if customers < 2:
        raise PipelineError(f"{where} has {customers} customer(s); collaborative filtering needs at least 2")
    if products < 2:
        raise PipelineError(f"{where} has {products} product(s); ranking needs at least 2")
    pairs = table.group_by(["customerNumber", "productCode"]).aggregate([]).num_rows
    if pairs != table.num_rows:
        raise PipelineError(f"{where} has {table.num_rows - pairs} duplicate (customerNumber, productCode) rows")


# -- model --------------------------------------------------------------------------------------

def confidence_matrix(data: evaluate.Interactions, params: TrainParams, mask: np.ndarray | None = None):
    """Customers × products CSR of Hu–Koren confidences (the same formula the Lambda's fold-in uses)."""
    return data.matrix(confidence(data.ratings, params.alpha, params.rating_offset), mask)


def fit_als(matrix, params: TrainParams, show_progress: bool = False) -> Factors:
    """Fit implicit's CPU ALS on a confidence matrix (values are c itself, so implicit's alpha stays 1)."""
    from implicit.cpu.als import AlternatingLeastSquares  # heavy; only fitting needs it

    model = AlternatingLeastSquares(factors=params.factors, regularization=params.regularization, alpha=1.0,
                                    iterations=params.iterations, random_state=params.seed)
    started = time.perf_counter()
    model.fit(matrix, show_progress=show_progress)
    seconds = time.perf_counter() - started
    log.info("ALS %d factors x %d iterations on %s ratings (%d x %d) in %.1f s", params.factors,
             params.iterations, f"{matrix.nnz:,}", *matrix.shape, seconds)
    return Factors(np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32), seconds)


def serving_scorer(factors: Factors, transform: str) -> evaluate.Scorer:
    """Rank as pgvector will: cosine between query vectors and item embeddings under ``transform``."""
    return evaluate.cosine_scorer(to_query_vector(factors.user_factors, transform),
                                  to_item_embedding(factors.item_factors, transform))


# -- evaluation ---------------------------------------------------------------------------------

def evaluate_model(data: evaluate.Interactions, params: TrainParams, truth=None, ceiling_note: str = "",
                   show_progress: bool = False) -> evaluate.EvaluationReport:
    """Fit on the training part of a seeded split and score the model (both transforms) and references."""
    test = evaluate.holdout_mask(data, params.holdout_fraction, params.seed)
    train_part = confidence_matrix(data, params, ~test)
    factors = fit_als(train_part, params, show_progress)
    other = TRANSFORM_NONE if params.embedding_transform == TRANSFORM_MIPS else TRANSFORM_MIPS
    scorers: dict[str, evaluate.Scorer] = {
        MODEL_RANKER: serving_scorer(factors, params.embedding_transform),
        _transform_ranker(other): serving_scorer(factors, other),
        evaluate.POPULARITY: evaluate.popularity_scorer(train_part),
        evaluate.RANDOM: evaluate.random_scorer(data.shape[1], params.seed),
    }
    truth_scorer = evaluate.planted_truth_scorer(data, truth) if truth is not None else None
    if truth_scorer is not None:
        scorers[evaluate.PLANTED_TRUTH] = truth_scorer
    elif truth is not None:
        ceiling_note = "planted-truth ceiling unavailable: the seeder's ids do not cover the training set"
    report = evaluate.evaluate_rankers(data, test, scorers, k=params.k, relevant_min_rating=params.relevant_min_rating,
                                       holdout_fraction=params.holdout_fraction, split_seed=params.seed,
                                       ceiling_note=ceiling_note)
    if MODEL_RANKER not in report.rankers:
        raise PipelineError(f"cannot evaluate: no customer has a held-out rating >= {params.relevant_min_rating:g} "
                            f"({report.test_ratings} held out of {len(data.users)} ratings); the training set is too small")
    return report


def _transform_ranker(transform: str) -> str:
    return MIPS_RANKER if transform == TRANSFORM_MIPS else PLAIN_COSINE_RANKER


def headline_metrics(report: evaluate.EvaluationReport) -> dict:
    """The model's NDCG ratios to popularity and to the ceiling (None when unavailable)."""
    return {"ndcg_vs_popularity": report.ratio(MODEL_RANKER, evaluate.POPULARITY),
            "ndcg_vs_planted_truth": report.ratio(MODEL_RANKER, evaluate.PLANTED_TRUTH)}


# -- artifacts ----------------------------------------------------------------------------------

def popular_items(data: evaluate.Interactions, top_n: int = POPULAR_ITEMS_KEPT) -> list[dict]:
    """The most-rated products, best first, score = count / best count (the Lambda's fallback)."""
    counts = np.bincount(data.items, minlength=data.shape[1]).astype(np.float64)
    order = np.lexsort((np.arange(counts.size), -counts))[:top_n]
    return [{"product_code": str(data.item_ids[j]), "score": round(counts[j] / counts.max(), 6)} for j in order]


def model_files(data: evaluate.Interactions, factors: Factors, params: TrainParams) -> dict[str, bytes]:
    """The embeddings CSVs, model.npz and popular_items.json of a fitted model."""
    max_norm = max_item_norm(factors.item_factors)
    item_emb = to_item_embedding(factors.item_factors, params.embedding_transform, max_norm)
    user_emb = to_query_vector(factors.user_factors, params.embedding_transform)
    npz = artifacts.npz_bytes({
        "item_factors": factors.item_factors, "user_factors": factors.user_factors,
        "item_ids": data.item_ids.astype(str), "user_ids": data.user_ids.astype(np.int64),
        "regularization": np.float64(params.regularization), "alpha": np.float64(params.alpha),
        "rating_offset": np.float64(params.rating_offset), "factors": np.int64(params.factors),
        "max_item_norm": np.float64(max_norm), "embedding_transform": np.str_(params.embedding_transform),
    })
    return {
        contracts.ITEM_EMBEDDINGS: artifacts.embeddings_csv(data.item_ids, item_emb),
        contracts.USER_EMBEDDINGS: artifacts.embeddings_csv(data.user_ids, user_emb),
        contracts.MODEL_NPZ: npz,
        contracts.POPULAR_ITEMS: json.dumps(popular_items(data), indent=1).encode(),
        contracts.RATED_ITEMS: artifacts.rated_items_csv(data.user_ids[data.users], data.item_ids[data.items]),
    }


def model_manifest(version: str, dataset_info: DatasetInfo, data: evaluate.Interactions, params: TrainParams,
                   factors: Factors, report: evaluate.EvaluationReport) -> dict:
    """manifest.json without ``files`` (``publish_version`` adds the checksums)."""
    dim = params.factors + (1 if params.embedding_transform == TRANSFORM_MIPS else 0)
    return {
        "version": version,
        "created_at": artifacts.utc_now_iso(),
        "dataset": asdict(dataset_info),
        "hyperparameters": params.hyperparameters(),
        "factors": params.factors,
        "embedding_dim": dim,
        "embedding_transform": params.embedding_transform,
        "max_item_norm": max_item_norm(factors.item_factors),
        "confidence": {"formula": CONFIDENCE_FORMULA, "alpha": params.alpha, "rating_offset": params.rating_offset},
        "final_fit": "all ratings (training part + held-out); metrics are from the fit on the training part",
        "counts": {"ratings": int(len(data.users)), "customers": int(data.shape[0]), "products": int(data.shape[1])},
        "training_seconds": round(factors.seconds, 3),
        "metrics": report.as_dict() | headline_metrics(report),
        "library": f"implicit {_implicit_version()} (CPU ALS, conjugate gradient)",
        "producer": "recsys.train",
    }


def _implicit_version() -> str:
    return package_version("implicit")


# -- the command --------------------------------------------------------------------------------

def train_and_publish(settings: Settings, params: TrainParams, reports_dir: Path = Path("reports"), *,
                      truth=None, ceiling_note: str = "", show_progress: bool = False) -> TrainResult:
    """The whole stage: read, validate, evaluate, fit on all ratings, write the report and artifacts,
    then move the serving pointer. Nothing is published unless every step succeeds.

    ``truth`` (a ``recsys_seed.PlantedTruth``) adds the planted-truth ceiling to the evaluation;
    ``ceiling_note`` says where it came from, or why there is none.
    """
    if params.embedding_transform not in TRANSFORMS:
        raise PipelineError(f"unknown embedding transform {params.embedding_transform!r}")
    table, dataset_info = read_published_training_set(settings)
    validate_training_table(table, dataset_info.run_id)
    data = evaluate.interactions_from_table(table)
    log.info("training set %s: %s ratings, %s customers, %s products", dataset_info.run_id, f"{len(data.users):,}",
             f"{data.shape[0]:,}", f"{data.shape[1]:,}")
    report = evaluate_model(data, params, truth, ceiling_note, show_progress)
    final = fit_als(confidence_matrix(data, params), params, show_progress)
    version = artifacts.new_version()
    manifest = model_manifest(version, dataset_info, data, params, final, report)
    png = evaluation_report.report_png(report, MODEL_RANKER, title=f"model {version}")
    html = evaluation_report.report_html(report, MODEL_RANKER, png, title=f"recsys model {version}", details=manifest)
    report_dir = reports_dir / "train" / version
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / contracts.EVALUATION_PNG).write_bytes(png)
    (report_dir / contracts.EVALUATION_HTML).write_text(html, encoding="utf-8")
    files = model_files(data, final, params) | {contracts.EVALUATION_PNG: png,
                                                contracts.EVALUATION_HTML: html.encode("utf-8")}
    manifest = artifacts.publish_version(settings, version, files, manifest)
    (report_dir / contracts.MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return TrainResult(version, manifest, report, report_dir)
