"""The trainer's pure parts: ranking metrics, top-k, fold-in, and the seeder's planted truth."""
from __future__ import annotations

import numpy as np
import pytest

from inference.foldin import fold_in
from recsys.pipeline import evaluate
from recsys_seed import SeedSpec, planted_truth
from recsys_seed.generate import generate


def test_ranking_metrics_on_a_hand_computed_case():
    relevant = evaluate.Interactions(np.array([1]), np.array(["a", "b", "c", "d"]), np.array([0, 0], np.int32),
                                     np.array([1, 3], np.int32), np.ones(2, np.float32)).matrix(np.ones(2))
    m = evaluate.ranking_metrics(np.array([[1, 0, 3]]), relevant, np.array([0]), n_items=4)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(1.0)
    assert m.ndcg == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert m.map == pytest.approx((1 + 2 / 3) / 2)
    assert m.coverage == pytest.approx(3 / 4)


def test_top_k_skips_rated_items_and_pads_a_small_catalogue():
    rated = evaluate.Interactions(np.array([1, 2]), np.array(["a", "b", "c"]), np.array([0], np.int32),
                                  np.array([2], np.int32), np.ones(1, np.float32)).matrix(np.ones(1))
    scores = np.array([[0.1, 0.2, 0.9], [0.3, 0.2, 0.1]])
    best = evaluate.top_k(lambda rows: scores[rows], np.array([0, 1]), rated, k=2)
    assert best.tolist() == [[1, 0], [0, 1]]
    padded = evaluate.top_k(lambda rows: scores[rows], np.array([1]), rated, k=5)
    assert padded.tolist() == [[0, 1, 2, -1, -1]]


def test_fold_in_sums_duplicate_items_and_rejects_bad_indices():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(fold_in(Y, [1, 1, 2], [2.0, 3.0, 1.5], 0.1), fold_in(Y, [1, 2], [5.0, 1.5], 0.1),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        fold_in(Y, [5], [1.0], 0.1)
    assert fold_in(Y, [], [], 0.1).shape == (3,)


def test_planted_truth_regenerates_from_arguments():
    spec = SeedSpec(customers=50, products=40, ratings=600, seed=3)
    data = generate(spec)
    truth = planted_truth(spec)
    np.testing.assert_array_equal(truth.user_features, data.truth.user_features)
    np.testing.assert_array_equal(truth.product_codes, data.truth.product_codes)
    assert len(set(data.truth.product_codes)) == spec.products


def test_ratings_carry_learnable_structure():
    """Ranking held-out items by the planted affinity beats ranking them by popularity by a wide margin."""
    spec = SeedSpec(customers=400, products=200, ratings=16_000, seed=11)
    data = generate(spec)
    rng = np.random.default_rng(0)
    users = data.ratings_customer - data.truth.customer_numbers[0]
    items = data.ratings_product
    held = rng.random(len(items)) < 0.2
    popularity = np.bincount(items[~held], minlength=spec.products).astype(float)
    truth_hits = pop_hits = total = 0
    for u in np.unique(users[held]):
        seen = items[(users == u) & ~held]
        target = set(items[(users == u) & held])
        for scores, counter in ((data.truth.affinity(u).copy(), "truth"), (popularity.copy(), "pop")):
            scores[seen] = -np.inf
            top = set(np.argsort(-scores)[:10])
            if counter == "truth":
                truth_hits += len(top & target)
            else:
                pop_hits += len(top & target)
        total += len(target)
    assert truth_hits > 1.5 * pop_hits, (truth_hits, pop_hits, total)
