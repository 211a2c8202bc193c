"""ALS fold-in and the embedding transform, in plain numpy (ships in the Lambda zip; no ``implicit``).

The trainer (``recsys.train``) uses these same functions, so a customer folded in by the Lambda
from their browse history gets the vector the trainer would have given them, and a query vector
that ranks items in pgvector exactly as the offline evaluation ranked them.

Confidence (Hu, Koren & Volinsky 2008): an observed interaction has preference p = 1 and
confidence ``c = 1 + alpha * max(rating - rating_offset, 0)``; everything unobserved has p = 0, c = 1.
The user vector minimising the ALS loss for fixed item factors Y solves

    (Yᵀ C_u Y + λ I) x = Yᵀ C_u p_u,   with  Yᵀ C_u Y = YᵀY + Σ_i (c_i − 1) y_i y_iᵀ

which is what ``implicit``'s ``recalculate_user`` computes.

Embedding transforms (the manifest's ``embedding_transform``), for cosine-distance serving:

* ``"none"``: items and queries are the raw factors; cosine ignores vector norms.
* ``"mips-augment"``: items get one extra coordinate ``sqrt(M² − ‖v‖²)`` (M = the largest item
  norm) so every item vector has norm M; queries get a 0. Then cosine(q, i) = u·v / (‖u‖ M),
  which for a given user orders items exactly as ALS's dot product u·v does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRANSFORM_NONE = "none"
TRANSFORM_MIPS = "mips-augment"
TRANSFORMS = (TRANSFORM_NONE, TRANSFORM_MIPS)


def confidence(ratings: Sequence[float] | np.ndarray, alpha: float, rating_offset: float) -> np.ndarray:
    """Hu–Koren confidence of observed ratings: ``1 + alpha * max(rating - rating_offset, 0)``."""
    r = np.asarray(ratings, dtype=np.float64)
    return 1.0 + alpha * np.maximum(r - rating_offset, 0.0)


def fold_in(
    item_factors: np.ndarray,
    item_indices: Sequence[int],
    confidences: Sequence[float] | np.ndarray,
    regularization: float | np.ndarray,
    prior_mean: np.ndarray | None = None,
) -> np.ndarray:
    """The ALS user vector for a history of items with confidences, the item factors held fixed.

    Solves (YᵀY + λI + Σ (c_i − 1) y_i y_iᵀ) x = Σ c_i y_i in float64 and returns float32 (F,).
    Repeated item indices are summed like duplicate entries of a sparse matrix row.

    The hybrid model (``recsys.model.hybrid_foldin``) shrinks towards a prior mean m instead of 0, with a
    precision per coordinate: ``regularization`` (F,) = diag Λ, and the right-hand side gains Λm.
    With a scalar λ and no prior mean this is plain ALS.
    """
    Y = np.asarray(item_factors, dtype=np.float64)
    idx = np.asarray(item_indices, dtype=np.int64)
    c = np.asarray(confidences, dtype=np.float64)
    if idx.shape != c.shape:
        raise ValueError(f"item_indices ({idx.size}) and confidences ({c.size}) differ in length")
    if idx.size and (idx.min() < 0 or idx.max() >= Y.shape[0]):
        raise ValueError(f"item index out of range 0..{Y.shape[0] - 1}")
    if idx.size:
        # duplicates: a sparse row would hold their summed confidence
        idx, inverse = np.unique(idx, return_inverse=True)
        c = np.bincount(inverse, weights=c).astype(np.float64)
    Yh = Y[idx]
    precision = np.broadcast_to(np.asarray(regularization, dtype=np.float64), (Y.shape[1],))
    A = Y.T @ Y + np.diag(precision) + (Yh.T * (c - 1.0)) @ Yh
    b = Yh.T @ c
    if prior_mean is not None:
        b = b + precision * np.asarray(prior_mean, dtype=np.float64)
    return np.linalg.solve(A, b).astype(np.float32)


def max_item_norm(item_factors: np.ndarray) -> float:
    """M for the MIPS augmentation: the largest item-vector norm (M > 0)."""
    norms = np.linalg.norm(np.asarray(item_factors, dtype=np.float64), axis=1)
    return float(norms.max()) if norms.size else 1.0


def to_item_embedding(item_factors: np.ndarray, transform: str, max_norm: float | None = None) -> np.ndarray:
    """Item vectors as stored in pgvector: (P, F) for ``none``, (P, F+1) for ``mips-augment``."""
    V = np.asarray(item_factors, dtype=np.float64)
    _check_transform(transform)
    if transform == TRANSFORM_NONE:
        return V.astype(np.float32)
    M = max_item_norm(V) if max_norm is None else float(max_norm)
    extra = np.sqrt(np.clip(M * M - np.einsum("ij,ij->i", V, V), 0.0, None))
    return np.hstack([V, extra[:, None]]).astype(np.float32)


def to_query_vector(user_vector: np.ndarray, transform: str) -> np.ndarray:
    """A user vector (trained or folded in) as a pgvector query: (…, F) or (…, F+1) with a 0 appended."""
    u = np.asarray(user_vector, dtype=np.float32)
    _check_transform(transform)
    if transform == TRANSFORM_NONE:
        return u
    return np.concatenate([u, np.zeros(u.shape[:-1] + (1,), dtype=np.float32)], axis=-1)


def cosine_scores(queries: np.ndarray, item_embeddings: np.ndarray) -> np.ndarray:
    """1 − cosine distance (pgvector ``<=>``) of each query against every item: (Q, P)."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    v = np.asarray(item_embeddings, dtype=np.float64)
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    vn = np.linalg.norm(v, axis=1)
    # pgvector returns NaN distance for a zero vector; rank such items (and queries) last
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (q @ v.T) / (qn * vn[None, :])
    ranked: np.ndarray = np.nan_to_num(scores, nan=-np.inf)
    return ranked


def _check_transform(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown embedding_transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
