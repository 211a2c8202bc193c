"""The serving half of a model kind: what the Lambda needs to give a customer without a stored
vector one, read from the kind's own ``model.npz`` entries (numpy only; ships in the Lambda zips).

Every model kind publishes the same artifacts (docs/contracts.md section 2): one vector per item and
per known customer, and a ``model.npz`` whose common arrays (``item_factors``, ``item_ids``, ``alpha``,
``rating_offset``, ``regularization``, ...) the trainer writes for every kind. What differs between
kinds is how a new customer is folded in, and the extra arrays that needs: a ``FoldInModel``
subclass owns both. ``recsys.model.registry`` maps the manifest's ``model.kind`` to the subclass;
the training half lives in ``recsys.pipeline.trainers`` (it needs scipy and ``implicit``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np


class FoldInModel(ABC):
    """One model kind's serving side: its own ``model.npz`` entries and the cold-start query."""

    kind: ClassVar[str]  # the manifest's ``model.kind``

    @classmethod
    @abstractmethod
    def from_arrays(cls, npz: Mapping[str, np.ndarray]) -> FoldInModel:
        """Read the kind's state from a model archive (``np.load`` of ``model.npz``)."""

    @abstractmethod
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The kind's own ``model.npz`` entries (beyond the common ones the trainer writes)."""

    @abstractmethod
    def cold_start_vector(
        self,
        item_factors: np.ndarray,
        item_rows: Sequence[int],
        confidences: Sequence[float] | np.ndarray,
        *,
        country: str | None = None,
        credit_limit: float | None = None,
    ) -> tuple[str, np.ndarray | None]:
        """(strategy, raw user vector or None) of a customer the model has no stored vector for:
        their browse history as item rows and confidences (may be empty), and their attributes."""
