"""The trainer: pure ALS (implicit) and a hybrid with customer and product features, offline
evaluation, the validation winner published as a versioned model.

Steps: read the complete published training set (``pipeline.dataset``) → validate it → encode the
ratings → split: a seeded 10 % of the customers held out entirely (cold start), 20 % of each other
customer's ratings held out (known customers) → carve a validation split of the same shape out of
the training part, fit every model kind (``pipeline.trainers.registry``: ALS and the hybrid) on it
and keep the best by validation NDCG@10 of known customers → fit them on the training part and score three views against
popularity, random and the planted-truth ceilings, ranking by cosine on the serving embeddings
(known customers; cold customers from their attributes only; and from their attributes plus their
first 3 ratings as a browse history) → fit the winner on every rating → write the artifacts and
report, then move the serving pointer (``pipeline.artifacts.publish_version``). The planted truth,
when the caller has one (a source seeded by ``recsys_seed``), is passed in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys import contracts
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.model.als import ALS_KIND, NPZ_REGULARIZATION
from recsys.model.foldin import TRANSFORM_MIPS, TRANSFORMS, max_item_norm, to_item_embedding, to_query_vector
from recsys.model.hybrid_foldin import HYBRID_KIND
from recsys.pipeline import artifacts, dataset, evaluate, evaluation_report, hybrid
from recsys.pipeline.trainers.als import MIPS_RANKER as MIPS_RANKER  # re-exported: ``X as X`` (public names)
from recsys.pipeline.trainers.als import PLAIN_COSINE_RANKER as PLAIN_COSINE_RANKER
from recsys.pipeline.trainers.als import Factors as Factors
from recsys.pipeline.trainers.als import confidence_matrix as confidence_matrix
from recsys.pipeline.trainers.als import fit_als as fit_als
from recsys.pipeline.trainers.base import FinalModel as FinalModel
from recsys.pipeline.trainers.base import cold_ranker as cold_ranker
from recsys.pipeline.trainers.base import serving_scorer as serving_scorer
from recsys.pipeline.trainers.params import MODEL_AUTO
from recsys.pipeline.trainers.params import TrainParams as TrainParams
from recsys.pipeline.trainers.registry import TRAINERS, trainer

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("customerNumber", "productCode", "productRating")
CONFIDENCE_FORMULA = "c = 1 + alpha * max(rating - rating_offset, 0); unobserved: p = 0, c = 1"
# The fallback list: the API's largest k plus room for a long browse history to be excluded.
POPULAR_ITEMS_KEPT = 1000
ALS_RANKER = ALS_KIND  # model kinds (recsys.pipeline.trainers.registry) are also their rankers' names
HYBRID_RANKER = HYBRID_KIND
MODEL_CHOICES = (MODEL_AUTO, *TRAINERS)
VALIDATION_SEED_OFFSET = 1000  # the validation split's seed: params.seed + this


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer read: the manifest's run id and row count, and where it lives."""

    run_id: str
    row_count: int
    snapshot_prefix: str


@dataclass(frozen=True)
class Selection:
    """Which model is published and why: the validation views (None when nothing was compared)."""

    kind: str  # a model kind of recsys.pipeline.trainers.registry
    reason: str
    validation: evaluate.ViewReports | None
    options: dict[str, Any]  # serving choices validation made for this kind (``Trainer.serving_options``)


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
        return "\n".join(
            [
                f"model: {self.selection.kind} ({self.selection.reason})",
                "-- known customers",
                views.known.table(),
                f"-- cold start (a): attributes only, {views.cold_customers} held-out customers",
                views.cold_features.table(),
                f"-- cold start (b): attributes + their first {views.browsed_items} ratings as browse history",
                views.cold_browsed.table(),
            ]
        )


@dataclass(frozen=True)
class TrainResult:
    version: str
    manifest: dict[str, Any]
    report: evaluate.EvaluationReport  # known customers, the reported split
    report_dir: Path
    evaluation: Evaluation


# -- input ------------------------------------------------------------------------------------


def read_published_training_set(settings: Settings) -> tuple[pa.Table, DatasetInfo]:
    """The complete, published training set and its identity; PipelineError when there is none."""
    manifest, table = dataset.read_published(settings)
    info = DatasetInfo(
        str(manifest.get("run_id", "unknown")),
        int(manifest.get("row_count", table.num_rows)),
        str(manifest.get("snapshot_prefix", "")),
    )
    return table, info


def validate_training_table(table: pa.Table, run_id: str) -> None:
    """Refuse a training set ALS cannot learn from, naming the problem."""
    where = f"training set {run_id}"
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise PipelineError(
            f"{where} lacks column(s) {', '.join(missing)} (has: {', '.join(table.column_names) or 'none'})"
        )
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


