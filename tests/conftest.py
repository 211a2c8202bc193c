"""Fixtures every test may use. ``tests/unit`` needs no service; ``tests/integration`` starts its own
(see ``tests/integration/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import recsys  # noqa: F401  (first: sets OPENBLAS_NUM_THREADS before numpy loads)

# pytester, the environment report and the integration fixtures, by stage (tests/support): plugins here, in the
# top conftest, because pytest reads ``pytest_plugins`` only from it; the fixtures they build on
# (``stack``, ``seeded``) are tests/integration/conftest.py's, so only integration tests can use them.
pytest_plugins = ["pytester", "tests.support.environment"] + [
    f"tests.support.fixtures_{stage}" for stage in ("stack", "etl", "train", "vectordb", "streaming", "api")
]

REPO = Path(__file__).resolve().parents[1]
HANDLERS_DIR = Path(__file__).parent / "streaming_handlers"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def streaming_handlers_dir() -> Path:
    """Small Lambda handlers that misbehave on purpose (raise, sleep, fail to import)."""
    return HANDLERS_DIR
