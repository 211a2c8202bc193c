"""Vector DB: sql/embeddings.sql vs the loader, atomic versioned loads, k-NN queries, bad input.

Real embedded PostgreSQL 18 + pgvector and moto S3 from the session ``stack``; synthetic models in
the contract layout (tests/support/fixtures_vectordb.py), in a database and bucket of the tests' own.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from recsys.cli import apps, batch
from recsys.contracts import EF_SEARCH_RECALL_TARGET, HNSW_EF_CONSTRUCTION, HNSW_M, LOAD_LOCK_KEY
from recsys.core.errors import PipelineError
from recsys.local.pgembedded import psql_path
from recsys.pipeline import vector_load as vectordb
from recsys.pipeline.artifacts import embeddings_csv, rated_items_csv
from recsys.serving import vector_store as vs
from recsys.serving.recommend import known_customer_items

RECALL_TARGET = 0.95


def _tables(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {name for (name,) in cur.fetchall()}
    conn.rollback()
    return tables


def _recall(expected: list[list[str]], got: list[list[vs.ScoredItem]]) -> float:
    return float(
        np.mean([len(set(e) & {i.product_code for i in g}) / len(e) for e, g in zip(expected, got, strict=True)])
    )


# ---- embeddings.sql and the loader agree ----------------------------------------------------------


def _embeddings_sql(repo_root) -> str:
    return (repo_root / "sql" / "embeddings.sql").read_text()


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_embeddings_sql_agrees_with_loader_statically(repo_root, vectordb_conn):
    """Same tables, columns, index names, opclass, HNSW defaults, lock order and lock key."""
    script = _normalise(_embeddings_sql(repo_root))
    for table in vectordb.TABLES:
        loader_ddl = _normalise(vectordb.staged_table_sql(table, "V", 8).as_string(vectordb_conn))
        columns = re.search(r"\((.*)\)$", loader_ddl).group(1)  # "id varchar PRIMARY KEY, embedding vector(8) NOT NULL"
        stage_var = "item_stage" if table is vectordb.ITEMS else "user_stage"
        assert f'CREATE TABLE :"{stage_var}" ( {columns.replace("vector(8)", "vector(:dimension)")} );' in script
        assert f'ALTER TABLE :"{stage_var}" RENAME TO {table.name};' in script
        assert f"RENAME TO {table.pkey_index};" in script and f"RENAME TO {table.hnsw_index};" in script
        assert table.staged("20261126T154500Z-1a2b3c4d") == f"{table.name}_20261126t154500z_1a2b3c4d"
    defaults = vectordb.HnswParams()
    index = _normalise(vectordb.hnsw_index_sql(vectordb.ITEMS, "V", defaults).as_string(vectordb_conn))
    assert re.search(r"USING hnsw \(embedding (\w+)\)", index).group(1) == "vector_cosine_ops"
    using = "USING " + index.split(" USING ", 1)[1]
    in_script = using.replace(f"m = {defaults.m}", "m = :hnsw_m").replace(
        f"ef_construction = {defaults.ef_construction}", "ef_construction = :hnsw_ef_construction"
    )
    assert script.count(in_script) == 2, in_script
    assert (
        f"\\set hnsw_m {defaults.m} " in script and f"\\set hnsw_ef_construction {defaults.ef_construction} " in script
    )
    assert f"\\set ef_search_recall {EF_SEARCH_RECALL_TARGET} " in script
    assert "FROM recsys_ef_search_recall(:'item_stage', :'user_stage', :ef_search_recall)" in script
    assert f"hashtext('{LOAD_LOCK_KEY}')" in script
    assert f"INSERT INTO live_model ({', '.join(vectordb.LIVE_COLUMNS)})" in script
    lock = f"LOCK TABLE {vs.LIVE_TABLE}, {vs.USER_TABLE}, {vs.ITEM_TABLE}, {vs.RATED_TABLE} IN ACCESS EXCLUSIVE MODE"
    assert lock in script and vs.LOCK_FOR_READ_SQL.replace("ACCESS SHARE", "ACCESS EXCLUSIVE") == lock
    assert "aws_s3.table_import_from_s3" in script and "'(format csv, header true)'" in script
    assert "CREATE EXTENSION IF NOT EXISTS aws_s3 CASCADE;" in script
    assert "\\ir pgvector.sql" in script
    rated = _normalise(vectordb.rated_table_sql("V").as_string(vectordb_conn))
    rated_columns = rated.split(" ", 3)[3]  # "(user_id integer NOT NULL, ...)" after "CREATE TABLE name"
    tight = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", script))
    assert f'CREATE TABLE :"rated_stage" {rated_columns};' in tight
    assert f'ALTER TABLE :"rated_stage" RENAME TO {vectordb.RATED.name};' in script
    assert f"RENAME TO {vectordb.RATED.pkey_index};" in script
    assert "'user_id,item_id', '(format csv, header true)'" in script


def _run_embeddings_sql(settings, database: str, csv_dir, version: str, dimension: int, **extra: str):
    variables = {
        "bucket": "unused-locally",
        "version": version,
        "region": settings.region,
        "dimension": str(dimension),
        "local_csv_dir": str(csv_dir),
        **extra,
    }
    args = [
        psql_path(),
        "-X",
        "-h",
        settings.pg_host,
        "-p",
        str(settings.pg_port),
        "-U",
        settings.pg_user,
        "-d",
        database,
    ]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    return subprocess.run(
        args + ["-f", "sql/embeddings.sql"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=vectordb.SCHEMA_FILE.parents[1],
        check=False,
    )


@pytest.fixture(scope="module")
def embeddings_sql_database(vectordb_settings):
    from recsys.core.db import connect_pg

    conn = connect_pg(vectordb_settings)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS recsys_vectordb_psql WITH (FORCE)")
        cur.execute("CREATE DATABASE recsys_vectordb_psql")
    conn.close()
    return "recsys_vectordb_psql"


def test_embeddings_sql_runs_with_local_copy(vectordb_settings, embeddings_sql_database, tmp_path):
    """The whole script except the aws_s3 import (\\copy instead): load, no-op rerun, switch, bad row."""
    import dataclasses

    from recsys.core.db import connect_pg

    rng = np.random.default_rng(3)
    first, second, bad = tmp_path / "v1", tmp_path / "v2", tmp_path / "bad"
    for folder, items, dim in ((first, 300, 8), (second, 400, 12), (bad, 50, 12)):
        folder.mkdir()
        (folder / "item_embeddings.csv").write_bytes(
            embeddings_csv([f"P{i}" for i in range(items)], rng.normal(size=(items, dim)))
        )
        (folder / "user_embeddings.csv").write_bytes(embeddings_csv(range(100, 140), rng.normal(size=(40, dim))))
        (folder / "rated_items.csv").write_bytes(rated_items_csv([100, 100, 101], ["P1", "P2", "P1"]))
    with open(bad / "item_embeddings.csv", "a") as f:
        f.write('P999,"[1,2,3]"\n')  # wrong dimension on line 52

    done = _run_embeddings_sql(vectordb_settings, embeddings_sql_database, first, "20261126T000001Z-aaaaaaaa", 8)
    assert done.returncode == 0, done.stderr
    assert "imported 300 item and 40 user embeddings" in done.stdout
    measured = re.search(
        rf"ef_search (\d+): measured recall@10 ([0-9.]+) \(target {EF_SEARCH_RECALL_TARGET}\)", done.stdout
    )
    assert measured and float(measured.group(2)) >= EF_SEARCH_RECALL_TARGET, done.stdout
    conn = connect_pg(dataclasses.replace(vectordb_settings, pg_database=embeddings_sql_database))
    assert vs.live_model(conn).ef_search == int(measured.group(1))
    conn.close()
    again = _run_embeddings_sql(vectordb_settings, embeddings_sql_database, first, "20261126T000001Z-aaaaaaaa", 8)
    assert again.returncode == 0 and "already live: nothing to do" in again.stdout
    switched = _run_embeddings_sql(
        vectordb_settings, embeddings_sql_database, second, "20261126T000002Z-bbbbbbbb", 12, ef_search="37"
    )
    assert switched.returncode == 0, switched.stderr
    refused = _run_embeddings_sql(vectordb_settings, embeddings_sql_database, bad, "20261126T000003Z-cccccccc", 12)
    assert refused.returncode != 0 and "expected 12 dimensions, not 3" in refused.stderr and "line 52" in refused.stderr
    missing = subprocess.run(
        [
            psql_path(),
            "-X",
            "-h",
            vectordb_settings.pg_host,
            "-p",
            str(vectordb_settings.pg_port),
            "-U",
            "postgres",
            "-d",
            embeddings_sql_database,
            "-f",
            "sql/embeddings.sql",
        ],
        capture_output=True,
        text=True,
        cwd=vectordb.SCHEMA_FILE.parents[1],
        check=False,
    )
    assert missing.returncode != 0 and "missing -v bucket" in missing.stderr

    conn = connect_pg(dataclasses.replace(vectordb_settings, pg_database=embeddings_sql_database))
    try:
        model = vs.live_model(conn)
        assert (model.version, model.dimension, model.item_count, model.user_count, model.ef_search) == (
            "20261126T000002Z-bbbbbbbb",
            12,
            400,
            40,
            37,
        )  # ef_search as told
        with conn.cursor() as cur:
            cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'item_emb' ORDER BY indexname")
            indexdefs = [d for (d,) in cur.fetchall()]
            cur.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'item_emb'::regclass AND attname = 'embedding'"
            )
            assert cur.fetchone()[0] == "vector(12)"
        assert any(
            f"USING hnsw (embedding vector_cosine_ops) WITH (m='{HNSW_M}', ef_construction='{HNSW_EF_CONSTRUCTION}')"
            in d
            and "item_emb_embedding_hnsw" in d
            for d in indexdefs
        )
        # the refused version left its staged tables (the next run replaces them); the live pair is intact
        assert {"item_emb", "user_emb", "user_rated", "live_model"} <= _tables(conn)
        [[hit]] = vs.similar_items(conn, ["P1"], 1)
        assert hit.product_code.startswith("P")
        assert (vs.rated_count(conn, 100), vs.rated_count(conn, 101), vs.rated_count(conn, 102)) == (2, 1, 0)
    finally:
        conn.close()


# ---- load and query -------------------------------------------------------------------------------


def test_load_records_live_version_and_is_idempotent(vectordb_settings, vectordb_live, vectordb_conn):
    model = vs.live_model(vectordb_conn)
    assert (model.version, model.dimension, model.item_count, model.user_count) == (
        vectordb_live.version,
        32,
        5000,
        300,
    )
    again = vectordb.load_embeddings(vectordb_settings, vectordb_live.version)
    assert not again.switched and "already live" in again.line()
    assert vs.live_model(vectordb_conn).loaded_at == model.loaded_at
    assert not [t for t in _tables(vectordb_conn) if re.match(r"(item_emb|user_emb|user_rated)_", t)]  # staged gone


def test_user_vectors_round_trip(vectordb_live, vectordb_conn):
    wanted = [int(vectordb_live.user_ids[0]), int(vectordb_live.user_ids[17]), 999_999]
    got = vs.user_vectors(vectordb_conn, wanted)
    assert set(got) == set(wanted[:2])
    np.testing.assert_array_equal(got[wanted[1]], vectordb_live.user_vectors[17])


def test_hnsw_recall_against_exact_search(vectordb_live, vectordb_conn):
    queries = vectordb_live.user_vectors[:200]
    got = vs.nearest_items(vectordb_conn, queries, 10)
    assert _recall(vectordb_live.exact_top_k(queries, 10), got) >= RECALL_TARGET
    for hits in got:
        assert len(hits) == 10 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    best = got[0][0]
    item = vectordb_live.item_vectors[list(vectordb_live.item_ids).index(best.product_code)]
    cosine = item @ queries[0] / np.linalg.norm(item) / np.linalg.norm(queries[0])
    assert best.score == pytest.approx(float(cosine), abs=1e-5)


def test_exclusions_are_removed_and_k_still_returned(vectordb_live, vectordb_conn):
    queries = vectordb_live.user_vectors[:3]
    plain = vs.nearest_items(vectordb_conn, queries, 10)
    exclude = [[h.product_code for h in plain[0][:5]], [], [plain[2][0].product_code, "NOT-AN-ITEM"]]
    filtered = vs.nearest_items(vectordb_conn, queries, 10, exclude)
    for hits, excluded in zip(filtered, exclude, strict=True):
        assert len(hits) == 10 and not {h.product_code for h in hits} & set(excluded)
    assert filtered[1] == plain[1]
    assert [h.product_code for h in filtered[0][:5]] == [h.product_code for h in plain[0][5:]]


@pytest.fixture(scope="module")
def line_fan(vectordb_publisher):
    """A model whose customer 1 rated the 1,450 products of line 0 nearest to their taste (of 1,500):
    every neighbour an HNSW scan meets first is excluded, far more than ef_search or the old
    over-fetch cap (1,000) could step over."""
    rng = np.random.default_rng(5)
    lines, per_line, dim = 4, 1500, 16
    centres = rng.normal(size=(lines, dim)) * 3
    items = np.vstack([centres[i] + rng.normal(size=(per_line, dim)) for i in range(lines)]).astype(np.float32)
    codes = np.array([f"L{i // per_line}_{i % per_line:04d}" for i in range(len(items))])
    users = np.vstack([centres[0], centres[1], centres[2]]).astype(np.float32)
    normed = items / np.linalg.norm(items, axis=1, keepdims=True)
    similarity = normed @ (users[0] / np.linalg.norm(users[0]))
    line0 = np.arange(per_line)
    rated = codes[line0[np.argsort(-similarity[line0])][:1450]]
    version = vectordb_publisher.new_version()
    vectordb_publisher.publish(
        version,
        embeddings_csv(codes, items),
        embeddings_csv([1, 2, 3], users),
        dim,
        rated_csv=rated_items_csv([1] * len(rated), rated),
    )
    eligible = np.array([c not in set(rated) for c in codes])
    order = np.argsort(-similarity)
    return {
        "version": version,
        "query": users[0],
        "rated": set(rated),
        "exact": [str(c) for c in codes[order][eligible[order]]],
    }


def test_customer_who_rated_most_of_a_line_still_gets_exactly_k(vectordb_settings, vectordb_conn, line_fan):
    vectordb.load_embeddings(vectordb_settings, line_fan["version"])
    assert vs.rated_count(vectordb_conn, 1) == 1450
    for k in (1, 10, 100):
        [hits] = vs.nearest_items(vectordb_conn, [line_fan["query"]], k, exclude_rated_by=[1])
        codes = [h.product_code for h in hits]
        assert len(codes) == k and not set(codes) & line_fan["rated"]
        assert len(set(codes) & set(line_fan["exact"][:k])) >= 0.9 * k  # approximate, yet the true neighbours
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # the same query without the exclusion is all rated items: the filter is what removed them
    [plain] = vs.nearest_items(vectordb_conn, [line_fan["query"]], 10)
    assert {h.product_code for h in plain} <= line_fan["rated"]
    # another customer in the same batch has nothing excluded
    both = vs.nearest_items(vectordb_conn, [line_fan["query"], line_fan["query"]], 10, exclude_rated_by=[1, None])
    assert [h.product_code for h in both[1]] == [h.product_code for h in plain]


def test_a_scan_that_gives_up_is_answered_exactly(vectordb_settings, vectordb_conn, line_fan):
    """With a tiny max_scan_tuples the iterative scan stops short; the exact scan fills in k items."""
    vectordb.load_embeddings(vectordb_settings, line_fan["version"])
    [hits] = vs.nearest_items(
        vectordb_conn, [line_fan["query"]], 10, [["L0_0000"]], exclude_rated_by=[1], max_scan_tuples=50
    )
    assert [h.product_code for h in hits] == [c for c in line_fan["exact"] if c != "L0_0000"][:10]


def test_similar_items_excludes_itself(vectordb_live, vectordb_conn):
    codes = list(vectordb_live.item_ids[:20])
    got = vs.similar_items(vectordb_conn, codes + ["NOT-AN-ITEM"], 10, [[codes[1]]] + [[]] * 20)
    assert got[-1] == []
    for code, hits in zip(codes, got[:-1], strict=True):
        assert len(hits) == 10 and code not in {h.product_code for h in hits}
    assert codes[1] not in {h.product_code for h in got[0]}
    exact = vectordb_live.exact_top_k(vectordb_live.item_vectors[:20], 11)
    assert _recall([e[1:] for e in exact[1:]], got[1:20]) >= RECALL_TARGET


def test_batch_equals_one_query_at_a_time(vectordb_live, vectordb_conn):
    queries = vectordb_live.user_vectors[20:60]
    exclude = [list(vectordb_live.item_ids[i : i + 3]) for i in range(40)]
    batch = vs.nearest_items(vectordb_conn, queries, 10, exclude)
    single = [vs.nearest_items(vectordb_conn, [q], 10, [e])[0] for q, e in zip(queries, exclude, strict=True)]
    assert [[h.product_code for h in b] for b in batch] == [[h.product_code for h in s] for s in single]
    codes = list(vectordb_live.item_ids[100:120])
    assert vs.similar_items(vectordb_conn, codes, 5) == [vs.similar_items(vectordb_conn, [c], 5)[0] for c in codes]


def test_explain_uses_hnsw_index_per_lateral_query(vectordb_live, vectordb_conn):
    vectors = [vs.to_pgvector_text(v) for v in vectordb_live.user_vectors[:50]]
    with vectordb_conn.cursor() as cur:
        cur.execute(
            "EXPLAIN " + vs.NEAREST_ITEMS_SQL,
            {"vectors": vectors, "excluded": ['{"S00001"}'] * 50, "raters": [1000] * 50, "k": 13},
        )
        nearest_plan = "\n".join(r for (r,) in cur.fetchall())
        cur.execute(
            "EXPLAIN " + vs.SIMILAR_ITEMS_SQL,
            {"codes": list(vectordb_live.item_ids[:50]), "excluded": ["{}"] * 50, "raters": [1000] * 50, "k": 11},
        )
        similar_plan = "\n".join(r for (r,) in cur.fetchall())
        cur.execute("EXPLAIN " + vs.CUSTOMER_ITEMS_SQL, {"customers": [1000, 1001], "raters": [1000, None], "k": 10})
        customer_plan = "\n".join(r for (r,) in cur.fetchall())
    vectordb_conn.rollback()
    for plan in (nearest_plan, similar_plan, customer_plan):
        # the k-NN subquery (alias e) is an HNSW index scan per query; the anchor lookup may hash-join
        assert "Nested Loop" in plan and "Index Scan using item_emb_embedding_hnsw on item_emb e" in plan, plan
        assert "Seq Scan on item_emb e " not in plan and "Anti Join" in plan, plan  # rated items: an anti join


def test_scan_settings_are_set_per_transaction(vectordb_live, vectordb_conn):
    vs.nearest_items(vectordb_conn, vectordb_live.user_vectors[:1], 10, ef_search=77)
    with vectordb_conn.cursor() as cur:
        cur.execute("SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')")
        assert cur.fetchone() == ("77", "relaxed_order")
        vectordb_conn.commit()
        cur.execute("SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')")
        assert cur.fetchone() == ("40", "off")  # pgvector's defaults again after the transaction
    vs.nearest_items(vectordb_conn, vectordb_live.user_vectors[:1], 200, [list(vectordb_live.item_ids[:500])])
    with vectordb_conn.cursor() as cur:
        cur.execute("SHOW hnsw.ef_search")
        assert cur.fetchone()[0] == "200"  # at least k; exclusions are left to the iterative scan
    vectordb_conn.rollback()


# ---- ef_search per version, memory sized from the index -------------------------------------------


def _calibration(conn) -> list[tuple[int, float, float]]:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM recsys_ef_search_recall('item_emb', 'user_emb', %s)", (EF_SEARCH_RECALL_TARGET,))
        rows = cur.fetchall()
    conn.rollback()
    return rows


def test_loader_stores_the_measured_ef_search_with_the_version(vectordb_live, vectordb_conn):
    """live_model.ef_search is the first candidate whose recall reaches the target with 95% confidence,
    and that recall is what exact search in numpy says for the same 200 customers."""
    stored = vs.live_model(vectordb_conn).ef_search
    rows = _calibration(vectordb_conn)
    assert rows[-1][0] == stored
    assert all(recall - 1.645 * se < EF_SEARCH_RECALL_TARGET for _, recall, se in rows[:-1])
    assert rows[-1][1] - 1.645 * rows[-1][2] >= EF_SEARCH_RECALL_TARGET
    sample = sorted(
        range(len(vectordb_live.user_ids)),
        key=lambda i: hashlib.md5(str(vectordb_live.user_ids[i]).encode()).hexdigest(),
    )[:200]
    queries = vectordb_live.user_vectors[sample]
    got = vs.nearest_items(vectordb_conn, queries, 10, ef_search=stored)
    vectordb_conn.rollback()
    assert _recall(vectordb_live.exact_top_k(queries, 10), got) == pytest.approx(rows[-1][1], abs=1e-9)


@pytest.fixture
def stored_ef_search(vectordb_live, vectordb_conn):
    """Sets the live version's ef_search to 77 (not a value any code uses by default); restores it after."""
    with vectordb_conn.cursor() as cur:
        cur.execute("SELECT ef_search FROM live_model")
        measured = cur.fetchone()[0]
        cur.execute("UPDATE live_model SET ef_search = 77")
    vectordb_conn.commit()
    yield 77
    with vectordb_conn.cursor() as cur:
        cur.execute("UPDATE live_model SET ef_search = %s", (measured,))
    vectordb_conn.commit()


