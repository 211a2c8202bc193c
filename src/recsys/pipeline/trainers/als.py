"""Plain implicit ALS (CPU), the baseline every other kind has to beat on validation."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys import contracts
from recsys.model.als import ALS_KIND, AlsFoldIn
from recsys.model.foldin import TRANSFORM_MIPS, TRANSFORM_NONE, confidence
from recsys.pipeline import evaluate
from recsys.pipeline.hybrid import SideInfo, solve_customers
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

log = logging.getLogger(__name__)

PLAIN_COSINE_RANKER = "als (cosine, no transform)"
MIPS_RANKER = "als (mips-augment)"


@dataclass(frozen=True)
class Factors:
    """A fitted ALS model: raw factors, rows aligned with ``Interactions.user_ids``/``item_ids``."""

    user_factors: np.ndarray  # (C, F) float32
    item_factors: np.ndarray  # (P, F) float32
    seconds: float


def confidence_matrix(
    data: evaluate.Interactions, params: TrainParams, mask: np.ndarray | None = None
) -> sp.csr_matrix:
    """Customers × products CSR of Hu–Koren confidences (the same formula the Lambda's fold-in uses)."""
    return data.matrix(confidence(data.ratings, params.alpha, params.rating_offset), mask)


def fit_als(matrix: sp.csr_matrix, params: TrainParams, show_progress: bool = False) -> Factors:
    """Fit implicit's CPU ALS on a confidence matrix (values are c itself, so implicit's alpha stays 1)."""
    from implicit.cpu.als import AlternatingLeastSquares  # heavy; only fitting needs it

    model = AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=1.0,
        iterations=params.iterations,
        random_state=params.seed,
    )
    started = time.perf_counter()
    model.fit(matrix, show_progress=show_progress)
    seconds = time.perf_counter() - started
    log.info(
        "ALS %d factors x %d iterations on %s ratings (%d x %d) in %.1f s",
        params.factors,
        params.iterations,
        f"{matrix.nnz:,}",
        *matrix.shape,
        seconds,
    )
    return Factors(np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32), seconds)


def transform_ranker(transform: str) -> str:
    return MIPS_RANKER if transform == TRANSFORM_MIPS else PLAIN_COSINE_RANKER


class AlsTrainer(Trainer):
    kind = ALS_KIND

    def fit(
        self,
        data: evaluate.Interactions,
        mask: np.ndarray | None,
        side: SideInfo | None,
        params: TrainParams,
        show_progress: bool = False,
    ) -> Factors:
        return fit_als(confidence_matrix(data, params, mask), params, show_progress)

    def rankers(
        self, fitted: Factors, data: evaluate.Interactions, split: evaluate.ColdSplit, params: TrainParams
    ) -> ViewRankers:
        transform = params.embedding_transform
        other = TRANSFORM_NONE if transform == TRANSFORM_MIPS else TRANSFORM_MIPS  # what the transform buys
        history = browse_confidences(data, split, params.alpha, params.rating_offset)
        folded = solve_customers(fitted.item_factors, history, params.regularization)
        return ViewRankers(
            known={
                self.kind: serving_scorer(fitted.user_factors, fitted.item_factors, transform),
                transform_ranker(other): serving_scorer(fitted.user_factors, fitted.item_factors, other),
            },
            cold_browsed={
                cold_ranker(self.kind, contracts.STRATEGY_FOLD_IN): serving_scorer(
                    cold_queries(data.shape[0], split.cold_users, folded), fitted.item_factors, transform
                )
            },
        )

    def headline_rankers(self) -> tuple[str | None, str]:
        return None, cold_ranker(self.kind, contracts.STRATEGY_FOLD_IN)

    def fit_final(
        self,
        data: evaluate.Interactions,
        side: SideInfo | None,
        params: TrainParams,
        options: Mapping[str, Any],
        show_progress: bool = False,
    ) -> FinalModel:
        factors = self.fit(data, None, side, params, show_progress)
        return FinalModel(
            self.kind,
            factors.user_factors,
            factors.item_factors,
            params.regularization,
            params.alpha,
            params.rating_offset,
            params.hyperparameters(),
            AlsFoldIn(params.regularization),
            {"library": f"implicit {package_version('implicit')}"},
            factors.seconds,
        )
