"""The model interface: every kind has a training half (recsys.pipeline.trainers) and a serving half
(recsys.model) under the same name, the published archive round-trips through the serving half the
manifest's kind names, and a new kind runs through the trainer by registering it (no branch elsewhere)."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
from tests.support.seeded_tables import training_table

from recsys.contracts import MODEL_NPZ, STRATEGY_FOLD_IN, STRATEGY_POPULAR_FALLBACK
from recsys.model import registry as serving_registry
from recsys.model.base import FoldInModel
from recsys.model.foldin import confidence, fold_in
from recsys.model.registry import FOLD_INS, UnknownModelKind, fold_in_class
from recsys.pipeline import evaluate
from recsys.pipeline.hybrid import HybridParams
from recsys.pipeline.train import MODEL_CHOICES, TrainParams, evaluate_model, fit_final, model_files, training_side_info
from recsys.pipeline.trainers import registry as training_registry
from recsys.pipeline.trainers.als import AlsTrainer
from recsys.pipeline.trainers.registry import TRAINERS
from recsys.serving.model_cache import model_kind
from recsys_seed.generate import SeedSpec, generate

SMALL = TrainParams(iterations=4, hybrid=HybridParams(iterations=3))


@pytest.fixture(scope="module")
def small():
    seeded = generate(SeedSpec(customers=150, products=60, ratings=3000, seed=7))
    table = training_table(seeded)
    data = evaluate.interactions_from_table(table)
    return data, training_side_info(table, data)


def _archive(data, final) -> np.lib.npyio.NpzFile:
    return np.load(io.BytesIO(model_files(data, final, SMALL)[MODEL_NPZ]), allow_pickle=False)


def test_every_trained_kind_has_a_serving_half_of_the_same_name():
    assert list(TRAINERS) == list(FOLD_INS) == ["als", "hybrid"]
    assert MODEL_CHOICES == ("auto", "als", "hybrid")
    assert all(trainer.kind == kind for kind, trainer in TRAINERS.items())


def test_an_unknown_kind_is_named_and_an_old_manifest_is_als():
    with pytest.raises(UnknownModelKind, match=r"unknown model kind 'svd'; this code serves als, hybrid"):
        fold_in_class("svd")
    assert model_kind({}) == model_kind({"model": "?"}) == "als"
    assert model_kind({"model": {"kind": "hybrid"}}) == "hybrid"


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_the_published_archive_reads_back_through_the_kinds_serving_half(small, kind):
    data, side = small
    evaluation = evaluate_model(data, replace(SMALL, model=kind), side)
    final = fit_final(data, side, SMALL, evaluation.selection)
    assert final.kind == kind == final.details["kind"] and isinstance(final.fold_in, FOLD_INS[kind])
    with _archive(data, final) as npz:
        served = fold_in_class(kind).from_arrays(npz)
        own = final.fold_in.to_arrays()
        assert set(own) <= set(npz.files)
        for name, array in own.items():
            np.testing.assert_array_equal(npz[name], array)
        # a known customer's history folds in to (nearly) their stored vector, as the Lambda would
        row = int(np.argmax(np.bincount(data.users)))
        mine = data.users == row
        strategy, vector = served.cold_start_vector(
            npz["item_factors"], data.items[mine], confidence(data.ratings[mine], final.alpha, final.rating_offset)
        )
    assert strategy.endswith(STRATEGY_FOLD_IN) and vector is not None
    stored = final.user_vectors[row]
    assert vector @ stored / (np.linalg.norm(vector) * np.linalg.norm(stored)) > 0.97


# -- a third kind: one trainer and one serving class, registered --------------------------------------


class ShrunkFoldIn(FoldInModel):
    """ALS whose fold-in shrinks twice as hard; its own archive entry holds the factor."""

    kind: ClassVar[str] = "shrunk-als"

    def __init__(self, regularization: float, shrink: float = 2.0):
        self.regularization, self.shrink = regularization, shrink

    @classmethod
    def from_arrays(cls, npz):
        return cls(float(npz["regularization"]), float(npz["shrink"]))

    def to_arrays(self):
        return {"shrink": np.float64(self.shrink)}

    def cold_start_vector(self, item_factors, item_rows, confidences, *, country=None, credit_limit=None):
        if not len(item_rows):
            return STRATEGY_POPULAR_FALLBACK, None
        return STRATEGY_FOLD_IN, fold_in(item_factors, item_rows, confidences, self.regularization * self.shrink)


class ShrunkTrainer(AlsTrainer):
    kind = ShrunkFoldIn.kind

    def fit_final(self, data, side, params, options, show_progress=False):
        final = super().fit_final(data, side, params, options, show_progress)
        return replace(final, kind=self.kind, fold_in=ShrunkFoldIn(params.regularization))


def test_a_new_kind_runs_through_the_trainer_once_registered(small, monkeypatch):
    monkeypatch.setitem(training_registry.TRAINERS, ShrunkTrainer.kind, ShrunkTrainer())
    monkeypatch.setitem(serving_registry.FOLD_INS, ShrunkFoldIn.kind, ShrunkFoldIn)
    data, side = small
    evaluation = evaluate_model(data, SMALL, side)  # auto: every registered kind is a candidate
    assert {"als", "hybrid", "shrunk-als"} <= set(evaluation.views.known.rankers)
    assert re.search(r"als \d\.\d{4}, hybrid \d\.\d{4}, shrunk-als \d\.\d{4}$", evaluation.selection.reason)
    chosen = evaluate_model(data, replace(SMALL, model="shrunk-als"), side)
    final = fit_final(data, side, SMALL, chosen.selection)
    assert chosen.selection.reason == "--model shrunk-als" and final.details["kind"] == "shrunk-als"
    with _archive(data, final) as npz:
        served = fold_in_class(model_kind({"model": final.details}))
        assert served is ShrunkFoldIn and served.from_arrays(npz).shrink == 2.0
