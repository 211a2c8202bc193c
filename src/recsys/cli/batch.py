"""Batch stage commands: ``seed``, ``train``, ``load-embeddings`` (``etl`` is in ``recsys.cli.etl``)."""

from __future__ import annotations

from pathlib import Path

import click

from recsys.apps.source import planted_truth_for, seed_configured_source
from recsys.cli.options import EF_SEARCH, SEED, FiniteFloatRange
from recsys.contracts import EF_SEARCH_RECALL_TARGET, EVALUATION_HTML, SERVING_POINTER_KEY, artifact_key
from recsys.core.config import load_settings
from recsys.model.foldin import TRANSFORMS
from recsys.pipeline.train import MODEL_CHOICES, TrainParams, headline_metrics, train_and_publish
from recsys.pipeline.vector_load import load_embeddings
from recsys_seed import SeedSpec


@click.command("seed")
@click.option("--customers", default=SeedSpec.customers, show_default=True, type=int, help="Customers to create.")
@click.option("--products", default=SeedSpec.products, show_default=True, type=int, help="Products to create.")
@click.option("--ratings", default=SeedSpec.ratings, show_default=True, type=int, help="Ratings to draw.")
@click.option("--seed", "seed_value", default=SeedSpec.seed, show_default=True, type=SEED, help="Random seed.")
@click.option(
    "--attribute-share",
    default=SeedSpec.attribute_share,
    show_default=True,
    type=FiniteFloatRange(0, 1),
    help="Share of each customer's taste planted as a function of their country and credit limit (0..1).",
)
@click.option("--reset", is_flag=True, help="Drop and rebuild the source tables.")
def seed_command(
    customers: int, products: int, ratings: int, seed_value: int, attribute_share: float, reset: bool
) -> None:
    """Fill the MySQL source with classicmodels-shaped data whose ratings carry planted tastes."""
    spec = SeedSpec(customers, products, ratings, seed_value, attribute_share)
    try:
        spec.validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(seed_configured_source(load_settings(), spec, reset=reset, show_progress=True).line())


@click.command("train")
@click.option(
    "--factors",
    type=click.IntRange(1, 1024),
    default=TrainParams.factors,
    show_default=True,
    help="Latent factors per customer and product.",
)
@click.option(
    "--iterations", type=click.IntRange(1, 500), default=TrainParams.iterations, show_default=True, help="ALS sweeps."
)
@click.option(
    "--regularization",
    type=FiniteFloatRange(0, min_open=True),
    default=TrainParams.regularization,
    show_default=True,
    help="L2 penalty lambda.",
)
@click.option(
    "--alpha",
    type=FiniteFloatRange(0),
    default=TrainParams.alpha,
    show_default=True,
    help="Confidence slope: c = 1 + alpha * max(rating - rating_offset, 0).",
)
@click.option(
    "--rating-offset",
    type=FiniteFloatRange(0, 5),
    default=TrainParams.rating_offset,
    show_default=True,
    help="Ratings at or below this add no confidence (stay weak positives, c = 1).",
)
@click.option(
    "--seed",
    type=SEED,
    default=TrainParams.seed,
    show_default=True,
    help="Seeds the ALS initialisation, the hold-out split and the random baseline.",
)
@click.option(
    "--embedding-transform",
    type=click.Choice(TRANSFORMS),
    default=TrainParams.embedding_transform,
    show_default=True,
    help="How vectors become cosine-ranked pgvector embeddings.",
)
@click.option(
    "--holdout-fraction",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    default=TrainParams.holdout_fraction,
    show_default=True,
    help="Share of each customer's ratings held out.",
)
@click.option(
    "--relevant-min-rating",
    type=FiniteFloatRange(1, 5),
    default=TrainParams.relevant_min_rating,
    show_default=True,
    help="A held-out rating at least this counts as relevant.",
)
@click.option(
    "--model",
    type=click.Choice(MODEL_CHOICES),
    default=TrainParams.model,
    show_default=True,
    help="Model to publish: als, hybrid (ALS plus customer attributes and product line, price and scale), "
    "or auto = the better of the two on a validation split.",
)
@click.option(
    "--cold-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=TrainParams.cold_fraction,
    show_default=True,
    help="Share of customers held out entirely for the cold-start evaluation.",
)
@click.option(
    "--reports-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where the evaluation report is written locally.",
)
def train_command(reports_dir: Path, **options) -> None:
    """Train ALS and the hybrid on the published training set, evaluate them, publish the better one."""
    params = TrainParams(**options)
    settings = load_settings()
    truth, note = planted_truth_for(settings)
    result = train_and_publish(settings, params, reports_dir, truth=truth, ceiling_note=note, show_progress=True)
    click.echo(result.evaluation.text())
    ratios = headline_metrics(result.evaluation)
    click.echo(
        f"NDCG@{params.k} of {ratios['model']}: {_ratio_text(ratios['ndcg_vs_popularity'])} popularity, "
        f"{_ratio_text(ratios['ndcg_vs_planted_truth'])} planted-truth ceiling; cold start from attributes "
        f"{_ratio_text(ratios['cold_features_vs_popularity'])} popularity, "
        f"{_ratio_text(ratios['cold_features_vs_attributes_truth'])} attributes-only ceiling; "
        f"with {params.browse} browsed {_ratio_text(ratios['cold_browsed_vs_popularity'])} popularity"
    )
    click.echo(f"report: {(result.report_dir / EVALUATION_HTML).resolve()}")
    click.echo(
        f"published model {result.version} to s3://{settings.artifacts_bucket}/"
        f"{artifact_key(result.version, '')} (embedding_dim {result.manifest['embedding_dim']}, "
        f"{result.manifest['embedding_transform']}); serving pointer moved"
    )


def _ratio_text(ratio: float | None) -> str:
    return "n/a vs" if ratio is None else f"{ratio:.2f}x"


@click.command("load-embeddings")
@click.option(
    "--version", "version", default=None, help=f"Model version to load (default: the one {SERVING_POINTER_KEY} names)."
)
@click.option(
    "--ef-search",
    type=EF_SEARCH,
    default=None,
    help=f"hnsw.ef_search readers use for this version (default: the smallest measured to reach "
    f"recall@10 {EF_SEARCH_RECALL_TARGET}).",
)
def load_embeddings_command(version: str | None, ef_search: int | None) -> None:
    """Load a model version's embeddings from S3 into pgvector and switch readers to it atomically."""
    click.echo(load_embeddings(load_settings(), version, ef_search=ef_search).line())
