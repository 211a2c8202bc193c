"""The embedded stack and its CLI, against real services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.core import aws
from recsys.core.config import load_settings
from recsys.core.db import connect_pg

REPO = Path(__file__).resolve().parents[2]
RECSYS = [str(Path(sys.executable).with_name("recsys"))]


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        RECSYS + list(args), capture_output=True, text=True, env=env or os.environ.copy(), timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"recsys {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_stack_creates_every_resource(stack):
    s3 = aws.client("s3", stack)
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {
        stack.datalake_bucket,
        stack.artifacts_bucket,
        stack.recommendations_bucket,
        stack.scripts_bucket,
    } <= existing
    shards = aws.client("kinesis", stack).describe_stream(StreamName=stack.kinesis_stream)
    assert shards["StreamDescription"]["StreamStatus"] == "ACTIVE"
    desc = aws.client("firehose", stack).describe_delivery_stream(DeliveryStreamName=stack.firehose_stream)[
        "DeliveryStreamDescription"
    ]
    source = desc["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"]
    assert source.endswith(f":stream/{stack.kinesis_stream}")
    dest = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert dest["BucketARN"].endswith(stack.recommendations_bucket)
    assert dest["ProcessingConfiguration"]["Enabled"] is True


def test_stack_has_pgvector(stack):
    with connect_pg(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cur.fetchone()
        cur.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector")
        assert cur.fetchone()[0] == pytest.approx(1.0)
    conn.close()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)


@pytest.mark.slow  # a second stack, up, down and up again
def test_stack_cli_lifecycle_keeps_postgres_data(state_dir, stack):
    """up → env → status → down → status → up again: data under the state dir survives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    env["RECSYS_STATE_DIR"] = str(state_dir)
    run_cli("stack", "up", env=env)
    try:
        exports = run_cli("stack", "env", env=env).stdout
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in exports
        values = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
        status = run_cli("stack", "status", env=env).stdout
        assert "moto       up" in status and "postgres   up" in status
        pg_env = {**env, **values}
        psql = [
            str(Path(sys.executable).parent / "python"),
            "-c",
            (
                "from recsys.core.config import load_settings; from recsys.core.db import connect_pg; "
                "c = connect_pg(load_settings()); c.autocommit = True; "
                "cur = c.cursor(); cur.execute('CREATE TABLE IF NOT EXISTS kept (x int)'); "
                "cur.execute('INSERT INTO kept VALUES (1)')"
            ),
        ]
        subprocess.run(psql, env=pg_env, check=True, timeout=60)
    finally:
        down = run_cli("stack", "down", env=env).stdout
    assert "moto" in down and "postgres" in down
    after = run_cli("stack", "status", env=env, check=False)
    assert after.returncode == 1 and "moto       down" in after.stdout
    assert run_cli("stack", "env", env=env, check=False).returncode != 0  # nothing to point at
    run_cli("stack", "up", env=env)
    try:
        values = dict(
            line.removeprefix("export ").split("=", 1) for line in run_cli("stack", "env", env=env).stdout.splitlines()
        )
        conn = connect_pg(load_settings({**env, **values}))
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM kept")
            assert cur.fetchone()[0] == 1
        conn.close()
    finally:
        run_cli("stack", "down", env=env)


@pytest.mark.parametrize(
    "args, names",
    [
        (["recommend", "--customer", "103"], "PostgreSQL not reachable at 127.0.0.1:1 "),
    ],
)
def test_stage_without_a_stack_says_so_in_one_line(tmp_path, stack, args, names):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    env.update(
        RECSYS_STATE_DIR=str(tmp_path),
        PGPORT="1",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = run_cli(*args, env=env, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and names in last and "recsys stack up" in last
    assert "Traceback" not in proc.stderr
