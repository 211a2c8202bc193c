"""The CLI without services: every module loads, every command resolves, mistakes are one line."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

import recsys
import recsys_seed
from recsys.cli import STAGE_COMMANDS
from recsys.core.config import load_settings
from recsys.local.aws_resources import S3_ERROR_PREFIX, S3_PREFIX, delivery_stream_definition, resource_names

REPO = Path(__file__).resolve().parents[2]
RECSYS = str(Path(sys.executable).with_name("recsys"))


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([RECSYS, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def offline_env(tmp_path, **extra: str) -> dict[str, str]:
    """An environment pointing at nothing: no stack, no MySQL, no AWS credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "MYSQL_", "RECSYS_"))}
    env.update(
        {
            "RECSYS_STATE_DIR": str(tmp_path),
            "MYSQL_PORT": "1",
            "PGPORT": "1",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }
    )
    return env


def test_every_module_imports_and_every_stage_command_resolves():
    """The smoke test: every module loads, and each CLI name points at a real click command."""
    for package in (recsys, recsys_seed):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    for name, (target, _) in STAGE_COMMANDS.items():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), click.Command), name


def test_help_lists_every_stage():
    out = run_cli("--help").stdout
    for name in STAGE_COMMANDS:
        assert name in out


def test_make_help_lists_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for target in ("up", "seed", "run-etl", "train", "load-embeddings", "lambda-zip", "replay", "demo", "test"):
        assert f" {target} " in out.replace("\x1b[36m", " ").replace("\x1b[0m", " ")


def test_delivery_stream_definition_names_prefixes_and_the_lambda():
    names = resource_names(load_settings({"RECSYS_STATE_DIR": "/nonexistent"}), "123456789012")
    d = delivery_stream_definition(names, 1)["ExtendedS3DestinationConfiguration"]
    assert (d["Prefix"], d["ErrorOutputPrefix"]) == (S3_PREFIX, S3_ERROR_PREFIX)
    assert d["ProcessingConfiguration"]["Processors"][0]["Parameters"][0]["ParameterValue"].endswith(
        ":function:recsys-model-inference"
    )


def test_stack_up_names_an_unreachable_mysql(tmp_path):
    proc = run_cli("stack", "up", env=offline_env(tmp_path))
    assert proc.returncode == 1
    assert "MySQL source not reachable at 127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "stack.json").exists()  # nothing was started


def test_stage_without_a_stack_says_so_in_one_line(tmp_path):
    proc = run_cli("train", env=offline_env(tmp_path))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no AWS endpoint and no AWS credentials" in last
    assert "recsys stack up" in last and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [["train"], ["replay"], ["stack", "up"], ["firehose"]])
def test_a_bad_setting_stops_every_command_with_one_line(tmp_path, command):
    proc = run_cli(*command, env=offline_env(tmp_path, RECSYS_TOP_K="abc"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: invalid setting RECSYS_TOP_K='abc': expected an integer 1..100"


@pytest.mark.parametrize(
    "command, name, value",
    [
        (["stack", "up"], "RECSYS_BUFFER_SECONDS", "901"),
        (["seed"], "MYSQL_PORT", "abc"),
        (["replay"], "AWS_ENDPOINT_URL", "not-a-url"),
        (["firehose"], "RECSYS_LAMBDA_CONCURRENCY", "0"),
    ],
)
def test_each_kind_of_bad_setting_is_one_line_at_the_command_that_reads_it(tmp_path, command, name, value):
    proc = run_cli(*command, env=offline_env(tmp_path, **{name: value}))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: invalid setting {name}={value!r}: expected ")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, option, shown",
    [
        (["recommend", "--customer", "99999999999999"], "--customer", "99999999999999"),
        (["recommend", "--customer", "0"], "--customer", "0"),
        (["replay", "--rate", "nan"], "--rate", "nan"),
        (["replay", "--rate", "inf"], "--rate", "inf"),
        (["replay", "--rate", "1e-9"], "--rate", "1e-09"),
        (["replay", "--events", "0"], "--events", "0"),
        (["replay", "--new-customers", "1.5"], "--new-customers", "1.5"),
        (["replay", "--seed", "-1"], "--seed", "-1"),
        (["firehose", "--poll-interval", "-1"], "--poll-interval", "-1"),
        (["firehose", "--poll-interval", "nan"], "--poll-interval", "nan"),
        (["firehose", "--timeout", "0"], "--timeout", "0"),
        (["firehose", "--max-batches", "0"], "--max-batches", "0"),
        (["firehose", "--concurrency", "17"], "--concurrency", "17"),
        (["demo", "--rate", "nan"], "--rate", "nan"),
        (["train", "--alpha", "nan"], "--alpha", "nan"),
    ],
)
def test_numeric_options_are_range_checked_before_any_work(tmp_path, monkeypatch, args, option, shown):
    """Refused by the option's range, naming option, value and range: no traceback, no busy loop, no wait."""
    from click.testing import CliRunner

    from recsys.cli import cli

    for key, value in offline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"'{option}'" in errors[0] and shown in errors[0], result.output
    assert "range" in errors[0]
