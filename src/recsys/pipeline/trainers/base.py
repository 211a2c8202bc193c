"""What every model kind's training half provides (``Trainer``), and the helpers they share.

The trainer (``recsys.pipeline.train``) loops over the registered trainers: it fits the candidates
on a split, scores the rankers each contributes to the three evaluation views, keeps the validation
winner, fits it on every rating and publishes ``FinalModel``: vectors in the common artifact format
plus the kind's serving half (``recsys.model.base.FoldInModel``), which writes its own
``model.npz`` entries and reads them back in the Lambda.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.model.base import FoldInModel
from recsys.model.foldin import confidence, to_item_embedding, to_query_vector
from recsys.pipeline import evaluate
from recsys.pipeline.hybrid import SideInfo
from recsys.pipeline.trainers.params import TrainParams


def cold_ranker(model: str, strategy: str) -> str:
    """A cold-start view's ranker name: the model and the serving strategy it stands for."""
    return f"{model} [{strategy}]"


def serving_scorer(user_vectors: np.ndarray, item_vectors: np.ndarray, transform: str) -> evaluate.Scorer:
    """Rank as pgvector will: cosine between query vectors and item embeddings under ``transform``."""
    return evaluate.cosine_scorer(to_query_vector(user_vectors, transform), to_item_embedding(item_vectors, transform))


def cold_queries(n_users: int, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """A (n_users, D) query matrix with ``vectors`` in ``rows`` (other rows are never scored)."""
    queries = np.zeros((n_users, vectors.shape[1]), dtype=np.float32)
    queries[rows] = vectors
    return queries


def browse_confidences(
    data: evaluate.Interactions, split: evaluate.ColdSplit, alpha: float, rating_offset: float
) -> sp.csr_matrix:
    """The cold customers' browse histories as confidences, one row per ``split.cold_users``."""
    return data.matrix(confidence(data.ratings, alpha, rating_offset), split.browsed)[split.cold_users]


@dataclass(frozen=True)
class ViewRankers:
    """The rankers one fitted candidate adds to each evaluation view (``evaluate.evaluate_views``)."""

    known: dict[str, evaluate.Scorer] = field(default_factory=dict)
    cold_features: dict[str, evaluate.Scorer] = field(default_factory=dict)
    cold_browsed: dict[str, evaluate.Scorer] = field(default_factory=dict)


@dataclass(frozen=True)
class FinalModel:
    """The published model, whichever kind: raw vectors plus its serving half."""

    kind: str
    user_vectors: np.ndarray  # (C, D) float32
    item_vectors: np.ndarray  # (P, D) float32
    regularization: float  # the common model.npz ``regularization`` (ALS's λ; the hybrid's λ_free)
    alpha: float  # the confidence formula the vectors were fitted with (the Lambda's fold-in uses it)
    rating_offset: float
    hyperparameters: dict[str, Any]
    fold_in: FoldInModel  # writes the kind's own model.npz entries
    details: dict[str, Any]  # the kind's part of the manifest's model description
    seconds: float


class Trainer(ABC):
    """One model kind's training half. Instances are stateless; hyper-parameters come in ``TrainParams``."""

    kind: ClassVar[str]  # the manifest's ``model.kind``: the same as its ``FoldInModel``'s
    required_columns: ClassVar[tuple[str, ...]] = ()  # training-set columns beyond the ratings (``SideInfo``)
    # True: fit and score on the validation split even when it is the only candidate (``serving_options``)
    tunes_on_validation: ClassVar[bool] = False

    def available(self, side: SideInfo | None) -> bool:
        """Whether the training set has what the model needs."""
        return side is not None or not self.required_columns

    @abstractmethod
    def fit(
        self,
        data: evaluate.Interactions,
        mask: np.ndarray | None,
        side: SideInfo | None,
        params: TrainParams,
        show_progress: bool = False,
    ) -> Any:
        """Fit on the ratings under ``mask`` (None: all); the result goes back to ``rankers``."""

    @abstractmethod
    def rankers(
        self, fitted: Any, data: evaluate.Interactions, split: evaluate.ColdSplit, params: TrainParams
    ) -> ViewRankers:
        """The model's rankers on each view, ranking as serving does (``serving_scorer``)."""

    @abstractmethod
    def headline_rankers(self) -> tuple[str | None, str]:
        """The rankers standing for the published model in the manifest's cold-start headline: the
        features-only view's (None: such customers get the popular fallback) and the browsed view's."""

    def serving_options(self, validation: evaluate.ViewReports) -> dict[str, Any]:
        """Serving choices the validation views decide (passed to ``fit_final``)."""
        return {}

    @abstractmethod
    def fit_final(
        self,
        data: evaluate.Interactions,
        side: SideInfo | None,
        params: TrainParams,
        options: Mapping[str, Any],
        show_progress: bool = False,
    ) -> FinalModel:
        """Fit on every rating (so every customer has a vector) and describe the published model."""