def _ef_search_in_transaction(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('hnsw.ef_search')")
        setting = cur.fetchone()[0]
    conn.rollback()
    return setting


def test_readers_run_with_the_live_versions_ef_search(vectordb_live, vectordb_conn, stored_ef_search):
    """Every reader path (the Lambda's and the API's customer lookup, nearest and similar items) sets
    hnsw.ef_search from live_model for its own transaction; an explicit value and k still win."""
    customer = int(vectordb_live.user_ids[0])
    calls = {
        "known_customer_items": lambda: known_customer_items(vectordb_conn, customer, 10),
        "nearest_items": lambda: vs.nearest_items(vectordb_conn, vectordb_live.user_vectors[:2], 10),
        "similar_items": lambda: vs.similar_items(vectordb_conn, [vectordb_live.item_ids[0]], 10),
    }
    for name, call in calls.items():
        call()
        assert _ef_search_in_transaction(vectordb_conn) == str(stored_ef_search), name
    assert _ef_search_in_transaction(vectordb_conn) == "40"  # pgvector's default outside those transactions
    vs.nearest_items(vectordb_conn, vectordb_live.user_vectors[:1], 10, ef_search=23)
    assert _ef_search_in_transaction(vectordb_conn) == "23"
    vs.nearest_items(vectordb_conn, vectordb_live.user_vectors[:1], 150)
    assert _ef_search_in_transaction(vectordb_conn) == "150"


def test_a_database_loaded_by_an_older_release_is_still_served(vectordb_live, vectordb_conn):
    """live_model without the ef_search column (it is added at the next load): readers use the default."""
    with vectordb_conn.cursor() as cur:
        cur.execute("ALTER TABLE live_model DROP COLUMN ef_search")  # undone by the rollback below
    assert vs.live_model(vectordb_conn).ef_search is None
    vs.nearest_items(vectordb_conn, vectordb_live.user_vectors[:1], 10)
    assert _ef_search_in_transaction(vectordb_conn) == str(vs.DEFAULT_EF_SEARCH)  # rolls back: the column is back
    assert vs.live_model(vectordb_conn).ef_search is not None


def test_ef_search_can_be_told_and_is_checked(vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn):
    model = vectordb_publisher.synthetic(items=300, users=40, dim=8, seed=11)
    result = vectordb.load_embeddings(vectordb_settings, model.version, ef_search=55)
    assert (result.ef_search, result.ef_search_curve) == (55, ())
    assert vs.live_model(vectordb_conn).ef_search == 55
    with pytest.raises(PipelineError, match=re.escape("ef_search must be 1..1000")):
        vectordb.load_embeddings(vectordb_settings, model.version, ef_search=0)


def test_load_sizes_server_memory_from_the_index(vectordb_settings, vectordb_live, vectordb_conn):
    """The loader writes memory sized from the live indexes with ALTER SYSTEM, and the embedded server
    takes shared_buffers from its configuration files (a command-line value would override it)."""
    with vectordb_conn.cursor() as cur:
        cur.execute(vectordb.INDEX_SIZES_SQL)
        total, largest = (int(v) for v in cur.fetchone())
    vectordb_conn.rollback()
    assert vectordb_settings.pg_memory == "apply" and vectordb_settings.pg_server_ram_mb > 0  # the stack's
    wanted = vectordb.memory_settings(total, largest, vectordb_settings.pg_server_ram_mb * vectordb.MB)
    memory, note = vectordb.size_server_memory(vectordb_conn, vectordb_settings)
    assert memory == wanted and "server memory set to shared_buffers=" in note
    with vectordb_conn.cursor() as cur:
        cur.execute(
            "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf' AND error IS NULL"
        )
        assert dict(cur.fetchall()) == wanted.server_settings()
        cur.execute("SELECT source FROM pg_settings WHERE name = 'shared_buffers'")
        assert cur.fetchone()[0] == "configuration file"
    vectordb_conn.rollback()


def test_memory_is_only_reported_when_configured_so_whatever_the_host(vectordb_settings, vectordb_live, vectordb_conn):
    """RECSYS_PG_MEMORY=report (RDS: the parameter group holds memory) leaves a loopback server's
    configuration alone: configuration decides, not where the server runs."""
    with vectordb_conn.cursor() as cur:
        cur.execute("SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'")
        before = sorted(cur.fetchall())
    vectordb_conn.rollback()
    reporting = vectordb_settings.replace(RECSYS_PG_MEMORY="report", RECSYS_PG_SERVER_RAM_MB="0")
    assert reporting.pg_host == "127.0.0.1"
    memory, note = vectordb.size_server_memory(vectordb_conn, reporting)
    assert note.endswith(
        f"size the server's parameters to at least shared_buffers={memory.shared_buffers}MB, "
        f"effective_cache_size={memory.effective_cache_size}MB, "
        f"maintenance_work_mem={memory.maintenance_work_mem}MB"
    )
    with vectordb_conn.cursor() as cur:
        cur.execute("SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'")
        assert sorted(cur.fetchall()) == before
    vectordb_conn.rollback()


def test_query_errors_are_clear(vectordb_live, vectordb_conn):
    with pytest.raises(vs.VectorStoreError, match="query dimension 31: different vector dimensions"):
        vs.nearest_items(vectordb_conn, [np.ones(31)], 10)
    with pytest.raises(vs.VectorStoreError, match="all zeros"):
        vs.nearest_items(vectordb_conn, [np.zeros(32)], 10)
    with pytest.raises(vs.VectorStoreError, match="k must be"):
        vs.nearest_items(vectordb_conn, [np.ones(32)], 0)
    with pytest.raises(vs.VectorStoreError, match="one collection of product codes per query"):
        vs.nearest_items(vectordb_conn, [np.ones(32)], 5, [["a"], ["b"]])
    assert vs.nearest_items(vectordb_conn, [np.ones(32)], 5)[0]  # the connection is still usable


# ---- atomic reload --------------------------------------------------------------------------------


def test_reader_sees_one_complete_version_during_reloads(vectordb_settings, vectordb_publisher, vectordb_live):
    """A reader polling while versions switch back and forth only ever sees a complete version."""
    from recsys.core.db import connect_pg

    other = vectordb_publisher.synthetic(items=6000, users=350, dim=16, seed=11, item_prefix="T")
    expected = {vectordb_live.version: (5000, 300, "S"), other.version: (6000, 350, "T")}
    seen, problems, stop = [], [], threading.Event()
    user_probe = int(vectordb_live.user_ids[0])

    def poll() -> None:
        conn = connect_pg(vectordb_settings)
        try:
            while not stop.is_set():
                with vs.consistent_read(conn), conn.cursor() as cur:
                    version = vs.live_version(conn)
                    cur.execute("SELECT count(*), min(id) FROM item_emb")
                    items, first_item = cur.fetchone()
                    cur.execute("SELECT count(*) FROM user_emb")
                    users = cur.fetchone()[0]
                    [user] = vs.user_vectors(conn, [user_probe]).values()
                    [[hit]] = vs.nearest_items(conn, [user], 1)
                observed = (items, users, first_item[0])
                if (
                    expected.get(version) != observed
                    or len(user) != (32 if version == vectordb_live.version else 16)
                    or hit.product_code[0] != observed[2]
                ):
                    problems.append((version, observed, len(user), hit))
                seen.append(version)
        except Exception as exc:  # a failing reader must fail the test, not vanish with its thread
            problems.append(repr(exc))
        finally:
            conn.close()

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        time.sleep(0.2)
        for version in (other.version, vectordb_live.version, other.version, vectordb_live.version):
            assert vectordb.load_embeddings(vectordb_settings, version).switched
    finally:
        time.sleep(0.2)
        stop.set()
        reader.join(timeout=60)
    assert not problems, problems[:5]
    assert set(seen) == set(expected) and len(seen) > 20
    switches = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert switches >= 2


def test_new_version_keeps_old_one_served_until_the_switch(
    vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn, monkeypatch
):
    """While the new version's index builds, readers still get the old version in full."""
    other = vectordb_publisher.synthetic(items=800, users=40, dim=8, seed=5, item_prefix="N")
    observed = []
    real_build = vectordb.build_index

    def build_and_look(conn, model, table, params):
        with vectordb_conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM item_emb")
            observed.append((vs.live_version(vectordb_conn), cur.fetchone()[0]))
        vectordb_conn.rollback()
        return real_build(conn, model, table, params)

    monkeypatch.setattr(vectordb.load, "build_index", build_and_look)  # where the load calls it
    result = vectordb.load_embeddings(vectordb_settings, other.version)
    assert result.switched and result.previous == vectordb_live.version
    assert observed == [(vectordb_live.version, 5000)] * 2
    assert vs.live_version(vectordb_conn) == other.version


# ---- bad input ------------------------------------------------------------------------------------


def _good_users(dim: int) -> bytes:
    return embeddings_csv(range(100, 110), np.ones((10, dim)))


BAD_ITEM_FILES = {
    "wrong dimension": (
        'S1,"[1,2,3,4]"\nS2,"[1,2,3]"\n',
        r"item_embeddings.csv line 3 \(embedding\): expected 4 dimensions, not 3",
    ),
    "non-numeric": (
        'S1,"[1,2,3,4]"\nS2,"[1,2,x,4]"\n',
        r"item_embeddings.csv line 3 \(embedding\): invalid input syntax for type vector",
    ),
    "duplicate id": (
        'S1,"[1,2,3,4]"\nS1,"[1,2,3,5]"\n',
        r"item_embeddings.csv line 3: duplicate key value .*Key \(id\)=\(S1\) already exists",
    ),
    "bad header": ('S1,"[1,2,3,4]"\n', r"item_embeddings.csv line 1: column name mismatch in header line field 1"),
    "missing column": ("S1\n", r"item_embeddings.csv line 2: missing data for column \"embedding\""),
    "empty": ("", r"item_embeddings.csv has no rows: refusing an empty model"),
}


@pytest.mark.parametrize("case", list(BAD_ITEM_FILES))
def test_bad_item_csv_is_refused_and_live_version_untouched(
    case, vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn
):
    body, message = BAD_ITEM_FILES[case]
    header = "identifier,embedding\n" if case == "bad header" else "id,embedding\n"
    version = vectordb_publisher.new_version()
    vectordb_publisher.publish(version, (header + body).encode(), _good_users(4), 4)
    with pytest.raises(PipelineError, match=f"model version {version}: {message}"):
        vectordb.load_embeddings(vectordb_settings, version)
    assert vs.live_version(vectordb_conn) == vectordb_live.version
    assert not [t for t in _tables(vectordb_conn) if re.match(r"(item|user)_emb_", t)]


def test_bad_user_id_names_file_and_line(vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn):
    version = vectordb_publisher.new_version()
    users = b'id,embedding\n100,"[1,2]"\n101,"[1,2]"\nabc,"[1,2]"\n'
    vectordb_publisher.publish(version, embeddings_csv(["S1", "S2"], np.ones((2, 2))), users, 2)
    with pytest.raises(
        PipelineError,
        match=rf"model version {version}: user_embeddings.csv line 4 \(id\): "
        r"invalid input syntax for type integer: \"abc\"",
    ):
        vectordb.load_embeddings(vectordb_settings, version)
    assert vs.live_version(vectordb_conn) == vectordb_live.version


def test_manifest_dimension_must_match_the_files(vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn):
    version = vectordb_publisher.new_version()
    vectordb_publisher.publish(version, embeddings_csv(["S1"], np.ones((1, 8))), _good_users(8), 6)
    with pytest.raises(
        PipelineError, match=rf"{version}: item_embeddings.csv line 2 \(embedding\): expected 6 dimensions, not 8"
    ):
        vectordb.load_embeddings(vectordb_settings, version)
    assert vs.live_version(vectordb_conn) == vectordb_live.version


def test_checksum_mismatch_is_refused(vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn):
    version = vectordb_publisher.new_version()
    items = embeddings_csv(["S1", "S2"], np.ones((2, 4)))
    vectordb_publisher.publish(
        version, items, _good_users(4), 4, manifest_extra={"files": {"item_embeddings.csv": {"sha256": "0" * 64}}}
    )
    with pytest.raises(PipelineError, match=f"{version}: item_embeddings.csv does not match the sha256"):
        vectordb.load_embeddings(vectordb_settings, version)
    assert vs.live_version(vectordb_conn) == vectordb_live.version


@pytest.mark.parametrize(
    "version,files,message",
    [
        (
            "20990101T000000Z-deadbeef",
            None,
            "model version 20990101T000000Z-deadbeef not found: s3://.*/manifest.json does not exist",
        ),
        (None, "no user csv", "is incomplete: s3://.*/user_embeddings.csv does not exist"),
        (None, "no dim", "manifest.json has no valid embedding_dim"),
        ("../etc", None, "invalid model version '../etc'"),
    ],
)
def test_missing_or_incomplete_version_is_refused(
    version, files, message, vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn
):
    if files:
        version = vectordb_publisher.new_version()
        items = embeddings_csv(["S1"], np.ones((1, 4)))
        if files == "no user csv":
            vectordb_publisher.publish(version, items, None, 4)
        else:
            vectordb_publisher.publish(version, items, _good_users(4), None)
    with pytest.raises(PipelineError, match=message):
        vectordb.load_embeddings(vectordb_settings, version)
    assert vs.live_version(vectordb_conn) == vectordb_live.version


# ---- the pointer and the CLI ----------------------------------------------------------------------


def test_default_version_is_the_serving_pointer(vectordb_settings, vectordb_publisher, vectordb_live, vectordb_conn):
    vectordb_publisher.s3.delete_object(Bucket=vectordb_publisher.bucket, Key="models/serving.json")
    with pytest.raises(PipelineError, match=r"serving pointer|serving\.json"):
        vectordb.load_embeddings(vectordb_settings)
    other = vectordb_publisher.synthetic(items=300, users=30, dim=8, seed=2)
    vectordb_publisher.point_to(other.version)
    assert vectordb.load_embeddings(vectordb_settings).version == other.version
    assert vs.live_version(vectordb_conn) == other.version


@pytest.fixture
def vectordb_cli_env(vectordb_settings, monkeypatch):
    """The process environment pointed at the test database and bucket (what the CLI reads)."""
    monkeypatch.setenv("PGDATABASE", vectordb_settings.pg_database)
    monkeypatch.setenv("RECSYS_ARTIFACTS_BUCKET", vectordb_settings.artifacts_bucket)
    return vectordb_settings


def test_recommend_cli_prints_named_items_from_the_live_model(seeded, vectordb_cli_env, vectordb_publisher):
    """A model over the seeded source's real ids: the CLI names products and skips the rated ones the
    version lists (served from pgvector's user_rated, not looked up in MySQL)."""
    from recsys.core.db import connect_mysql

    with connect_mysql(vectordb_cli_env) as conn, conn.cursor() as cur:
        cur.execute("SELECT productCode, productName FROM products ORDER BY productCode")
        products = dict(cur.fetchall())
        cur.execute("SELECT customerNumber FROM customers ORDER BY customerNumber")
        customers = [c for (c,) in cur.fetchall()]
        cur.execute("SELECT customerNumber, productCode FROM ratings")
        rated: dict[int, set[str]] = {}
        for customer, code in cur.fetchall():
            rated.setdefault(customer, set()).add(code)
    rng = np.random.default_rng(4)
    version = vectordb_publisher.new_version()
    item_vectors, user_vectors = rng.normal(size=(len(products), 8)), rng.normal(size=(len(customers), 8))
    pairs = [(c, code) for c, codes in rated.items() for code in sorted(codes)]
    vectordb_publisher.publish(
        version,
        embeddings_csv(list(products), item_vectors),
        embeddings_csv(customers, user_vectors),
        8,
        rated_csv=rated_items_csv(*zip(*pairs, strict=True)),
    )  # what the trainer publishes
    runner = CliRunner()
    loaded = runner.invoke(batch.load_embeddings_command, ["--version", version], catch_exceptions=False)
    assert loaded.exit_code == 0 and f"version {version} is live" in loaded.output

    # the most active customer who still has 5 products left to recommend
    customer = max((c for c in rated if len(rated[c]) <= len(products) - 5), key=lambda c: len(rated[c]))
    shown = runner.invoke(apps.recommend_command, ["--customer", str(customer), "--k", "5"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert (
        f"customer {customer} · model {version} · top 5 ({len(rated[customer])} already-rated items excluded)"
        == lines[0]
    )
    rows = [re.match(r"\s*(\d+)\s+(\S+)\s+([-\d.]+)\s+(.+)$", line).groups() for line in lines[2:]]
    assert len(rows) == 5 and all(products[code] == name for _, code, _, name in rows)
    assert not {code for _, code, _, _ in rows} & rated[customer]
    scores = [float(score) for _, _, score, _ in rows]
    assert scores == sorted(scores, reverse=True)
    unrated = [i for i, code in enumerate(products) if code not in rated[customer]]
    query = user_vectors[customers.index(customer)]
    cosine = item_vectors[unrated] @ query / np.linalg.norm(item_vectors[unrated], axis=1) / np.linalg.norm(query)
    assert scores[0] == pytest.approx(float(cosine.max()), abs=1e-4)


def test_cli_errors_are_one_line(vectordb_cli_env, vectordb_live, repo_root):
    """Through the real entry point: a refused load prints `error: ...` and exits 1."""
    import os

    env = {**os.environ, "PGDATABASE": vectordb_cli_env.pg_database}
    done = subprocess.run(
        [str(repo_root / ".venv" / "bin" / "recsys"), "load-embeddings", "--version", "20990101T000000Z-00000000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        (
            f"error: model version 20990101T000000Z-00000000 not found: s3://{vectordb_cli_env.artifacts_bucket}"
            "/models/20990101T000000Z-00000000/manifest.json does not exist"
        )
    ]
    unknown = subprocess.run(
        [str(repo_root / ".venv" / "bin" / "recsys"), "recommend", "--customer", "7", "--include-rated"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 1 and re.fullmatch(
        r"error: customer 7 has no embedding in model version \S+\n", unknown.stderr
    )


def test_consistent_read_refuses_autocommit(vectordb_conn):
    vectordb_conn.autocommit = True
    with pytest.raises(vs.VectorStoreError, match="autocommit off"), vs.consistent_read(vectordb_conn):
        pass
