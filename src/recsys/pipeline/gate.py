"""The quality gate: a retrained model goes live only if it is not worse than the live one.

Both versions are judged on the same held-out split of the run's training set, by the trainer's own
evaluation (``evaluate.cold_split``, ``train.fit_candidates``, ``train.score_views``): NDCG@10 of
known customers and of the cold-start view with a browse history (the strategy serving uses for a new
customer). A published version's vectors were fitted on every rating, held-out ones included, so
they cannot be scored honestly on any split; what the gate scores is each version's recipe (its
model kind, hyper-parameters and embedding transform, from its manifest) fitted on the split's
training part. The candidate passes when neither figure is below the live one by more than
``tolerance`` (absolute NDCG); with no live model it passes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from recsys import contracts
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.pipeline import evaluate, hybrid, train
from recsys.pipeline.artifacts import read_manifest

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.01  # NDCG@10 points a candidate may lose against the live model, per view
SPLIT = train.TrainParams()  # the held-out protocol both versions are scored on (k, fractions, seed)


@dataclass(frozen=True)
class Figures:
    """One version's NDCG@k on the gate's split."""

    version: str
    kind: str
    known_ndcg: float
    cold_ndcg: float | None  # None: the split has no scorable cold customer

    def text(self) -> str:
        cold = "n/a" if self.cold_ndcg is None else f"{self.cold_ndcg:.4f}"
        return f"{self.version} ({self.kind}) NDCG@{SPLIT.k} known {self.known_ndcg:.4f}, cold start {cold}"


@dataclass(frozen=True)
class Decision:
    promote: bool
    candidate: Figures
    live: Figures | None
    tolerance: float
    summary: str  # one line with both figures: the notification and the run's outcome

    def as_record(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "tolerance": self.tolerance,
            "summary": self.summary,
            "candidate": asdict(self.candidate),
            "live": asdict(self.live) if self.live else None,
        }


def recipe(manifest: dict[str, Any]) -> train.TrainParams:
    """The TrainParams that refit a published version's model on the gate's split."""
    try:
        kind = manifest["model"]["kind"]
        hyper = dict(manifest["hyperparameters"])
        transform = manifest["embedding_transform"]
    except (KeyError, TypeError) as exc:
        raise PipelineError(
            f"model {manifest.get('version')}: manifest lacks {exc} (model kind, hyperparameters, embedding_transform)"
        ) from None
    if kind == train.ALS_RANKER:
        return train.TrainParams(
            **{**asdict(SPLIT), "hybrid": SPLIT.hybrid, **hyper, "model": kind, "embedding_transform": transform}
        )
    if kind == train.HYBRID_RANKER:
        return train.TrainParams(
            **{**asdict(SPLIT), "hybrid": hybrid.HybridParams(**hyper), "model": kind, "embedding_transform": transform}
        )
    raise PipelineError(f"model {manifest.get('version')}: unknown model kind {kind!r}")


def cold_ranker(kind: str) -> str:
    """The cold-start ranker of a new customer with a browse history, as serving plans it for ``kind``."""
    strategy = contracts.STRATEGY_FEATURES_FOLD_IN if kind == train.HYBRID_RANKER else contracts.STRATEGY_FOLD_IN
    return train.cold_ranker(kind, strategy)


def score_version(
    data: evaluate.Interactions,
    split: evaluate.ColdSplit,
    side: hybrid.SideInfo | None,
    version: str,
    params: train.TrainParams,
) -> Figures:
    """Refit ``params``' model on the split's training part and score it on the held-out views."""
    kind = params.model
    if kind == train.HYBRID_RANKER and side is None:
        raise PipelineError(f"model {version} is a hybrid, and the training set lacks its columns")
    fits = train.fit_candidates(data, split.train, side, params, [kind])
    views = train.score_views(data, split, fits, params)
    if kind not in views.known.rankers:
        raise PipelineError(
            f"the gate's split has no known customer with a held-out rating >= "
            f"{params.relevant_min_rating:g}: the training set is too small to judge a model"
        )
    cold = views.cold_browsed.rankers.get(cold_ranker(kind))
    return Figures(version, kind, views.known.rankers[kind].ndcg, None if cold is None else cold.ndcg)


def decide(candidate: Figures, live: Figures | None, tolerance: float) -> Decision:
    """Promote unless a view of the candidate is worse than the live model's by more than ``tolerance``."""
    if live is None:
        return Decision(True, candidate, None, tolerance, f"promoted {candidate.text()} (no live model)")
    worse = [
        name
        for name, new, old in (
            ("known customers", candidate.known_ndcg, live.known_ndcg),
            ("cold start", candidate.cold_ndcg, live.cold_ndcg),
        )
        if new is not None and old is not None and new < old - tolerance
    ]
    figures = f"candidate {candidate.text()}; live {live.text()}; tolerance {tolerance:g}"
    if worse:
        return Decision(False, candidate, live, tolerance, f"not promoted: worse on {', '.join(worse)}: {figures}")
    return Decision(True, candidate, live, tolerance, f"promoted: {figures}")


def judge(settings: Settings, candidate: str, live: str | None, tolerance: float = DEFAULT_TOLERANCE) -> Decision:
    """Score ``candidate`` and ``live`` on one split of the current training set and decide."""
    if not 0 <= tolerance < 1:
        raise PipelineError(f"gate tolerance must be in [0, 1) NDCG, got {tolerance}")
    table, info = train.read_published_training_set(settings)
    train.validate_training_table(table, info.run_id)
    data = evaluate.interactions_from_table(table)
    side = train.training_side_info(table, data)
    split = evaluate.cold_split(data, SPLIT.holdout_fraction, SPLIT.seed, SPLIT.cold_fraction, SPLIT.browse)
    scored = {
        version: score_version(data, split, side, version, recipe(read_manifest(settings, version)))
        for version in dict.fromkeys(v for v in (candidate, live) if v)
    }
    decision = decide(scored[candidate], scored[live] if live else None, tolerance)
    log.info("quality gate on training set %s: %s", info.run_id, decision.summary)
    return decision
