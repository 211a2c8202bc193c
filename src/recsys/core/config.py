"""All configuration in one place: typed settings, validated once.

Every setting is an environment variable with a local default. Precedence: the process
environment, then the running local stack's ``stack.env`` (written by ``recsys stack up``), then
the defaults below. ``load_settings`` parses each value to its type and checks its range; a bad
value is a ``ConfigError`` naming the variable, the value and what is allowed. Entry points (the
CLI, the LocalStack init hook) call ``load_settings`` once and pass the ``Settings`` down; nothing
else reads ``os.environ`` for settings.

Standard library only (python-dotenv is imported when a ``stack.env`` exists), so the emulator
init hook can load settings where only boto3 is installed.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from recsys import contracts
from recsys.core.errors import ConfigError

# The checkout the package is installed from (editable): glue/, lambda/ and sql/ are read from it.
PROJECT_ROOT = Path(__file__).resolve().parents[3]

# -- parsers: text -> typed value; ValueError("what is allowed") when the text does not fit ---------


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"an integer {low}..{high}")
        return value
    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"a number {low:g}..{high:g}")
        return value
    return parse


def _matching(pattern: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(what)
        return text
    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError("one of " + ", ".join(allowed))
        return text
    return parse


def _any_text(text: str) -> str:
    return text


def _path(text: str) -> Path:
    if not text.strip() or "\x00" in text:
        raise ValueError("a file system path")
    return Path(text).expanduser().resolve()


def _optional_executable(text: str) -> Path | None:
    """Empty means "find one"; else an absolute path, symlinks kept (a venv's python is one)."""
    if not text.strip():
        return None
    if "\x00" in text:
        raise ValueError("a path to an executable, or empty")
    return Path(os.path.abspath(Path(text).expanduser()))


def _optional_path(text: str) -> Path | None:
    """Empty means "the default location" (chosen by the code that reads it); else a path."""
    return _path(text) if text else None


def _endpoint_url(text: str) -> str | None:
    """Empty means real AWS (boto3 resolves the service endpoint); else an http(s) URL."""
    if not text:
        return None
    parts = urlsplit(text)
    try:
        port_ok = parts.port is None or 1 <= parts.port <= 65535
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError("an http(s) URL such as http://127.0.0.1:4566, or empty for AWS")
    return text.rstrip("/")


def _http_url(text: str) -> str:
    """A required http(s) URL (a service of ours)."""
    url = _endpoint_url(text)
    if url is None:
        raise ValueError("an http(s) URL such as http://127.0.0.1:8000")
    return url


def _java_options(text: str) -> str:
    """Space-separated JVM options, each starting with -X or -D (empty: none)."""
    if any(not option.startswith(("-X", "-D")) for option in text.split()):
        raise ValueError("space-separated JVM options such as -XX:TieredStopAtLevel=1 (each -X... or -D...)")
    return " ".join(text.split())


# A short local job on few cores: C2 compiles only the per-row code that runs >= 200k times (the
# rest stays C1), which costs 1M ratings what C1 alone costs and halves the per-row time beyond
# (benchmarks/bench_etl.py; docs/etl.md "Start-up").
DEFAULT_SPARK_JAVA_OPTIONS = ("-XX:Tier4InvocationThreshold=200000 -XX:Tier4MinInvocationThreshold=20000 "
                              "-XX:Tier4CompileThreshold=600000 -XX:Tier4BackEdgeThreshold=1600000")

_PORT = _integer(1, 65535)
_HOST = _matching(r"[A-Za-z0-9._:\[\]-]{1,253}", "a host name or IP address")
_BUCKET = _matching(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name (3-63 of a-z 0-9 . -)")
_STREAM = _matching(r"[A-Za-z0-9_.-]{1,64}", "a stream name (1-64 of A-Z a-z 0-9 _ . -)")
_FUNCTION = _matching(r"[A-Za-z0-9_-]{1,64}", "a Lambda function name (1-64 of A-Z a-z 0-9 _ -)")
_REGION = _matching(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", "an AWS region such as us-east-1")
_DB_USER = _matching(r"[^\x00]{1,63}", "a user name of 1-63 characters")
_MYSQL_DATABASE = _matching(r"[A-Za-z0-9_$]{1,64}", "a database name of 1-64 of A-Z a-z 0-9 _ $")
_PG_DATABASE = _matching(r"[^\x00]{1,63}", "a database name of 1-63 characters")


@dataclass(frozen=True)
class Setting:
    """One environment variable: the ``Settings`` field it fills, its default text and its parser."""

    env: str
    field: str
    default: str
    description: str
    parse: Callable[[str], object]
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("RECSYS_STATE_DIR", "state_dir", ".recsys",
            "Local stack state: PIDs, ports, embedded PostgreSQL data, logs", _path),
    Setting("RECSYS_EMULATOR", "emulator", "moto",
            "AWS API emulator the embedded stack runs: moto (server) | localstack (community, on the host)",
            _choice("moto", "localstack")),
    Setting("RECSYS_LOCALSTACK_VENV", "localstack_venv", "",
            "LocalStack's Python 3.13 venv (`make install`); empty: .venv-localstack in the checkout",
            _optional_path),
    Setting("AWS_ENDPOINT_URL", "endpoint_url", "",
            "AWS API endpoint; empty means real AWS, the stack sets its emulator", _endpoint_url),
    Setting("AWS_DEFAULT_REGION", "region", "us-east-1", "AWS region", _REGION),
    Setting("AWS_ACCESS_KEY_ID", "aws_access_key_id", "",
            "Empty: boto3's default credential chain; the local stack sets dummy ones", _any_text, secret=True),
    Setting("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "",
            "Empty: boto3's default credential chain; the local stack sets dummy ones", _any_text, secret=True),
    Setting("RECSYS_DATALAKE_BUCKET", "datalake_bucket", "recsys-datalake", "S3 bucket for the training set", _BUCKET),
    Setting(contracts.ENV_ARTIFACTS_BUCKET, "artifacts_bucket", contracts.DEFAULT_ARTIFACTS_BUCKET,
            "S3 bucket for model artifacts", _BUCKET),
    Setting("RECSYS_RECOMMENDATIONS_BUCKET", "recommendations_bucket", "recsys-recommendations",
            "S3 bucket Firehose delivers to", _BUCKET),
    Setting("RECSYS_SCRIPTS_BUCKET", "scripts_bucket", "recsys-scripts",
            "S3 bucket for the Glue script and Lambda zip", _BUCKET),
    Setting("RECSYS_KINESIS_STREAM", "kinesis_stream", "recsys-activity-events", "Kinesis stream of activity events",
            _STREAM),
    Setting("RECSYS_FIREHOSE_STREAM", "firehose_stream", "recsys-recommendations-delivery",
            "Firehose delivery stream", _STREAM),
    Setting("RECSYS_LAMBDA_FUNCTION", "lambda_function", "recsys-model-inference",
            "Firehose transformation Lambda", _FUNCTION),
    Setting("MYSQL_HOST", "mysql_host", "127.0.0.1", "MySQL source host", _HOST),
    Setting("MYSQL_PORT", "mysql_port", "3306", "MySQL source port", _PORT),
    Setting("MYSQL_USER", "mysql_user", "root", "MySQL source user", _DB_USER),
    Setting("MYSQL_PASSWORD", "mysql_password", "", "MySQL source password", _any_text, secret=True),
    Setting("MYSQL_DATABASE", "mysql_database", "classicmodels", "MySQL source database", _MYSQL_DATABASE),
    Setting("PGHOST", "pg_host", "127.0.0.1", "PostgreSQL + pgvector host", _HOST),
    Setting("PGPORT", "pg_port", "5433", "PostgreSQL + pgvector port (the stack picks a free one)", _PORT),
    Setting("PGUSER", "pg_user", "postgres", "PostgreSQL user", _DB_USER),
    Setting("PGPASSWORD", "pg_password", "", "PostgreSQL password", _any_text, secret=True),
    Setting("PGDATABASE", "pg_database", "postgres", f"PostgreSQL database holding {contracts.ITEM_TABLE}/{contracts.USER_TABLE}", _PG_DATABASE),
    Setting("RECSYS_LOAD_LOCK_TIMEOUT_SECONDS", "load_lock_timeout_seconds", "300",
            "load-embeddings: how long to wait for another load's lock before failing, 0-86400 (0: do not wait)",
            _integer(0, 86_400)),
    Setting(contracts.ENV_DB_SECRET_ARN, "db_secret_arn", "",
            "Lambda: Secrets Manager secret with the database credentials (AWS); empty: the PG* settings", _any_text),
    Setting("RECSYS_BUFFER_SECONDS", "buffer_seconds", "1",
            "Firehose buffering interval (S3 and Lambda processor), 0-900", _integer(0, 900)),
    Setting("RECSYS_LAMBDA_ZIP", "lambda_zip", "build/lambda.zip", "Deployment zip of the transformation Lambda",
            _path),
    Setting("RECSYS_LAMBDA_INVOKE", "lambda_invoke", "runtime",
            "How local delivery runs the Lambda: runtime (zip under awslambdaric) | api", _choice("runtime", "api")),
    Setting("RECSYS_LAMBDA_PYTHON", "lambda_python", "",
            f"Python {contracts.LAMBDA_RUNTIME.removeprefix('python')} (with awslambdaric, boto3) that runs the zip "
            "locally; empty: .venv-lambda, python3.x on PATH, pyenv", _optional_executable),
    Setting("RECSYS_LAMBDA_CONCURRENCY", "lambda_concurrency", "2",
            "Local delivery: Lambda invocations in flight at once per delivery stream, 1-16", _integer(1, 16)),
    Setting("RECSYS_API_URL", "api_url", "http://127.0.0.1:8000",
            "The recommendations API: where `recsys api` listens and what `recsys web` calls", _http_url),
    Setting(contracts.ENV_API_MAX_BODY_BYTES, "api_max_body_bytes", str(contracts.DEFAULT_API_MAX_BODY_BYTES),
            "The recommendations API: largest request body read (larger: 413), "
            f"1024-{contracts.MAX_API_MAX_BODY_BYTES}", _integer(1024, contracts.MAX_API_MAX_BODY_BYTES)),
    Setting(contracts.ENV_POINTER_TTL_SECONDS, "pointer_ttl_seconds", f"{contracts.DEFAULT_POINTER_TTL_SECONDS:g}",
            "Lambda: how often it re-reads the serving-model pointer", _number(0, 86_400)),
    Setting(contracts.ENV_TOP_K, "top_k", str(contracts.DEFAULT_TOP_K),
            "Lambda: recommended and similar items per event", _integer(1, contracts.MAX_TOP_K)),
    Setting("RECSYS_SPARK_JAVA_OPTIONS", "spark_java_options", DEFAULT_SPARK_JAVA_OPTIONS,
            "Local ETL: JVM options of the Spark driver (JIT tuned for a short job on few cores)", _java_options),
    Setting("RECSYS_SPARK_CDS", "spark_cds", "on",
            "Local ETL: on = a class-data sharing archive of Spark's classes (made by the first run, "
            "under build/spark-cds/) starts the JVM faster; off = none", _choice("on", "off")),
)
_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """A resolved, typed snapshot of every setting (``SETTINGS`` names the variable behind each field)."""

    state_dir: Path
    emulator: str
    localstack_venv: Path | None
    endpoint_url: str | None
    region: str
    aws_access_key_id: str
    aws_secret_access_key: str
    datalake_bucket: str
    artifacts_bucket: str
    recommendations_bucket: str
    scripts_bucket: str
    kinesis_stream: str
    firehose_stream: str
    lambda_function: str
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str
    mysql_database: str
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_database: str
    load_lock_timeout_seconds: int
    db_secret_arn: str
    buffer_seconds: int
    lambda_zip: Path
    lambda_invoke: str
    lambda_python: Path | None
    lambda_concurrency: int
    api_url: str
    api_max_body_bytes: int
    pointer_ttl_seconds: float
    top_k: int
    spark_java_options: str
    spark_cds: str

    def __repr__(self) -> str:
        shown = {s.field: ("***" if s.secret and getattr(self, s.field) else getattr(self, s.field)) for s in SETTINGS}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def mysql_params(self, database: str | None = None) -> dict:
        """Keyword arguments for ``pymysql.connect``; ``database=""`` selects none."""
        params = {"host": self.mysql_host, "port": self.mysql_port, "user": self.mysql_user,
                  "password": self.mysql_password}
        chosen = self.mysql_database if database is None else database
        return params | ({"database": chosen} if chosen else {})

    @property
    def mysql_jdbc_url(self) -> str:
        # jdbc:mysql:// with the MariaDB driver; jdbc:mariadb:// makes Spark quote with " (docs/architecture.md).
        return f"jdbc:mysql://{self.mysql_host}:{self.mysql_port}/{self.mysql_database}"

    def pg_params(self) -> dict:
        """Keyword arguments for ``psycopg2.connect``."""
        params = {"host": self.pg_host, "port": self.pg_port, "user": self.pg_user, "dbname": self.pg_database}
        return params | ({"password": self.pg_password} if self.pg_password else {})

    def as_env(self) -> dict[str, str]:
        """Every setting as environment variables, for subprocesses and ``stack.env``."""
        return {s.env: _as_text(getattr(self, s.field)) for s in SETTINGS}

    def replace(self, **changes: str) -> Settings:
        """A copy with some variables (by environment name) changed, validated like ``load_settings``."""
        return load_settings({**self.as_env(), **changes})


def _as_text(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def stack_env_file(state_dir: str | os.PathLike) -> Path:
    """Where a running local stack writes the settings that point clients at it."""
    return Path(state_dir) / "stack.env"


def read_stack_env(state_dir: str | os.PathLike) -> dict[str, str]:
    """The running local stack's settings from its ``stack.env``; empty when no stack runs."""
    stack_file = stack_env_file(state_dir)
    if not stack_file.exists():
        return {}
    from dotenv import dotenv_values  # only needed once a stack runs; the init hook has boto3 alone

    return {k: v or "" for k, v in dotenv_values(stack_file).items()}


def parse_setting(env: str, text: str) -> object:
    """One variable's typed value; ``ConfigError`` naming the variable, the value and the range."""
    setting = _BY_ENV[env]
    try:
        return setting.parse(text)
    except ValueError as exc:
        shown = "(hidden)" if setting.secret else repr(text)
        raise ConfigError(f"invalid setting {env}={shown}: expected {exc}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings: ``environ`` (default: the process environment), then the running stack's
    ``stack.env``, then the defaults; each value parsed and checked once."""
    env = dict(os.environ if environ is None else environ)
    if "AWS_DEFAULT_REGION" not in env and env.get("AWS_REGION"):
        env["AWS_DEFAULT_REGION"] = env["AWS_REGION"]
    from_stack = read_stack_env(env.get("RECSYS_STATE_DIR") or _BY_ENV["RECSYS_STATE_DIR"].default)
    values = {}
    for setting in SETTINGS:
        text = env[setting.env] if setting.env in env else from_stack.get(setting.env, setting.default)
        values[setting.field] = parse_setting(setting.env, text)
    return Settings(**values)



def changed_settings(before: Settings, after: Settings) -> set[str]:
    """The environment names whose values differ between two resolutions."""
    old, new = before.as_env(), after.as_env()
    return {name for name in old if old[name] != new[name]}


class StackEnvWatcher:
    """Notices when the running stack's ``stack.env`` changes (PostgreSQL restarted on another port,
    say) and resolves the settings again, for long-running processes.

    A variable the process environment holds with the value the stack file had when watching began
    was inherited from the stack (``eval "$(recsys stack env)"``, or a parent that passed its
    settings down) and follows the file; a variable set to anything else stays as set.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = dict(os.environ if environ is None else environ)
        self._path = stack_env_file(self._environ.get("RECSYS_STATE_DIR") or _BY_ENV["RECSYS_STATE_DIR"].default)
        self._signature = self._stat()
        self._values = read_stack_env(self._path.parent)
        # the state dir is where the stack file is found: it never follows the file
        self._inherited = {k for k, v in self._values.items() if self._environ.get(k) == v} - {"RECSYS_STATE_DIR"}

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def poll(self) -> Settings | None:
        """The settings resolved afresh when the file's contents changed since the last poll, else None
        (also while no stack file exists: a stack that is down has no new settings to offer)."""
        signature = self._stat()
        if signature == self._signature:
            return None
        self._signature = signature
        values = read_stack_env(self._path.parent)
        if not values or values == self._values:
            return None
        self._values = values
        return load_settings({k: v for k, v in self._environ.items() if k not in self._inherited})
