"""Typed settings: precedence, parsing, one-line errors naming the variable, value and range."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from recsys.core import aws
from recsys.core.config import SETTINGS, Settings, StackEnvWatcher, changed_settings, load_settings
from recsys.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_every_settings_field_has_one_variable_and_back():
    assert {s.field for s in SETTINGS} == {f.name for f in dataclasses.fields(Settings)}
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_each_fields_type_is_what_its_parser_returns():
    """A setting is declared once, on its field: the annotation and the parser must agree."""
    hints = typing.get_type_hints(Settings)
    for setting in SETTINGS:
        assert isinstance(setting.parse(setting.default), hints[setting.field]), setting.env
    assert SETTINGS[0].env == "RECSYS_STATE_DIR" and SETTINGS[-1].env == "RECSYS_SPARK_CDS"  # declaration order


def test_defaults_are_typed(tmp_path):
    s = load_settings({"RECSYS_STATE_DIR": str(tmp_path)})
    assert (s.mysql_port, s.pg_port, s.buffer_seconds, s.top_k) == (3306, 5433, 1, 10)
    assert s.pointer_ttl_seconds == 60.0 and s.endpoint_url is None
    assert s.state_dir == tmp_path.resolve() and s.lambda_zip.is_absolute()


def test_precedence_env_over_stack_file_over_defaults(tmp_path):
    (tmp_path / "stack.env").write_text("PGPORT=6000\nAWS_ENDPOINT_URL=http://127.0.0.1:1234\n")
    s = load_settings({"RECSYS_STATE_DIR": str(tmp_path), "PGPORT": "7000"})
    assert s.pg_port == 7000  # environment wins
    assert s.endpoint_url == "http://127.0.0.1:1234"  # then the running stack's file
    assert s.mysql_database == "classicmodels"  # then the default
    assert load_settings({"RECSYS_STATE_DIR": str(tmp_path / "none")}).endpoint_url is None  # real AWS
    # an empty variable in the environment means "real AWS", even with a stack file
    assert load_settings({"RECSYS_STATE_DIR": str(tmp_path), "AWS_ENDPOINT_URL": ""}).endpoint_url is None


def test_aws_region_alias_and_client_factory_honours_endpoint(tmp_path):
    s = load_settings(
        {
            "RECSYS_STATE_DIR": str(tmp_path),
            "AWS_REGION": "eu-west-3",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
        }
    )
    c = aws.client("s3", s)
    assert c.meta.region_name == "eu-west-3"
    assert c.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("RECSYS_TOP_K", "0", "RECSYS_TOP_K='0': expected an integer 1..100"),
        ("RECSYS_TOP_K", "abc", "RECSYS_TOP_K='abc': expected an integer 1..100"),
        ("MYSQL_PORT", "abc", "MYSQL_PORT='abc': expected an integer 1..65535"),
        ("PGPORT", "70000", "PGPORT='70000': expected an integer 1..65535"),
        ("RECSYS_BUFFER_SECONDS", "901", "RECSYS_BUFFER_SECONDS='901': expected an integer 0..900"),
        (
            "RECSYS_LOAD_LOCK_TIMEOUT_SECONDS",
            "-1",
            "RECSYS_LOAD_LOCK_TIMEOUT_SECONDS='-1': expected an integer 0..86400",
        ),
        ("RECSYS_POINTER_TTL_SECONDS", "nan", "RECSYS_POINTER_TTL_SECONDS='nan': expected a number 0..86400"),
        ("AWS_ENDPOINT_URL", "not-a-url", "AWS_ENDPOINT_URL='not-a-url': expected an http(s) URL"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:99999", "expected an http(s) URL"),
        ("RECSYS_LAMBDA_INVOKE", "docker", "RECSYS_LAMBDA_INVOKE='docker': expected one of runtime, api"),
        ("RECSYS_API_URL", "", "RECSYS_API_URL='': expected an http(s) URL such as http://127.0.0.1:8000"),
        ("MYSQL_DATABASE", "a`; DROP DATABASE x; --", "expected a database name"),
        ("RECSYS_ARTIFACTS_BUCKET", "Not_A_Bucket", "expected an S3 bucket name"),
        ("AWS_DEFAULT_REGION", "mars", "expected an AWS region"),
    ],
)
def test_bad_values_are_one_line_naming_variable_value_and_range(tmp_path, name, value, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings({"RECSYS_STATE_DIR": str(tmp_path), name: value})
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_secrets_never_appear_in_repr_or_errors(tmp_path):
    s = load_settings({"RECSYS_STATE_DIR": str(tmp_path), "PGPASSWORD": "hunter2", "MYSQL_PASSWORD": "pw9"})
    assert "hunter2" not in repr(s) and "pw9" not in repr(s)
    assert s.pg_params()["password"] == "hunter2"


def test_replace_validates_like_loading(tmp_path):
    s = load_settings({"RECSYS_STATE_DIR": str(tmp_path)})
    assert s.replace(PGPORT="6543").pg_port == 6543
    with pytest.raises(ConfigError, match="PGPORT"):
        s.replace(PGPORT="-1")


def test_as_env_round_trips(tmp_path):
    s = load_settings({"RECSYS_STATE_DIR": str(tmp_path), "RECSYS_POINTER_TTL_SECONDS": "2.5"})
    assert load_settings(s.as_env()) == s


def test_env_example_documents_every_setting():
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line
    }
    names = {s.env for s in SETTINGS}
    assert names <= documented, f"undocumented: {names - documented}"


def test_stack_env_watcher_follows_the_stack_for_inherited_settings_only(tmp_path):
    """A long-running process sees PostgreSQL move: inherited variables follow stack.env, explicit ones stay."""
    stack_file = tmp_path / "stack.env"
    stack_file.write_text(
        f"RECSYS_STATE_DIR={tmp_path}\nPGPORT=6000\nPGHOST=127.0.0.1\nPGUSER=postgres\n"
        "AWS_ENDPOINT_URL=http://127.0.0.1:1234\n"
    )
    environ = {
        "RECSYS_STATE_DIR": str(tmp_path),
        "PGPORT": "6000",
        "PGHOST": "127.0.0.1",  # inherited
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9999",
    }  # set on purpose: another endpoint
    watcher = StackEnvWatcher(environ)
    assert watcher.poll() is None  # nothing changed
    stack_file.write_text(
        f"RECSYS_STATE_DIR={tmp_path}\nPGPORT=6001\nPGHOST=127.0.0.1\nPGUSER=postgres\n"
        "AWS_ENDPOINT_URL=http://127.0.0.1:1235\n"
    )
    moved = watcher.poll()
    assert moved is not None and moved.pg_port == 6001 and moved.state_dir == tmp_path.resolve()
    assert moved.endpoint_url == "http://127.0.0.1:9999"  # the explicit setting stays
    assert changed_settings(load_settings(environ), moved) == {"PGPORT"}
    assert watcher.poll() is None  # reported once
    stack_file.unlink()
    assert watcher.poll() is None  # stack down: nothing new to follow
    stack_file.write_text("PGPORT=6002\nPGHOST=127.0.0.1\nAWS_ENDPOINT_URL=http://127.0.0.1:1235\n")
    assert watcher.poll().pg_port == 6002  # and back up on yet another port
