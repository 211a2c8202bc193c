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

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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
DEFAULT_SPARK_JAVA_OPTIONS = (
    "-XX:Tier4InvocationThreshold=200000 -XX:Tier4MinInvocationThreshold=20000 "
    "-XX:Tier4CompileThreshold=600000 -XX:Tier4BackEdgeThreshold=1600000"
)

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


_SETTING = "recsys.setting"  # the field metadata key holding its Setting's parts


def setting(env: str, default: str, description: str, parse: Callable[[str], object], *, secret: bool = False) -> Any:
    """A ``Settings`` field filled from the environment variable ``env``: where each setting is declared."""
    return dataclasses.field(
        metadata={
            _SETTING: {"env": env, "default": default, "description": description, "parse": parse, "secret": secret}
        }
    )


@dataclass(frozen=True)
class Settings:
    """A resolved, typed snapshot of every setting, each field declared once with its variable, default
    text, description and parser (``SETTINGS`` lists them)."""

    state_dir: Path = setting(
        "RECSYS_STATE_DIR", ".recsys", "Local stack state: PIDs, ports, embedded PostgreSQL data, logs", _path
    )
    emulator: str = setting(
        "RECSYS_EMULATOR",
        "moto",
        "AWS API emulator the embedded stack runs: moto (server) | localstack (community, on the host)",
        _choice("moto", "localstack"),
    )
    localstack_venv: Path | None = setting(
        "RECSYS_LOCALSTACK_VENV",
        "",
        "LocalStack's Python 3.13 venv (`make install`); empty: .venv-localstack in the checkout",
        _optional_path,
    )
    endpoint_url: str | None = setting(
        "AWS_ENDPOINT_URL", "", "AWS API endpoint; empty means real AWS, the stack sets its emulator", _endpoint_url
    )
    region: str = setting("AWS_DEFAULT_REGION", "us-east-1", "AWS region", _REGION)
    aws_access_key_id: str = setting(
        "AWS_ACCESS_KEY_ID",
        "",
        "Empty: boto3's default credential chain; the local stack sets dummy ones",
        _any_text,
        secret=True,
    )
    aws_secret_access_key: str = setting(
        "AWS_SECRET_ACCESS_KEY",
        "",
        "Empty: boto3's default credential chain; the local stack sets dummy ones",
        _any_text,
        secret=True,
    )
    datalake_bucket: str = setting(
        "RECSYS_DATALAKE_BUCKET", "recsys-datalake", "S3 bucket for the training set", _BUCKET
    )
    artifacts_bucket: str = setting(
        contracts.ENV_ARTIFACTS_BUCKET, contracts.DEFAULT_ARTIFACTS_BUCKET, "S3 bucket for model artifacts", _BUCKET
    )
    recommendations_bucket: str = setting(
        "RECSYS_RECOMMENDATIONS_BUCKET", "recsys-recommendations", "S3 bucket Firehose delivers to", _BUCKET
    )
    scripts_bucket: str = setting(
        "RECSYS_SCRIPTS_BUCKET", "recsys-scripts", "S3 bucket for the Glue script and Lambda zip", _BUCKET
    )
    kinesis_stream: str = setting(
        "RECSYS_KINESIS_STREAM", "recsys-activity-events", "Kinesis stream of activity events", _STREAM
    )
    firehose_stream: str = setting(
        "RECSYS_FIREHOSE_STREAM", "recsys-recommendations-delivery", "Firehose delivery stream", _STREAM
    )
    lambda_function: str = setting(
        "RECSYS_LAMBDA_FUNCTION", "recsys-model-inference", "Firehose transformation Lambda", _FUNCTION
    )
    mysql_host: str = setting("MYSQL_HOST", "127.0.0.1", "MySQL source host", _HOST)
    mysql_port: int = setting("MYSQL_PORT", "3306", "MySQL source port", _PORT)
    mysql_user: str = setting("MYSQL_USER", "root", "MySQL source user", _DB_USER)
    mysql_password: str = setting("MYSQL_PASSWORD", "", "MySQL source password", _any_text, secret=True)
    mysql_database: str = setting("MYSQL_DATABASE", "classicmodels", "MySQL source database", _MYSQL_DATABASE)
    pg_host: str = setting("PGHOST", "127.0.0.1", "PostgreSQL + pgvector host", _HOST)
    pg_port: int = setting("PGPORT", "5433", "PostgreSQL + pgvector port (the stack picks a free one)", _PORT)
    pg_user: str = setting("PGUSER", "postgres", "PostgreSQL user", _DB_USER)
    pg_password: str = setting("PGPASSWORD", "", "PostgreSQL password", _any_text, secret=True)
    pg_database: str = setting(
        "PGDATABASE",
        "postgres",
        f"PostgreSQL database holding {contracts.ITEM_TABLE}/{contracts.USER_TABLE}",
        _PG_DATABASE,
    )
    pg_sslmode: str = setting(
        contracts.ENV_PG_SSLMODE,
        "prefer",
        f"PostgreSQL TLS (libpq sslmode); {contracts.AWS_PG_SSLMODE} with the RDS CA bundle on AWS",
        _choice("disable", "allow", "prefer", "require", "verify-ca", contracts.AWS_PG_SSLMODE),
    )
    pg_sslrootcert: Path | None = setting(
        contracts.ENV_PG_SSLROOTCERT,
        "",
        f"CA bundle that verifies the PostgreSQL server (on AWS: {contracts.RDS_CA_BUNDLE}); empty: libpq's default",
        _optional_path,
    )
    pg_memory: str = setting(
        "RECSYS_PG_MEMORY",
        "report",
        "load-embeddings: PostgreSQL memory sized from the HNSW indexes is applied (ALTER SYSTEM; the embedded "
        "stack sets this) or reported (for the server's own configuration, e.g. RDS's parameter group)",
        _choice("apply", "report"),
    )
    pg_server_ram_mb: int = setting(
        "RECSYS_PG_SERVER_RAM_MB",
        "0",
        "load-embeddings: RAM of the PostgreSQL server in MB, which caps the memory sizing and lets a load size "
        "its build memory; 0: not known (the embedded stack sets this machine's)",
        _integer(0, 1 << 30),
    )
    load_lock_timeout_seconds: int = setting(
        "RECSYS_LOAD_LOCK_TIMEOUT_SECONDS",
        "300",
        "load-embeddings: how long to wait for another load's lock before failing, 0-86400 (0: do not wait)",
        _integer(0, 86_400),
    )
    db_secret_arn: str = setting(
        contracts.ENV_DB_SECRET_ARN,
        "",
        "Lambda: Secrets Manager secret with the database credentials (AWS); empty: the PG* settings",
        _any_text,
    )
    buffer_seconds: int = setting(
        "RECSYS_BUFFER_SECONDS", "1", "Firehose buffering interval (S3 and Lambda processor), 0-900", _integer(0, 900)
    )
    lambda_zip: Path = setting(
        "RECSYS_LAMBDA_ZIP", "build/lambda.zip", "Deployment zip of the transformation Lambda", _path
    )
    lambda_invoke: str = setting(
        "RECSYS_LAMBDA_INVOKE",
        "runtime",
        "How local delivery runs the Lambda: runtime (zip under awslambdaric) | api",
        _choice("runtime", "api"),
    )
    lambda_python: Path | None = setting(
        "RECSYS_LAMBDA_PYTHON",
        "",
        f"Python {contracts.LAMBDA_RUNTIME.removeprefix('python')} (with awslambdaric, boto3) that runs the zip "
        "locally; empty: .venv-lambda, python3.x on PATH, pyenv",
        _optional_executable,
    )
    lambda_concurrency: int = setting(
        "RECSYS_LAMBDA_CONCURRENCY",
        "2",
        "Local delivery: Lambda invocations in flight at once per delivery stream, 1-16",
        _integer(1, 16),
    )
    api_url: str = setting(
        "RECSYS_API_URL",
        "http://127.0.0.1:8000",
        "The recommendations API: where `recsys api` listens and what `recsys web` calls",
        _http_url,
    )
    api_max_body_bytes: int = setting(
        contracts.ENV_API_MAX_BODY_BYTES,
        str(contracts.DEFAULT_API_MAX_BODY_BYTES),
        f"The recommendations API: largest request body read (larger: 413), 1024-{contracts.MAX_API_MAX_BODY_BYTES}",
        _integer(1024, contracts.MAX_API_MAX_BODY_BYTES),
    )
    pointer_ttl_seconds: float = setting(
        contracts.ENV_POINTER_TTL_SECONDS,
        f"{contracts.DEFAULT_POINTER_TTL_SECONDS:g}",
        "Lambda: how often it re-reads the serving-model pointer",
        _number(0, 86_400),
    )
    top_k: int = setting(
        contracts.ENV_TOP_K,
        str(contracts.DEFAULT_TOP_K),
        "Lambda: recommended and similar items per event",
        _integer(1, contracts.MAX_TOP_K),
    )
    spark_java_options: str = setting(
        "RECSYS_SPARK_JAVA_OPTIONS",
        DEFAULT_SPARK_JAVA_OPTIONS,
        "Local ETL: JVM options of the Spark driver (JIT tuned for a short job on few cores)",
        _java_options,
    )
    spark_cds: str = setting(
        "RECSYS_SPARK_CDS",
        "on",
        "Local ETL: on = a class-data sharing archive of Spark's classes (made by the first run, "
        "under build/spark-cds/) starts the JVM faster; off = none",
        _choice("on", "off"),
    )

    def __repr__(self) -> str:
        shown = {s.field: ("***" if s.secret and getattr(self, s.field) else getattr(self, s.field)) for s in SETTINGS}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def mysql_params(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect``; ``database=""`` selects none."""
        params: dict[str, Any] = {
            "host": self.mysql_host,
            "port": self.mysql_port,
            "user": self.mysql_user,
            "password": self.mysql_password,
        }
        chosen = self.mysql_database if database is None else database
        return params | ({"database": chosen} if chosen else {})

    @property
    def mysql_jdbc_url(self) -> str:
        # jdbc:mysql:// with the MariaDB driver; jdbc:mariadb:// makes Spark quote with " (docs/architecture.md).
        return f"jdbc:mysql://{self.mysql_host}:{self.mysql_port}/{self.mysql_database}"

    def pg_params(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``."""
        params: dict[str, Any] = {
            "host": self.pg_host,
            "port": self.pg_port,
            "user": self.pg_user,
            "dbname": self.pg_database,
            "sslmode": self.pg_sslmode,
        }
        return (
            params
            | ({"password": self.pg_password} if self.pg_password else {})
            | ({"sslrootcert": str(self.pg_sslrootcert)} if self.pg_sslrootcert else {})
        )

    def as_env(self) -> dict[str, str]:
        """Every setting as environment variables, for subprocesses and ``stack.env``."""
        return {s.env: _as_text(getattr(self, s.field)) for s in SETTINGS}

    def replace(self, **changes: str) -> Settings:
        """A copy with some variables (by environment name) changed, validated like ``load_settings``."""
        return load_settings({**self.as_env(), **changes})


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(field=f.name, **f.metadata[_SETTING]) for f in dataclasses.fields(Settings)
)
_BY_ENV = {s.env: s for s in SETTINGS}


def _as_text(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def stack_env_file(state_dir: str | os.PathLike[str]) -> Path:
    """Where a running local stack writes the settings that point clients at it."""
    return Path(state_dir) / "stack.env"


def read_stack_env(state_dir: str | os.PathLike[str]) -> dict[str, str]:
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
    values: dict[str, Any] = {}  # each field's value, parsed by its own Setting
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
