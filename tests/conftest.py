"""Fixtures every test may use. ``tests/unit`` needs no service; ``tests/integration`` starts its own
(see ``tests/integration/conftest.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

import recsys  # noqa: F401  (first: sets OPENBLAS_NUM_THREADS before numpy loads)

REPO = Path(__file__).resolve().parents[1]
HANDLERS_DIR = Path(__file__).parent / "streaming_handlers"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def streaming_handlers_dir() -> Path:
    """Small Lambda handlers that misbehave on purpose (raise, sleep, fail to import)."""
    return HANDLERS_DIR
