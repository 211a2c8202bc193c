"""The hybrid (ALS with fixed item features and an attribute prior, ``recsys.pipeline.hybrid``):
the only kind that serves customers from their attributes alone, when validation says it pays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from recsys import contracts
from recsys.model.hybrid_foldin import HYBRID_KIND, NPZ_FEATURES_ALONE, HybridFoldIn
from recsys.pipeline import evaluate
from recsys.pipeline.hybrid import SIDE_COLUMNS, HybridFit, SideInfo, fit_hybrid, solve_customers
from recsys.pipeline.trainers.base import (
    FinalModel,
    Trainer,
    ViewRankers,
    browse_confidences,
    cold_queries,
    cold_ranker,
    serving_scorer,
)
from recsys.pipeline.trainers.params import TrainParams

FEATURES_ALONE = "features_alone"  # serving option: the ``features`` strategy beat popularity on validation
FEATURES_RANKER = cold_ranker(HYBRID_KIND, contracts.STRATEGY_FEATURES)


def _ndcg(report: evaluate.EvaluationReport, ranker: str) -> float | None:
    metrics = report.rankers.get(ranker)
    return None if metrics is None else metrics.ndcg


class HybridTrainer(Trainer):
    kind = HYBRID_KIND
    required_columns = SIDE_COLUMNS
    tunes_on_validation = True  # the features strategy is served only if it beats popularity on validation

    def fit(
        self,
        data: evaluate.Interactions,
        mask: np.ndarray | None,
        side: SideInfo | None,
        params: TrainParams,
        show_progress: bool = False,
    ) -> HybridFit:
        assert side is not None, "available() said the hybrid is a candidate"
        return fit_hybrid(data.matrix(data.ratings, mask), side, params.hybrid, show_progress)

    def rankers(
        self, fitted: HybridFit, data: evaluate.Interactions, split: evaluate.ColdSplit, params: TrainParams
    ) -> ViewRankers:
        transform, cold, n_users = params.embedding_transform, split.cold_users, data.shape[0]
        history = browse_confidences(data, split, fitted.params.alpha, fitted.params.rating_offset)
        with_attributes = solve_customers(
            fitted.item_vectors, history, fitted.precision, fitted.prior.mean(fitted.attributes[cold])
        )
        without = solve_customers(
            fitted.item_vectors,
            history,
            fitted.precision,
            np.broadcast_to(fitted.prior.mean(None), with_attributes.shape),
        )
        return ViewRankers(
            known={self.kind: serving_scorer(fitted.user_vectors, fitted.item_vectors, transform)},
            # cold customers did not train: their stored row is already their features vector, a @ B
            cold_features={FEATURES_RANKER: serving_scorer(fitted.user_vectors, fitted.item_vectors, transform)},
            cold_browsed={
                cold_ranker(self.kind, strategy): serving_scorer(
                    cold_queries(n_users, cold, vectors), fitted.item_vectors, transform
                )
                for strategy, vectors in (
                    (contracts.STRATEGY_FEATURES_FOLD_IN, with_attributes),
                    (contracts.STRATEGY_FOLD_IN, without),
                )
            },
        )

    def headline_rankers(self) -> tuple[str | None, str]:
        return FEATURES_RANKER, cold_ranker(self.kind, contracts.STRATEGY_FEATURES_FOLD_IN)

    def serving_options(self, validation: evaluate.ViewReports) -> dict[str, Any]:
        features = _ndcg(validation.cold_features, FEATURES_RANKER)
        popularity = _ndcg(validation.cold_features, evaluate.POPULARITY)
        return {FEATURES_ALONE: features is not None and popularity is not None and features > popularity}

    def fit_final(
        self,
        data: evaluate.Interactions,
        side: SideInfo | None,
        params: TrainParams,
        options: Mapping[str, Any],
        show_progress: bool = False,
    ) -> FinalModel:
        fit = self.fit(data, None, side, params, show_progress)
        features_alone = bool(options.get(FEATURES_ALONE, False))
        prior = replace(fit.prior, features_alone=features_alone)
        details = {
            "library": "numpy + scipy.sparse (recsys.pipeline.hybrid)",
            "item_features": fit.item_feature_names,
            "customer_attributes": prior.encoder.names(),
            NPZ_FEATURES_ALONE: features_alone,
        }
        return FinalModel(
            self.kind,
            fit.user_vectors,
            fit.item_vectors,
            params.hybrid.reg_free,
            params.hybrid.alpha,
            params.hybrid.rating_offset,
            params.hybrid.as_dict(),
            HybridFoldIn(fit.precision, prior),
            details,
            fit.seconds,
        )
