"""Plain implicit ALS, serving side: fold-in shrinks towards 0 with λI (``recsys.model.foldin``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recsys.contracts import STRATEGY_FOLD_IN, STRATEGY_POPULAR_FALLBACK
from recsys.model.base import FoldInModel
from recsys.model.foldin import fold_in

ALS_KIND = "als"
# λ, one of the common model.npz scalars (every kind writes it; ALS's fold-in is the one that reads it)
NPZ_REGULARIZATION = "regularization"


@dataclass(frozen=True)
class AlsFoldIn(FoldInModel):
    """λ of the ALS loss: a browse history folds in by ``foldin.fold_in``; attributes are not used."""

    kind: ClassVar[str] = ALS_KIND
    regularization: float

    @classmethod
    def from_arrays(cls, npz: Mapping[str, np.ndarray]) -> AlsFoldIn:
        return cls(float(npz[NPZ_REGULARIZATION]))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}  # λ is the common ``regularization`` scalar

    def cold_start_vector(
        self,
        item_factors: np.ndarray,
        item_rows: Sequence[int],
        confidences: Sequence[float] | np.ndarray,
        *,
        country: str | None = None,
        credit_limit: float | None = None,
    ) -> tuple[str, np.ndarray | None]:
        if len(item_rows):
            return STRATEGY_FOLD_IN, fold_in(item_factors, item_rows, confidences, self.regularization)
        return STRATEGY_POPULAR_FALLBACK, None
