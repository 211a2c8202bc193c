"""`recsys demo` at a small scale on a stack of its own, once per AWS emulator (moto, LocalStack): the
summary's numbers match what is in MySQL, S3 and pgvector, and the report is written."""

from __future__ import annotations

import json

import pytest
from tests.support.fixtures_stack import EMULATORS

from recsys.apps.demo import MALFORMED_EVENTS, run_demo
from recsys.apps.demo_report import summary_text, write_report
from recsys.core import aws
from recsys.core.config import load_settings
from recsys.core.db import connect_mysql, connect_pg
from recsys.local.stack import scratch_stack

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')

SCALE = {"customers": 150, "products": 60, "ratings": 3_000, "seed": 5, "events": 60, "rate": 120.0}


@pytest.fixture(scope="module", params=EMULATORS)
def demo(request, tmp_path_factory):
    """One demo run per emulator (`recsys demo --emulator moto|localstack`) on a stack of its own (own
    emulator, PostgreSQL and MySQL database), left up to inspect: the whole batch and streaming
    pipeline end to end against both."""
    reports = tmp_path_factory.mktemp("demo-reports")
    with scratch_stack("demo", RECSYS_EMULATOR=request.param) as settings:
        run = run_demo(settings, reset=True, keep_up=True, reports_dir=reports, **SCALE)
        yield run, load_settings(), reports


def _mysql_scalar(settings, sql):
    conn = connect_mysql(settings)
    with conn.cursor() as cur:
        cur.execute(sql)
        value = cur.fetchone()[0]
    conn.close()
    return value


def test_summary_matches_mysql(demo):
    run, settings, _ = demo
    assert run.figures["customers"] == _mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == SCALE["customers"]
    assert run.figures["training_rows"] == _mysql_scalar(settings, "SELECT COUNT(*) FROM ratings")


def test_summary_matches_s3(demo):
    run, settings, _ = demo
    s3 = aws.client("s3", settings)
    dataset = json.loads(
        s3.get_object(Bucket=settings.datalake_bucket, Key="ratings_ml_training/_manifest.json")["Body"].read()
    )
    assert dataset["row_count"] == run.figures["training_rows"]
    pointer = json.loads(s3.get_object(Bucket=settings.artifacts_bucket, Key="models/serving.json")["Body"].read())
    assert pointer["version"] == run.figures["model_version"]
    ok_lines = failed_lines = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.recommendations_bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.recommendations_bucket, Key=obj["Key"])["Body"].read()
            lines = len(body.splitlines())
            if obj["Key"].startswith("processing-failed/"):
                failed_lines += lines
            else:
                ok_lines += lines
    assert ok_lines == run.figures["delivered"] == run.figures["delivered_in_s3"]
    assert failed_lines == run.figures["failed"] == sum(run.failure_reasons.values())
    produced = SCALE["events"] + len(MALFORMED_EVENTS)
    assert run.figures["events_produced"] == produced
    assert run.figures["delivered"] + run.figures["dropped"] + run.figures["failed"] == produced
    assert run.figures["failed"] >= len(MALFORMED_EVENTS)
    assert len(run.freshness) == run.figures["delivered"] and max(run.freshness) < 30


def test_summary_matches_pgvector(demo):
    run, settings, _ = demo
    conn = connect_pg(settings)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM item_emb")
        items = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM user_emb")
        users = cur.fetchone()[0]
    conn.close()
    assert (items, users) == (run.figures["items_live"], run.figures["users_live"])
    assert items == SCALE["products"]


def test_model_beats_popularity_and_report_is_written(demo):
    run, _, reports = demo
    assert run.figures["ndcg_vs_popularity"] > 1.0
    page = write_report(run, reports / "demo")
    text = page.read_text()
    assert "Pipeline stages" in text and "data:image/png;base64," in text
    assert (reports / "demo" / "freshness.png").stat().st_size > 1000
    summary = summary_text(run)
    assert f"{run.figures['delivered']} delivered" in summary
    assert run.stages[0].name == "stack up" and len(run.stages) == 8  # 7 + the API (--keep-up)
    assert "Cold start" in text and "Strategies of the delivered records" in text
    assert (reports / "demo" / "cold-start.png").stat().st_size > 1000


def test_keep_up_leaves_the_api_answering_from_the_live_model(demo):
    """`recsys demo --keep-up`: the API runs in the background, recorded in the stack for `down`."""
    import httpx

    from recsys.local.stack import EmbeddedStack

    run, settings, _ = demo
    url = run.figures["api_url"]
    assert settings.api_url == url  # stack.env points clients (recsys web) at it
    with httpx.Client(base_url=url, timeout=30) as api:
        assert api.get("/health").json()["status"] == "ok"
        body = api.get("/customers/103/recommendations", params={"k": 5}).json()
    assert body["model_version"] == run.figures["model_version"] and len(body["items"]) == 5
    [status] = [s for s in EmbeddedStack(settings).status() if s.name == "api"]
    assert status.up and status.pid


def test_summary_and_report_show_the_model_cold_start_and_strategy_mix(demo):
    run, settings, reports = demo
    f = run.figures
    assert f["model"] in ("als", "hybrid") and f["model_choice"]
    assert f["cold_customers"] == round(0.1 * SCALE["customers"]) and f["cold_features_vs_popularity"] is not None
    # the strategy mix counts exactly the delivered records, read back from S3
    s3 = aws.client("s3", settings)
    counted: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.recommendations_bucket):
        for obj in page.get("Contents", []):
            if not obj["Key"].startswith("processing-failed/"):
                body = s3.get_object(Bucket=settings.recommendations_bucket, Key=obj["Key"])["Body"].read()
                for line in body.splitlines():
                    strategy = json.loads(line)["strategy"]
                    counted[strategy] = counted.get(strategy, 0) + 1
    assert run.strategies == counted and sum(counted.values()) == f["delivered"]
    assert "known_customer" in counted and set(counted) - {"known_customer"}  # and new customers
    summary = summary_text(run)
    for line in ("model ", "known customers", "cold start", "strategies"):
        assert f"  {line}" in summary
    assert f"known_customer {counted['known_customer']}" in summary
    page = write_report(run, reports / "demo").read_text()
    assert all(f"<td>{strategy}</td><td class=num>{n}</td>" in page for strategy, n in counted.items())
