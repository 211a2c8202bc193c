"""The trainer's pure parts: ranking metrics, top-k, fold-in, and the seeder's planted truth."""

from __future__ import annotations

import re

import numpy as np
import pytest

from recsys.model.foldin import fold_in
from recsys.pipeline import evaluate
from recsys_seed import Catalogue, SeedSpec, planted_truth, synthesize_events
from recsys_seed.generate import generate


def test_ranking_metrics_on_a_hand_computed_case():
    relevant = evaluate.Interactions(
        np.array([1]),
        np.array(["a", "b", "c", "d"]),
        np.array([0, 0], np.int32),
        np.array([1, 3], np.int32),
        np.ones(2, np.float32),
    ).matrix(np.ones(2))
    m = evaluate.ranking_metrics(np.array([[1, 0, 3]]), relevant, np.array([0]), n_items=4)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(1.0)
    assert m.ndcg == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert m.map == pytest.approx((1 + 2 / 3) / 2)
    assert m.coverage == pytest.approx(3 / 4)


def test_top_k_skips_rated_items_and_pads_a_small_catalogue():
    rated = evaluate.Interactions(
        np.array([1, 2]),
        np.array(["a", "b", "c"]),
        np.array([0], np.int32),
        np.array([2], np.int32),
        np.ones(1, np.float32),
    ).matrix(np.ones(1))
    scores = np.array([[0.1, 0.2, 0.9], [0.3, 0.2, 0.1]])
    best = evaluate.top_k(lambda rows: scores[rows], np.array([0, 1]), rated, k=2)
    assert best.tolist() == [[1, 0], [0, 1]]
    padded = evaluate.top_k(lambda rows: scores[rows], np.array([1]), rated, k=5)
    assert padded.tolist() == [[0, 1, 2, -1, -1]]


def test_fold_in_sums_duplicate_items_and_rejects_bad_indices():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        fold_in(Y, [1, 1, 2], [2.0, 3.0, 1.5], 0.1), fold_in(Y, [1, 2], [5.0, 1.5], 0.1), rtol=1e-5
    )
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


# -- planted-v2: tastes partly from attributes ------------------------------------------------------


def _attributes(data):
    return [(c[10], c[12]) for c in data.customers]  # country, creditLimit


def test_attribute_share_zero_plants_no_taste_in_attributes():
    data = generate(SeedSpec(customers=300, products=60, ratings=3000, seed=4, attribute_share=0.0))
    truth = data.truth
    assert truth.explained_share() == 0.0
    # what the attributes let one expect is the popularity everyone shares
    expected = truth.expected_affinity()
    np.testing.assert_allclose(expected, np.broadcast_to(expected[0], expected.shape))


def test_attribute_share_one_makes_equal_attributes_equal_tastes():
    data = generate(SeedSpec(customers=600, products=60, ratings=6000, seed=4, attribute_share=1.0))
    truth = data.truth
    assert truth.explained_share() == pytest.approx(1.0)
    np.testing.assert_allclose(truth.user_features, truth.user_features_expected, atol=1e-6)
    seen: dict[tuple, int] = {}
    for row, key in enumerate(_attributes(data)):
        if key in seen:
            np.testing.assert_allclose(truth.user_features[row], truth.user_features[seen[key]], atol=1e-6)
        seen[key] = row


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_attributes_explain_about_the_share_asked_for(share):
    """25 countries and 6 regions are few draws, so the measured share scatters around the target."""
    truth = planted_truth(SeedSpec(customers=3000, products=200, ratings=3000, seed=9, attribute_share=share))
    assert abs(truth.explained_share() - share) < 0.1


def test_attribute_share_is_validated():
    with pytest.raises(ValueError, match=re.escape("--attribute-share must be in 0..1")):
        SeedSpec(attribute_share=1.5).validate()
    with pytest.raises(ValueError, match="--attribute-share"):
        SeedSpec(attribute_share=float("nan")).validate()


def test_the_same_spec_gives_the_same_rows_and_another_share_other_tastes_on_the_same_catalogue():
    spec = SeedSpec(customers=80, products=50, ratings=900, seed=12)
    first, again = generate(spec), generate(spec)
    assert first.customers == again.customers and first.products == again.products
    np.testing.assert_array_equal(first.ratings_value, again.ratings_value)
    other = generate(SeedSpec(customers=80, products=50, ratings=900, seed=12, attribute_share=0.9))
    assert other.products == first.products and other.customers == first.customers
    assert not np.array_equal(other.truth.user_features, first.truth.user_features)


