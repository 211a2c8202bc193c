"""Benchmark the trainer: training time and model NDCG@10 against popularity and the planted truth.

For each scale it starts an embedded stack (temp RECSYS_STATE_DIR) with a MySQL database of its
own, seeds it, builds the 13-column training table directly from MySQL (no Spark: the benchmark is
about the trainer), publishes it in the contract layout, and runs the whole ``train`` stage
(evaluation split fit, final fit, artifacts, pointer). Baselines come from the same run and split.

    .venv/bin/python benchmarks/bench_train.py                     # default (lab) scale and 1M ratings
    .venv/bin/python benchmarks/bench_train.py --scales default    # just the lab scale
    .venv/bin/python benchmarks/bench_train.py --tune              # also a validation grid (slow)

``--tune`` fits a grid of hyper-parameters on a validation split carved out of the evaluation
split's training part (the reported hold-out is never looked at) and prints the best configs.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))  # the MySQL → contract-layout publisher

import numpy as np

SCALES = {"default": (122, 110, 2_500, 42), "1m": (20_000, 2_000, 1_000_000, 42)}
TARGET_VS_POPULARITY = 2.0
TARGET_VS_CEILING = 0.8
TUNE_GRID = {"factors": (8, 12, 16, 24), "regularization": (1.0, 5.0, 20.0), "alpha": (2.0, 5.0, 10.0)}


@dataclass
class ScaleResult:
    scale: str
    ratings: int
    seed_seconds: float
    table_seconds: float
    train_seconds: float  # the final fit on every rating
    stage_seconds: float  # the whole train stage: read, evaluate, fit, artifacts, pointer
    ndcg: dict[str, float]

    def ratio(self, reference: str) -> float | None:
        ref = self.ndcg.get(reference)
        return self.ndcg["als"] / ref if ref else None


def run_scale(name: str, spec_args: tuple[int, int, int, int], tune: bool) -> ScaleResult:
    """Seed, publish and train at one scale on a fresh embedded stack; drop the database afterwards."""
    from fixtures_train import publish_training_table, training_table_from_mysql

    from recsys.local.stack import scratch_stack
    from recsys.pipeline.train import TrainParams, train_and_publish
    from recsys.apps.source import planted_truth_for, seed_configured_source
    from recsys_seed import SeedSpec

    with scratch_stack(f"bench_train_{name}") as settings:
        started = time.perf_counter()
        seed_configured_source(settings, SeedSpec(*spec_args), reset=True, show_progress=True)
        seeded = time.perf_counter()
        table = training_table_from_mysql(settings)
        publish_training_table(settings, table)
        published = time.perf_counter()
        print(f"[{name}] seeded {spec_args[2]:,} ratings in {seeded - started:.1f} s; table + publish "
              f"{published - seeded:.1f} s", flush=True)
        truth, note = planted_truth_for(settings)
        result = train_and_publish(settings, TrainParams(), settings.state_dir / "reports", truth=truth,
                                   ceiling_note=note)
        stage = time.perf_counter() - published
        print(result.report.table(), flush=True)
        if tune:
            tune_grid(table, settings)
        return ScaleResult(name, spec_args[2], seeded - started, published - seeded,
                           result.manifest["training_seconds"], stage,
                           {n: m.ndcg for n, m in result.report.rankers.items()})


def tune_grid(table, settings) -> None:
    """NDCG@10 of each grid point on a validation split inside the evaluation split's training part."""
    from recsys.pipeline import evaluate
    from recsys.apps.source import planted_truth_for
    from recsys.pipeline.train import TrainParams, confidence_matrix, fit_als, serving_scorer

    data = evaluate.interactions_from_table(table)
    defaults = TrainParams()
    reported = evaluate.holdout_mask(data, defaults.holdout_fraction, defaults.seed)
    train = evaluate.Interactions(data.user_ids, data.item_ids, data.users[~reported], data.items[~reported],
                                  data.ratings[~reported])
    validation = evaluate.holdout_mask(train, defaults.holdout_fraction, defaults.seed + 1000)
    truth, _ = planted_truth_for(settings)
    scorers = {"popularity": evaluate.popularity_scorer(train.matrix(np.ones(len(train.users), np.float32), ~validation))}
    if truth is not None:
        scorers["planted truth"] = evaluate.planted_truth_scorer(train, truth)
    for factors, reg, alpha in itertools.product(*TUNE_GRID.values()):
        params = replace(defaults, factors=factors, regularization=reg, alpha=alpha)
        fitted = fit_als(confidence_matrix(train, params, ~validation), params)
        scorers[f"f={factors} reg={reg:g} alpha={alpha:g}"] = serving_scorer(fitted, params.embedding_transform)
    report = evaluate.evaluate_rankers(train, validation, scorers, k=defaults.k,
                                       relevant_min_rating=defaults.relevant_min_rating,
                                       holdout_fraction=defaults.holdout_fraction, split_seed=defaults.seed + 1000)
    best = sorted(report.rankers.items(), key=lambda kv: -kv[1].ndcg)
    print("validation NDCG@10 (best first):")
    for label, metrics in best:
        print(f"  {label:<32} {metrics.ndcg:.4f}")


def summary(results: list[ScaleResult]) -> str:
    head = (f"{'scale':<8}{'ratings':>10}{'fit s':>8}{'stage s':>9}{'NDCG als':>10}{'popular':>9}{'ceiling':>9}"
            f"{'x pop':>8}{'x ceil':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        pop, ceil = r.ratio("popularity"), r.ratio("planted truth")
        lines.append(f"{r.scale:<8}{r.ratings:>10,}{r.train_seconds:>8.2f}{r.stage_seconds:>9.1f}{r.ndcg['als']:>10.4f}"
                     f"{r.ndcg['popularity']:>9.4f}{r.ndcg.get('planted truth', float('nan')):>9.4f}"
                     f"{pop or float('nan'):>8.2f}{ceil or float('nan'):>8.2f}")
    lines.append(f"targets: >= {TARGET_VS_POPULARITY:g}x popularity, >= {TARGET_VS_CEILING:g}x planted-truth ceiling")
    for r in results:
        pop, ceil = r.ratio("popularity") or 0, r.ratio("planted truth") or 0
        lines.append(f"  {r.scale}: popularity target {'met' if pop >= TARGET_VS_POPULARITY else 'MISSED'}, "
                     f"ceiling target {'met' if ceil >= TARGET_VS_CEILING else 'MISSED'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="default,1m", help=f"comma-separated of {', '.join(SCALES)}")
    parser.add_argument("--tune", action="store_true", help="also print a validation-split grid per scale")
    args = parser.parse_args()
    results = [run_scale(name, SCALES[name], args.tune) for name in args.scales.split(",")]
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
