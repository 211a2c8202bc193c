"""Benchmark: the whole batch path (seed, ETL, train, load-embeddings) as the data grows.

Starts its own embedded stack (temporary RECSYS_STATE_DIR, its own MySQL database, both removed
at the end) and, for each size, runs the project's own commands one after the other, each in its
own process: ``recsys seed --reset``, ``recsys etl``, ``recsys train``, ``recsys load-embeddings``.
Per stage it records wall time, CPU seconds and peak RSS of the process tree (the Spark JVM is a
child of ``recsys etl``; sampled every 0.1 s), rows per second (ratings for seed, ETL and train;
vectors for load-embeddings) and the load average before and after. The commands' own progress
bars and summary lines show while they run; at the end it prints one table and the growth of
each stage from the smallest to the largest size (log-log slope: 1 = linear), and plots wall
time per stage against ratings on log-log axes to ``--png``.

Customers are ratings / 50 (as bench_etl.py), products 2,000 (fewer for small sizes).

    .venv/bin/python -m benchmarks.bench_scaling --sizes 0.1M            # about a minute
    .venv/bin/python -m benchmarks.bench_scaling                         # 0.1M, 1M, 5M
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_etl import run_watched

REPO = Path(__file__).resolve().parents[1]
RECSYS = REPO / ".venv" / "bin" / "recsys"
STAGES = ("seed", "etl", "train", "load-embeddings")
DEFAULT_SIZES = "0.1M,1M,5M"
DEFAULT_PNG = REPO / "reports" / "bench" / "scaling.png"


@dataclass
class StageRun:
    size: int
    stage: str
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    rows: int
    unit: str
    load: tuple[float, float]
    summary: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def parse_size(text: str) -> int:
    """``0.1M`` / ``250k`` / ``1000000`` -> ratings."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 0.1M, 250k, 1000000)")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if value < 1_000:
        raise argparse.ArgumentTypeError(f"size {text!r} is below 1,000 ratings")
    return int(value)


def size_label(ratings: int) -> str:
    return f"{ratings / 1e6:g}M" if ratings >= 100_000 else f"{ratings / 1e3:g}k"