def test_expected_affinity_ranks_a_customers_ratings_better_than_popularity():
    """The attributes-only ceiling sits between popularity and the full planted truth."""
    data = generate(SeedSpec(customers=1500, products=150, ratings=30_000, seed=8))
    users = data.ratings_customer - data.truth.customer_numbers[0]
    popularity = np.bincount(data.ratings_product, minlength=150).astype(float)
    hits = {"truth": 0, "attributes": 0, "popularity": 0}
    for u in range(0, 1500, 5):
        rated = set(data.ratings_product[users == u])
        for name, scores in (
            ("truth", data.truth.affinity(u)),
            ("attributes", data.truth.expected_affinity(u)),
            ("popularity", popularity),
        ):
            hits[name] += len(set(np.argsort(-scores)[:10]) & rated)
    assert hits["truth"] > hits["attributes"] > 1.2 * hits["popularity"], hits


# -- the cold-start split -----------------------------------------------------------------------------


def _interactions(n_users: int = 50, n_items: int = 30, seed: int = 0) -> evaluate.Interactions:
    rng = np.random.default_rng(seed)
    pairs = {
        (int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 600), rng.integers(0, n_items, 600), strict=True)
    }
    users, items = (np.array(x, dtype=np.int32) for x in zip(*sorted(pairs), strict=True))
    return evaluate.Interactions(
        np.arange(n_users) + 100,
        np.array([f"P{i:03d}" for i in range(n_items)]),
        users,
        items,
        rng.integers(1, 6, len(users)).astype(np.float32),
    )


def test_cold_split_holds_customers_out_entirely_and_browses_their_first_ratings():
    data = _interactions()
    split = evaluate.cold_split(data, 0.2, seed=3, cold_fraction=0.1, browse=3)
    active = np.unique(data.users)
    assert len(split.cold_users) == round(0.1 * len(active))
    cold_rows = np.isin(data.users, split.cold_users)
    np.testing.assert_array_equal(split.cold, cold_rows)
    assert not (split.train & cold_rows).any() and not (split.known_test & cold_rows).any()
    assert (split.train | split.known_test | split.cold).all()
    per_user = np.bincount(data.users[split.browsed], minlength=data.shape[0])[split.cold_users]
    totals = np.bincount(data.users, minlength=data.shape[0])[split.cold_users]
    np.testing.assert_array_equal(per_user, np.minimum(totals, 3))
    again = evaluate.cold_split(data, 0.2, seed=3, cold_fraction=0.1, browse=3)
    np.testing.assert_array_equal(again.browsed, split.browsed)
    assert not np.array_equal(evaluate.cold_split(data, 0.2, seed=4).cold_users, split.cold_users)


def test_cold_split_without_cold_customers_is_the_plain_holdout():
    data = _interactions()
    split = evaluate.cold_split(data, 0.2, seed=3, cold_fraction=0.0)
    assert split.cold_users.size == 0 and not split.cold.any()
    np.testing.assert_array_equal(split.known_test, evaluate.holdout_mask(data, 0.2, 3))


def test_new_customer_events_carry_the_attributes_of_the_taste_they_browse_with():
    """Cold start from attributes is judged against a taste consistent with them."""
    customers = [(103 + i, f"city{i}", f"country{i}", 1000.0 * (i + 1)) for i in range(6)]
    codes = np.array([f"P{j}" for j in range(6)])

    def affinity(row: int) -> np.ndarray:  # customer i likes product i overwhelmingly
        scores = np.full(6, -50.0)
        scores[row] = 50.0
        return scores

    catalogue = Catalogue(customers, codes, affinity, {c[0]: i for i, c in enumerate(customers)}, planted=True)
    events = synthesize_events(catalogue, 300, new_customer_fraction=0.5, empty_history_fraction=0.0, seed=1)
    new = [e for e in events if e["customer_number"] > 108]
    assert len(new) > 100
    for event in new:
        owner = int(event["browse_history"][0]["product_code"][1:])
        assert (event["city"], event["country"], event["credit_limit"]) == customers[owner][1:]
