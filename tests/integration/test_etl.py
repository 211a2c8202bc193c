"""The Glue ETL job on the seeded MariaDB source, local PySpark and the stack's moto S3: schema and
contents against the SQL join, partition layout, rerun idempotency, failures that publish nothing,
data-quality rules, the reader, and the CLI."""

from __future__ import annotations

import dataclasses
import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.core.aws import client
from recsys.core.errors import PipelineError
from recsys.pipeline.dataset import TRAINING_PREFIX, read_manifest, read_training_set
from recsys.pipeline.etl import run_etl

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # a SparkSession; not in `make test-fast`

CONTRACT = [
    "customerNumber",
    "city",
    "state",
    "postalCode",
    "country",
    "creditLimit",
    "productCode",
    "productLine",
    "productScale",
    "quantityInStock",
    "buyPrice",
    "MSRP",
    "productRating",
]
SQL_JOIN = (
    "SELECT r.customerNumber, c.city, c.state, c.postalCode, c.country, c.creditLimit, r.productCode, "
    "p.productLine, p.productScale, p.quantityInStock, p.buyPrice, p.MSRP, r.productRating "
    "FROM ratings r JOIN customers c ON c.customerNumber = r.customerNumber "
    "JOIN products p ON p.productCode = r.productCode"
)
ORPHAN_CUSTOMER = 1_999_999_999  # no such customer in the seeded source


