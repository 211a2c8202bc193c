"""The hybrid model: implicit ALS with fixed item features and a customer prior from attributes.

Item i has the vector ``y_i = [q_i | b_i]``: ``q_i`` (k free factors) is learned, ``b_i`` is fixed and
observable (productLine one-hot, standardised ln buyPrice, standardised model size −ln(scale)).
Customer u has ``x_u = [p_u | w_u]`` (free factors, preferences over the item features) whose prior
mean their attributes predict, ``m_u = a_u @ B`` (``a_u``: country one-hot, region one-hot,
standardised ln creditLimit, no-credit flag; ``recsys.model.hybrid_foldin.AttributeEncoder``).
With ALS's confidences (p = 1 and c = 1 + α·max(r − offset, 0) for a rating; p = 0, c = 1 otherwise):

    L = Σ_u Σ_i c_ui (p_ui − x_u·y_i)² + Σ_u (x_u − m_u)ᵀ Λ (x_u − m_u) + λ_q Σ_i ‖q_i‖² + Σ_j μ_j ‖B_j‖²

Λ = diag(λ_free on p_u, λ_line on the productLine preferences, λ_numeric on price and size).
Every sweep solves each block exactly, in closed form (numpy + scipy.sparse, no framework):

* customers: (YᵀY + Σ_obs (c−1) y yᵀ + Λ) x_u = Σ_obs c y + Λ m_u   — ``solve_customers``, the same
  solve as the Lambda's ``foldin.fold_in(Y, items, c, Λ, m)``;
* prior map: a ridge regression of X on the attributes, μ_j per output coordinate chosen by
  generalised cross-validation (``PriorRidge``): attributes that carry no signal give B ≈ intercept,
  i.e. the prior mean becomes the average customer;
* items, free part only: (PᵀP + Σ_obs (c−1) p pᵀ + λ_q I) q_i = Σ_obs p_u [c − (c−1) w_u·b_i] − (PᵀW) b_i.

The last sweep ends with the customers, so every stored vector is what the Lambda's fold-in returns
for that customer's ratings and attributes. Serving needs one vector per item and per customer,
ranked by cosine after the mips-augmentation: the existing pgvector contract. Design and the
search behind the defaults: docs/train.md ("Hybrid model").
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from tqdm import tqdm

from recsys.model.foldin import confidence
from recsys.model.hybrid_foldin import AttributeEncoder, AttributePrior
from recsys.pipeline.evaluate import Interactions

log = logging.getLogger(__name__)

# The region of every country of the source: public geography, so the model may derive it from `country`.
COUNTRY_REGIONS = {
    "USA": "North America",
    "Canada": "North America",
    "France": "Western Europe",
    "Germany": "Western Europe",
    "Belgium": "Western Europe",
    "Switzerland": "Western Europe",
    "Austria": "Western Europe",
    "UK": "Western Europe",
    "Ireland": "Western Europe",
    "Spain": "Southern Europe",
    "Italy": "Southern Europe",
    "Finland": "Nordics",
    "Norway": "Nordics",
    "Sweden": "Nordics",
    "Denmark": "Nordics",
    "Japan": "Asia-Pacific",
    "Singapore": "Asia-Pacific",
    "Philippines": "Asia-Pacific",
    "Hong Kong": "Asia-Pacific",
    "Australia": "Asia-Pacific",
    "New Zealand": "Asia-Pacific",
    "Russia": "EMEA other",
    "Poland": "EMEA other",
    "Israel": "EMEA other",
    "South Africa": "EMEA other",
}
SIDE_COLUMNS = ("country", "creditLimit", "productLine", "productScale", "buyPrice")
CUSTOMER_CHUNK = 4096  # customers solved at once: bounds the (chunk, D, D) Gram stack
THREADS = os.cpu_count() or 1  # like implicit: every core (sparse products and LAPACK release the GIL)


@dataclass(frozen=True)
class HybridParams:
    """Hyper-parameters of the hybrid; defaults chosen on validation splits (docs/train.md)."""

    factors: int = 16  # free dimensions k (the vector has k + item features dimensions)
    iterations: int = 10
    reg_free: float = 20.0  # λ_free: customer free factors around their prior mean
    reg_line: float = 20.0  # λ_line: productLine preferences around their prior mean
    reg_numeric: float = 80.0  # λ_numeric: price and size preferences around their prior mean
    reg_item: float = 50.0  # λ_q: item free factors
    alpha: float = 5.0
    rating_offset: float = 2.0
    use_prior: bool = True  # False: prior mean 0 (ALS with fixed item features), for comparison
    seed: int = 42

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- side information -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SideInfo:
    """Customer attributes and product features, rows aligned with ``Interactions.user_ids``/``item_ids``."""

    country: np.ndarray  # (C,) object, None = unknown
    credit: np.ndarray  # (C,) float, 0 = no credit line, NaN = unknown
    line: np.ndarray  # (P,) object
    scale: np.ndarray  # (P,) object, e.g. "1:18"
    buy_price: np.ndarray  # (P,) float, NaN = unknown


def missing_side_columns(table: pa.Table) -> list[str]:
    return [c for c in SIDE_COLUMNS if c not in table.column_names]


def side_info(table: pa.Table, data: Interactions) -> SideInfo:
    """Each customer's and product's attributes, from their first row (they are constant per id)."""
    customers = pc.cast(table["customerNumber"], pa.int64()).to_numpy(zero_copy_only=False)
    codes = np.asarray(table["productCode"].to_pylist(), dtype=str)
    ids, first = np.unique(customers, return_index=True)
    user_rows = pa.array(first[np.searchsorted(ids, data.user_ids)])
    codes_sorted, first = np.unique(codes, return_index=True)
    item_rows = pa.array(first[np.searchsorted(codes_sorted, data.item_ids)])

    def column(name: str, rows: pa.Array) -> np.ndarray:
        return np.asarray(table[name].take(rows).to_pylist(), dtype=object)

    def numbers(name: str, rows: pa.Array) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in table[name].take(rows).to_pylist()])

    return SideInfo(
        column("country", user_rows),
        numbers("creditLimit", user_rows),
        column("productLine", item_rows),
        column("productScale", item_rows),
        numbers("buyPrice", item_rows),
    )


def attribute_encoder(side: SideInfo, rows: np.ndarray) -> AttributeEncoder:
    """The encoder fitted on the given (training) customers: their countries, ln creditLimit scale."""
    credit = side.credit[rows]
    log_credit = np.log(credit[np.isfinite(credit) & (credit > 0)])
    countries = tuple(sorted({c for c in side.country[rows] if c is not None}))
    regions = tuple(sorted({COUNTRY_REGIONS[c] for c in countries if c in COUNTRY_REGIONS}))
    mean = float(log_credit.mean()) if log_credit.size else 0.0
    std = float(log_credit.std()) if log_credit.size > 1 and log_credit.std() > 0 else 1.0
    return AttributeEncoder(countries, regions, COUNTRY_REGIONS, mean, std)


def _standardised(values: np.ndarray) -> np.ndarray:
    """(x − mean) / std over the known values; unknown (NaN) -> 0, the average."""
    known = np.isfinite(values)
    out = np.zeros(len(values))
    if known.any():
        std = values[known].std()
        out[known] = (values[known] - values[known].mean()) / (std if std > 0 else 1.0)
    return out


def _scale_denominator(scale: object) -> float:
    """``"1:18"`` -> 18.0; anything else -> NaN."""
    try:
        numerator, denominator = (float(part) for part in str(scale).split(":"))
        return denominator / numerator if numerator > 0 and denominator > 0 else np.nan
    except ValueError:
        return np.nan


def item_features(side: SideInfo) -> tuple[np.ndarray, list[str]]:
    """(P, f) fixed item features and their names: productLine one-hot, ln buyPrice, model size."""
    lines = sorted({line for line in side.line if line is not None})
    onehot = (side.line[:, None] == np.array(lines, dtype=object)[None, :]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_price = np.log(np.where(side.buy_price > 0, side.buy_price, np.nan))
        size = -np.log(np.array([_scale_denominator(s) for s in side.scale]))
    features = np.hstack([onehot, _standardised(log_price)[:, None], _standardised(size)[:, None]])
    return features, [f"productLine={line}" for line in lines] + [
        "ln buyPrice (standardised)",
        "model size -ln(scale) (standardised)",
    ]


def precision_vector(params: HybridParams, n_lines: int) -> np.ndarray:
    """diag Λ over [free factors | line preferences | price, size]."""
    return np.concatenate(
        [np.full(params.factors, params.reg_free), np.full(n_lines, params.reg_line), np.full(2, params.reg_numeric)]
    )


# -- the solves ---------------------------------------------------------------------------------------


class PriorRidge:
    """Ridge regression of the customer vectors X on their attributes A (column 0 = intercept, not
    penalised): B_j = argmin ‖X_j − A B_j‖² + μ_j ‖B_j‖², μ_j picked per output coordinate j from a
    log grid by generalised cross-validation (one SVD of the centred attributes serves every μ)."""

    GRID = np.logspace(-2, 5, 29)

    def __init__(self, A: np.ndarray):
        self.a_mean = A[:, 1:].mean(axis=0)
        self.U, self.s, self.Vt = np.linalg.svd(A[:, 1:] - self.a_mean, full_matrices=False)
        self.n = A.shape[0]

    def fit(self, X: np.ndarray) -> np.ndarray:
        """B (A, D) for the current customer vectors X (n, D)."""
        x_mean = X.mean(axis=0)
        UtX = self.U.T @ (X - x_mean)
        s2 = self.s**2
        outside = ((X - x_mean) ** 2).sum(axis=0) - (UtX**2).sum(axis=0)  # residual outside the span of A
        best_mu, best_score = np.zeros(X.shape[1]), np.full(X.shape[1], np.inf)
        for mu in self.GRID:
            shrink = s2 / (s2 + mu)
            rss = outside + (((1 - shrink)[:, None] * UtX) ** 2).sum(axis=0)
            score = rss / (self.n * max(1 - (shrink.sum() + 1) / self.n, 1e-9) ** 2)
            better = score < best_score
            best_mu[better], best_score[better] = mu, score[better]
        coef = self.Vt.T @ ((self.s[:, None] / (s2[:, None] + best_mu[None, :])) * UtX)
        return np.vstack([x_mean - self.a_mean @ coef, coef])


def _pair_products(V: np.ndarray) -> np.ndarray:
    """(n, d(d+1)/2) float32: V[:, i] * V[:, j] for i <= j, row-major upper triangle."""
    V = np.asarray(V, dtype=np.float32)
    return np.hstack([V[:, i : i + 1] * V[:, i:] for i in range(V.shape[1])])


def _symmetric_index(d: int) -> np.ndarray:
    """For every (i, j) of a d × d matrix, its column in ``_pair_products``."""
    iu, ju = np.triu_indices(d)
    full = np.empty((d, d), dtype=np.int64)
    full[iu, ju] = full[ju, iu] = np.arange(len(iu))
    return full.ravel()


def _batched_solve(
    weights: sp.csr_matrix, V: np.ndarray, base: np.ndarray, rhs: np.ndarray, threads: int = THREADS
) -> np.ndarray:
    """Solve (base + Σ_j weights[r, j] v_j v_jᵀ) x_r = rhs_r for every row r, in chunks spread over
    ``threads`` (float32 systems, well conditioned: base holds the regularisation). Returns float64 (rows, d)."""
    d, n = V.shape[1], weights.shape[0]
    pairs, index = _pair_products(V), _symmetric_index(d)
    base32 = base.astype(np.float32)
    out = np.empty((n, d))

    def solve(start: int) -> None:
        stop = min(start + chunk, n)
        grams = np.take(weights[start:stop] @ pairs, index, axis=1).reshape(-1, d, d) + base32
        out[start:stop] = np.linalg.solve(grams, rhs[start:stop].astype(np.float32)[..., None])[..., 0]

    chunk = max(1, min(CUSTOMER_CHUNK, -(-n // max(threads, 1))))
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        list(pool.map(solve, range(0, n, chunk)))
    return out


def solve_customers(
    item_vectors: np.ndarray,
    confidences: sp.csr_matrix,
    precision: np.ndarray | float,
    prior_means: np.ndarray | None = None,
) -> np.ndarray:
    """``foldin.fold_in`` for every row of a customers × items confidence matrix at once:
    (YᵀY + Σ_obs (c−1) y yᵀ + Λ) x = Σ_obs c y + Λ m. Rows without ratings get m (or 0)."""
    Y = np.asarray(item_vectors, dtype=np.float64)
    lam = np.broadcast_to(np.asarray(precision, dtype=np.float64), (Y.shape[1],))
    conf = confidences.tocsr().astype(np.float64)
    rhs = np.asarray(conf @ Y)
    if prior_means is not None:
        rhs = rhs + lam * prior_means
    extra = conf.copy()
    extra.data = extra.data - 1.0
    return _batched_solve(extra.astype(np.float32), Y, Y.T @ Y + np.diag(lam), rhs)


# -- the fit --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HybridFit:
    """A fitted hybrid: rows aligned with ``Interactions.user_ids``/``item_ids``."""

    params: HybridParams
    user_vectors: np.ndarray  # (C, D) float32; customers without training ratings: their prior mean
    item_vectors: np.ndarray  # (P, D) float32: [free factors | item features]
    precision: np.ndarray  # (D,) diag Λ
    prior: AttributePrior  # features_alone=True until validation says otherwise
    attributes: np.ndarray  # (C, A) every customer's encoded attributes
    item_feature_names: list[str]
    seconds: float


def fit_hybrid(stars: sp.csr_matrix, side: SideInfo, params: HybridParams, show_progress: bool = False) -> HybridFit:
    """Fit on a customers × products matrix of star ratings (customers without a rating in it do not
    enter the fit: they get their prior mean, the ``features`` vector)."""
    started = time.perf_counter()
    stars = stars.tocsr()
    active = np.flatnonzero(np.diff(stars.indptr) > 0)
    R = stars[active]
    conf = R.copy()
    conf.data = confidence(R.data, params.alpha, params.rating_offset)
    extra = conf.copy()
    extra.data = extra.data - 1.0
    extra_items = extra.T.tocsr().astype(np.float32)
    encoder = attribute_encoder(side, active)
    A_all = encoder.encode(side.country, side.credit)
    A = A_all[active]
    F, feature_names = item_features(side)
    k, f = params.factors, F.shape[1]
    lam = precision_vector(params, f - 2)
    Q = np.random.default_rng(params.seed).normal(0, 0.01, (F.shape[0], k))
    X = np.zeros((len(active), k + f))
    B = np.zeros((A.shape[1], k + f))
    ridge = PriorRidge(A)
    rows, cols = np.repeat(np.arange(len(active)), np.diff(conf.indptr)), conf.indices
    for sweep in tqdm(range(params.iterations), desc="hybrid", unit="sweep", disable=not show_progress):
        Y = np.hstack([Q, F])
        X = solve_customers(Y, conf, lam, A @ B if params.use_prior else None)
        if sweep < params.iterations - 1:  # the last sweep ends with the customers: stored = serving fold-in
            if params.use_prior:
                B = ridge.fit(X)
            if k:
                Q = _solve_free_item_factors(X, F, conf, extra_items, rows, cols, k, params.reg_item)
    Y = np.hstack([Q, F])
    B = B if params.use_prior else np.zeros_like(B)
    users = A_all @ B  # customers without training ratings: the features vector
    users[active] = X
    seconds = time.perf_counter() - started
    log.info(
        "hybrid %d + %d dims x %d sweeps on %s ratings (%d x %d) in %.1f s",
        k,
        f,
        params.iterations,
        f"{R.nnz:,}",
        *stars.shape,
        seconds,
    )
    prior = AttributePrior(encoder, B, A.mean(axis=0), features_alone=params.use_prior)
    return HybridFit(params, users.astype(np.float32), Y.astype(np.float32), lam, prior, A_all, feature_names, seconds)


def _solve_free_item_factors(
    X: np.ndarray,
    F: np.ndarray,
    conf: sp.csr_matrix,
    extra_items: sp.csr_matrix,
    rows: np.ndarray,
    cols: np.ndarray,
    k: int,
    reg_item: float,
) -> np.ndarray:
    """The items' free factors q_i with the features b_i fixed (exact solves)."""
    P_free, W = np.ascontiguousarray(X[:, :k]), X[:, k:]
    feature_score = np.einsum("rj,rj->r", W[rows], F[cols])  # w_u · b_i of every rating
    values = conf.data - (conf.data - 1.0) * feature_score
    target = sp.csr_matrix((values, conf.indices, conf.indptr), shape=conf.shape)
    rhs = np.asarray(target.T @ P_free) - F @ (P_free.T @ W).T
    return _batched_solve(extra_items, P_free, P_free.T @ P_free + reg_item * np.eye(k), rhs)
