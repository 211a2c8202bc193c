"""Fixtures for the API and the web page: a PostgreSQL + pgvector of their own (tests stop and
restart it) holding the streaming tests' model, and the API served by uvicorn on a free port."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pytest

from recsys.apps.api_server import api_runtime
from recsys.local import pgembedded
from recsys.local.stack import free_port
from recsys.pipeline.vector_load import load_embeddings
from recsys.serving.api import create_app
from tests.support.uvicorn_thread import serving


@dataclasses.dataclass
class ApiDatabase:
    settings: object
    data_dir: object
    log: object

    def stop(self) -> None:
        pgembedded.stop(self.data_dir)

    def start(self) -> None:
        pgembedded.start(self.data_dir, self.settings.pg_port, self.log)


@pytest.fixture(scope="session")
def api_db(stack, streaming_model):
    """An embedded PostgreSQL of the API tests' own with the streaming model loaded (in a state dir
    of its own, which the server's account may pass through, like the stack's)."""
    data = Path(tempfile.mkdtemp(prefix="recsys-api-pg-")) / "data"
    pgembedded.preflight(data)
    pgembedded.init_cluster(data, stack.pg_password)
    port = free_port()
    db = ApiDatabase(dataclasses.replace(stack, pg_port=port), data, data.parent / "postgres.log")
    try:
        db.start()
        load_embeddings(db.settings, streaming_model.version)
        yield db
    finally:
        db.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def api_url(api_db):
    """uvicorn serving the app on a free port, in a thread of the test process."""
    with serving(create_app(api_runtime(api_db.settings, pool_size=4))) as port:
        yield f"http://127.0.0.1:{port}"