# -- evaluation ---------------------------------------------------------------------------------

# The candidates fitted on one split's training part: model kind -> what its ``Trainer.fit`` returned.
SplitFits = dict[str, Any]


def candidate_kinds(params: TrainParams, side: hybrid.SideInfo | None) -> list[str]:
    """The models to fit: ``--model``'s choice, or every registered kind the training set has the columns of."""
    if params.model != MODEL_AUTO and params.model not in TRAINERS:
        raise PipelineError(f"unknown model {params.model!r}; expected one of {', '.join((MODEL_AUTO, *TRAINERS))}")
    if params.model != MODEL_AUTO:
        chosen = TRAINERS[params.model]
        if not chosen.available(side):
            raise PipelineError(
                f"the {chosen.kind} model needs the training set's columns {', '.join(chosen.required_columns)}"
            )
        return [chosen.kind]
    return [kind for kind, candidate in TRAINERS.items() if candidate.available(side)]


def fit_candidates(
    data: evaluate.Interactions,
    train: np.ndarray,
    side: hybrid.SideInfo | None,
    params: TrainParams,
    kinds: list[str],
    show_progress: bool = False,
) -> SplitFits:
    """Fit each candidate on the ``train`` ratings."""
    return {kind: trainer(kind).fit(data, train, side, params, show_progress) for kind in kinds}


def score_views(
    data: evaluate.Interactions,
    split: evaluate.ColdSplit,
    fits: SplitFits,
    params: TrainParams,
    truth: evaluate.PlantedTruth | None = None,
    ceiling_note: str = "",
) -> evaluate.ViewReports:
    """Every candidate's rankers and the reference rankers on the split's three views (``evaluate.evaluate_views``)."""
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
    for kind, fitted in fits.items():
        rankers = trainer(kind).rankers(fitted, data, split, params)
        known |= rankers.known
        cold_features |= rankers.cold_features
        cold_browsed |= rankers.cold_browsed
    known |= (
        references
        | {evaluate.RANDOM: evaluate.random_scorer(data.shape[1], split.seed)}
        | {name: scorer for name, scorer in ceilings.items() if name == evaluate.PLANTED_TRUTH}
    )
    cold_features |= references | ceilings
    cold_browsed |= references | ceilings
    return evaluate.evaluate_views(
        data,
        split,
        known,
        cold_features,
        cold_browsed,
        k=params.k,
        relevant_min_rating=params.relevant_min_rating,
        holdout_fraction=params.holdout_fraction,
        browsed_items=params.browse,
        ceiling_note=ceiling_note,
    )


def _ndcg(report: evaluate.EvaluationReport, ranker: str) -> float | None:
    metrics = report.rankers.get(ranker)
    return None if metrics is None else metrics.ndcg


def _single_candidate_reason(params: TrainParams, kinds: list[str]) -> str:
    if params.model != MODEL_AUTO:
        return f"--model {params.model}"
    lacking = [kind for kind in TRAINERS if kind not in kinds]
    return f"the training set lacks the {' and '.join(lacking)}'s columns"


def select_model(
    data: evaluate.Interactions,
    split: evaluate.ColdSplit,
    side: hybrid.SideInfo | None,
    params: TrainParams,
    kinds: list[str],
    show_progress: bool = False,
) -> Selection:
    """Fit the candidates on a validation split carved out of ``split``'s training part (the reported
    hold-out is never looked at) and keep the best by NDCG@k of known customers (the first of
    ``kinds``, the baseline, on a tie). Each candidate also makes its serving choices on these views
    (``Trainer.serving_options``: the hybrid's ``features`` strategy only if it beats popularity)."""
    if len(kinds) == 1 and not trainer(kinds[0]).tunes_on_validation:
        return Selection(kinds[0], _single_candidate_reason(params, kinds), None, {})
    training = evaluate.subset(data, split.train)
    validation = evaluate.cold_split(
        training, params.holdout_fraction, params.seed + VALIDATION_SEED_OFFSET, params.cold_fraction, params.browse
    )
    views = score_views(
        training, validation, fit_candidates(training, validation.train, side, params, kinds, show_progress), params
    )
    ndcg = {kind: score for kind in kinds if (score := _ndcg(views.known, kind)) is not None}
    if len(kinds) == 1:
        kind, reason = kinds[0], _single_candidate_reason(params, kinds)
    elif len(ndcg) < len(kinds):
        kind, reason = kinds[0], f"validation split too small to compare: kept the {kinds[0].upper()} baseline"
    else:
        kind = max(kinds, key=lambda candidate: ndcg[candidate])  # the first on a tie
        reason = f"validation NDCG@{params.k} of known customers: " + ", ".join(
            f"{candidate} {ndcg[candidate]:.4f}" for candidate in kinds
        )
    options = trainer(kind).serving_options(views)
    log.info("%s -> publishing %s %s", reason, kind, options or "")
    return Selection(kind, reason, views, options)


