"""The hybrid model's pure parts: the attribute encoder, the prior fold-in (= ALS fold-in without a
prior), the batched training solve (= the Lambda's fold-in), the cold-start strategies, and the
model on planted-v2 data."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from tests.support.seeded_tables import training_table

from recsys.contracts import STRATEGY_FEATURES, STRATEGY_FEATURES_FOLD_IN, STRATEGY_FOLD_IN, STRATEGY_POPULAR_FALLBACK
from recsys.model import hybrid_foldin
from recsys.model.foldin import confidence, fold_in
from recsys.model.hybrid_foldin import AttributeEncoder, AttributePrior, cold_start_vector
from recsys.pipeline import evaluate, hybrid
from recsys.pipeline.train import TrainParams, evaluate_model, training_side_info
from recsys_seed.generate import LOCATIONS, REGIONS, SeedSpec, generate

ENCODER = AttributeEncoder(
    ("France", "Japan"), ("Asia-Pacific", "Western Europe"), hybrid.COUNTRY_REGIONS, np.log(75_000.0), 0.5
)


def test_encoder_layout_and_unknown_values():
    a = ENCODER.encode(["Japan", "Germany", "Atlantis", None], [75_000.0 * np.e**0.5, 0.0, None, float("nan")])
    assert a.shape == (4, ENCODER.dim) == (4, 1 + 2 + 2 + 2)
    assert ENCODER.names()[:3] == ["intercept", "country=France", "country=Japan"]
    np.testing.assert_allclose(a[0], [1, 0, 1, 1, 0, 1.0, 0])  # Japan, Asia-Pacific, credit one sd up
    np.testing.assert_allclose(a[1], [1, 0, 0, 0, 1, 0, 1])  # Germany: not in the vocabulary, its region is
    np.testing.assert_allclose(a[2], [1, 0, 0, 0, 0, 0, 0])  # unknown country, unknown credit: the average
    np.testing.assert_allclose(a[3], a[2])
    assert ENCODER.usable("Germany", None) and ENCODER.usable(None, 10.0) and ENCODER.usable("Atlantis", 0.0)
    assert not ENCODER.usable("Atlantis", None) and not ENCODER.usable(None, None)


def test_prior_arrays_survive_an_npz_round_trip():
    prior = AttributePrior(ENCODER, np.arange(14.0).reshape(7, 2), np.full(7, 0.5), features_alone=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **prior.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = AttributePrior.from_arrays(npz)
    assert loaded.encoder == ENCODER and loaded.features_alone
    np.testing.assert_array_equal(loaded.prior_map, prior.prior_map)
    empty = io.BytesIO()
    np.savez(empty, item_factors=np.zeros((2, 2)))
    empty.seek(0)
    with np.load(empty) as npz:
        assert AttributePrior.from_arrays(npz) is None  # a plain ALS archive


def test_a_zero_prior_with_a_constant_precision_is_als_fold_in():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(30, 5))
    items, conf = [3, 7, 7, 12], [6.0, 11.0, 1.0, 16.0]
    np.testing.assert_array_equal(fold_in(Y, items, conf, np.full(5, 20.0), np.zeros(5)), fold_in(Y, items, conf, 20.0))
    with_prior = fold_in(Y, items, conf, np.full(5, 20.0), rng.normal(size=5))
    assert not np.allclose(with_prior, fold_in(Y, items, conf, 20.0))


def test_batched_training_solve_equals_the_lambdas_fold_in():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(40, 6))
    stars = sp.random(25, 40, density=0.15, random_state=2, format="csr", data_rvs=lambda n: rng.integers(1, 6, n))
    conf = stars.copy()
    conf.data = confidence(stars.data, 5.0, 2.0)
    precision, means = rng.uniform(5, 50, 6), rng.normal(size=(25, 6))
    batched = hybrid.solve_customers(Y, conf, precision, means)
    for u in range(25):
        row = conf[u]
        np.testing.assert_allclose(
            batched[u], fold_in(Y, row.indices, row.data, precision, means[u]), rtol=2e-3, atol=2e-4
        )  # float32 batched systems vs float64


def test_the_batched_solve_gives_the_same_vectors_on_any_number_of_threads():
    rng = np.random.default_rng(8)
    V = rng.normal(size=(50, 4))
    weights = sp.random(33, 50, density=0.2, random_state=9, format="csr", dtype=np.float32)
    base, rhs = V.T @ V + 10 * np.eye(4), rng.normal(size=(33, 4))
    one = hybrid._batched_solve(weights, V, base, rhs, threads=1)
    np.testing.assert_array_equal(one, hybrid._batched_solve(weights, V, base, rhs, threads=3))
    np.testing.assert_allclose(one[5], np.linalg.solve(base + (V.T * weights[5].toarray()) @ V, rhs[5]), rtol=1e-4)


def _prior(features_alone: bool = True, dims: int = 3) -> AttributePrior:
    rng = np.random.default_rng(3)
    return AttributePrior(ENCODER, rng.normal(size=(ENCODER.dim, dims)), np.full(ENCODER.dim, 0.3), features_alone)


@pytest.mark.parametrize(
    "rows, country, credit, expected",
    [
        ([0, 4], "Japan", 90_000.0, STRATEGY_FEATURES_FOLD_IN),
        ([0, 4], None, None, STRATEGY_FOLD_IN),
        ([], "France", None, STRATEGY_FEATURES),
        ([], None, 0.0, STRATEGY_FEATURES),
        ([], "Atlantis", None, STRATEGY_POPULAR_FALLBACK),
        ([], None, None, STRATEGY_POPULAR_FALLBACK),
    ],
)
def test_cold_start_strategy(rows, country, credit, expected):
    Y = np.random.default_rng(4).normal(size=(10, 3))
    prior = _prior()
    lam = np.array([20.0, 20.0, 80.0])
    strategy, vector = cold_start_vector(Y, rows, [6.0] * len(rows), lam, prior, country=country, credit_limit=credit)
    assert strategy == expected
    if expected == STRATEGY_FEATURES:
        np.testing.assert_allclose(vector, prior.mean(ENCODER.encode([country], [credit])[0]), rtol=1e-6)
    elif expected == STRATEGY_FOLD_IN:  # no usable attributes: the average customer's prior
        np.testing.assert_allclose(vector, fold_in(Y, rows, [6.0, 6.0], lam, prior.mean(None)), rtol=1e-6)
    elif expected == STRATEGY_POPULAR_FALLBACK:
        assert vector is None


def test_features_alone_is_withheld_when_validation_found_it_no_better_than_popularity():
    Y = np.random.default_rng(5).normal(size=(10, 3))
    assert (
        cold_start_vector(Y, [], [], 20.0, _prior(features_alone=False), country="France")[0]
        == STRATEGY_POPULAR_FALLBACK
    )
    assert (
        cold_start_vector(Y, [1], [6.0], 20.0, _prior(features_alone=False), country="France")[0]
        == STRATEGY_FEATURES_FOLD_IN
    )


def test_plain_als_has_fold_in_and_the_popular_fallback_only():
    Y = np.random.default_rng(6).normal(size=(10, 3))
    strategy, vector = cold_start_vector(Y, [2, 5], [6.0, 11.0], 20.0, None, country="France", credit_limit=1.0)
    assert strategy == STRATEGY_FOLD_IN
    np.testing.assert_array_equal(vector, fold_in(Y, [2, 5], [6.0, 11.0], 20.0))
    assert cold_start_vector(Y, [], [], 20.0, None, country="France")[0] == STRATEGY_POPULAR_FALLBACK


def test_the_model_modules_need_numpy_only():
    """recsys.model ships in the Lambda zip: the standard library and numpy, no scipy, no framework."""
    for path in Path(hybrid_foldin.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        outside = {m.split(".")[0] for m in imported} - set(sys.stdlib_module_names) - {"numpy", "recsys"}
        assert not outside, f"{path.name} imports {outside}"


def test_the_models_geography_is_the_sources():
    assert hybrid.COUNTRY_REGIONS == REGIONS
    assert {country for *_, country in LOCATIONS} == set(REGIONS)


def test_item_features_one_hot_and_standardised():
    side = hybrid.SideInfo(
        np.array([], dtype=object),
        np.array([]),
        np.array(["Ships", "Planes", "Ships", None], object),
        np.array(["1:10", "1:700", "bad", "1:18"], object),
        np.array([10.0, 100.0, np.nan, 0.0]),
    )
    features, names = hybrid.item_features(side)
    assert names[:2] == ["productLine=Planes", "productLine=Ships"] and len(names) == 4
    np.testing.assert_array_equal(features[:, :2], [[0, 1], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_allclose(features[:, 2], [-1, 1, 0, 0])  # ln price of the two known prices, unknown -> 0
    assert features[0, 3] > features[3, 3] > features[1, 3] and features[2, 3] == 0  # 1:10 is the biggest


def test_prior_ridge_falls_back_to_the_mean_when_attributes_carry_no_signal():
    rng = np.random.default_rng(7)
    A = np.hstack([np.ones((400, 1)), rng.normal(size=(400, 5))])
    noise = rng.normal(size=(400, 2)) + [3.0, -1.0]
    B = hybrid.PriorRidge(A).fit(noise)
    np.testing.assert_allclose(B[0], noise.mean(axis=0), atol=0.05)
    assert np.abs(B[1:]).max() < 0.05
    signal = A[:, 1:3] @ [[1.0, 0.0], [0.0, 2.0]] + 0.1 * rng.normal(size=(400, 2))
    fitted = hybrid.PriorRidge(A).fit(signal)
    np.testing.assert_allclose(fitted[1:3], [[1.0, 0.0], [0.0, 2.0]], atol=0.05)


@pytest.fixture(scope="module")
def planted():
    seeded = generate(SeedSpec(customers=400, products=120, ratings=10_000, seed=5))
    table = training_table(seeded)
    data = evaluate.interactions_from_table(table)
    return seeded, data, training_side_info(table, data)


def test_stored_vectors_are_the_serving_fold_in_of_their_ratings(planted):
    _, data, side = planted
    fit = hybrid.fit_hybrid(data.matrix(data.ratings), side, hybrid.HybridParams(iterations=4))
    stars = data.matrix(data.ratings)
    for u in range(0, data.shape[0], 9):
        row = stars[u]
        folded = fold_in(
            fit.item_vectors,
            row.indices,
            confidence(row.data, 5.0, 2.0),
            fit.precision,
            fit.prior.mean(fit.attributes[u]),
        )
        cosine = folded @ fit.user_vectors[u] / np.linalg.norm(folded) / np.linalg.norm(fit.user_vectors[u])
        assert cosine > 0.9999, u


def test_hybrid_beats_als_and_its_features_beat_popularity_on_planted_v2(planted):
    seeded, data, side = planted
    evaluation = evaluate_model(data, TrainParams(), side, seeded.truth)
    known, cold = evaluation.views.known.rankers, evaluation.views.cold_features.rankers
    assert evaluation.selection.kind == "hybrid" and evaluation.selection.options["features_alone"]
    assert known["hybrid"].ndcg > known["als"].ndcg and known["hybrid"].ndcg > 1.5 * known["popularity"].ndcg
    assert cold[f"hybrid [{STRATEGY_FEATURES}]"].ndcg > 1.2 * cold["popularity"].ndcg
    assert cold["attributes-only truth"].ndcg > cold["popularity"].ndcg
