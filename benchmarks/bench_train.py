"""Benchmark the trainer against issue 16's goals: ranking quality of the published model (known
customers, cold start from attributes, cold start with 3 browsed items) and training time, each goal
printed next to its figure and the baselines measured in the same run (ALS, popularity, ceilings).

For each scale it starts an embedded stack (temp RECSYS_STATE_DIR) with a MySQL database of its
own, seeds it (planted-v2), builds the 13-column training table directly from MySQL (no Spark: the
benchmark is about the trainer), publishes it in the contract layout, and runs the whole ``train``
stage (validation choice, evaluation fits, final fit, artifacts, pointer). At 1M ratings it also
times the final fits of ALS and the hybrid on every rating, interleaved ``--repeats`` times.

    .venv/bin/python -m benchmarks.bench_train                        # lab, demo and 1M scales (~10 min)
    .venv/bin/python -m benchmarks.bench_train --scales lab,demo --attribute-share 0.75
    .venv/bin/python -m benchmarks.bench_train --scales demo --tune   # + a validation-only search

``--tune`` scores variants of both models on a validation split carved out of the evaluation split's
training part (the reported hold-out is never looked at) and prints them best first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

SCALES = {"lab": (122, 110, 2_500, 42), "demo": (1_000, 300, 30_000, 42), "1m": (20_000, 2_000, 1_000_000, 42)}
TIMED_SCALE = "1m"
# (goal, figure key, threshold, baseline keys): figures are ratios computed in ``ScaleResult.figures``
GOALS = [
    ("known customers >= 0.8x planted-truth ceiling", "known_x_ceiling", 0.8, ["als_known_x_ceiling"]),
    ("known customers >= 2x popularity", "known_x_pop", 2.0, ["als_known_x_pop"]),
    ("cold, attributes only >= 1.5x popularity", "features_x_pop", 1.5, ["attributes_ceiling_x_pop"]),
    ("cold, attributes only >= 0.8x attributes-only ceiling", "features_x_attr_ceiling", 0.8, []),
    (
        "cold, attributes + 3 browsed >= 3x popularity",
        "browsed_x_pop",
        3.0,
        ["als_browsed_x_pop", "hybrid_fold_in_x_pop", "ceiling_browsed_x_pop"],
    ),
]
TIME_GOAL = 2.0  # hybrid wall time <= 2x ALS's at 1M ratings
BASELINE_LABELS = {
    "als_known_x_ceiling": "ALS",
    "als_known_x_pop": "ALS",
    "attributes_ceiling_x_pop": "attributes-only ceiling",
    "als_browsed_x_pop": "ALS fold_in",
    "hybrid_fold_in_x_pop": "hybrid fold_in (no attributes)",
    "ceiling_browsed_x_pop": "planted ceiling",
}


@dataclass
class ScaleResult:
    scale: str
    ratings: int
    model: str
    choice: str
    stage_seconds: float  # the whole train stage: read, choose, evaluate, final fit, artifacts, pointer
    ndcg: dict[str, dict[str, float]]  # view -> ranker -> NDCG@10 (the reported split)
    timing: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # model -> [(wall, cpu)]

    def ratio(self, view: str, ranker: str, reference: str) -> float | None:
        a, b = self.ndcg[view].get(ranker), self.ndcg[view].get(reference)
        return a / b if a is not None and b else None

    def figures(self) -> dict[str, float | None]:
        m = self.model
        browsed = "hybrid [features+fold_in]" if m == "hybrid" else "als [fold_in]"
        return {
            "known_x_ceiling": self.ratio("known", m, "planted truth"),
            "known_x_pop": self.ratio("known", m, "popularity"),
            "als_known_x_ceiling": self.ratio("known", "als", "planted truth"),
            "als_known_x_pop": self.ratio("known", "als", "popularity"),
            "features_x_pop": self.ratio("cold_features", "hybrid [features]", "popularity"),
            "features_x_attr_ceiling": self.ratio("cold_features", "hybrid [features]", "attributes-only truth"),
            "attributes_ceiling_x_pop": self.ratio("cold_features", "attributes-only truth", "popularity"),
            "browsed_x_pop": self.ratio("cold_browsed", browsed, "popularity"),
            "als_browsed_x_pop": self.ratio("cold_browsed", "als [fold_in]", "popularity"),
            "hybrid_fold_in_x_pop": self.ratio("cold_browsed", "hybrid [fold_in]", "popularity"),
            "ceiling_browsed_x_pop": self.ratio("cold_browsed", "planted truth", "popularity"),
        }


def run_scale(name: str, spec_args: tuple[int, int, int, int], share: float, repeats: int, tune: bool) -> ScaleResult:
    """Seed, publish and train at one scale on a fresh embedded stack; drop the database afterwards."""
    from tests.support.fixtures_train import publish_training_table, training_table_from_mysql

    from recsys.apps.source import planted_truth_for, seed_configured_source
    from recsys.local.stack import scratch_stack
    from recsys.pipeline.train import TrainParams, train_and_publish
    from recsys_seed import SeedSpec

    with scratch_stack(f"bench_train_{name}") as settings:
        started = time.perf_counter()
        seed_configured_source(settings, SeedSpec(*spec_args, attribute_share=share), reset=True, show_progress=True)
        seeded = time.perf_counter()
        table = training_table_from_mysql(settings)
        publish_training_table(settings, table)
        published = time.perf_counter()
        print(
            f"[{name}] seeded {spec_args[2]:,} ratings (attribute share {share:g}) in {seeded - started:.1f} s; "
            f"table + publish {published - seeded:.1f} s",
            flush=True,
        )
        truth, note = planted_truth_for(settings)
        result = train_and_publish(
            settings, TrainParams(), settings.state_dir / "reports", truth=truth, ceiling_note=note
        )
        stage = time.perf_counter() - published
        print(result.evaluation.text(), flush=True)
        views = result.evaluation.views
        ndcg = {
            view: {n: m.ndcg for n, m in report.rankers.items()}
            for view, report in (
                ("known", views.known),
                ("cold_features", views.cold_features),
                ("cold_browsed", views.cold_browsed),
            )
        }
        scale = ScaleResult(
            name, spec_args[2], result.evaluation.selection.kind, result.evaluation.selection.reason, stage, ndcg
        )
        if name == TIMED_SCALE:
            scale.timing = time_final_fits(table, repeats)
        if tune:
            tune_on_validation(table, truth)
        return scale


def time_final_fits(table, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Wall and CPU seconds of each model's fit on every rating (what the published model costs),
    interleaved so both see the same load on the shared machine."""
    from recsys.pipeline import evaluate, hybrid
    from recsys.pipeline.train import TrainParams, confidence_matrix, fit_als, training_side_info

    data = evaluate.interactions_from_table(table)
    side = training_side_info(table, data)
    params = TrainParams()
    conf, stars = confidence_matrix(data, params), data.matrix(data.ratings)
    runs: dict[str, list[tuple[float, float]]] = {"als": [], "hybrid": []}
    for run in range(repeats):
        for model in runs:
            wall, cpu = time.perf_counter(), time.process_time()
            if model == "als":
                fit_als(conf, params)
            else:
                hybrid.fit_hybrid(stars, side, params.hybrid)
            runs[model].append((time.perf_counter() - wall, time.process_time() - cpu))
            print(
                f"  fit {model} run {run + 1}: wall {runs[model][-1][0]:.2f} s, cpu {runs[model][-1][1]:.2f} s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return runs


TUNE_HYBRID = [
    {},
    {"use_prior": False},
    {"factors": 8},
    {"factors": 24},
    {"reg_free": 5.0},
    {"reg_free": 50.0},
    {"reg_line": 5.0},
    {"reg_line": 80.0},
    {"reg_item": 20.0},
    {"reg_item": 100.0},
    {"alpha": 2.0},
    {"iterations": 6},
    {"iterations": 14},
]
TUNE_ALS = [{}, {"factors": 8}, {"factors": 24}, {"regularization": 5.0}, {"regularization": 50.0}, {"alpha": 2.0}]


def tune_on_validation(table, truth) -> None:
    """NDCG@10 of model variants on the validation split (known customers and cold from attributes)."""
    from recsys.pipeline import evaluate
    from recsys.pipeline.train import (
        ALS_RANKER,
        HYBRID_RANKER,
        VALIDATION_SEED_OFFSET,
        TrainParams,
        fit_candidates,
        score_views,
        training_side_info,
    )

    data = evaluate.interactions_from_table(table)
    side = training_side_info(table, data)
    base = TrainParams()
    split = evaluate.cold_split(data, base.holdout_fraction, base.seed, base.cold_fraction, base.browse)
    training = evaluate.subset(data, split.train)
    validation = evaluate.cold_split(
        training, base.holdout_fraction, base.seed + VALIDATION_SEED_OFFSET, base.cold_fraction, base.browse
    )
    rows = []
    for kind, variants in ((ALS_RANKER, TUNE_ALS), (HYBRID_RANKER, TUNE_HYBRID)):
        for change in variants:
            params = (
                replace(base, **change) if kind == ALS_RANKER else replace(base, hybrid=replace(base.hybrid, **change))
            )
            fits = fit_candidates(training, validation.train, side, params, [kind])
            views = score_views(training, validation, fits, params, truth)
            known = views.known.rankers[kind].ndcg
            ceiling = views.known.rankers.get("planted truth")
            features = views.cold_features.rankers.get("hybrid [features]")
            label = f"{kind} " + (" ".join(f"{k}={v}" for k, v in change.items()) or "(defaults)")
            rows.append(
                (
                    known,
                    label,
                    known / ceiling.ndcg if ceiling else float("nan"),
                    features.ndcg if features else float("nan"),
                )
            )
    print("validation NDCG@10 (best first): known customers, x planted ceiling, cold from attributes")
    for known, label, x_ceiling, features in sorted(rows, reverse=True):
        print(f"  {label:<36} {known:.4f}  {x_ceiling:.2f}x  {features:.4f}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def quality_table(results: list[ScaleResult]) -> str:
    rankers = {
        "known": ["als", "hybrid", "popularity", "planted truth"],
        "cold_features": ["hybrid [features]", "popularity", "attributes-only truth", "planted truth"],
        "cold_browsed": [
            "als [fold_in]",
            "hybrid [fold_in]",
            "hybrid [features+fold_in]",
            "popularity",
            "attributes-only truth",
            "planted truth",
        ],
    }
    head = f"{'scale':<6}{'view':<15}{'ranker':<28}{'NDCG@10':>9}{'x pop':>8}{'x ceiling':>11}"
    lines = [head, "-" * len(head)]
    for r in results:
        for view, names in rankers.items():
            ceiling = "attributes-only truth" if view == "cold_features" else "planted truth"
            for name in names:
                if name in r.ndcg[view]:
                    lines.append(
                        f"{r.scale:<6}{view:<15}{name:<28}{r.ndcg[view][name]:>9.4f}"
                        f"{_fmt(r.ratio(view, name, 'popularity')):>8}{_fmt(r.ratio(view, name, ceiling)):>11}"
                    )
    return "\n".join(lines)


def goals_table(results: list[ScaleResult]) -> str:
    head = f"{'goal':<56}{'scale':<7}{'figure':>8}  {'met':<8}same-run baselines"
    lines = [head, "-" * (len(head) + 30)]
    for goal, key, threshold, baselines in GOALS:
        for r in results:
            figures = r.figures()
            value = figures[key]
            met = "n/a" if value is None else "met" if value >= threshold else "NOT MET"
            base = ", ".join(f"{BASELINE_LABELS[b]} {_fmt(figures[b])}" for b in baselines)
            lines.append(f"{goal:<56}{r.scale:<7}{_fmt(value):>8}  {met:<8}{base}")
    for r in results:
        if r.timing:
            wall = {m: float(np.median([w for w, _ in runs])) for m, runs in r.timing.items()}
            cpu = {m: float(np.median([c for _, c in runs])) for m, runs in r.timing.items()}
            ratio = wall["hybrid"] / wall["als"]
            lines.append(
                f"{'training at 1M <= 2x pure ALS wall time':<56}{r.scale:<7}{ratio:>7.2f}x  "
                f"{'met' if ratio <= TIME_GOAL else 'NOT MET':<8}median wall ALS {wall['als']:.2f} s, "
                f"hybrid {wall['hybrid']:.2f} s; cpu ALS {cpu['als']:.2f} s, hybrid {cpu['hybrid']:.2f} s"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="lab,demo,1m", help=f"comma-separated of {', '.join(SCALES)}")
    parser.add_argument("--attribute-share", type=float, default=0.5, help="the seeder's attribute share")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing runs at 1M")
    parser.add_argument("--tune", action="store_true", help="also print a validation-only search per scale")
    args = parser.parse_args()
    results = [
        run_scale(name, SCALES[name], args.attribute_share, args.repeats, args.tune) for name in args.scales.split(",")
    ]
    print()
    print(quality_table(results))
    print()
    for r in results:
        print(f"{r.scale}: published {r.model} ({r.choice}); train stage {r.stage_seconds:.1f} s")
    print(goals_table(results))
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
