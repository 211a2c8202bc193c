"""Bulk loading into the MySQL source with ``LOAD DATA LOCAL INFILE``, chunk by chunk, into
staging tables that one ``RENAME TABLE`` swaps in."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "sql" / "classicmodels.sql"
SOURCE_TABLES = ("ratings", "customers", "products", "productlines", "seed_metadata")  # drop order
STAGING_SUFFIX = "__staging"  # a seeding writes into <table>__staging ...
OLD_SUFFIX = "__old"  # ... and the swap moves the tables it replaces to <table>__old, then drops them
_TABLE_NAMES = re.compile(r"\b(CREATE TABLE IF NOT EXISTS|REFERENCES)\s+(\w+)")


def _field(value) -> str:
    if value is None:
        return r"\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def rows_to_tsv(rows: Iterable[Sequence]) -> str:
    return "".join("\t".join(_field(v) for v in row) + "\n" for row in rows)


def ratings_to_tsv(customers: np.ndarray, codes: np.ndarray, stars: np.ndarray) -> str:
    return "".join(
        f"{c}\t{p}\t{r}\n" for c, p, r in zip(customers.tolist(), codes.tolist(), stars.tolist(), strict=True)
    )


def quote_identifier(name: str) -> str:
    """A MySQL identifier in backticks, embedded backticks doubled."""
    return "`" + name.replace("`", "``") + "`"


def schema_statements(suffix: str = "") -> list[str]:
    """The schema's ``CREATE TABLE`` statements, every table name (and foreign key target) + ``suffix``."""
    statements = []
    for statement in SCHEMA_FILE.read_text().split(";"):
        body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            statements.append(_TABLE_NAMES.sub(lambda m: f"{m[1]} {quote_identifier(m[2] + suffix)}", body))
    return statements


def apply_schema(cur, suffix: str = "") -> None:
    """Create the source tables (named with ``suffix``) that are missing (``CREATE TABLE IF NOT EXISTS``)."""
    for statement in schema_statements(suffix):
        cur.execute(statement)


def drop_tables(cur, suffix: str = "") -> None:
    """Drop the source tables named with ``suffix``, referencing tables first."""
    for table in SOURCE_TABLES:
        cur.execute(f"DROP TABLE IF EXISTS {quote_identifier(table + suffix)}")


def swap_in_staged(cur) -> None:
    """Replace the live tables with the staged ones in ONE ``RENAME TABLE`` (atomic: readers see the old
    tables or the new ones), then drop the old. Foreign keys follow their renamed targets, and their
    generated names (``<table>_ibfk_<n>``) the renamed tables, so the next staging reuses no name."""
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
    present = {name for (name,) in cur.fetchall()}
    moves = [(t, t + OLD_SUFFIX) for t in SOURCE_TABLES if t in present]
    moves += [(t + STAGING_SUFFIX, t) for t in SOURCE_TABLES]
    cur.execute("RENAME TABLE " + ", ".join(f"{quote_identifier(a)} TO {quote_identifier(b)}" for a, b in moves))
    drop_tables(cur, OLD_SUFFIX)


def load_tsv(conn, table: str, tsv: str, tmp_dir: str | None = None) -> int:
    """Load one chunk of TSV text into ``table`` in its own transaction; returns rows loaded."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", dir=tmp_dir, delete=False, encoding="utf-8") as fh:
        fh.write(tsv)
        path = fh.name
    try:
        with conn.cursor() as cur:
            loaded = cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote_identifier(table)} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'",
                (path,),
            )
        conn.commit()
        return loaded
    finally:
        os.unlink(path)


def load_ratings_overlapped(
    conn,
    chunks: Iterable,
    product_codes: np.ndarray,
    progress: Callable[[int], object] | None = None,
    table: str = "ratings",
) -> int:
    """Load rating chunks while the next one is drawn: one loader thread owns the connection, and
    the MySQL server works on chunk i while this thread draws and formats chunk i+1."""
    total = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-ratings") as loader:
        pending = None
        for chunk in chunks:
            tsv = ratings_to_tsv(chunk.customers, product_codes[chunk.products], chunk.stars)
            if pending is not None:
                total += pending.result()
            pending = loader.submit(load_tsv, conn, table, tsv)
            if progress:
                progress(len(chunk.stars))
        if pending is not None:
            total += pending.result()
    return total