# -- helpers ------------------------------------------------------------------------------------
def source_rows(settings, sql: str = SQL_JOIN, params: tuple = ()) -> list[tuple]:
    from recsys.core.db import connect_mysql

    conn = connect_mysql(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def sorted_rows(table: pa.Table) -> list[tuple]:
    rows = [tuple(row[name] for name in CONTRACT) for row in table.to_pylist()]
    return sorted(rows, key=lambda row: (row[0], row[6]))


def snapshot_ids(settings) -> list[str]:
    root = TRAINING_PREFIX + "snapshots/"
    pages = (
        client("s3", settings)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=settings.datalake_bucket, Prefix=root, Delimiter="/")
    )
    return sorted(p["Prefix"][len(root) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", []))


def keys_under(settings, prefix: str) -> list[str]:
    pages = (
        client("s3", settings).get_paginator("list_objects_v2").paginate(Bucket=settings.datalake_bucket, Prefix=prefix)
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def assert_unchanged(settings, before_manifest: dict, before_rows: list[tuple]) -> None:
    """The previous publication is still the current one, complete and readable."""
    assert read_manifest(settings) == before_manifest
    assert snapshot_ids(settings) == [before_manifest["run_id"]]
    assert sorted_rows(read_training_set(settings)) == before_rows


# -- job arguments (no Spark work) --------------------------------------------------------------
def test_bad_options_are_refused_before_any_work(stack, etl_spark):
    with pytest.raises(PipelineError, match="'nope' is not a training-set column"):
        run_etl(stack, partition_key="nope")
    with pytest.raises(PipelineError, match="unknown ETL option"):
        run_etl(stack, partition_kee="productLine")


def test_read_manifest_names_the_missing_location(stack):
    elsewhere = dataclasses.replace(stack, datalake_bucket="recsys-no-such-lake")
    with pytest.raises(
        PipelineError,
        match=r"no published training set at s3://recsys-no-such-lake/"
        r"ratings_ml_training/_manifest.json",
    ):
        read_manifest(elsewhere)


# -- a published run ----------------------------------------------------------------------------
def test_schema_is_the_13_column_contract_with_source_types(stack, etl_published):
    assert [c["name"] for c in etl_published["columns"]] == CONTRACT
    types = {c["name"]: c["type"] for c in etl_published["columns"]}
    assert types["creditLimit"] == types["buyPrice"] == types["MSRP"] == "decimal(10,2)"
    assert (types["customerNumber"], types["quantityInStock"], types["productRating"]) == ("int", "smallint", "tinyint")

    table = read_training_set(stack)
    assert table.column_names == CONTRACT
    assert table.schema.field("creditLimit").type == pa.decimal128(10, 2)
    assert table.schema.field("customerNumber").type == pa.int32()
    assert table.schema.field("quantityInStock").type == pa.int16()
    assert table.schema.field("productRating").type == pa.int8()
    # the file itself stores decimals (not doubles) and leaves the partition column to the path
    first = etl_published["files"][0]["key"]
    body = client("s3", stack).get_object(Bucket=stack.datalake_bucket, Key=first)["Body"].read()
    stored = pq.read_schema(io.BytesIO(body))
    assert stored.field("MSRP").type == pa.decimal128(10, 2)
    assert "productLine" not in stored.names


def test_rows_equal_the_join_computed_in_sql(stack, etl_published):
    expected = sorted(source_rows(stack), key=lambda row: (row[0], row[6]))
    table = read_training_set(stack)
    assert table.num_rows == etl_published["row_count"] == len(expected) == 2500
    assert sorted_rows(table) == expected
    assert any(row[2] is None for row in expected), "the seeded source should have null states"
    assert isinstance(expected[0][5], Decimal)
    quality = etl_published["quality"]
    assert quality == {
        "ratings_in": 2500,
        "rows_out": 2500,
        "orphan_ratings": 0,
        "null_keys": 0,
        "ratings_out_of_range": 0,
        "customers_in": 122,
        "products_in": 110,
    }


def test_partition_layout_follows_the_contract(stack, etl_published):
    prefix = etl_published["snapshot_prefix"]
    assert prefix == f"ratings_ml_training/snapshots/{etl_published['run_id']}/"
    lines = {
        row[0]
        for row in source_rows(
            stack, "SELECT DISTINCT p.productLine FROM ratings r JOIN products p ON p.productCode = r.productCode"
        )
    }
    directories = set()
    for entry in etl_published["files"]:
        relative = entry["key"][len(prefix) :]
        directory, name = relative.split("/")
        assert entry["key"].startswith(prefix) and name.startswith("part-") and name.endswith(".snappy.parquet")
        directories.add(directory)
    assert directories == {f"productLine={line}" for line in lines}
    assert len(etl_published["files"]) == len(lines)  # one file per product line: bounded at any scale
    assert sum(f["rows"] for f in etl_published["files"]) == etl_published["row_count"]
    assert prefix + "_SUCCESS" in keys_under(stack, prefix)


def test_reader_reads_only_what_the_manifest_lists(stack, etl_published):
    """A stray file in the snapshot (e.g. left by a writer) is not read: readers follow the manifest."""
    s3, bucket = client("s3", stack), stack.datalake_bucket
    first = etl_published["files"][0]["key"]
    stray = first.rsplit("/", 1)[0] + "/part-99999-stray.snappy.parquet"
    s3.copy_object(Bucket=bucket, Key=stray, CopySource={"Bucket": bucket, "Key": first})
    try:
        assert read_training_set(stack).num_rows == etl_published["row_count"]
    finally:
        s3.delete_object(Bucket=bucket, Key=stray)


# -- reruns -------------------------------------------------------------------------------------
def test_rerun_replaces_the_dataset_without_duplicates(stack, etl_published):
    before = sorted_rows(read_training_set(stack))
    manifest = run_etl(stack)
    assert manifest["run_id"] > etl_published["run_id"]
    assert read_manifest(stack) == manifest
    assert snapshot_ids(stack) == [manifest["run_id"]]  # the older snapshot is gone
    assert keys_under(stack, etl_published["snapshot_prefix"]) == []
    after = read_training_set(stack)
    assert sorted_rows(after) == before
    pairs = {(c, p) for c, p in zip(after["customerNumber"].to_pylist(), after["productCode"].to_pylist(), strict=True)}
    assert len(pairs) == after.num_rows == 2500


def test_catalog_table_follows_the_published_snapshot(stack, etl_published):
    """With --catalog_database/--catalog_table the job points a Glue Data Catalog table (moto's
    real catalog API here) at each published snapshot: location, columns, one partition per value."""
    glue = client("glue", stack)
    glue.create_database(DatabaseInput={"Name": "recsys_catalog"})
    seen = []
    for _ in range(2):  # the second run must replace the partitions, not add to them
        manifest = run_etl(stack, catalog_database="recsys_catalog", catalog_table="ratings_ml_training")
        table = glue.get_table(DatabaseName="recsys_catalog", Name="ratings_ml_training")["Table"]
        assert table["StorageDescriptor"]["Location"] == f"s3://{stack.datalake_bucket}/{manifest['snapshot_prefix']}"
        assert [c["Name"] for c in table["PartitionKeys"]] == ["productLine"]
        assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == [c for c in CONTRACT if c != "productLine"]
        assert table["Parameters"]["recsys_run_id"] == manifest["run_id"]
        partitions = glue.get_partitions(DatabaseName="recsys_catalog", TableName="ratings_ml_training")
        locations = {p["Values"][0]: p["StorageDescriptor"]["Location"] for p in partitions["Partitions"]}
        lines = {f["key"].split("/")[-2].split("=", 1)[1].replace("%20", " ") for f in manifest["files"]}
        assert set(locations) == lines and len(locations) == 7
        assert all(loc.startswith(table["StorageDescriptor"]["Location"]) for loc in locations.values())
        seen.append(manifest["run_id"])
    assert seen[0] != seen[1]


def test_catalog_arguments_go_together(stack, etl_published):
    with pytest.raises(PipelineError, match="--catalog_database and --catalog_table go together"):
        run_etl(stack, catalog_table="only_the_table")


def test_lab_layout_partitions_by_customer(stack, etl_published):
    expected = sorted(source_rows(stack), key=lambda row: (row[0], row[6]))
    manifest = run_etl(stack, partition_key="customerNumber")
    customers = {row[0] for row in expected}
    directories = {f["key"].split("/")[-2] for f in manifest["files"]}
    assert directories == {f"customerNumber={c}" for c in customers}
    table = read_training_set(stack)
    assert table.column_names == CONTRACT and table.schema.field("customerNumber").type == pa.int32()
    assert sorted_rows(table) == expected
    assert snapshot_ids(stack) == [manifest["run_id"]]


def test_sort_merge_join_and_split_reads_give_the_same_rows(stack, etl_published):
    """Large-source settings (no broadcast, several JDBC range reads per table, small files) at lab scale."""
    expected = sorted(source_rows(stack), key=lambda row: (row[0], row[6]))
    manifest = run_etl(
        stack, broadcast_max_rows=0, rows_per_read_partition=500, num_partitions=3, max_records_per_file=200
    )
    assert sorted_rows(read_training_set(stack)) == expected
    assert manifest["quality"]["customers_in"] == 122 and manifest["quality"]["products_in"] == 110
    assert max(f["rows"] for f in manifest["files"]) <= 200
    assert len(manifest["files"]) >= 2500 // 200


def test_one_bounds_query_gives_each_tables_size_and_key_range(stack, etl_published, etl_job, etl_spark):
    """The sizes and key ranges that cut the JDBC range reads come from one query for all tables;
    they must be exactly the source's, or a range read would miss (or repeat) rows at the edges."""
    from recsys.pipeline.etl import MARIADB_JDBC_DRIVER

    options = {
        "url": stack.mysql_jdbc_url,
        "driver": MARIADB_JDBC_DRIVER,
        "user": stack.mysql_user,
        "password": stack.mysql_password,
        "fetchsize": "1000",
    }
    bounds = etl_job.read_bounds(
        etl_spark, options, {"ratings": "customerNumber", "customers": "customerNumber", "products": None}
    )
    for table in ("ratings", "customers"):
        rows, low, high = source_rows(stack, f"SELECT COUNT(*), MIN(customerNumber), MAX(customerNumber) FROM {table}")[
            0
        ]
        assert bounds[table] == etl_job.TableBounds(rows, low, high)
        assert isinstance(bounds[table].low, int) and isinstance(bounds[table].high, int)
    assert bounds["products"] == etl_job.TableBounds(110)


def test_split_reads_at_the_key_range_edges_read_every_row_once(stack, etl_published):
    """Ratings of the lowest and highest customer (the range reads' edges) each arrive once, with
    range reads smaller than one customer's ratings."""
    low, high = source_rows(stack, "SELECT MIN(customerNumber), MAX(customerNumber) FROM ratings")[0]
    expected = sorted(source_rows(stack), key=lambda row: (row[0], row[6]))
    run_etl(stack, rows_per_read_partition=7, num_partitions=64, broadcast_max_rows=0)
    table = read_training_set(stack)
    assert sorted_rows(table) == expected
    numbers = table["customerNumber"].to_pylist()
    assert numbers.count(low) == sum(1 for row in expected if row[0] == low) > 0
    assert numbers.count(high) == sum(1 for row in expected if row[0] == high) > 0


# -- failures publish nothing -------------------------------------------------------------------
def test_wrong_password_changes_nothing_and_says_why(stack, etl_published):
    before = sorted_rows(read_training_set(stack))
    with pytest.raises(
        PipelineError, match=r"cannot query ratings, customers, products at jdbc:mysql://.*Access denied"
    ):
        run_etl(stack, source_password="not-the-password")
    assert_unchanged(stack, etl_published, before)


def test_out_of_range_rating_fails_the_quality_rule(stack, etl_published, etl_source_sql):
    before = sorted_rows(read_training_set(stack))
    customer, product, stars = source_rows(
        stack, "SELECT customerNumber, productCode, productRating FROM ratings ORDER BY 1, 2 LIMIT 1"
    )[0]
    where = "WHERE customerNumber = %s AND productCode = %s"
    with (
        etl_source_sql(
            [(f"UPDATE ratings SET productRating = 9 {where}", (customer, product))],
            [(f"UPDATE ratings SET productRating = %s {where}", (stars, customer, product))],
        ),
        pytest.raises(
            PipelineError,
            match=r"rating_in_range: 1 ratings outside 1\.\.5.*nothing published|"
            r"nothing published.*rating_in_range: 1 ratings outside 1\.\.5",
        ),
    ):
        run_etl(stack)
    assert_unchanged(stack, etl_published, before)  # and the failed run's own snapshot was removed


def test_orphan_ratings_are_dropped_counted_and_bounded(stack, etl_published, etl_source_sql):
    product = source_rows(stack, "SELECT productCode FROM products ORDER BY 1 LIMIT 1")[0][0]
    orphan = (ORPHAN_CUSTOMER, product)
    with etl_source_sql(
        [("INSERT INTO ratings VALUES (%s, %s, 5)", orphan)],
        [("DELETE FROM ratings WHERE customerNumber = %s AND productCode = %s", orphan)],
    ):
        before = sorted_rows(read_training_set(stack))
        with pytest.raises(PipelineError, match=r"max_orphan_ratio: 1 orphan ratings \(0\.0400% of 2501\)"):
            run_etl(stack, max_orphan_ratio=0)
        assert_unchanged(stack, etl_published, before)

        manifest = run_etl(stack)  # the default tolerates 0.1 %: dropped and reported
        assert manifest["quality"]["ratings_in"] == 2501
        assert manifest["quality"]["orphan_ratings"] == 1
        assert manifest["quality"]["rows_out"] == manifest["row_count"] == 2500
        assert ORPHAN_CUSTOMER not in read_training_set(stack)["customerNumber"].to_pylist()


def test_fault_between_upload_and_manifest_keeps_the_old_dataset(stack, etl_published, etl_job, monkeypatch):
    before = sorted_rows(read_training_set(stack))

    def lost_connection(*_args, **_kwargs):
        raise ConnectionError("injected: S3 unreachable before the manifest PUT")

    monkeypatch.setattr(etl_job, "publish_manifest", lost_connection)
    with pytest.raises(ConnectionError, match="injected"):
        run_etl(stack)
    assert_unchanged(stack, etl_published, before)  # the uploaded snapshot was discarded

    # A crash (no cleanup at all) leaves a partial snapshot that readers ignore, and the next run removes it.
    monkeypatch.setattr(etl_job, "discard_snapshot", lambda *_: None)
    with pytest.raises(ConnectionError):
        run_etl(stack)
    assert len(snapshot_ids(stack)) == 2
    assert read_manifest(stack) == etl_published
    assert sorted_rows(read_training_set(stack)) == before
    monkeypatch.undo()
    manifest = run_etl(stack)
    assert snapshot_ids(stack) == [manifest["run_id"]]


# -- command line -------------------------------------------------------------------------------
def test_recsys_etl_command(stack, etl_published):
    from click.testing import CliRunner

    from recsys.cli import cli

    result = CliRunner().invoke(cli, ["etl", "--partition-key", "productLine"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(stack)
    assert manifest["run_id"] != etl_published["run_id"]
    assert f"etl: published 2,500 rows (0 orphan ratings dropped) in {len(manifest['files'])} files" in result.output
    assert manifest["run_id"] in result.output

    refused = CliRunner().invoke(cli, ["etl", "--partition-key", "city", "--max-orphan-ratio", "2"])
    assert refused.exit_code == 2 and "max-orphan-ratio" in refused.output
