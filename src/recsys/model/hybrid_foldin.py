"""Cold start from customer attributes: the hybrid model's serving side, numpy only (ships in the Lambda zip).

The hybrid model (``recsys.pipeline.hybrid``) gives every customer vector x a prior mean that their
attributes predict, ``m(a) = a @ B``, and a diagonal precision Λ. For fixed item vectors Y, the
training objective restricted to one customer,

    Σ_i c_i (p_i − x·y_i)² + (x − m)ᵀ Λ (x − m)      (p = 1, c = the confidence, for browsed/rated items)

is minimised by ``foldin.fold_in(Y, items, confidences, Λ, m)``: the trainer's own customer solve.
For a customer without a stored vector the Lambda picks:

* ``features``          attributes, nothing browsed -> x = m(a), the prior mean itself
* ``features+fold_in``  attributes and browsed items -> the solve with m(a)
* ``fold_in``           browsed items, no usable attributes -> the solve with the average customer's m
* ``popular_fallback``  neither (or a model whose validation found ``features`` no better than
                        popularity, for a customer with attributes only)

A plain ALS model has no prior (B = 0, Λ = λI): ``fold_in`` is then exactly ALS's fold-in.
Attributes: country (one-hot over the training customers' countries, plus its region) and
creditLimit (standardised ln, and a flag for 0 = no credit line); an unknown creditLimit encodes
as the average customer's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recsys.contracts import STRATEGY_FEATURES, STRATEGY_FEATURES_FOLD_IN, STRATEGY_FOLD_IN, STRATEGY_POPULAR_FALLBACK
from recsys.model.base import FoldInModel
from recsys.model.foldin import fold_in

HYBRID_KIND = "hybrid"
# The hybrid's own model.npz arrays (docs/contracts.md section 2); ``item_factors`` then holds its
# item vectors [free factors | fixed item features].
NPZ_PRECISION = "prior_precision"  # (D,) diagonal of Λ: how strongly a customer vector keeps to its prior mean
NPZ_PRIOR_MAP = "prior_map"  # (A, D) B: encoded attributes a -> prior mean a @ B of the customer vector
NPZ_POPULATION_ATTRIBUTES = "population_attributes"  # (A,) the training customers' mean a
NPZ_ATTRIBUTE_COUNTRIES = "attribute_countries"  # country one-hot vocabulary
NPZ_ATTRIBUTE_REGIONS = "attribute_regions"  # region one-hot vocabulary
NPZ_COUNTRY_REGIONS = "country_regions"  # (n, 2) country, region
NPZ_LOG_CREDIT = "log_credit_scale"  # (2,) mean and std of ln creditLimit of the training customers
NPZ_FEATURES_ALONE = "serve_features_alone"  # bool: validation found the features strategy beats popularity


@dataclass(frozen=True)
class AttributeEncoder:
    """Customer attributes -> ``a = [1 | country one-hot | region one-hot | z(ln creditLimit) | no credit]``."""

    countries: tuple[str, ...]  # one-hot vocabulary: the training customers' countries
    regions: tuple[str, ...]
    country_regions: Mapping[str, str]  # public geography: country -> region
    log_credit_mean: float  # of ln creditLimit over the training customers with a credit line
    log_credit_std: float

    @property
    def dim(self) -> int:
        return 1 + len(self.countries) + len(self.regions) + 2

    def names(self) -> list[str]:
        """What each coordinate of ``a`` is (for the manifest)."""
        return (
            ["intercept"]
            + [f"country={c}" for c in self.countries]
            + [f"region={r}" for r in self.regions]
            + ["ln creditLimit (standardised)", "no credit line"]
        )

    def usable(self, country: str | None, credit_limit: float | None) -> bool:
        """Whether the attributes say anything: a country the model can place, or a credit limit."""
        known_credit = credit_limit is not None and np.isfinite(credit_limit)
        return known_credit or country in self.country_regions or country in self.countries

    def encode(self, countries: Collection[str | None], credit_limits: Collection[float | None]) -> np.ndarray:
        """(n, dim) float64; an unknown country or region leaves its one-hot block at zero."""
        n = len(countries)
        out = np.zeros((n, self.dim))
        out[:, 0] = 1.0
        country_col = {c: 1 + j for j, c in enumerate(self.countries)}
        region_col = {r: 1 + len(self.countries) + j for j, r in enumerate(self.regions)}
        for row, country in enumerate(countries):
            if country in country_col:
                out[row, country_col[country]] = 1.0
            region = self.country_regions.get(country) if country is not None else None
            if region in region_col:
                out[row, region_col[region]] = 1.0
        credit = np.array([np.nan if v is None else float(v) for v in credit_limits], dtype=np.float64)
        has_line = np.isfinite(credit) & (credit > 0)
        out[has_line, -2] = (np.log(credit[has_line]) - self.log_credit_mean) / self.log_credit_std
        out[:, -1] = (np.isfinite(credit) & (credit <= 0)).astype(np.float64)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        pairs = sorted(self.country_regions.items())
        return {
            NPZ_ATTRIBUTE_COUNTRIES: np.array(self.countries, dtype=str),
            NPZ_ATTRIBUTE_REGIONS: np.array(self.regions, dtype=str),
            NPZ_COUNTRY_REGIONS: np.array(pairs, dtype=str).reshape(len(pairs), 2),
            NPZ_LOG_CREDIT: np.array([self.log_credit_mean, self.log_credit_std]),
        }

    @classmethod
    def from_arrays(cls, npz: Mapping[str, np.ndarray]) -> AttributeEncoder:
        mean, std = (float(v) for v in npz[NPZ_LOG_CREDIT])
        return cls(
            tuple(str(c) for c in npz[NPZ_ATTRIBUTE_COUNTRIES]),
            tuple(str(r) for r in npz[NPZ_ATTRIBUTE_REGIONS]),
            {str(c): str(r) for c, r in npz[NPZ_COUNTRY_REGIONS]},
            mean,
            std,
        )


@dataclass(frozen=True)
class AttributePrior:
    """The prior mean of a customer vector from their attributes: ``m(a) = a @ prior_map``."""

    encoder: AttributeEncoder
    prior_map: np.ndarray  # (A, D) B
    population_attributes: np.ndarray  # (A,) the training customers' mean encoded attributes
    features_alone: bool  # validation found the ``features`` strategy better than popularity

    def mean(self, attributes: np.ndarray | None) -> np.ndarray:
        """m(a); ``None`` = the average training customer."""
        a = self.population_attributes if attributes is None else attributes
        prior_mean: np.ndarray = np.asarray(a, dtype=np.float64) @ self.prior_map
        return prior_mean

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            NPZ_PRIOR_MAP: np.asarray(self.prior_map, dtype=np.float64),
            NPZ_POPULATION_ATTRIBUTES: np.asarray(self.population_attributes, dtype=np.float64),
            NPZ_FEATURES_ALONE: np.asarray(self.features_alone, dtype=np.bool_),
        } | self.encoder.to_arrays()

    @classmethod
    def from_arrays(cls, npz: Mapping[str, np.ndarray]) -> AttributePrior | None:
        """The prior a model archive holds, or None for a plain ALS model (no prior arrays)."""
        if NPZ_PRIOR_MAP not in npz:
            return None
        return cls(
            AttributeEncoder.from_arrays(npz),
            np.asarray(npz[NPZ_PRIOR_MAP], dtype=np.float64),
            np.asarray(npz[NPZ_POPULATION_ATTRIBUTES], dtype=np.float64),
            bool(npz[NPZ_FEATURES_ALONE]),
        )


def cold_start_vector(
    item_factors: np.ndarray,
    item_rows: Sequence[int],
    confidences: Sequence[float] | np.ndarray,
    regularization: float | np.ndarray,
    prior: AttributePrior | None,
    *,
    country: str | None = None,
    credit_limit: float | None = None,
) -> tuple[str, np.ndarray | None]:
    """(strategy, raw user vector or None) for a customer the model has no stored vector for.

    ``item_rows``/``confidences``: their browse history as item rows and confidences (may be empty);
    ``regularization``: λ (ALS) or the hybrid's precision Λ (D,).
    """
    attributes = None
    if prior is not None and prior.encoder.usable(country, credit_limit):
        attributes = prior.encoder.encode([country], [credit_limit])[0]
    if len(item_rows):
        mean = None if prior is None else prior.mean(attributes)
        strategy = STRATEGY_FOLD_IN if attributes is None else STRATEGY_FEATURES_FOLD_IN
        return strategy, fold_in(item_factors, item_rows, confidences, regularization, mean)
    if prior is not None and attributes is not None and prior.features_alone:
        return STRATEGY_FEATURES, prior.mean(attributes).astype(np.float32)
    return STRATEGY_POPULAR_FALLBACK, None


@dataclass(frozen=True)
class HybridFoldIn(FoldInModel):
    """The hybrid's serving side: the precision Λ and the attribute prior of ``cold_start_vector``."""

    kind: ClassVar[str] = HYBRID_KIND
    precision: np.ndarray  # (D,) diag Λ
    prior: AttributePrior

    @classmethod
    def from_arrays(cls, npz: Mapping[str, np.ndarray]) -> HybridFoldIn:
        prior = AttributePrior.from_arrays(npz)
        if prior is None:
            raise ValueError(f"a hybrid model archive lacks {NPZ_PRIOR_MAP}")
        return cls(np.asarray(npz[NPZ_PRECISION], dtype=np.float64), prior)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return self.prior.to_arrays() | {NPZ_PRECISION: np.asarray(self.precision)}

    def cold_start_vector(
        self,
        item_factors: np.ndarray,
        item_rows: Sequence[int],
        confidences: Sequence[float] | np.ndarray,
        *,
        country: str | None = None,
        credit_limit: float | None = None,
    ) -> tuple[str, np.ndarray | None]:
        return cold_start_vector(
            item_factors, item_rows, confidences, self.precision, self.prior, country=country, credit_limit=credit_limit
        )
