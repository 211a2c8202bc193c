"""Honest offline evaluation: a seeded per-customer hold-out, ranked exactly as serving ranks.

Protocol (see docs/train.md):

* Split: for every customer with at least ``MIN_RATINGS_TO_SPLIT`` ratings, a seeded random
  ``holdout_fraction`` of their ratings (at least one, never all) is held out; the rest trains.
* Relevant: a held-out rating ≥ ``relevant_min_rating`` (default 4: the customer liked it).
  Customers with no relevant held-out item are not scored (they cannot be hit).
* Ranking: every catalogue item the customer did not rate in the training part, ordered by
  cosine similarity between the customer's query vector and the item embeddings, which is what
  pgvector's ``<=>`` with an HNSW cosine index returns (exactly, not approximately, here).
* Metrics @k: precision, recall (hits / relevant), NDCG (binary gains), MAP (AP@k normalised by
  min(relevant, k)), averaged over scored customers; catalogue coverage = distinct items in all
  top-k lists / catalogue size.
* Reference rankers on the same split and candidates: popularity (training-part counts), random
  (seeded), and the seeder's planted truth (true affinity: the ceiling any model can reach).

Cold start (``cold_split``): a seeded ``cold_fraction`` of the customers is held out entirely (none
of their ratings trains anything); the per-customer hold-out above applies to the others (the
"known" customers). Two views score the cold customers:

* features only: all their ratings are the test set, every item is a candidate;
* features + browsed: their first ``browse`` ratings (seeded order) are a browse history the model
  may fold in; the rest is the test set, the browsed items are not candidates.

Both compare with popularity, the planted truth and the attributes-only truth (the affinity
expected from the customer's attributes alone: the best possible without history).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys.model.foldin import cosine_scores

log = logging.getLogger(__name__)

# names of the reference rankers in every report
POPULARITY, RANDOM, PLANTED_TRUTH = "popularity", "random", "planted truth"
ATTRIBUTES_TRUTH = "attributes-only truth"
MIN_RATINGS_TO_SPLIT = 2
SCORE_CHUNK_ROWS = 2048  # customers scored at once: bounds the (rows × catalogue) score matrix

# score(user_rows) -> (len(user_rows), P) scores, higher is better
Scorer = Callable[[np.ndarray], np.ndarray]


class PlantedTruth(Protocol):
    """The seeder's generating model as the ceilings read it (``recsys_seed.PlantedTruth``; its
    ``expected_affinity``, the attributes-only part, is optional)."""

    @property
    def customer_index(self) -> Mapping[int, int]: ...

    @property
    def product_codes(self) -> np.ndarray: ...

    def affinity(self, customer_index: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Interactions:
    """Ratings encoded as matrix coordinates; ``users``/``items`` index ``user_ids``/``item_ids``."""

    user_ids: np.ndarray  # (C,) int64 customerNumber, sorted
    item_ids: np.ndarray  # (P,) str productCode, sorted
    users: np.ndarray  # (R,) int32 row index
    items: np.ndarray  # (R,) int32 column index
    ratings: np.ndarray  # (R,) float32

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.item_ids)

    def matrix(self, values: np.ndarray, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """A customers × products CSR matrix of ``values`` on the (masked) ratings."""
        rows, cols, vals = self.users, self.items, values
        if mask is not None:
            rows, cols, vals = rows[mask], cols[mask], vals[mask]
        m = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=self.shape)
        m.sort_indices()
        return m


def interactions_from_table(table: pa.Table) -> Interactions:
    """Encode the training set's (customerNumber, productCode, productRating) as matrix coordinates,
    rows sorted by (customer, product)."""
    users = pc.cast(table["customerNumber"], pa.int64()).to_numpy(zero_copy_only=False)
    items = np.asarray(table["productCode"].to_pylist(), dtype=object)
    ratings = pc.cast(table["productRating"], pa.float32()).to_numpy(zero_copy_only=False)
    user_ids, user_idx = np.unique(users, return_inverse=True)
    item_ids, item_idx = np.unique(items.astype(str), return_inverse=True)
    # canonical row order, so the seeded split does not depend on how the snapshot was partitioned
    order = np.lexsort((item_idx, user_idx))
    return Interactions(
        user_ids.astype(np.int64),
        item_ids,
        user_idx[order].astype(np.int32),
        item_idx[order].astype(np.int32),
        ratings[order].astype(np.float32),
    )


def _rank_within_customer(data: Interactions, keys: np.ndarray) -> np.ndarray:
    """Each rating's position among its customer's ratings when ordered by ``keys``."""
    order = np.lexsort((keys, data.users))  # by customer, then key
    counts = np.bincount(data.users, minlength=data.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(starts, counts)
    return rank


def holdout_mask(data: Interactions, fraction: float, seed: int) -> np.ndarray:
    """True for the held-out ratings: a seeded ``fraction`` of each eligible customer's ratings."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    rank = _rank_within_customer(data, rng.random(len(data.users)))
    counts = np.bincount(data.users, minlength=data.shape[0])
    n_test = np.where(counts >= MIN_RATINGS_TO_SPLIT, np.clip(np.rint(counts * fraction), 1, counts - 1), 0)
    held_out: np.ndarray = rank < n_test[data.users]
    return held_out