def evaluate_model(
    data: evaluate.Interactions,
    params: TrainParams,
    side: hybrid.SideInfo | None = None,
    truth: evaluate.PlantedTruth | None = None,
    ceiling_note: str = "",
    show_progress: bool = False,
) -> Evaluation:
    """Choose the model on validation, then fit the candidates on the training part of the reported
    split and score them and the references on its three views."""
    kinds = candidate_kinds(params, side)
    split = evaluate.cold_split(data, params.holdout_fraction, params.seed, params.cold_fraction, params.browse)
    selection = select_model(data, split, side, params, kinds, show_progress)
    fits = fit_candidates(data, split.train, side, params, kinds, show_progress)
    views = score_views(data, split, fits, params, truth, ceiling_note)
    if selection.kind not in views.known.rankers:
        raise PipelineError(
            f"cannot evaluate: no customer has a held-out rating >= {params.relevant_min_rating:g} "
            f"({views.known.test_ratings} held out of {len(data.users)} ratings); "
            "the training set is too small"
        )
    return Evaluation(selection, views)


class HeadlineMetrics(TypedDict):
    """The published model's NDCG ratios (``headline_metrics``); None when unavailable."""

    model: str
    ndcg_vs_popularity: float | None
    ndcg_vs_planted_truth: float | None
    cold_features_vs_popularity: float | None
    cold_features_vs_attributes_truth: float | None
    cold_browsed_vs_popularity: float | None
    cold_browsed_vs_planted_truth: float | None


def headline_metrics(evaluation: Evaluation) -> HeadlineMetrics:
    """The published model's NDCG ratios on the reported split (None when unavailable): known customers
    to popularity and the ceiling; cold start from features only to popularity and the attributes-only
    ceiling; cold start with a browse history to popularity and the ceiling."""
    kind, views = evaluation.selection.kind, evaluation.views
    features, browsed = trainer(kind).headline_rankers()

    def ratio(report: evaluate.EvaluationReport, ranker: str | None, reference: str) -> float | None:
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


def fit_final(
    data: evaluate.Interactions,
    side: hybrid.SideInfo | None,
    params: TrainParams,
    selection: Selection,
    show_progress: bool = False,
) -> FinalModel:
    """Fit the chosen model on every rating (so every customer has a vector)."""
    final = trainer(selection.kind).fit_final(data, side, params, selection.options, show_progress)
    details: dict[str, Any] = {"kind": selection.kind, "chosen_by": selection.reason}
    if selection.validation is not None:
        details["validation"] = selection.validation.as_dict()
    return replace(final, details=details | final.details)


def popular_items(data: evaluate.Interactions, top_n: int = POPULAR_ITEMS_KEPT) -> list[dict[str, str | float]]:
    """The most-rated products, best first, score = count / best count (the Lambda's fallback)."""
    counts = np.bincount(data.items, minlength=data.shape[1]).astype(np.float64)
    order = np.lexsort((np.arange(counts.size), -counts))[:top_n]
    return [{"product_code": str(data.item_ids[j]), "score": round(counts[j] / counts.max(), 6)} for j in order]


def model_files(data: evaluate.Interactions, model: FinalModel, params: TrainParams) -> dict[str, bytes]:
    """The embeddings CSVs, model.npz and popular_items.json of a fitted model."""
    max_norm = max_item_norm(model.item_vectors)
    item_emb = to_item_embedding(model.item_vectors, params.embedding_transform, max_norm)
    user_emb = to_query_vector(model.user_vectors, params.embedding_transform)
    common: dict[str, np.ndarray | np.generic] = {
        "item_factors": model.item_vectors,
        "user_factors": model.user_vectors,
        "item_ids": data.item_ids.astype(str),
        "user_ids": data.user_ids.astype(np.int64),
        NPZ_REGULARIZATION: np.float64(model.regularization),
        "alpha": np.float64(model.alpha),
        "rating_offset": np.float64(model.rating_offset),
        "factors": np.int64(model.item_vectors.shape[1]),
        "max_item_norm": np.float64(max_norm),
        "embedding_transform": np.str_(params.embedding_transform),
    }
    npz = artifacts.npz_bytes(common | model.fold_in.to_arrays())
    return {
        contracts.ITEM_EMBEDDINGS: artifacts.embeddings_csv(data.item_ids, item_emb),
        contracts.USER_EMBEDDINGS: artifacts.embeddings_csv(data.user_ids, user_emb),
        contracts.MODEL_NPZ: npz,
        contracts.POPULAR_ITEMS: json.dumps(popular_items(data), indent=1).encode(),
        contracts.RATED_ITEMS: artifacts.rated_items_csv(data.user_ids[data.users], data.item_ids[data.items]),
    }


