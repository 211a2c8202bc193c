"""Session fixtures: one embedded stack (moto + PostgreSQL/pgvector) and a MySQL database of the
tests' own on the configured server, dropped at the end.

Stage-specific fixtures live in ``tests/fixtures_<stage>.py`` and are loaded as plugins below.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (implicit's ALS wants it)

import pytest  # noqa: E402


pytest_plugins = sorted(p.stem for p in Path(__file__).parent.glob("fixtures_*.py"))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The embedded local stack in a temporary state dir, with a MySQL database of the tests' own.

    The process environment points at it (as ``eval "$(recsys stack env)"`` would), so CLI
    commands and subprocesses run in tests talk to it. Yields ``Settings``.
    """
    from recsys.stack import scratch_stack

    with scratch_stack("test", tmp_path_factory.mktemp("stack")) as settings:
        yield settings


@pytest.fixture(scope="session")
def seeded(stack):
    """The source seeded once at the lab's scale (defaults). Yields the seeder's summary."""
    from recsys_seed import seed_source

    return seed_source(stack, reset=True)
