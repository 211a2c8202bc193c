"""Seeder benchmark: generate + load N ratings, against a raw LOAD DATA of the same rows pre-written to TSV.

    .venv/bin/python -m benchmarks.bench_seed [--customers 20000 --products 2000 --ratings 1000000]

Both sides load the same rows into freshly created tables of the same schema, with the same session
settings (foreign_key_checks=0, unique_checks=0) and the same chunks, on the configured MySQL server,
in a scratch database that is dropped at the end. Targets: >= 100k ratings/s, within 1.5x of raw.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

from recsys.apps.source import seed_configured_source
from recsys.core.config import load_settings
from recsys.core.db import connect_mysql, drop_database, quote_mysql_identifier
from recsys_seed import SeedSpec, load
from recsys_seed.generate import generate_streaming


def _fresh_database(settings) -> None:
    drop_database(settings)
    conn = connect_mysql(settings, database="")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {quote_mysql_identifier(settings.mysql_database)} CHARACTER SET utf8mb4")
    conn.close()


def raw_load_seconds(settings, spec: SeedSpec) -> float:
    """Time only LOAD DATA of pre-written TSV chunks into fresh tables (no generation)."""
    tables, rating_chunks = generate_streaming(spec)
    codes = tables.truth.product_codes
    chunks = [
        ("productlines", load.rows_to_tsv(tables.productlines)),
        ("products", load.rows_to_tsv(tables.products)),
        ("customers", load.rows_to_tsv(tables.customers)),
    ]
    chunks += [("ratings", load.ratings_to_tsv(c.customers, codes[c.products], c.stars)) for c in rating_chunks]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (table, text) in enumerate(chunks):
            path = os.path.join(tmp, f"{i}.tsv")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            files.append((table, path))
        _fresh_database(settings)
        conn = connect_mysql(settings, local_infile=True)
        with conn.cursor() as cur:
            load.apply_schema(cur)
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
        started = time.perf_counter()
        for table, path in files:
            with conn.cursor() as cur:
                cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {load.quote_identifier(table)} CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'",
                    (path,),
                )
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    spec = SeedSpec(args.customers, args.products, args.ratings, args.seed)
    settings = dataclasses.replace(load_settings(), mysql_database=f"recsys_bench_seed_{os.getpid()}")
    try:
        raw = raw_load_seconds(settings, spec)
        _fresh_database(settings)
        summary = seed_configured_source(settings, spec, reset=True, show_progress=True)
    finally:
        drop_database(settings)
    rate = spec.ratings / summary.seconds
    ratio = summary.seconds / raw
    print(f"\nseeder benchmark: {spec.customers:,} customers x {spec.products:,} products, {spec.ratings:,} ratings")
    print(f"  {'recsys seed (generate + load)':<36} {summary.seconds:8.2f} s  {rate:>12,.0f} ratings/s")
    print(f"  {'raw LOAD DATA of pre-written TSV':<36} {raw:8.2f} s  {spec.ratings / raw:>12,.0f} ratings/s")
    print(f"  ratio seed / raw load: {ratio:.2f}x   (target <= 1.5x)")
    print(
        f"  throughput target >= 100,000 ratings/s: {'met' if rate >= 100_000 else 'NOT met'}; "
        f"ratio target: {'met' if ratio <= 1.5 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