def model_manifest(
    version: str,
    dataset_info: DatasetInfo,
    data: evaluate.Interactions,
    params: TrainParams,
    model: FinalModel,
    evaluation: Evaluation,
) -> dict[str, Any]:
    """manifest.json without ``files`` (``publish_version`` adds the checksums)."""
    dims = model.item_vectors.shape[1]
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
        "confidence": {"formula": CONFIDENCE_FORMULA, "alpha": model.alpha, "rating_offset": model.rating_offset},
        "final_fit": "all ratings (training part + held-out); metrics are from the fit on the training part",
        "counts": {"ratings": len(data.users), "customers": int(data.shape[0]), "products": int(data.shape[1])},
        "training_seconds": round(model.seconds, 3),
        "metrics": evaluation.known.as_dict() | {k: v for k, v in headline.items() if not k.startswith("cold")},
        "cold_start": {
            "customers": evaluation.views.cold_customers,
            "browsed_items": evaluation.views.browsed_items,
            "features_only": evaluation.views.cold_features.as_dict(),
            "features_and_browsed": evaluation.views.cold_browsed.as_dict(),
        }
        | {k: v for k, v in headline.items() if k.startswith("cold")},
        "library": model.details["library"],
        "producer": "recsys.train",
    }


# -- the command --------------------------------------------------------------------------------


def training_side_info(table: pa.Table, data: evaluate.Interactions) -> hybrid.SideInfo | None:
    """The hybrid's side columns, or None (with a log line) when the training set lacks them."""
    missing = hybrid.missing_side_columns(table)
    if missing:
        log.warning("training set lacks %s: the hybrid model is not a candidate", ", ".join(missing))
        return None
    return hybrid.side_info(table, data)


def train_and_publish(
    settings: Settings,
    params: TrainParams,
    reports_dir: Path = Path("reports"),
    *,
    truth: evaluate.PlantedTruth | None = None,
    ceiling_note: str = "",
    show_progress: bool = False,
    move_pointer: bool = True,
) -> TrainResult:
    """The whole stage: read, validate, choose and evaluate, fit on all ratings, write the report and
    artifacts, then move the serving pointer (``move_pointer`` False: publish a candidate only, for the
    pipeline's quality gate). Nothing is published unless every step succeeds.

    ``truth`` (a ``recsys_seed.PlantedTruth``) adds the planted-truth ceilings to the evaluation;
    ``ceiling_note`` says where it came from, or why there is none.
    """
    if params.embedding_transform not in TRANSFORMS:
        raise PipelineError(f"unknown embedding transform {params.embedding_transform!r}")
    table, dataset_info = read_published_training_set(settings)
    validate_training_table(table, dataset_info.run_id)
    data = evaluate.interactions_from_table(table)
    log.info(
        "training set %s: %s ratings, %s customers, %s products",
        dataset_info.run_id,
        f"{len(data.users):,}",
        f"{data.shape[0]:,}",
        f"{data.shape[1]:,}",
    )
    side = training_side_info(table, data)
    evaluation = evaluate_model(data, params, side, truth, ceiling_note, show_progress)
    final = fit_final(data, side, params, evaluation.selection, show_progress)
    version = artifacts.new_version()
    manifest = model_manifest(version, dataset_info, data, params, final, evaluation)
    png = evaluation_report.report_png(evaluation.known, final.kind, title=f"model {version}")
    cold_png = evaluation_report.cold_start_png(evaluation.views, final.kind, title=f"model {version}: cold start")
    html = evaluation_report.report_html(
        evaluation.views, final.kind, png, cold_png, title=f"recsys model {version}", details=manifest
    )
    report_dir = reports_dir / "train" / version
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / contracts.EVALUATION_PNG).write_bytes(png)
    (report_dir / contracts.EVALUATION_HTML).write_text(html, encoding="utf-8")
    files = model_files(data, final, params) | {
        contracts.EVALUATION_PNG: png,
        contracts.EVALUATION_HTML: html.encode("utf-8"),
    }
    manifest = artifacts.publish_version(settings, version, files, manifest, move_pointer=move_pointer)
    (report_dir / contracts.MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return TrainResult(version, manifest, evaluation.known, report_dir, evaluation)
