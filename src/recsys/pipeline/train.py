"""The trainer: pure ALS (implicit) and a hybrid with customer and product features, offline
evaluation, the validation winner published as a versioned model.

Steps: read the complete published training set (``pipeline.dataset``) → validate it → encode the
ratings → split: a seeded 10 % of the customers held out entirely (cold start), 20 % of each other
customer's ratings held out (known customers) → carve a validation split of the same shape out of
the training part, fit ALS and the hybrid (``pipeline.hybrid``) on it and keep the better one by
validation NDCG@10 of known customers → fit both on the training part and score three views against
popularity, random and the planted-truth ceilings, ranking by cosine on the serving embeddings
(known customers; cold customers from their attributes only; and from their attributes plus their
first 3 ratings as a browse history) → fit the winner on every rating → write the artifacts and
report, then move the serving pointer (``pipeline.artifacts.publish_version``). The planted truth,
when the caller has one (a source seeded by ``recsys_seed``), is passed in.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys import contracts
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.model.foldin import (
    TRANSFORM_MIPS,
    TRANSFORM_NONE,
    TRANSFORMS,
    confidence,
    max_item_norm,
    to_item_embedding,
    to_query_vector,
)
from recsys.pipeline import artifacts, dataset, evaluate, evaluation_report, hybrid

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("customerNumber", "productCode", "productRating")
CONFIDENCE_FORMULA = "c = 1 + alpha * max(rating - rating_offset, 0); unobserved: p = 0, c = 1"
# The fallback list: the API's largest k plus room for a long browse history to be excluded.
POPULAR_ITEMS_KEPT = 1000
ALS_RANKER = "als"  # also the model kind in the manifest
HYBRID_RANKER = "hybrid"
MODEL_AUTO = "auto"  # publish the validation winner
MODEL_CHOICES = (MODEL_AUTO, ALS_RANKER, HYBRID_RANKER)
PLAIN_COSINE_RANKER = "als (cosine, no transform)"
MIPS_RANKER = "als (mips-augment)"
VALIDATION_SEED_OFFSET = 1000  # the validation split's seed: params.seed + this


def cold_ranker(model: str, strategy: str) -> str:
    """A cold-start view's ranker name: the model and the serving strategy it stands for."""
    return f"{model} [{strategy}]"


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters and evaluation protocol; defaults were tuned on validation splits (docs/train.md).

    ``factors`` .. ``rating_offset`` are ALS's; the hybrid's are ``hybrid``.
    """

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
    model: str = MODEL_AUTO  # als | hybrid | auto (the validation winner)
    cold_fraction: float = 0.1  # customers held out entirely for the cold-start views
    browse: int = 3  # ratings of a cold customer read as their browse history (second cold view)
    hybrid: hybrid.HybridParams = field(default_factory=hybrid.HybridParams)

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
class Selection:
    """Which model is published and why: the validation views (None when nothing was compared)."""

    kind: str  # ALS_RANKER or HYBRID_RANKER
    reason: str
    validation: evaluate.ViewReports | None
    features_alone: bool  # the hybrid's ``features`` strategy beat popularity on validation


@dataclass(frozen=True)
class Evaluation:
    """The model choice and the reported (test) split's three views."""

    selection: Selection
    views: evaluate.ViewReports

    @property
    def known(self) -> evaluate.EvaluationReport:
        return self.views.known

    def text(self) -> str:
        """The choice and the three views' tables, as the CLI prints them."""
        views = self.views
        return "\n".join([
            f"model: {self.selection.kind} ({self.selection.reason})",
            "-- known customers", views.known.table(),
            f"-- cold start (a): attributes only, {views.cold_customers} held-out customers",
            views.cold_features.table(),
            f"-- cold start (b): attributes + their first {views.browsed_items} ratings as browse history",
            views.cold_browsed.table(),
        ])


@dataclass(frozen=True)
class TrainResult:
    version: str
    manifest: dict
    report: evaluate.EvaluationReport  # known customers, the reported split
    report_dir: Path
    evaluation: Evaluation


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


