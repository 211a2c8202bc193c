"""The demo's record and report: one self-contained HTML page (PNGs embedded, and written beside
it) and a text summary for the terminal."""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from recsys.contracts import ERROR_KEY_PREFIX, STRATEGIES
from recsys.core.stats import percentile

FRESHNESS_GOAL_P99_SECONDS = 3.0  # issue 15: PutRecords -> object in S3, first batch included


def freshness_text(freshness: list[float]) -> str:
    """``p50 …, p99 … (goal p99 <= 3 s: met)``: the figure next to its goal."""
    if not freshness:
        return "no delivered events to measure"
    p99 = percentile(freshness, 99)
    verdict = "met" if p99 <= FRESHNESS_GOAL_P99_SECONDS else "NOT met"
    return (
        f"p50 {percentile(freshness, 50):.2f} s, p99 {p99:.2f} s "
        f"(goal p99 <= {FRESHNESS_GOAL_P99_SECONDS:g} s: {verdict})"
    )


@dataclass
class Stage:
    name: str
    seconds: float
    detail: str


@dataclass
class DemoRun:
    """Everything the summary and the report show."""

    stages: list[Stage] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    freshness: list[float] = field(default_factory=list)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    metrics_table: str = ""
    metrics: dict = field(default_factory=dict)
    cold_metrics: dict[str, dict] = field(default_factory=dict)  # view -> ranker -> metrics
    train_report_png: Path | None = None
    cold_start_png: bytes | None = None
    strategies: dict[str, int] = field(default_factory=dict)  # strategy -> delivered records


def _figure_png(draw) -> bytes:
    import matplotlib  # heavy; only reports draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    draw(ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def stage_timings_png(run: DemoRun) -> bytes:
    def draw(ax):
        names = [s.name for s in run.stages][::-1]
        seconds = [s.seconds for s in run.stages][::-1]
        bars = ax.barh(names, seconds, color="#3b6fd8")
        ax.bar_label(bars, labels=[f"{v:.1f} s" for v in seconds], padding=3, fontsize=8)
        ax.set_xlabel("seconds")
        ax.set_title("Pipeline stages")
        ax.margins(x=0.15)

    return _figure_png(draw)


def freshness_png(run: DemoRun) -> bytes:
    def draw(ax):
        ax.hist(run.freshness, bins=30, color="#2a9d8f")
        for q, style in ((50, "--"), (99, ":")):
            value = percentile(run.freshness, q)
            ax.axvline(value, color="#1d2433", linestyle=style, label=f"p{q} = {value:.2f} s")
        ax.set_xlabel("seconds from PutRecords accepted to the recommendation object in S3")
        ax.set_ylabel("events")
        ax.set_title("Freshness")
        ax.legend()

    return _figure_png(draw)


def strategies_png(run: DemoRun) -> bytes:
    def draw(ax):
        names = [s for s in STRATEGIES if s in run.strategies][::-1]
        counts = [run.strategies[s] for s in names]
        bars = ax.barh(names, counts, color="#8a5cd0")
        ax.bar_label(bars, padding=3, fontsize=8)
        ax.set_xlabel("delivered recommendation records")
        ax.set_title("How each record's query vector was obtained")
        ax.margins(x=0.15)

    return _figure_png(draw)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def strategy_mix(run: DemoRun) -> str:
    """``known_customer 270, features+fold_in 25, ...`` in contract order."""
    return ", ".join(f"{s} {run.strategies[s]}" for s in STRATEGIES if s in run.strategies) or "none"


def summary_text(run: DemoRun) -> str:
    f = run.figures
    lines = [
        "",
        "demo summary",
        f"  seeded            {f['customers']:,} customers, {f['products']:,} products, {f['ratings']:,} ratings",
        f"  training rows     {f['training_rows']:,}",
        f"  model             {f['model_version']}: {f.get('model', '?')} ({f.get('model_choice', '')})",
        (
            f"  known customers   NDCG@10 {_ratio(f.get('ndcg_vs_popularity'))} popularity, "
            f"{_ratio(f.get('ndcg_vs_planted_truth'))} planted-truth ceiling"
        ),
        (
            f"  cold start        {f.get('cold_customers', 0)} held-out customers: from attributes "
            f"{_ratio(f.get('cold_features_vs_popularity'))} popularity, "
            f"{_ratio(f.get('cold_features_vs_attributes_truth'))} attributes-only ceiling; "
            f"+{f.get('browsed_items', 0)} browsed {_ratio(f.get('cold_browsed_vs_popularity'))} popularity"
        ),
        f"  embeddings live   {f['items_live']:,} items, {f['users_live']:,} users, {f['embedding_dim']}-d",
        (
            f"  events            {f['events_produced']} produced: {f['delivered']} delivered, {f['dropped']} dropped, "
            f"{f['failed']} failed ({f['new_customers']} new customers, {f['empty_histories']} empty histories)"
        ),
        f"  strategies        {strategy_mix(run)}",
        f"  freshness         {freshness_text(run.freshness)}",
    ]
    return "\n".join(lines)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _metrics_table(metrics: dict[str, dict]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(
            f"<td class=num>{m.get(key, float('nan')):.4f}</td>"
            for key in ("precision", "recall", "ndcg", "map", "coverage")
        )
        + "</tr>"
        for name, m in metrics.items()
    )
    return (
        "<table><tr><th>ranker</th><th>P@10</th><th>R@10</th><th>NDCG@10</th><th>MAP@10</th><th>coverage</th>"
        f"</tr>{rows}</table>"
    )


