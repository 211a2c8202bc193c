"""The offline evaluation as people read it: a bar chart (matplotlib) and a self-contained HTML page."""
from __future__ import annotations

import base64
import html
import io
import json

from recsys.pipeline.evaluate import PLANTED_TRUTH, POPULARITY, EvaluationReport


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
    colours = ["#1f77b4" if n == model_ranker else "#9ecae1" if n.startswith(model_ranker)
               else "#2ca02c" if n == PLANTED_TRUTH else "#bbbbbb" for n in names]
    for ax, (attr, label) in zip(axes, metrics):
        values = [getattr(report.rankers[n], attr) for n in names]
        ax.barh(names, values, color=colours)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
        ax.set_title(label)
        ax.set_xlim(0, max(values + [1e-9]) * 1.35)
    fig.suptitle(title or "offline evaluation", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def report_html(report: EvaluationReport, model_ranker: str, png: bytes, title: str, details: dict) -> str:
    """A self-contained HTML page: headline, metrics table, the chart (base64) and the run's details."""
    k = report.k
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{v:.4f}</td>" for v in
                                                       (m.precision, m.recall, m.ndcg, m.map, m.coverage))
        + f"<td>{m.customers}</td></tr>" for name, m in report.rankers.items())
    ndcg_pop = report.ratio(model_ranker, POPULARITY)
    ndcg_top = report.ratio(model_ranker, PLANTED_TRUTH)
    headline = (f"Model NDCG@{k} = {report.rankers[model_ranker].ndcg:.4f}: "
                f"{'n/a' if ndcg_pop is None else f'{ndcg_pop:.2f}×'} the popularity baseline, "
                f"{'n/a (ceiling unavailable)' if ndcg_top is None else f'{ndcg_top:.2f}×'} the planted-truth ceiling."
                if model_ranker in report.rankers else "No model metrics.")
    protocol = (f"Seeded hold-out of {report.holdout_fraction:.0%} of each customer's ratings (customers with ≥ 2 "
                f"ratings, seed {report.split_seed}): {report.train_ratings:,} training, {report.test_ratings:,} "
                f"held out, {report.relevant_ratings:,} relevant (held-out rating ≥ {report.relevant_min_rating:g}). "
                "Every ranker sees the same candidates: all products the customer did not rate in the training "
                "part, ranked by cosine similarity as pgvector serves them.")
    image = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}td:first-child{{text-align:left}}
.headline{{font-size:1.2rem;font-weight:600}}pre{{background:#f6f6f6;padding:1rem;overflow:auto}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="headline">{html.escape(headline)}</p>
<table><tr><th>ranker</th><th>P@{k}</th><th>R@{k}</th><th>NDCG@{k}</th><th>MAP@{k}</th><th>coverage</th><th>customers</th></tr>
{rows}</table>
<p>{html.escape(protocol)}</p><p>{html.escape(report.ceiling_note)}</p>
<img alt="metrics per ranker" src="data:image/png;base64,{image}">
<h2>Run details</h2><pre>{html.escape(json.dumps(details, indent=2, default=str))}</pre>
</body></html>
"""
