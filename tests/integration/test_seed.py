"""The Faker seeder: believable, deterministic, idempotent, learnable; bad input changes nothing."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys.core.db import SourceUnavailable, connect_mysql, drop_database
from recsys.core.errors import PipelineError
from recsys.apps.source import seed_configured_source
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
    return {table.split(".", 1)[1]: checksum for table, checksum in
            _query(settings, "CHECKSUM TABLE productlines, products, customers, ratings")}


@pytest.fixture()
def scratch_db(stack):
    """A second database on the same server, dropped afterwards."""
    settings = dataclasses.replace(stack, mysql_database=f"{stack.mysql_database}_scratch")
    yield settings
    drop_database(settings)


def test_seeded_counts_and_metadata(stack, seeded):
    spec = SeedSpec()
    (counts,) = _query(stack, "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM products), "
                              "(SELECT COUNT(*) FROM ratings), (SELECT COUNT(*) FROM productlines)")
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
    (lo, hi), = _query(stack, "SELECT MIN(productRating), MAX(productRating) FROM ratings")
    assert (lo, hi) == (1, 5)
    orphans = _query(stack, "SELECT COUNT(*) FROM ratings r LEFT JOIN products p USING (productCode) "
                            "LEFT JOIN customers c USING (customerNumber) "
                            "WHERE p.productCode IS NULL OR c.customerNumber IS NULL")[0][0]
    assert orphans == 0
    (credit_ok,), = _query(stack, "SELECT COUNT(*) FROM customers WHERE creditLimit BETWEEN 0 AND 250000")
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


@pytest.mark.parametrize("spec, message", [
    (SeedSpec(customers=-1), "--customers must be at least 1"),
    (SeedSpec(customers=3, products=4, ratings=13), "exceeds customers x products = 12"),
    (SeedSpec(ratings=0), "--ratings must be at least 1"),
])
def test_impossible_arguments_change_nothing(stack, seeded, spec, message):
    before = _checksums(stack)
    with pytest.raises(ValueError, match=message):
        seed_configured_source(stack, spec, reset=True)
    assert _checksums(stack) == before


def test_cli_errors_are_one_line_and_nonzero(stack, seeded):
    bad = subprocess.run([RECSYS, "seed", "--ratings", "999999", "--reset"], capture_output=True, text=True)
    assert bad.returncode == 2 and "exceeds customers x products" in bad.stderr
    down = subprocess.run([RECSYS, "seed"], capture_output=True, text=True,
                          env={**os.environ, "MYSQL_PORT": "1"})
    assert down.returncode == 1
    assert down.stderr.strip().startswith("error: MySQL source not reachable at")
    assert len(down.stderr.strip().splitlines()) == 1


def test_unreachable_server_raises_naming_host_and_port(stack):
    with pytest.raises(SourceUnavailable, match="127.0.0.1:1 "):
        seed_configured_source(dataclasses.replace(stack, mysql_port=1), SeedSpec())