def write_report(run: DemoRun, out_dir: Path) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; returns the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {
        "stages.png": stage_timings_png(run),
        "freshness.png": freshness_png(run),
        "strategies.png": strategies_png(run),
    }
    if run.train_report_png and run.train_report_png.exists():
        pngs["offline-metrics.png"] = run.train_report_png.read_bytes()
        shutil.copyfile(run.train_report_png, out_dir / "offline-metrics.png")
    if run.cold_start_png:
        pngs["cold-start.png"] = run.cold_start_png
    for name, png in pngs.items():
        (out_dir / name).write_bytes(png)
    stage_rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td class=num>{s.seconds:.1f}</td><td>{html.escape(s.detail)}</td></tr>"
        for s in run.stages
    )
    cold_tables = "".join(
        f"<h3>{html.escape(view)}</h3>{_metrics_table(metrics)}" for view, metrics in run.cold_metrics.items()
    )
    strategy_rows = (
        "".join(
            f"<tr><td>{html.escape(s)}</td><td class=num>{run.strategies[s]}</td></tr>"
            for s in STRATEGIES
            if s in run.strategies
        )
        or "<tr><td colspan=2>none</td></tr>"
    )
    reason_rows = (
        "".join(
            f"<tr><td>{html.escape(r)}</td><td class=num>{n}</td></tr>"
            for r, n in sorted(run.failure_reasons.items(), key=lambda kv: -kv[1])
        )
        or "<tr><td colspan=2>none</td></tr>"
    )
    f = run.figures
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>recsys demo report</title>
<style>
 body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 1000px; margin: 24px auto; padding: 0 24px;
        color: #1d2433; }}
 table {{ border-collapse: collapse; width: 100%; margin: 8px 0 24px; }}
 th, td {{ text-align: left; padding: 5px 9px; border-bottom: 1px solid #e3e6eb; }}
 th {{ background: #eef0f4; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
 .kpis {{ display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; }}
 .kpi {{ background: #f3f5f9; padding: 10px 14px; border-radius: 8px; }} .kpi b {{ display: block; font-size: 22px; }}
 img {{ max-width: 100%; }}
</style></head><body>
<h1>recsys demo report</h1>
<div class="kpis">
 <div class="kpi"><b>{f["training_rows"]:,}</b>training rows</div>
 <div class="kpi"><b>{(f.get("ndcg_vs_popularity") or float("nan")):.2f}×</b>NDCG@10 vs popularity</div>
 <div class="kpi"><b>{(f.get("cold_features_vs_popularity") or float("nan")):.2f}×</b>
  new customers from attributes vs popularity</div>
 <div class="kpi"><b>{f["delivered"]}/{f["events_produced"]}</b>
  events delivered ({f["dropped"]} dropped, {f["failed"]} failed)</div>
 <div class="kpi"><b>{percentile(run.freshness, 99):.2f} s</b>freshness p99</div>
</div>
<h2>Pipeline stages</h2>
<table><tr><th>stage</th><th>seconds</th><th>what happened</th></tr>{stage_rows}</table>
{_img(pngs["stages.png"], "stage timings")}
<h2>Offline evaluation (held-out ratings, model {html.escape(str(f["model_version"]))})</h2>
<p>Published: <b>{html.escape(str(f.get("model", "?")))}</b> ({html.escape(str(f.get("model_choice", "")))}).</p>
<h3>Known customers</h3>{_metrics_table(run.metrics)}
{_img(pngs["offline-metrics.png"], "offline metrics") if "offline-metrics.png" in pngs else ""}
<h2>Cold start ({f.get("cold_customers", 0)} customers held out of training)</h2>
<p>From attributes (country, credit limit) only: {_ratio(f.get("cold_features_vs_popularity"))} popularity,
{_ratio(f.get("cold_features_vs_attributes_truth"))} the attributes-only ceiling (the best possible without history);
with their first {f.get("browsed_items", 0)} ratings as a browse history:
{_ratio(f.get("cold_browsed_vs_popularity"))} popularity.</p>
{cold_tables}
{_img(pngs["cold-start.png"], "cold-start metrics") if "cold-start.png" in pngs else ""}
<h2>Strategies of the delivered records</h2>
<table><tr><th>strategy</th><th>records</th></tr>{strategy_rows}</table>
{_img(pngs["strategies.png"], "strategy mix")}
<h2>Streaming freshness</h2>
<p>{len(run.freshness)} delivered events; {html.escape(freshness_text(run.freshness))}. Delivery ran
{f.get("concurrency", 1)} invocation(s) at once and warmed its runtimes before the first event was sent.</p>
{_img(pngs["freshness.png"], "freshness histogram")}
<h2>Failed records (parked under {ERROR_KEY_PREFIX})</h2>
<table><tr><th>reason</th><th>records</th></tr>{reason_rows}</table>
<h2>Figures</h2><pre>{html.escape(json.dumps(f, indent=2, default=str))}</pre>
</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
