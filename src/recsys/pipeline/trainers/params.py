"""The trainer's hyper-parameters and evaluation protocol (``recsys train`` options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recsys.model.foldin import TRANSFORM_MIPS
from recsys.pipeline.hybrid import HybridParams

MODEL_AUTO = "auto"  # publish the validation winner


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
    model: str = MODEL_AUTO  # a model kind (recsys.pipeline.trainers.registry) or auto (the validation winner)
    cold_fraction: float = 0.1  # customers held out entirely for the cold-start views
    browse: int = 3  # ratings of a cold customer read as their browse history (second cold view)
    hybrid: HybridParams = field(default_factory=HybridParams)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("factors", "iterations", "regularization", "alpha", "rating_offset", "seed")
        }
