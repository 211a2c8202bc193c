"""Foundation: configuration, the AWS client factory, the embedded stack and its CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys import aws
from recsys.config import SETTINGS, load_settings
from recsys.resources import S3_ERROR_PREFIX, S3_PREFIX, delivery_stream_definition, resource_names

REPO = Path(__file__).resolve().parents[1]
RECSYS = [str(Path(sys.executable).with_name("recsys"))]


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(RECSYS + list(args), capture_output=True, text=True, env=env or os.environ.copy(),
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"recsys {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_settings_precedence_env_over_stack_file_over_defaults(tmp_path):
    (tmp_path / "stack.env").write_text("PGPORT=6000\nAWS_ENDPOINT_URL=http://127.0.0.1:1234\n")
    env = {"RECSYS_STATE_DIR": str(tmp_path), "PGPORT": "7000"}
    s = load_settings(env)
    assert s.pgport == "7000"  # environment wins
    assert s.endpoint_url == "http://127.0.0.1:1234"  # then the running stack's file
    assert s.mysql_database == SETTINGS["MYSQL_DATABASE"][0]  # then the default
    assert load_settings({"RECSYS_STATE_DIR": str(tmp_path / "none")}).endpoint_url is None  # real AWS


def test_aws_region_alias_and_client_factory_honours_endpoint(tmp_path):
    s = load_settings({"RECSYS_STATE_DIR": str(tmp_path), "AWS_REGION": "eu-west-3",
                       "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k",
                       "AWS_SECRET_ACCESS_KEY": "s"})
    c = aws.client("s3", s)
    assert c.meta.region_name == "eu-west-3"
    assert c.meta.endpoint_url == "http://127.0.0.1:9"


def test_env_example_documents_every_setting():
    documented = {line.split("=", 1)[0].lstrip("# ").strip()
                  for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    assert set(SETTINGS) <= documented, f"undocumented: {set(SETTINGS) - documented}"


def test_delivery_stream_definition_rejects_bad_buffer_and_names_prefixes():
    names = resource_names(load_settings({"RECSYS_STATE_DIR": "/nonexistent"}), "123456789012")
    with pytest.raises(ValueError, match="RECSYS_BUFFER_SECONDS"):
        delivery_stream_definition(names, 901)
    d = delivery_stream_definition(names, 1)["ExtendedS3DestinationConfiguration"]
    assert (d["Prefix"], d["ErrorOutputPrefix"]) == (S3_PREFIX, S3_ERROR_PREFIX)
    assert d["ProcessingConfiguration"]["Processors"][0]["Parameters"][0]["ParameterValue"].endswith(
        ":function:recsys-model-inference")


def test_stack_creates_every_resource(stack):
    s3 = aws.client("s3", stack)
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(stack.buckets.values()) <= existing
    shards = aws.client("kinesis", stack).describe_stream(StreamName=stack.recsys_kinesis_stream)
    assert shards["StreamDescription"]["StreamStatus"] == "ACTIVE"
    desc = aws.client("firehose", stack).describe_delivery_stream(
        DeliveryStreamName=stack.recsys_firehose_stream)["DeliveryStreamDescription"]
    source = desc["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"]
    assert source.endswith(f":stream/{stack.recsys_kinesis_stream}")
    dest = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert dest["BucketARN"].endswith(stack.recsys_recommendations_bucket)
    assert dest["ProcessingConfiguration"]["Enabled"] is True


def test_stack_has_pgvector(stack):
    from recsys.db import connect_pg

    with connect_pg(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cur.fetchone()
        cur.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector")
        assert cur.fetchone()[0] == pytest.approx(1.0)
    conn.close()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)


def test_stack_cli_lifecycle_keeps_postgres_data(tmp_path, stack):
    """up → env → status → down → status → up again: data under the state dir survives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    env["RECSYS_STATE_DIR"] = str(tmp_path / "cli-stack")
    run_cli("stack", "up", env=env)
    try:
        exports = run_cli("stack", "env", env=env).stdout
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in exports
        values = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
        status = run_cli("stack", "status", env=env).stdout
        assert "moto       up" in status and "postgres   up" in status
        pg_env = {**env, **values}
        psql = [str(Path(sys.executable).parent / "python"), "-c",
                "from recsys.db import connect_pg; c = connect_pg(); c.autocommit = True; "
                "cur = c.cursor(); cur.execute('CREATE TABLE IF NOT EXISTS kept (x int)'); "
                "cur.execute('INSERT INTO kept VALUES (1)')"]
        subprocess.run(psql, env=pg_env, check=True, timeout=60)
    finally:
        down = run_cli("stack", "down", env=env).stdout
    assert "moto" in down and "postgres" in down
    after = run_cli("stack", "status", env=env, check=False)
    assert after.returncode == 1 and "moto       down" in after.stdout
    assert run_cli("stack", "env", env=env, check=False).returncode != 0  # nothing to point at
    run_cli("stack", "up", env=env)
    try:
        values = dict(line.removeprefix("export ").split("=", 1)
                      for line in run_cli("stack", "env", env=env).stdout.splitlines())
        from recsys.db import connect_pg

        conn = connect_pg(load_settings({**env, **values}))
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM kept")
            assert cur.fetchone()[0] == 1
        conn.close()
    finally:
        run_cli("stack", "down", env=env)


def test_stack_up_names_an_unreachable_mysql(tmp_path):
    env = {**os.environ, "RECSYS_STATE_DIR": str(tmp_path), "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = run_cli("stack", "up", env=env, check=False)
    assert proc.returncode == 1
    assert "MySQL source not reachable at 127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "stack.json").exists()  # nothing was started


def test_help_lists_every_stage():
    out = run_cli("--help").stdout
    for name in ("stack", "seed", "etl", "train", "load-embeddings", "replay", "firehose", "demo", "web"):
        assert name in out


def test_make_help_lists_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for target in ("up", "seed", "run-etl", "train", "load-embeddings", "lambda-zip", "replay", "demo", "test"):
        assert f" {target} " in out.replace("\x1b[36m", " ").replace("\x1b[0m", " ")


def test_every_module_imports_and_every_stage_command_resolves():
    """The smoke test: every module loads, and each CLI name points at a real click command."""
    import importlib
    import pkgutil

    import click

    import inference
    import recsys
    import recsys_seed
    from recsys.cli import STAGE_COMMANDS

    for package in (recsys, recsys_seed, inference):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    for name, (target, _) in STAGE_COMMANDS.items():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), click.Command), name


@pytest.mark.parametrize("args, names", [
    (["train"], "no AWS endpoint and no AWS credentials"),
    (["recommend", "--customer", "103"], "PostgreSQL not reachable at 127.0.0.1:1 "),
])
def test_stage_without_a_stack_says_so_in_one_line(tmp_path, args, names):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    env.update(RECSYS_STATE_DIR=str(tmp_path), PGPORT="1", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
               AWS_CONFIG_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true")
    proc = run_cli(*args, env=env, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and names in last and "recsys stack up" in last
    assert "Traceback" not in proc.stderr
