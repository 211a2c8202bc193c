"""Seed the MySQL source: validate, build the new tables in bulk beside the live ones (metadata
last), then swap them in at once. A seeding that fails or is interrupted leaves the live tables as
they were and drops what it staged.

The seeder does not know where the source is: callers pass ``connect``, a function returning a
pymysql connection (``connect(database="")`` selects no database; keyword arguments such as
``local_infile=True`` go to ``pymysql.connect``), and the database name.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pymysql
from tqdm import tqdm

from recsys_seed import load
from recsys_seed.generate import GENERATOR_VERSION, SeedSpec, generate_streaming

Connect = Callable[..., pymysql.connections.Connection]


class SeedError(RuntimeError):
    """The source holds data the seeder must not overwrite, or holds nothing to read."""


@dataclass
class SeedSummary:
    spec: SeedSpec
    customers: int
    products: int
    ratings: int
    seconds: float
    skipped: bool  # the source already held exactly this seeding

    def line(self) -> str:
        if self.skipped:
            return (
                f"source already seeded with customers={self.spec.customers} products={self.spec.products} "
                f"ratings={self.spec.ratings} seed={self.spec.seed} attribute_share={self.spec.attribute_share:g}: "
                "nothing to do (use --reset to rebuild)"
            )
        rate = self.ratings / self.seconds if self.seconds else 0
        return (
            f"seeded {self.customers:,} customers, {self.products:,} products, {self.ratings:,} ratings "
            f"in {self.seconds:.1f} s ({rate:,.0f} ratings/s)"
        )


def source_spec(conn) -> SeedSpec | None:
    """The arguments that seeded this database, or None when this generator did not seed it
    (not seeded by us, or by an older generator whose planted truth this one cannot regenerate)."""
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        try:
            cur.execute("SELECT * FROM seed_metadata WHERE id = 1")  # older generators lack columns
        except pymysql.err.ProgrammingError:  # table missing
            return None
        row = cur.fetchone()
    if not row or row["generator"] != GENERATOR_VERSION:
        return None
    return SeedSpec(row["customers"], row["products"], row["ratings"], row["seed"], float(row["attribute_share"]))


def _row_count(cur, table: str) -> int:
    try:
        cur.execute(f"SELECT COUNT(*) FROM {load.quote_identifier(table)}")
    except pymysql.err.ProgrammingError:
        return 0
    return cur.fetchone()[0]


def _ensure_database(connect: Connect, database: str) -> None:
    conn = connect(database="")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {load.quote_identifier(database)} CHARACTER SET utf8mb4")
    finally:
        conn.close()


def seeding_lock_name(database: str) -> str:
    """The MySQL named lock (``GET_LOCK``, at most 64 characters) one seeding of ``database`` holds."""
    return "recsys_seed." + hashlib.sha1(database.encode()).hexdigest()


def _take_seeding_lock(cur, database: str) -> None:
    """One seeding per database at a time (a second would drop the first's staging tables as leftovers).
    The lock is the session's: a killed seeding's ends with its connection."""
    cur.execute("SELECT GET_LOCK(%s, 0)", (seeding_lock_name(database),))
    if cur.fetchone()[0] != 1:
        raise SeedError(f"another seeding of database {database!r} is running; try again when it has finished")


def _staged(table: str) -> str:
    return table + load.STAGING_SUFFIX


def _load_staged(conn, spec: SeedSpec, show_progress: bool) -> None:
    """Generate ``spec``'s rows into the staging tables, ``seed_metadata`` last."""
    tables, chunks = generate_streaming(spec)
    load.load_tsv(conn, _staged("productlines"), load.rows_to_tsv(tables.productlines))
    load.load_tsv(conn, _staged("products"), load.rows_to_tsv(tables.products))
    load.load_tsv(conn, _staged("customers"), load.rows_to_tsv(tables.customers))
    with tqdm(total=spec.ratings, unit="rating", desc="seed", disable=not show_progress) as bar:
        load.load_ratings_overlapped(
            conn, chunks, tables.truth.product_codes, progress=bar.update, table=_staged("ratings")
        )
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {load.quote_identifier(_staged('seed_metadata'))} "
            "(id, customers, products, ratings, seed, generator, attribute_share) VALUES (1, %s, %s, %s, %s, %s, %s)",
            (spec.customers, spec.products, spec.ratings, spec.seed, GENERATOR_VERSION, spec.attribute_share),
        )
    conn.commit()


def _close_quietly(conn) -> None:
    """Close ``conn``, also when it is already closed or broken mid-statement (an interrupt)."""
    with contextlib.suppress(Exception):  # already closed, or the socket is gone: nothing more to release
        conn.close()


def _drop_staged(connect: Connect, database: str) -> None:
    """Drop the staging tables over a fresh connection; a failure here is left for the next seeding
    (which drops leftovers first) rather than hiding the error that brought us here."""
    try:
        conn = connect(database=database)
    except Exception:
        return
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 30, foreign_key_checks = 0")
            load.drop_tables(cur, load.STAGING_SUFFIX)
    except Exception:
        pass
    finally:
        _close_quietly(conn)


def seed_source(
    connect: Connect, database: str, spec: SeedSpec | None = None, *, reset: bool = False, show_progress: bool = False
) -> SeedSummary:
    """Fill ``database`` with ``spec``'s data. Idempotent: the same spec again is a no-op.

    Raises ``ValueError`` for impossible arguments and ``SeedError`` when the database holds
    other data and ``reset`` is not set; in both cases nothing is changed.
    """
    spec = spec or SeedSpec()
    spec.validate()
    started = time.perf_counter()
    _ensure_database(connect, database)
    conn = connect(database=database, local_infile=True)
    try:
        with conn.cursor() as cur:
            _take_seeding_lock(cur, database)
        existing = source_spec(conn)
        with conn.cursor() as cur:
            if not reset:
                if existing == spec:
                    return SeedSummary(spec, spec.customers, spec.products, spec.ratings, 0.0, skipped=True)
                occupied = [t for t in ("customers", "products", "ratings") if _row_count(cur, t)]
                if existing or occupied:
                    held = f"a different seeding ({existing})" if existing else f"rows in {', '.join(occupied)}"
                    raise SeedError(f"database {database!r} already holds {held}; pass --reset to rebuild it")
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            load.drop_tables(cur, load.STAGING_SUFFIX)  # leftovers of a killed seeding
            load.drop_tables(cur, load.OLD_SUFFIX)
            load.apply_schema(cur, load.STAGING_SUFFIX)
        conn.commit()
        try:
            _load_staged(conn, spec, show_progress)
            with conn.cursor() as cur:
                load.swap_in_staged(cur)
        except BaseException:
            _close_quietly(conn)  # ends its transaction: the server releases the staging tables
            _drop_staged(connect, database)
            raise
    finally:
        _close_quietly(conn)
    return SeedSummary(spec, spec.customers, spec.products, spec.ratings, time.perf_counter() - started, skipped=False)
