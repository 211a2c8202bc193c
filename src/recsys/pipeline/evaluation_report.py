"""The offline evaluation as people read it: a bar chart (matplotlib) and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

from recsys.pipeline.evaluate import ATTRIBUTES_TRUTH, PLANTED_TRUTH, POPULARITY, EvaluationReport, ViewReports

if TYPE_CHECKING:  # matplotlib is imported where a chart is drawn (slow to load)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _colour(name: str, model_ranker: str) -> str:
    return (
        "#1f77b4"
        if name == model_ranker
        else "#9ecae1"
        if name.startswith(model_ranker)
        else "#2ca02c"
        if name in (PLANTED_TRUTH, ATTRIBUTES_TRUTH)
        else "#bbbbbb"
    )


def _bars(ax: Axes, names: list[str], values: list[float], colours: list[str], title: str) -> None:
    """Horizontal bars with their values printed at the tips."""
    ax.barh(names, values, color=colours)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, max(values + [1e-9]) * 1.35)


def _finish(fig: Figure, plt: ModuleType, title: str) -> bytes:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def report_png(report: EvaluationReport, model_ranker: str, title: str = "") -> bytes:
    """A bar chart of each ranker's metrics @k as PNG bytes; ``model_ranker`` and its variants stand out."""
    import matplotlib  # heavy; only reports draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.rankers)
    k = report.k
    metrics = [("ndcg", f"NDCG@{k}"), ("precision", f"P@{k}"), ("recall", f"R@{k}"), ("map", f"MAP@{k}")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.45 * len(names) + 1.6), sharey=True)
    axes[0].invert_yaxis()  # shared y: first ranker on top in every panel
    colours = [_colour(n, model_ranker) for n in names]
    for ax, (attr, label) in zip(axes, metrics, strict=True):
        _bars(ax, names, [getattr(report.rankers[n], attr) for n in names], colours, label)
    return _finish(fig, plt, title or "offline evaluation")


def cold_start_png(views: ViewReports, model_ranker: str, title: str = "") -> bytes:
    """NDCG@k of every ranker in the two cold-start views, side by side, as PNG bytes."""
    import matplotlib  # heavy; only reports draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (views.cold_features, "(a) attributes only"),
        (views.cold_browsed, f"(b) attributes + {views.browsed_items} browsed"),
    ]
    rows = max(len(report.rankers) for report, _ in panels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * rows + 1.8))
    for ax, (report, label) in zip(axes, panels, strict=True):
        names = list(report.rankers)
        ax.invert_yaxis()
        _bars(
            ax,
            names,
            [report.rankers[n].ndcg for n in names],
            [_colour(n, model_ranker) for n in names],
            f"{label}: NDCG@{report.k}",
        )
    return _finish(fig, plt, f"{title or 'cold start'} ({views.cold_customers} customers held out of training)")


def _metrics_table(report: EvaluationReport) -> str:
    k = report.k
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{v:.4f}</td>" for v in (m.precision, m.recall, m.ndcg, m.map, m.coverage))
        + f"<td>{m.customers}</td></tr>"
        for name, m in report.rankers.items()
    )
    return (
        f"<table><tr><th>ranker</th><th>P@{k}</th><th>R@{k}</th><th>NDCG@{k}</th><th>MAP@{k}</th>"
        f"<th>coverage</th><th>customers</th></tr>{rows}</table>"
    )


def _ratio_text(report: EvaluationReport, ranker: str, reference: str) -> str:
    ratio = report.ratio(ranker, reference) if ranker in report.rankers else None
    return "n/a" if ratio is None else f"{ratio:.2f}×"


def report_html(
    views: ViewReports, model_ranker: str, png: bytes, cold_png: bytes, title: str, details: dict[str, Any]
) -> str:
    """A self-contained HTML page: headline, the model choice, the three views' tables, the charts
    (base64) and the run's details."""
    report = views.known
    k = report.k
    headline = (
        f"Model ({model_ranker}) NDCG@{k} = {report.rankers[model_ranker].ndcg:.4f}: "
        f"{_ratio_text(report, model_ranker, POPULARITY)} the popularity baseline, "
        f"{_ratio_text(report, model_ranker, PLANTED_TRUTH)} the planted-truth ceiling."
        if model_ranker in report.rankers
        else "No model metrics."
    )
    protocol = (
        f"A seeded {views.cold_customers} customers are held out entirely (cold start). For the others, "
        f"a seeded {report.holdout_fraction:.0%} of each customer's ratings (customers with ≥ 2 ratings, "
        f"seed {report.split_seed}) is held out: {report.train_ratings:,} ratings train, "
        f"{report.test_ratings:,} held out, {report.relevant_ratings:,} relevant (held-out rating ≥ "
        f"{report.relevant_min_rating:g}). Every ranker sees the same candidates: all products the "
        "customer did not rate in the training part, ranked by cosine similarity as pgvector serves them."
    )
    cold_protocol = (
        f"Cold customers are ranked (a) from their attributes only (all their ratings are the test "
        f"set), (b) from their attributes plus their first {views.browsed_items} ratings read as a "
        "browse history (the rest is the test set; browsed items are not candidates). The "
        "attributes-only truth ranks by the affinity the seeder expects from country and credit limit "
        "alone: the best possible without history."
    )
    model = details.get("model", {})
    validation = model.get("validation", {}).get("known", {}).get("rankers", {})
    validation_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m[f'ndcg@{k}']:.4f}</td></tr>" for name, m in validation.items()
    )
    choice = (
        f"<p>Published: <b>{html.escape(str(model.get('kind', model_ranker)))}</b> "
        f"({html.escape(str(model.get('chosen_by', '')))}).</p>"
        + (
            f"<table><tr><th>validation ranker</th><th>NDCG@{k}</th></tr>{validation_rows}</table>"
            if validation_rows
            else ""
        )
    )
    image, cold_image = base64.b64encode(png).decode("ascii"), base64.b64encode(cold_png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}}
table{{border-collapse:collapse;margin:.5rem 0 1rem}}
td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}td:first-child{{text-align:left}}
.headline{{font-size:1.2rem;font-weight:600}}pre{{background:#f6f6f6;padding:1rem;overflow:auto}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="headline">{html.escape(headline)}</p>
<h2>Model choice</h2>{choice}
<h2>Known customers</h2>
{_metrics_table(report)}
<p>{html.escape(protocol)}</p><p>{html.escape(report.ceiling_note)}</p>
<img alt="metrics per ranker" src="data:image/png;base64,{image}">
<h2>Cold start</h2>
<p>{html.escape(cold_protocol)}</p>
<h3>(a) Attributes only</h3>{_metrics_table(views.cold_features)}
<h3>(b) Attributes + first {views.browsed_items} ratings as browse history</h3>{_metrics_table(views.cold_browsed)}
<img alt="cold-start NDCG per ranker" src="data:image/png;base64,{cold_image}">
<h2>Run details</h2><pre>{html.escape(json.dumps(details, indent=2, default=str))}</pre>
</body></html>
"""