@dataclass(frozen=True)
class ColdSplit:
    """Masks over the ratings (``Interactions`` rows) for the known and the two cold-start views."""

    train: np.ndarray  # ratings that train
    known_test: np.ndarray  # held-out ratings of known customers
    cold: np.ndarray  # every rating of a cold customer
    browsed: np.ndarray  # the cold customers' browse histories (a subset of ``cold``)
    cold_users: np.ndarray  # (n,) row indices of the cold customers
    seed: int


def cold_split(
    data: Interactions, holdout_fraction: float, seed: int, cold_fraction: float = 0.1, browse: int = 3
) -> ColdSplit:
    """Hold a seeded ``cold_fraction`` of the customers out entirely; ``holdout_mask`` for the rest."""
    if not 0 <= cold_fraction < 1:
        raise ValueError(f"cold fraction must be in [0, 1), got {cold_fraction}")
    counts = np.bincount(data.users, minlength=data.shape[0])
    active = np.flatnonzero(counts > 0)
    rng = np.random.default_rng([seed, 16])
    cold_users = np.sort(rng.choice(active, round(len(active) * cold_fraction), replace=False))
    is_cold = np.zeros(data.shape[0], dtype=bool)
    is_cold[cold_users] = True
    cold = is_cold[data.users]
    known_test = holdout_mask(data, holdout_fraction, seed) & ~cold
    browsed = cold & (_rank_within_customer(data, rng.random(len(data.users))) < browse)
    return ColdSplit(~known_test & ~cold, known_test, cold, browsed, cold_users, seed)


def subset(data: Interactions, mask: np.ndarray) -> Interactions:
    """The ratings under ``mask`` in the same id space (customers and products keep their rows)."""
    return Interactions(data.user_ids, data.item_ids, data.users[mask], data.items[mask], data.ratings[mask])


@dataclass(frozen=True)
class RankingMetrics:
    """Mean ranking quality @k over the scored customers, plus catalogue coverage."""

    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float
    customers: int

    def as_dict(self, k: int) -> dict[str, float | int]:
        return {
            f"precision@{k}": self.precision,
            f"recall@{k}": self.recall,
            f"ndcg@{k}": self.ndcg,
            f"map@{k}": self.map,
            "coverage": self.coverage,
            "customers_scored": self.customers,
        }


