"""The MySQL source as the apps see it: seeding it, product names and lines, and the seeder's planted
truth (the offline evaluation's ceiling)."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from functools import partial

from recsys.core.config import Settings
from recsys.core.db import connect_mysql
from recsys.core.errors import PipelineError, SourceUnavailable
from recsys_seed import (
    Catalogue,
    PlantedTruth,
    SeedError,
    SeedSpec,
    SeedSummary,
    load_catalogue,
    planted_truth,
    seed_source,
    source_spec,
)


def seed_configured_source(
    settings: Settings, spec: SeedSpec, *, reset: bool = False, show_progress: bool = False
) -> SeedSummary:
    """``recsys_seed.seed_source`` on the configured MySQL database (what ``recsys seed`` runs)."""
    try:
        return seed_source(
            partial(connect_mysql, settings), settings.mysql_database, spec, reset=reset, show_progress=show_progress
        )
    except SeedError as exc:
        raise PipelineError(str(exc)) from None


def source_catalogue(settings: Settings) -> Catalogue:
    """The configured source's customers, products and planted tastes (what events are drawn from)."""
    try:
        with closing(connect_mysql(settings)) as conn:
            return load_catalogue(conn)
    except SeedError as exc:
        raise PipelineError(f"{exc} (database {settings.mysql_database!r})") from None


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    line: str


def product_catalogue(settings: Settings) -> dict[str, Product]:
    """Every product's name and line, by product code."""
    with closing(connect_mysql(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT productCode, productName, productLine FROM products")
        return {code: Product(code, name, line) for code, name, line in cur.fetchall()}


def product_names(settings: Settings, product_codes: list[str]) -> dict[str, str]:
    """productCode -> productName for the given codes."""
    if not product_codes:
        return {}
    with closing(connect_mysql(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT productCode, productName FROM products WHERE productCode IN %s", (tuple(product_codes),))
        return dict(cur.fetchall())


def planted_truth_for(settings: Settings) -> tuple[PlantedTruth | None, str]:
    """(the planted truth, a note) when the source was seeded by ``recsys_seed``; else (None, why not).

    The ceiling is a reference, not a requirement: an unreachable source only removes it.
    """
    try:
        conn = connect_mysql(settings)
    except SourceUnavailable as exc:
        return None, f"planted-truth ceiling unavailable: {exc}"
    with closing(conn):
        spec = source_spec(conn)
    if spec is None:
        return None, (
            "planted-truth ceiling unavailable: the source was not seeded by this version of recsys_seed "
            "(no seed_metadata, or an older generator: reseed with --reset)"
        )
    return planted_truth(spec), f"planted-truth ceiling from seed_metadata {spec}"