def serving_scorer(user_vectors: np.ndarray, item_vectors: np.ndarray, transform: str) -> evaluate.Scorer:
    """Rank as pgvector will: cosine between query vectors and item embeddings under ``transform``."""
    return evaluate.cosine_scorer(to_query_vector(user_vectors, transform), to_item_embedding(item_vectors, transform))


# -- evaluation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitFits:
    """The candidates fitted on one split's training part (None: not a candidate)."""

    als: Factors | None
    hybrid: hybrid.HybridFit | None


def candidate_kinds(params: TrainParams, side: hybrid.SideInfo | None) -> list[str]:
    """The models to fit: ``--model``'s choice, or both (ALS alone when the hybrid's columns are missing)."""
    if params.model not in MODEL_CHOICES:
        raise PipelineError(f"unknown model {params.model!r}; expected one of {', '.join(MODEL_CHOICES)}")
    if params.model == ALS_RANKER:
        return [ALS_RANKER]
    if side is None:
        if params.model == HYBRID_RANKER:
            raise PipelineError(f"the hybrid model needs the training set's columns {', '.join(hybrid.SIDE_COLUMNS)}")
        return [ALS_RANKER]
    return [HYBRID_RANKER] if params.model == HYBRID_RANKER else [ALS_RANKER, HYBRID_RANKER]


def fit_candidates(data: evaluate.Interactions, train: np.ndarray, side: hybrid.SideInfo | None, params: TrainParams,
                   kinds: list[str], show_progress: bool = False) -> SplitFits:
    """Fit each candidate on the ``train`` ratings."""
    als = fit_als(confidence_matrix(data, params, train), params, show_progress) if ALS_RANKER in kinds else None
    fitted = (hybrid.fit_hybrid(data.matrix(data.ratings, train), side, params.hybrid, show_progress)
              if HYBRID_RANKER in kinds else None)
    return SplitFits(als, fitted)