def top_k(scorer: Scorer, rows: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """The k best items per customer row (best first), excluded items last; -1 pads a catalogue under k."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for start in range(0, len(rows), SCORE_CHUNK_ROWS):
        chunk = rows[start : start + SCORE_CHUNK_ROWS]
        scores = np.array(scorer(chunk), dtype=np.float64, copy=True)
        seen = exclude[chunk].tocoo()
        scores[seen.row, seen.col] = -np.inf
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        # stable tie-break by item index keeps results reproducible
        order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
        out[start : start + len(chunk), :kk] = np.take_along_axis(part, order, axis=1)
    return out


def ranking_metrics(recommended: np.ndarray, relevant: sp.csr_matrix, rows: np.ndarray, n_items: int) -> RankingMetrics:
    """Precision/recall/NDCG/MAP@k of ``recommended`` (len(rows), k) against ``relevant`` rows."""
    k = recommended.shape[1]
    rel = relevant[rows]
    hits = np.zeros(recommended.shape, dtype=bool)
    for i in range(len(rows)):  # rows hold a handful of relevant items each
        hits[i] = np.isin(recommended[i], rel.indices[rel.indptr[i] : rel.indptr[i + 1]])
    n_rel = np.diff(rel.indptr).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    idcg = np.cumsum(discounts)[np.minimum(n_rel, k).astype(int) - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(axis=1) / np.minimum(n_rel, k)
    return RankingMetrics(
        precision=float(hits.sum(axis=1).mean() / k),
        recall=float((hits.sum(axis=1) / n_rel).mean()),
        ndcg=float((dcg / idcg).mean()),
        map=float(ap.mean()),
        coverage=float(np.unique(recommended[recommended >= 0]).size / n_items),
        customers=len(rows),
    )


# -- reference rankers --------------------------------------------------------------------------


def cosine_scorer(query_vectors: np.ndarray, item_embeddings: np.ndarray) -> Scorer:
    """Serving's ranking: cosine similarity of each customer's query vector to every item embedding."""
    return lambda rows: cosine_scores(query_vectors[rows], item_embeddings)


def popularity_scores(train: sp.csr_matrix) -> np.ndarray:
    """Per-item count of training interactions (the popularity baseline's score)."""
    return np.asarray((train > 0).sum(axis=0), dtype=np.float64).ravel()


def popularity_scorer(train: sp.csr_matrix) -> Scorer:
    counts = popularity_scores(train)
    return lambda rows: np.broadcast_to(counts, (len(rows), counts.size))


def random_scorer(n_items: int, seed: int) -> Scorer:
    def score(rows: np.ndarray) -> np.ndarray:
        # seeded per call from the first row so results do not depend on chunk order
        rng = np.random.default_rng([seed, int(rows[0]) if len(rows) else 0])
        return rng.random((len(rows), n_items))

    return score


def planted_truth_scorer(data: Interactions, truth: PlantedTruth) -> Scorer | None:
    """Rank by the seeder's true affinity, or None when the truth does not cover the training set."""
    cust_index = truth.customer_index
    code_index = {str(code): j for j, code in enumerate(truth.product_codes)}
    try:
        user_rows = np.array([cust_index[int(c)] for c in data.user_ids], dtype=np.int64)
        item_cols = np.array([code_index[str(p)] for p in data.item_ids], dtype=np.int64)
    except KeyError as missing:
        log.warning("planted truth does not cover id %s: ceiling unavailable", missing)
        return None
    return lambda rows: truth.affinity(user_rows[rows])[:, item_cols]


def attributes_truth_scorer(data: Interactions, truth: PlantedTruth) -> Scorer | None:
    """Rank by the affinity the seeder's truth expects from a customer's attributes alone (the
    cold-start ceiling), or None when the truth does not cover the training set or has no such part."""
    if not hasattr(truth, "expected_affinity") or planted_truth_scorer(data, truth) is None:
        return None
    user_rows = np.array([truth.customer_index[int(c)] for c in data.user_ids], dtype=np.int64)
    code_index = {str(code): j for j, code in enumerate(truth.product_codes)}
    item_cols = np.array([code_index[str(p)] for p in data.item_ids], dtype=np.int64)
    return lambda rows: truth.expected_affinity(user_rows[rows])[:, item_cols]


# -- the whole evaluation -----------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """Metrics per ranker on one split; no "planted truth" ranker when the ceiling is unavailable
    (see ``ceiling_note``)."""

    k: int
    relevant_min_rating: float
    holdout_fraction: float
    split_seed: int
    train_ratings: int
    test_ratings: int
    relevant_ratings: int
    rankers: dict[str, RankingMetrics] = field(default_factory=dict)
    ceiling_note: str = ""

    def ratio(self, ranker: str, reference: str, metric: str = "ndcg") -> float | None:
        ref = self.rankers.get(reference)
        if ref is None or getattr(ref, metric) == 0:
            return None
        return float(getattr(self.rankers[ranker], metric) / getattr(ref, metric))

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "relevant": f"held-out rating >= {self.relevant_min_rating:g}",
            "holdout_fraction": self.holdout_fraction,
            "split_seed": self.split_seed,
            "train_ratings": self.train_ratings,
            "test_ratings": self.test_ratings,
            "relevant_ratings": self.relevant_ratings,
            "rankers": {name: m.as_dict(self.k) for name, m in self.rankers.items()},
            "ceiling_note": self.ceiling_note,
        }

    def table(self) -> str:
        """The metrics as a fixed-width text table, best-known reference rows included."""
        k = self.k
        w = max([22, *(len(name) + 2 for name in self.rankers)])
        metric_heads = "".join(f"{name + '@' + str(k):>9}" for name in ("P", "R", "NDCG", "MAP"))
        head = f"{'ranker':<{w}}{metric_heads}{'cover':>8}{'users':>7}"
        lines = [head, "-" * len(head)]
        for name, m in self.rankers.items():
            lines.append(
                f"{name:<{w}}{m.precision:>9.4f}{m.recall:>9.4f}{m.ndcg:>9.4f}{m.map:>9.4f}"
                f"{m.coverage:>8.3f}{m.customers:>7}"
            )
        if self.ceiling_note:
            lines.append(self.ceiling_note)
        return "\n".join(lines)


def evaluate_rankers(
    data: Interactions,
    test: np.ndarray,
    scorers: dict[str, Scorer],
    *,
    k: int,
    relevant_min_rating: float,
    holdout_fraction: float,
    split_seed: int,
    ceiling_note: str = "",
) -> EvaluationReport:
    """Score every ranker on the customers that have a relevant held-out item."""
    train = data.matrix(np.ones(len(data.users), dtype=np.float32), ~test)
    relevant_mask = test & (data.ratings >= relevant_min_rating)
    relevant = data.matrix(np.ones(len(data.users), dtype=np.float32), relevant_mask)
    rows = np.flatnonzero(np.diff(relevant.indptr) > 0)
    report = EvaluationReport(
        k,
        relevant_min_rating,
        holdout_fraction,
        split_seed,
        int((~test).sum()),
        int(test.sum()),
        int(relevant_mask.sum()),
        ceiling_note=ceiling_note,
    )
    if rows.size == 0:
        return report
    for name, scorer in scorers.items():
        recommended = top_k(scorer, rows, train, k)
        report.rankers[name] = ranking_metrics(recommended, relevant, rows, data.shape[1])
        log.info("evaluated %-20s NDCG@%d=%.4f over %d customers", name, k, report.rankers[name].ndcg, rows.size)
    return report


@dataclass
class ViewReports:
    """One split scored three ways: known customers (per-customer hold-out) and the two cold-start views."""

    known: EvaluationReport
    cold_features: EvaluationReport
    cold_browsed: EvaluationReport
    cold_customers: int
    browsed_items: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "known": self.known.as_dict(),
            "cold_features": self.cold_features.as_dict(),
            "cold_browsed": self.cold_browsed.as_dict(),
            "cold_customers": self.cold_customers,
            "browsed_items": self.browsed_items,
        }


def evaluate_views(
    data: Interactions,
    split: ColdSplit,
    known: dict[str, Scorer],
    cold_features: dict[str, Scorer],
    cold_browsed: dict[str, Scorer],
    *,
    k: int,
    relevant_min_rating: float,
    holdout_fraction: float,
    browsed_items: int,
    ceiling_note: str = "",
) -> ViewReports:
    """Score each view's rankers on its own test ratings (see ``cold_split``)."""

    def view(test: np.ndarray, scorers: dict[str, Scorer], note: str = "") -> EvaluationReport:
        return evaluate_rankers(
            data,
            test,
            scorers,
            k=k,
            relevant_min_rating=relevant_min_rating,
            holdout_fraction=holdout_fraction,
            split_seed=split.seed,
            ceiling_note=note,
        )

    return ViewReports(
        known=view(split.known_test, known, ceiling_note),
        cold_features=view(split.cold, cold_features),
        cold_browsed=view(split.cold & ~split.browsed, cold_browsed),
        cold_customers=len(split.cold_users),
        browsed_items=browsed_items,
    )
