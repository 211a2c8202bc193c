"""The model kinds this code serves: the manifest's ``model.kind`` -> its ``FoldInModel`` class.

A new kind adds one line here (its serving half) and one in ``recsys.pipeline.trainers.registry``
(its training half); docs/train.md ("Adding a model").
"""

from __future__ import annotations

from recsys.model.als import AlsFoldIn
from recsys.model.base import FoldInModel
from recsys.model.hybrid_foldin import HybridFoldIn

FOLD_INS: dict[str, type[FoldInModel]] = {
    cls.kind: cls
    for cls in (
        AlsFoldIn,
        HybridFoldIn,
    )
}


class UnknownModelKind(ValueError):
    """A manifest names a model kind this code does not know."""


def fold_in_class(kind: str) -> type[FoldInModel]:
    """The serving class of ``kind``; UnknownModelKind naming the known ones otherwise."""
    try:
        return FOLD_INS[kind]
    except KeyError:
        raise UnknownModelKind(f"unknown model kind {kind!r}; this code serves {', '.join(FOLD_INS)}") from None