def _cold_queries(n_users: int, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """A (n_users, D) query matrix with ``vectors`` in ``rows`` (other rows are never scored)."""
    queries = np.zeros((n_users, vectors.shape[1]), dtype=np.float32)
    queries[rows] = vectors
    return queries


def score_views(data: evaluate.Interactions, split: evaluate.ColdSplit, fits: SplitFits, params: TrainParams,
                truth=None, ceiling_note: str = "") -> evaluate.ViewReports:
    """Every candidate and reference ranker on the split's three views (``evaluate.evaluate_views``)."""
    transform = params.embedding_transform
    train_part = data.matrix(np.ones(len(data.users), dtype=np.float32), split.train)
    references: dict[str, evaluate.Scorer] = {evaluate.POPULARITY: evaluate.popularity_scorer(train_part)}
    ceilings: dict[str, evaluate.Scorer] = {}
    if truth is not None:
        full = evaluate.planted_truth_scorer(data, truth)
        if full is None:
            ceiling_note = "planted-truth ceiling unavailable: the seeder's ids do not cover the training set"
        else:
            ceilings[evaluate.PLANTED_TRUTH] = full
            attributes_only = evaluate.attributes_truth_scorer(data, truth)
            if attributes_only is not None:
                ceilings[evaluate.ATTRIBUTES_TRUTH] = attributes_only
    known: dict[str, evaluate.Scorer] = {}
    cold_features: dict[str, evaluate.Scorer] = {}
    cold_browsed: dict[str, evaluate.Scorer] = {}
    cold = split.cold_users

    def browsed(alpha: float, rating_offset: float):  # the cold customers' browse histories as confidences
        return data.matrix(confidence(data.ratings, alpha, rating_offset), split.browsed)[cold]

    n_users = data.shape[0]
    if fits.als is not None:
        als = fits.als
        other = TRANSFORM_NONE if transform == TRANSFORM_MIPS else TRANSFORM_MIPS
        known[ALS_RANKER] = serving_scorer(als.user_factors, als.item_factors, transform)
        known[_transform_ranker(other)] = serving_scorer(als.user_factors, als.item_factors, other)
        folded = hybrid.solve_customers(als.item_factors, browsed(params.alpha, params.rating_offset),
                                        params.regularization)
        cold_browsed[cold_ranker(ALS_RANKER, contracts.STRATEGY_FOLD_IN)] = serving_scorer(
            _cold_queries(n_users, cold, folded), als.item_factors, transform)
    if fits.hybrid is not None:
        fit = fits.hybrid
        known[HYBRID_RANKER] = serving_scorer(fit.user_vectors, fit.item_vectors, transform)
        # cold customers did not train: their stored row is already their features vector, a @ B
        cold_features[cold_ranker(HYBRID_RANKER, contracts.STRATEGY_FEATURES)] = serving_scorer(
            fit.user_vectors, fit.item_vectors, transform)
        history = browsed(fit.params.alpha, fit.params.rating_offset)
        with_attributes = hybrid.solve_customers(fit.item_vectors, history, fit.precision,
                                                 fit.prior.mean(fit.attributes[cold]))
        without = hybrid.solve_customers(fit.item_vectors, history, fit.precision,
                                         np.broadcast_to(fit.prior.mean(None), with_attributes.shape))
        for strategy, vectors in ((contracts.STRATEGY_FEATURES_FOLD_IN, with_attributes),
                                  (contracts.STRATEGY_FOLD_IN, without)):
            cold_browsed[cold_ranker(HYBRID_RANKER, strategy)] = serving_scorer(
                _cold_queries(n_users, cold, vectors), fit.item_vectors, transform)
    known |= references | {evaluate.RANDOM: evaluate.random_scorer(data.shape[1], split.seed)} | {
        name: scorer for name, scorer in ceilings.items() if name == evaluate.PLANTED_TRUTH}
    cold_features |= references | ceilings
    cold_browsed |= references | ceilings
    return evaluate.evaluate_views(data, split, known, cold_features, cold_browsed, k=params.k,
                                   relevant_min_rating=params.relevant_min_rating,
                                   holdout_fraction=params.holdout_fraction, browsed_items=params.browse,
                                   ceiling_note=ceiling_note)


def _ndcg(report: evaluate.EvaluationReport, ranker: str) -> float | None:
    metrics = report.rankers.get(ranker)
    return None if metrics is None else metrics.ndcg


def select_model(data: evaluate.Interactions, split: evaluate.ColdSplit, side: hybrid.SideInfo | None,
                 params: TrainParams, kinds: list[str], show_progress: bool = False) -> Selection:
    """Fit the candidates on a validation split carved out of ``split``'s training part (the reported
    hold-out is never looked at) and keep the better one by NDCG@k of known customers. The hybrid's
    ``features`` strategy is served only if it beats popularity on the validation cold customers."""
    if kinds == [ALS_RANKER]:
        reason = "--model als" if params.model == ALS_RANKER else "the training set lacks the hybrid's columns"
        return Selection(ALS_RANKER, reason, None, False)
    training = evaluate.subset(data, split.train)
    validation = evaluate.cold_split(training, params.holdout_fraction, params.seed + VALIDATION_SEED_OFFSET,
                                     params.cold_fraction, params.browse)
    views = score_views(training, validation, fit_candidates(training, validation.train, side, params, kinds,
                                                             show_progress), params)
    features = _ndcg(views.cold_features, cold_ranker(HYBRID_RANKER, contracts.STRATEGY_FEATURES))
    popularity = _ndcg(views.cold_features, evaluate.POPULARITY)
    features_alone = features is not None and popularity is not None and features > popularity
    als, mixed = _ndcg(views.known, ALS_RANKER), _ndcg(views.known, HYBRID_RANKER)
    if params.model == HYBRID_RANKER:
        kind, reason = HYBRID_RANKER, "--model hybrid"
    elif als is None or mixed is None:
        kind, reason = ALS_RANKER, "validation split too small to compare: kept the ALS baseline"
    else:
        kind = HYBRID_RANKER if mixed > als else ALS_RANKER
        reason = f"validation NDCG@{params.k} of known customers: als {als:.4f}, hybrid {mixed:.4f}"
    log.info("%s -> publishing %s (%s strategy %s)", reason, kind, contracts.STRATEGY_FEATURES,
             "on" if features_alone else "off")
    return Selection(kind, reason, views, features_alone)


def evaluate_model(data: evaluate.Interactions, params: TrainParams, side: hybrid.SideInfo | None = None, truth=None,
                   ceiling_note: str = "", show_progress: bool = False) -> Evaluation:
    """Choose the model on validation, then fit the candidates on the training part of the reported
    split and score them and the references on its three views."""
    kinds = candidate_kinds(params, side)
    split = evaluate.cold_split(data, params.holdout_fraction, params.seed, params.cold_fraction, params.browse)
    selection = select_model(data, split, side, params, kinds, show_progress)
    fits = fit_candidates(data, split.train, side, params, kinds, show_progress)
    views = score_views(data, split, fits, params, truth, ceiling_note)
    if selection.kind not in views.known.rankers:
        raise PipelineError(f"cannot evaluate: no customer has a held-out rating >= {params.relevant_min_rating:g} "
                            f"({views.known.test_ratings} held out of {len(data.users)} ratings); "
                            "the training set is too small")
    return Evaluation(selection, views)


def _transform_ranker(transform: str) -> str:
    return MIPS_RANKER if transform == TRANSFORM_MIPS else PLAIN_COSINE_RANKER


def headline_metrics(evaluation: Evaluation) -> dict:
    """The published model's NDCG ratios on the reported split (None when unavailable): known customers
    to popularity and the ceiling; cold start from features only to popularity and the attributes-only
    ceiling; cold start with a browse history to popularity and the ceiling."""
    kind, views = evaluation.selection.kind, evaluation.views
    features = cold_ranker(HYBRID_RANKER, contracts.STRATEGY_FEATURES)
    browsed = (cold_ranker(HYBRID_RANKER, contracts.STRATEGY_FEATURES_FOLD_IN) if kind == HYBRID_RANKER
               else cold_ranker(ALS_RANKER, contracts.STRATEGY_FOLD_IN))

    def ratio(report: evaluate.EvaluationReport, ranker: str, reference: str) -> float | None:
        return report.ratio(ranker, reference) if ranker in report.rankers else None

    return {
        "model": kind,
        "ndcg_vs_popularity": ratio(views.known, kind, evaluate.POPULARITY),
        "ndcg_vs_planted_truth": ratio(views.known, kind, evaluate.PLANTED_TRUTH),
        "cold_features_vs_popularity": ratio(views.cold_features, features, evaluate.POPULARITY),
        "cold_features_vs_attributes_truth": ratio(views.cold_features, features, evaluate.ATTRIBUTES_TRUTH),
        "cold_browsed_vs_popularity": ratio(views.cold_browsed, browsed, evaluate.POPULARITY),
        "cold_browsed_vs_planted_truth": ratio(views.cold_browsed, browsed, evaluate.PLANTED_TRUTH),
    }


# -- artifacts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinalModel:
    """The published model, whichever kind: raw vectors plus what fold-in needs."""

    kind: str
    user_vectors: np.ndarray  # (C, D) float32
    item_vectors: np.ndarray  # (P, D) float32
    regularization: float  # ALS's λ; the hybrid's λ_free (its full precision is in ``prior_arrays``)
    hyperparameters: dict
    prior_arrays: dict[str, np.ndarray]  # the hybrid's attribute prior (recsys.model.hybrid_foldin); {} for ALS
    details: dict  # the manifest's model description
    seconds: float


def fit_final(data: evaluate.Interactions, side: hybrid.SideInfo | None, params: TrainParams, selection: Selection,
              show_progress: bool = False) -> FinalModel:
    """Fit the chosen model on every rating (so every customer has a vector)."""
    details = {"kind": selection.kind, "chosen_by": selection.reason}
    if selection.validation is not None:
        details["validation"] = selection.validation.as_dict()
    if selection.kind == ALS_RANKER:
        factors = fit_als(confidence_matrix(data, params), params, show_progress)
        return FinalModel(ALS_RANKER, factors.user_factors, factors.item_factors, params.regularization,
                          params.hyperparameters(), {}, details | {"library": f"implicit {_implicit_version()}"},
                          factors.seconds)
    fit = hybrid.fit_hybrid(data.matrix(data.ratings), side, params.hybrid, show_progress)
    prior = replace(fit.prior, features_alone=selection.features_alone)
    details |= {"library": "numpy + scipy.sparse (recsys.pipeline.hybrid)",
                "item_features": fit.item_feature_names, "customer_attributes": prior.encoder.names(),
                contracts.NPZ_FEATURES_ALONE: selection.features_alone}
    return FinalModel(HYBRID_RANKER, fit.user_vectors, fit.item_vectors, params.hybrid.reg_free,
                      params.hybrid.as_dict(), prior.to_arrays() | {contracts.NPZ_PRECISION: fit.precision},
                      details, fit.seconds)


def popular_items(data: evaluate.Interactions, top_n: int = POPULAR_ITEMS_KEPT) -> list[dict]:
    """The most-rated products, best first, score = count / best count (the Lambda's fallback)."""
    counts = np.bincount(data.items, minlength=data.shape[1]).astype(np.float64)
    order = np.lexsort((np.arange(counts.size), -counts))[:top_n]
    return [{"product_code": str(data.item_ids[j]), "score": round(counts[j] / counts.max(), 6)} for j in order]


def model_files(data: evaluate.Interactions, model: FinalModel, params: TrainParams) -> dict[str, bytes]:
    """The embeddings CSVs, model.npz and popular_items.json of a fitted model."""
    max_norm = max_item_norm(model.item_vectors)
    item_emb = to_item_embedding(model.item_vectors, params.embedding_transform, max_norm)
    user_emb = to_query_vector(model.user_vectors, params.embedding_transform)
    alpha, offset = ((params.hybrid.alpha, params.hybrid.rating_offset) if model.kind == HYBRID_RANKER
                     else (params.alpha, params.rating_offset))
    npz = artifacts.npz_bytes({
        "item_factors": model.item_vectors, "user_factors": model.user_vectors,
        "item_ids": data.item_ids.astype(str), "user_ids": data.user_ids.astype(np.int64),
        "regularization": np.float64(model.regularization), "alpha": np.float64(alpha),
        "rating_offset": np.float64(offset), "factors": np.int64(model.item_vectors.shape[1]),
        "max_item_norm": np.float64(max_norm), "embedding_transform": np.str_(params.embedding_transform),
    } | model.prior_arrays)
    return {
        contracts.ITEM_EMBEDDINGS: artifacts.embeddings_csv(data.item_ids, item_emb),
        contracts.USER_EMBEDDINGS: artifacts.embeddings_csv(data.user_ids, user_emb),
        contracts.MODEL_NPZ: npz,
        contracts.POPULAR_ITEMS: json.dumps(popular_items(data), indent=1).encode(),
        contracts.RATED_ITEMS: artifacts.rated_items_csv(data.user_ids[data.users], data.item_ids[data.items]),
    }


def model_manifest(version: str, dataset_info: DatasetInfo, data: evaluate.Interactions, params: TrainParams,
                   model: FinalModel, evaluation: Evaluation) -> dict:
    """manifest.json without ``files`` (``publish_version`` adds the checksums)."""
    dims = model.item_vectors.shape[1]
    alpha, offset = ((params.hybrid.alpha, params.hybrid.rating_offset) if model.kind == HYBRID_RANKER
                     else (params.alpha, params.rating_offset))
    headline = headline_metrics(evaluation)
    return {
        "version": version,
        "created_at": artifacts.utc_now_iso(),
        "dataset": asdict(dataset_info),
        "model": model.details,
        "hyperparameters": model.hyperparameters,
        "factors": dims,
        "embedding_dim": dims + (1 if params.embedding_transform == TRANSFORM_MIPS else 0),
        "embedding_transform": params.embedding_transform,
        "max_item_norm": max_item_norm(model.item_vectors),
        "confidence": {"formula": CONFIDENCE_FORMULA, "alpha": alpha, "rating_offset": offset},
        "final_fit": "all ratings (training part + held-out); metrics are from the fit on the training part",
        "counts": {"ratings": len(data.users), "customers": int(data.shape[0]), "products": int(data.shape[1])},
        "training_seconds": round(model.seconds, 3),
        "metrics": evaluation.known.as_dict() | {k: v for k, v in headline.items() if not k.startswith("cold")},
        "cold_start": {"customers": evaluation.views.cold_customers, "browsed_items": evaluation.views.browsed_items,
                       "features_only": evaluation.views.cold_features.as_dict(),
                       "features_and_browsed": evaluation.views.cold_browsed.as_dict()}
        | {k: v for k, v in headline.items() if k.startswith("cold")},
        "library": model.details["library"],
        "producer": "recsys.train",
    }


def _implicit_version() -> str:
    return package_version("implicit")


# -- the command --------------------------------------------------------------------------------

def training_side_info(table: pa.Table, data: evaluate.Interactions) -> hybrid.SideInfo | None:
    """The hybrid's side columns, or None (with a log line) when the training set lacks them."""
    missing = hybrid.missing_side_columns(table)
    if missing:
        log.warning("training set lacks %s: the hybrid model is not a candidate", ", ".join(missing))
        return None
    return hybrid.side_info(table, data)


def train_and_publish(settings: Settings, params: TrainParams, reports_dir: Path = Path("reports"), *,
                      truth=None, ceiling_note: str = "", show_progress: bool = False) -> TrainResult:
    """The whole stage: read, validate, choose and evaluate, fit on all ratings, write the report and
    artifacts, then move the serving pointer. Nothing is published unless every step succeeds.

    ``truth`` (a ``recsys_seed.PlantedTruth``) adds the planted-truth ceilings to the evaluation;
    ``ceiling_note`` says where it came from, or why there is none.
    """
    if params.embedding_transform not in TRANSFORMS:
        raise PipelineError(f"unknown embedding transform {params.embedding_transform!r}")
    table, dataset_info = read_published_training_set(settings)
    validate_training_table(table, dataset_info.run_id)
    data = evaluate.interactions_from_table(table)
    log.info("training set %s: %s ratings, %s customers, %s products", dataset_info.run_id, f"{len(data.users):,}",
             f"{data.shape[0]:,}", f"{data.shape[1]:,}")
    side = training_side_info(table, data)
    evaluation = evaluate_model(data, params, side, truth, ceiling_note, show_progress)
    final = fit_final(data, side, params, evaluation.selection, show_progress)
    version = artifacts.new_version()
    manifest = model_manifest(version, dataset_info, data, params, final, evaluation)
    png = evaluation_report.report_png(evaluation.known, final.kind, title=f"model {version}")
    cold_png = evaluation_report.cold_start_png(evaluation.views, final.kind, title=f"model {version}: cold start")
    html = evaluation_report.report_html(evaluation.views, final.kind, png, cold_png, title=f"recsys model {version}",
                                         details=manifest)
    report_dir = reports_dir / "train" / version
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / contracts.EVALUATION_PNG).write_bytes(png)
    (report_dir / contracts.EVALUATION_HTML).write_text(html, encoding="utf-8")
    files = model_files(data, final, params) | {contracts.EVALUATION_PNG: png,
                                                contracts.EVALUATION_HTML: html.encode("utf-8")}
    manifest = artifacts.publish_version(settings, version, files, manifest)
    (report_dir / contracts.MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return TrainResult(version, manifest, evaluation.known, report_dir, evaluation)
