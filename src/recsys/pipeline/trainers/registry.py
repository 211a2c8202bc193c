"""The model kinds the trainer fits, in baseline-first order (the first wins a validation tie).

A new kind adds one line here (its training half) and one in ``recsys.model.registry`` (its serving
half); docs/train.md ("Adding a model").
"""

from __future__ import annotations

from recsys.core.errors import PipelineError
from recsys.pipeline.trainers.als import AlsTrainer
from recsys.pipeline.trainers.base import Trainer
from recsys.pipeline.trainers.hybrid import HybridTrainer

TRAINERS: dict[str, Trainer] = {
    trainer.kind: trainer
    for trainer in (
        AlsTrainer(),
        HybridTrainer(),
    )
}


def trainer(kind: str) -> Trainer:
    try:
        return TRAINERS[kind]
    except KeyError:
        raise PipelineError(f"unknown model {kind!r}; expected one of {', '.join(TRAINERS)}") from None
