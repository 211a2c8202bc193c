"""The Faker seeder: believable, deterministic, idempotent, learnable; bad input changes nothing."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.apps.source import seed_configured_source
from recsys.core.db import SourceUnavailable, connect_mysql, drop_database
from recsys.core.errors import PipelineError
from recsys_seed import SeedSpec, source_spec
from recsys_seed.generate import LOCATIONS, PRODUCT_LINES, SCALES

RECSYS = str(Path(sys.executable).with_name("recsys"))


def _query(settings, sql, params=None):
    conn = connect_mysql(settings)
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def _checksums(settings) -> dict:
    return {
        table.split(".", 1)[1]: checksum
        for table, checksum in _query(settings, "CHECKSUM TABLE productlines, products, customers, ratings")
    }


@pytest.fixture
def scratch_db(stack):
    """A second database on the same server, dropped afterwards."""
    settings = dataclasses.replace(stack, mysql_database=f"{stack.mysql_database}_scratch")
    yield settings
    drop_database(settings)


def test_seeded_counts_and_metadata(stack, seeded):
    spec = SeedSpec()
    (counts,) = _query(
        stack,
        "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM products), "
        "(SELECT COUNT(*) FROM ratings), (SELECT COUNT(*) FROM productlines)",
    )
    assert counts == (spec.customers, spec.products, spec.ratings, 7)
    conn = connect_mysql(stack)
    assert source_spec(conn) == spec
    conn.close()


def test_rows_are_believable(stack, seeded):
    places = {(c, s, n) for c, s, _, n in LOCATIONS}
    for city, state, country, postal in _query(stack, "SELECT city, state, country, postalCode FROM customers"):
        assert (city, state, country) in places
        pattern = next(p for c, s, p, n in LOCATIONS if (c, s, n) == (city, state, country))
        assert (postal is None) == (pattern is None)
        if postal:
            assert len(postal) == len(pattern)
    bad_price = _query(stack, "SELECT COUNT(*) FROM products WHERE MSRP <= buyPrice OR buyPrice <= 0")[0][0]
    assert bad_price == 0
    scales = {s for (s,) in _query(stack, "SELECT DISTINCT productScale FROM products")}
    assert scales <= set(SCALES)
    lines = {line for (line,) in _query(stack, "SELECT DISTINCT productLine FROM products")}
    assert lines <= set(PRODUCT_LINES) and len(lines) >= 5
    ((lo, hi),) = _query(stack, "SELECT MIN(productRating), MAX(productRating) FROM ratings")
    assert (lo, hi) == (1, 5)
    orphans = _query(
        stack,
        "SELECT COUNT(*) FROM ratings r LEFT JOIN products p USING (productCode) "
        "LEFT JOIN customers c USING (customerNumber) "
        "WHERE p.productCode IS NULL OR c.customerNumber IS NULL",
    )[0][0]
    assert orphans == 0
    ((credit_ok,),) = _query(stack, "SELECT COUNT(*) FROM customers WHERE creditLimit BETWEEN 0 AND 250000")
    assert credit_ok == SeedSpec().customers


def test_same_arguments_give_identical_tables(stack, seeded, scratch_db):
    seed_configured_source(scratch_db, SeedSpec())
    assert _checksums(scratch_db) == _checksums(stack)
    seed_configured_source(scratch_db, SeedSpec(seed=7), reset=True)
    assert _checksums(scratch_db)["ratings"] != _checksums(stack)["ratings"]


def test_rerun_is_a_noop_and_a_different_seeding_needs_reset(stack, seeded):
    before = _checksums(stack)
    again = seed_configured_source(stack, SeedSpec())
    assert again.skipped and _checksums(stack) == before
    with pytest.raises(PipelineError, match="--reset"):
        seed_configured_source(stack, SeedSpec(ratings=100))
    assert _checksums(stack) == before


@pytest.mark.parametrize(
    "spec, message",
    [
        (SeedSpec(customers=-1), "--customers must be at least 1"),
        (SeedSpec(customers=3, products=4, ratings=13), "exceeds customers x products = 12"),
        (SeedSpec(ratings=0), "--ratings must be at least 1"),
    ],
)
def test_impossible_arguments_change_nothing(stack, seeded, spec, message):
    before = _checksums(stack)
    with pytest.raises(ValueError, match=message):
        seed_configured_source(stack, spec, reset=True)
    assert _checksums(stack) == before


def test_cli_errors_are_one_line_and_nonzero(stack, seeded):
    bad = subprocess.run(
        [RECSYS, "seed", "--ratings", "999999", "--reset"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "exceeds customers x products" in bad.stderr
    down = subprocess.run(
        [RECSYS, "seed"], capture_output=True, text=True, env={**os.environ, "MYSQL_PORT": "1"}, check=False
    )
    assert down.returncode == 1
    assert down.stderr.strip().startswith("error: MySQL source not reachable at")
    assert len(down.stderr.strip().splitlines()) == 1


def test_unreachable_server_raises_naming_host_and_port(stack):
    with pytest.raises(SourceUnavailable, match=re.escape("127.0.0.1:1 ")):
        seed_configured_source(dataclasses.replace(stack, mysql_port=1), SeedSpec())


def _table_names(settings) -> set[str]:
    return {
        name
        for (name,) in _query(
            settings, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        )
    }


SMALL = SeedSpec(customers=40, products=30, ratings=400, seed=3)


def test_failed_reseed_keeps_the_previous_data_and_leaves_no_staging(scratch_db, monkeypatch):
    """A reseed that fails after writing rows (a fault injected into the rating generator) changes nothing."""
    import recsys_seed.seeder as seeder

    seed_configured_source(scratch_db, SMALL)
    before, tables = _checksums(scratch_db), _table_names(scratch_db)
    real = seeder.generate_streaming

    def failing_after_the_rows(spec):
        data, chunks = real(spec)

        def chunks_then_fault():
            yield from chunks  # every rating is drawn and written before the fault
            raise RuntimeError("injected fault in generation")

        return data, chunks_then_fault()

    monkeypatch.setattr(seeder, "generate_streaming", failing_after_the_rows)
    with pytest.raises(RuntimeError, match="injected fault"):
        seed_configured_source(scratch_db, SeedSpec(customers=60, products=50, ratings=900, seed=4), reset=True)
    assert _checksums(scratch_db) == before
    assert _table_names(scratch_db) == tables  # no staging or old tables left behind
    conn = connect_mysql(scratch_db)
    assert source_spec(conn) == SMALL
    conn.close()


def test_reseed_swaps_in_new_data_with_its_metadata(scratch_db):
    seed_configured_source(scratch_db, SMALL)
    tables = _table_names(scratch_db)
    bigger = SeedSpec(customers=60, products=50, ratings=900, seed=4, attribute_share=0.25)
    seed_configured_source(scratch_db, bigger, reset=True)
    (counts,) = _query(
        scratch_db,
        "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM products), (SELECT COUNT(*) FROM ratings)",
    )
    assert counts == (60, 50, 900)
    assert _table_names(scratch_db) == tables
    conn = connect_mysql(scratch_db)
    assert source_spec(conn) == bigger  # all of seed_metadata's columns, attribute_share included
    conn.close()
    # the swapped-in tables keep their foreign keys, now pointing at the live tables
    refs = set(
        _query(
            scratch_db,
            "SELECT table_name, referenced_table_name FROM "
            "information_schema.referential_constraints WHERE constraint_schema = DATABASE()",
        )
    )
    assert refs == {("products", "productlines"), ("ratings", "customers"), ("ratings", "products")}
    seed_configured_source(scratch_db, SMALL, reset=True)  # and a reseed over swapped-in tables works again
    assert _table_names(scratch_db) == tables


def _ratings_being_written(settings, old_count: int) -> bool:
    """Whether a running reseed has written ratings: into its staging table, or (a seeder that
    writes in place) into the live one, which then no longer holds the old count."""
    try:
        return _query(settings, "SELECT COUNT(*) FROM ratings__staging")[0][0] > 0
    except Exception:  # no staging table (yet)
        try:
            return _query(settings, "SELECT COUNT(*) FROM ratings")[0][0] != old_count
        except Exception:
            return True  # the live table is gone: the reseed dropped it


def test_ctrl_c_during_reseed_keeps_the_previous_data(scratch_db):
    """SIGINT to a real `recsys seed --reset` once it writes ratings: the old rows stay, staging goes."""
    seed_configured_source(scratch_db, SMALL)
    before, tables = _checksums(scratch_db), _table_names(scratch_db)
    proc = subprocess.Popen(
        [RECSYS, "seed", "--customers", "20000", "--products", "2000", "--ratings", "1000000", "--reset"],
        env={**os.environ, "MYSQL_DATABASE": scratch_db.mysql_database},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while proc.poll() is None and not _ratings_being_written(scratch_db, SMALL.ratings):
            time.sleep(0.05)
        assert proc.poll() is None, f"the reseed ended before it was interrupted: {proc.stderr.read()}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, err
    assert _checksums(scratch_db) == before
    assert _table_names(scratch_db) == tables


def test_a_second_seeding_at_the_same_time_is_refused(scratch_db):
    """While a seeding runs (its named lock held), another changes nothing and says why in one line."""
    from recsys_seed.seeder import seeding_lock_name

    seed_configured_source(scratch_db, SMALL)
    before = _checksums(scratch_db)
    running = connect_mysql(scratch_db)
    try:
        with running.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (seeding_lock_name(scratch_db.mysql_database),))
            assert cur.fetchone()[0] == 1
        with pytest.raises(
            PipelineError, match=f"another seeding of database '{scratch_db.mysql_database}' is running"
        ):
            seed_configured_source(scratch_db, SeedSpec(customers=60, products=50, ratings=900, seed=4), reset=True)
        assert _checksums(scratch_db) == before
    finally:
        running.close()
    assert not seed_configured_source(
        scratch_db, SeedSpec(customers=60, products=50, ratings=900, seed=4), reset=True
    ).skipped  # the lock went with its session
