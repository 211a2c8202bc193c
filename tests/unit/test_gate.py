"""The quality gate's decision and how it reads a version's recipe (no services: the end-to-end runs are in
tests/integration/test_pipeline.py)."""

from __future__ import annotations

import pytest

from recsys.core.errors import PipelineError
from recsys.pipeline import gate, hybrid, train
from recsys.pipeline.gate import Figures, decide, recipe

LIVE = Figures("live-v", "hybrid", known_ndcg=0.50, cold_ndcg=0.40)


def candidate(known: float, cold: float | None) -> Figures:
    return Figures("cand-v", "als", known_ndcg=known, cold_ndcg=cold)


def test_with_no_live_model_the_candidate_goes_live():
    decision = decide(candidate(0.1, 0.1), None, 0.01)
    assert decision.promote and "no live model" in decision.summary


@pytest.mark.parametrize(
    "known, cold, worse",
    [
        (0.48, 0.40, "known customers"),
        (0.50, 0.38, "cold start"),
        (0.30, 0.20, "known customers, cold start"),
    ],
)
def test_a_candidate_worse_beyond_the_tolerance_is_refused_with_both_figures(known, cold, worse):
    decision = decide(candidate(known, cold), LIVE, 0.01)
    assert not decision.promote
    assert decision.summary.startswith(f"not promoted: worse on {worse}: ")
    assert f"known {known:.4f}" in decision.summary and "known 0.5000" in decision.summary
    assert decision.as_record()["live"]["version"] == "live-v"


@pytest.mark.parametrize("known, cold", [(0.495, 0.395), (0.50, 0.40), (0.60, 0.39)])
def test_a_candidate_within_the_tolerance_or_better_is_promoted(known, cold):
    assert decide(candidate(known, cold), LIVE, 0.01).promote


def test_a_view_without_figures_does_not_decide():
    assert decide(candidate(0.50, None), LIVE, 0.01).promote
    assert not decide(candidate(0.40, None), LIVE, 0.01).promote


def test_recipe_of_an_als_version_keeps_the_gates_split_protocol():
    params = recipe(
        {
            "model": {"kind": "als"},
            "embedding_transform": "none",
            "hyperparameters": {
                "factors": 3,
                "iterations": 2,
                "regularization": 1.0,
                "alpha": 2.0,
                "rating_offset": 1.0,
                "seed": 7,
            },
        }
    )
    assert (params.model, params.factors, params.iterations, params.seed, params.embedding_transform) == (
        "als",
        3,
        2,
        7,
        "none",
    )
    assert (params.k, params.holdout_fraction, params.cold_fraction, params.browse) == (
        gate.SPLIT.k,
        gate.SPLIT.holdout_fraction,
        gate.SPLIT.cold_fraction,
        gate.SPLIT.browse,
    )


def test_recipe_of_a_hybrid_version():
    hyper = hybrid.HybridParams(factors=4, iterations=3).as_dict()
    params = recipe({"model": {"kind": "hybrid"}, "embedding_transform": "mips-augment", "hyperparameters": hyper})
    assert params.model == train.HYBRID_RANKER and params.hybrid == hybrid.HybridParams(factors=4, iterations=3)


@pytest.mark.parametrize(
    "manifest",
    [{"model": {"kind": "svd"}, "embedding_transform": "none", "hyperparameters": {}}, {"model": {"kind": "als"}}],
)
def test_a_manifest_without_a_usable_recipe_is_refused_by_name(manifest):
    with pytest.raises(PipelineError, match="model"):
        recipe(manifest)
