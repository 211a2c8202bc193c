"""A known customer's top items from the live model in pgvector, with product names from the source."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

from recsys.apps.source import product_names
from recsys.core.config import Settings
from recsys.core.db import connect_pg
from recsys.core.errors import PipelineError
from recsys.serving.recommend import known_customer_items
from recsys.serving.vector_store import ScoredItem, VectorStoreError, consistent_read, rated_count


@dataclass(frozen=True)
class Recommendation:
    """A customer's top items from the live model, with product names from the source."""

    customer: int
    version: str
    items: list[ScoredItem]
    names: dict[str, str]
    excluded: int

    def lines(self) -> list[str]:
        head = (
            f"customer {self.customer} · model {self.version} · top {len(self.items)}"
            f" ({self.excluded} already-rated items excluded)"
        )
        rows = [
            f"{rank:>4}  {item.product_code:<12} {item.score:>7.4f}  {self.names.get(item.product_code, '?')}"
            for rank, item in enumerate(self.items, 1)
        ]
        return [head, f"{'rank':>4}  {'product':<12} {'score':>7}  name", *rows]


def recommend(
    settings: Settings, customer: int, k: int = 10, *, include_rated: bool = False, ef_search: int | None = None
) -> Recommendation:
    """The customer's top ``k`` items, as the API's ``GET /customers/{n}/recommendations`` serves them:
    cosine between their stored vector and the item vectors, minus the items the live version lists
    as rated (``user_rated``) unless ``include_rated``; ``ef_search`` None: the live version's."""
    with closing(connect_pg(settings)) as conn:
        try:
            with consistent_read(conn):  # the count of excluded items from the same version
                found = known_customer_items(conn, customer, k, exclude_rated=not include_rated, ef_search=ef_search)
                excluded = 0 if include_rated else rated_count(conn, customer)
        except VectorStoreError as exc:
            raise PipelineError(str(exc)) from exc
    if found.model_version is None:
        raise PipelineError("no model is live in pgvector: run `recsys load-embeddings` first")
    if found.items is None:
        raise PipelineError(f"customer {customer} has no embedding in model version {found.model_version}")
    items = found.items
    names = product_names(settings, [item.product_code for item in items])
    return Recommendation(customer, found.model_version, items, names, excluded)
