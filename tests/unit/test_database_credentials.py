"""``recsys.serving.database.ConnectParams``: credentials read once, and once more per rotation however
many connections are refused together (the end-to-end rotation: tests/integration/test_rotation.py)."""

from __future__ import annotations

import threading

import psycopg2

from recsys.serving.database import ConnectParams, is_authentication_failure


def test_connections_refused_together_cause_one_secret_read():
    reads = []
    params = ConnectParams(lambda: reads.append(1) or {"password": f"p{len(reads)}"})
    generation, first = params.get()
    assert first == {"password": "p1"}
    barrier = threading.Barrier(8)

    def refused() -> None:
        barrier.wait()
        params.refresh(generation)  # each saw the same (stale) generation

    threads = [threading.Thread(target=refused) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 2 and params.get() == (generation + 1, {"password": "p2"})
    params.refresh(generation + 1)  # a later rotation reads again
    assert len(reads) == 3


def test_only_a_refused_login_counts_as_rotation():
    refused = psycopg2.OperationalError(
        'connection to server at "10.0.0.5", port 5432 failed: FATAL:  '
        'password authentication failed for user "recsys_admin"'
    )
    down = psycopg2.OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')
    assert is_authentication_failure(refused) and not is_authentication_failure(down)
    assert not is_authentication_failure(ValueError("password authentication failed"))