def shape(ratings: int) -> tuple[int, int]:
    """(customers, products) for a size: 50 ratings per customer, up to 2,000 products."""
    customers = max(100, ratings // 50)
    return customers, min(2_000, max(110, ratings // 500))


def stage_command(stage: str, ratings: int, reports_dir: Path) -> list[str]:
    customers, products = shape(ratings)
    if stage == "seed":
        return [
            str(RECSYS),
            "seed",
            "--customers",
            str(customers),
            "--products",
            str(products),
            "--ratings",
            str(ratings),
            "--reset",
        ]
    if stage == "train":
        return [str(RECSYS), "train", "--reports-dir", str(reports_dir)]
    return [str(RECSYS), stage]


def run_stage(stage: str, ratings: int, reports_dir: Path) -> StageRun:
    """Run one stage's command; its stderr (progress bars) passes through, its stdout is kept."""
    run = run_watched(stage_command(stage, ratings, reports_dir), merge_stderr=False)
    if run.returncode != 0:
        sys.exit(f"{stage} at {size_label(ratings)} failed ({run.returncode}):\n" + "".join(run.output[-30:]))
    lines = [line.strip() for line in run.output if line.strip()]
    summary = next(
        (line for line in reversed(lines) if line.startswith(("etl:", "seeded", "version ", "published"))),
        lines[-1] if lines else "",
    )
    rows, unit = stage_rows(stage, ratings, summary)
    return StageRun(ratings, stage, run.seconds, run.cpu_seconds, run.peak_rss_mb, rows, unit, run.load, summary)


def stage_rows(stage: str, ratings: int, summary: str) -> tuple[int, str]:
    """What the stage's rows/s counts: vectors for load-embeddings (from its line), else ratings."""
    if stage == "load-embeddings":
        found = re.search(r"([\d,]+) items, ([\d,]+) users", summary)
        if found:
            return sum(int(n.replace(",", "")) for n in found.groups()), "vectors"
    return ratings, "ratings"


def run_size(ratings: int, index: int, count: int, reports_dir: Path) -> list[StageRun]:
    """The four stages at one size, with a progress line before and after each."""
    runs = []
    for number, stage in enumerate(STAGES, start=1):
        print(
            f"[{size_label(ratings)} {index}/{count}] {number}/{len(STAGES)} {stage} ... "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        run = run_stage(stage, ratings, reports_dir)
        print(
            f"[{size_label(ratings)} {index}/{count}] {stage} done in {run.seconds:.1f} s, "
            f"peak RSS {run.peak_rss_mb:,.0f} MB: {run.summary[:160]}",
            flush=True,
        )
        runs.append(run)
    return runs


def print_table(runs: list[StageRun]) -> None:
    print(
        f"\n{'ratings':>8} {'stage':<16}{'wall s':>9}{'CPU s':>9}{'rows/s':>12} {'(rows)':<9}{'peak RSS MB':>12}"
        f"{'load before/after':>19}"
    )
    for run in runs:
        print(
            f"{size_label(run.size):>8} {run.stage:<16}{run.seconds:>9.1f}{run.cpu_seconds:>9.1f}"
            f"{run.rows_per_second:>12,.0f} {run.unit:<9}{run.peak_rss_mb:>12,.0f}"
            f"{run.load[0]:>11.1f} / {run.load[1]:.1f}"
        )
    totals: dict[int, float] = {}
    for run in runs:
        totals[run.size] = totals.get(run.size, 0.0) + run.seconds
    for size, seconds in totals.items():
        print(f"{size_label(size):>8} {'whole batch path':<16}{seconds:>9.1f}{'':>9}{size / seconds:>12,.0f} ratings")


def print_growth(runs: list[StageRun]) -> None:
    """Each stage's log-log slope of wall time and peak RSS from the smallest to the largest size."""
    sizes = sorted({run.size for run in runs})
    if len(sizes) < 2:
        return
    small, large = sizes[0], sizes[-1]
    by = {(run.size, run.stage): run for run in runs}
    print(
        f"\ngrowth from {size_label(small)} to {size_label(large)} ratings ({large / small:g}x the data; "
        "slope of log(time) over log(ratings): 1 = linear, < 1 = fixed costs still dominate)"
    )
    for stage in STAGES:
        a, b = by[small, stage], by[large, stage]
        slope = math.log(b.seconds / a.seconds) / math.log(large / small)
        print(
            f"  {stage:<16} wall {a.seconds:>7.1f} s -> {b.seconds:>7.1f} s ({b.seconds / a.seconds:>5.1f}x, "
            f"slope {slope:.2f}); peak RSS {a.peak_rss_mb:,.0f} -> {b.peak_rss_mb:,.0f} MB"
        )


def plot(runs: list[StageRun], path: Path) -> None:
    """Wall time (left) and peak RSS (right) per stage against ratings, log-log, one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_axis, rss_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for stage in STAGES:
        mine = sorted((run for run in runs if run.stage == stage), key=lambda run: run.size)
        sizes = [run.size for run in mine]
        time_axis.plot(sizes, [run.seconds for run in mine], marker="o", label=stage)
        rss_axis.plot(sizes, [run.peak_rss_mb for run in mine], marker="o", label=stage)
    loads = [load for run in runs for load in run.load]
    for axis, label in ((time_axis, "wall time (s)"), (rss_axis, "peak RSS of the process tree (MB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("ratings")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    time_axis.legend()
    fig.suptitle(
        f"recsys batch path by stage ({os.cpu_count()} cores, load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the runs)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help=f"comma-separated ratings counts, e.g. 0.1M,1M or 250k (default {DEFAULT_SIZES})",
    )
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help="where the plot goes")
    args = parser.parse_args()
    try:
        sizes = sorted({parse_size(text) for text in args.sizes.split(",") if text.strip()})
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))

    from recsys.local.stack import scratch_stack

    print(
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; sizes: "
        f"{', '.join(size_label(s) for s in sizes)}",
        flush=True,
    )
    runs: list[StageRun] = []
    with (
        scratch_stack("bench_scaling", OPENBLAS_NUM_THREADS="1"),
        tempfile.TemporaryDirectory(prefix="bench-scaling-reports-") as reports,
    ):
        for index, ratings in enumerate(sizes, start=1):
            runs += run_size(ratings, index, len(sizes), Path(reports))
    print_table(runs)
    print_growth(runs)
    plot(runs, args.png)


if __name__ == "__main__":
    main()
