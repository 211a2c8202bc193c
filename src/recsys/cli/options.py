"""Parameter types for numeric options: every number the CLI takes has a range, checked before work starts."""

from __future__ import annotations

import math

import click

from recsys.apps.replay import MAX_RATE, MIN_RATE
from recsys.contracts import MAX_CUSTOMER_NUMBER
from recsys.serving.vector_store import MAX_EF_SEARCH, MAX_K


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan``, which compares false with every bound and slips through."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return number


class EventRate(FiniteFloatRange):
    """Events per second: 0 for unlimited, else ``MIN_RATE..MAX_RATE`` (a rate of 1e-9 would wait forever)."""

    name = "rate"

    def __init__(self) -> None:
        super().__init__(0, MAX_RATE)

    def convert(self, value, param, ctx):
        rate = super().convert(value, param, ctx)
        if 0 < rate < MIN_RATE:
            self.fail(f"{rate:g} is neither 0 (unlimited) nor in the range {MIN_RATE:g}<=x<={MAX_RATE:g}.", param, ctx)
        return rate


CUSTOMER_NUMBER = click.IntRange(1, MAX_CUSTOMER_NUMBER)
SEED = click.IntRange(0, 2**32 - 1)
EF_SEARCH = click.IntRange(1, MAX_EF_SEARCH)  # pgvector's range for hnsw.ef_search
TOP_K = click.IntRange(1, MAX_K)  # what one nearest-neighbour query returns at most
FRACTION = FiniteFloatRange(0, 1)
