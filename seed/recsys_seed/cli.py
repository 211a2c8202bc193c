"""``recsys seed``: fill the MySQL source."""
from __future__ import annotations

import click

from recsys_seed.generate import SeedSpec


@click.command("seed")
@click.option("--customers", default=SeedSpec.customers, show_default=True, type=int, help="Customers to create.")
@click.option("--products", default=SeedSpec.products, show_default=True, type=int, help="Products to create.")
@click.option("--ratings", default=SeedSpec.ratings, show_default=True, type=int, help="Ratings to draw.")
@click.option("--seed", "seed_value", default=SeedSpec.seed, show_default=True, type=int, help="Random seed.")
@click.option("--reset", is_flag=True, help="Drop and rebuild the source tables.")
def seed_command(customers: int, products: int, ratings: int, seed_value: int, reset: bool) -> None:
    """Fill the MySQL source with classicmodels-shaped data whose ratings carry planted tastes."""
    from recsys_seed.seeder import seed_source

    spec = SeedSpec(customers, products, ratings, seed_value)
    try:
        spec.validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    summary = seed_source(spec=spec, reset=reset, show_progress=True)
    click.echo(summary.line())
