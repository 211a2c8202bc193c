"""Session fixtures of the integration tests: one embedded stack (moto + PostgreSQL/pgvector) and a
MySQL database of the tests' own on the configured server, dropped at the end.

Stage-specific fixtures live in ``tests/support/fixtures_<stage>.py``, loaded as plugins by
``tests/conftest.py``.
"""

from __future__ import annotations

import pytest

from recsys.apps.source import seed_configured_source
from recsys.local.stack import scratch_stack
from recsys_seed import SeedSpec


@pytest.fixture(scope="session")
def stack():
    """The embedded local stack in a temporary state dir, with a MySQL database of the tests' own.

    The process environment points at it (as ``eval "$(recsys stack env)"`` would), so CLI
    commands and subprocesses run in tests talk to it. Yields ``Settings``.
    """
    with scratch_stack("test") as settings:  # its own state dir under /tmp: reachable by PostgreSQL's user
        yield settings


@pytest.fixture(scope="session")
def seeded(stack):
    """The source seeded once at the lab's scale (defaults). Yields the seeder's summary."""
    return seed_configured_source(stack, SeedSpec(), reset=True)
