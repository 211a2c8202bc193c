"""All configuration in one place.

Every setting is an environment variable with a local default. Precedence: the process
environment, then the running local stack's ``stack.env`` (written by ``recsys stack up``),
then the defaults below. Nothing else in the package reads ``os.environ`` for settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


# name -> (default, description). `.env.example` and the compose file are checked against this.
SETTINGS: dict[str, tuple[str, str]] = {
    "RECSYS_STATE_DIR": (".recsys", "Local stack state: PIDs, ports, embedded PostgreSQL data, logs"),
    "AWS_ENDPOINT_URL": ("", "AWS API endpoint; empty means real AWS, the stack sets its emulator"),
    "AWS_DEFAULT_REGION": ("us-east-1", "AWS region"),
    "AWS_ACCESS_KEY_ID": ("", "Empty: boto3's default credential chain; the local stack sets dummy ones"),
    "AWS_SECRET_ACCESS_KEY": ("", "Empty: boto3's default credential chain; the local stack sets dummy ones"),
    "RECSYS_DATALAKE_BUCKET": ("recsys-datalake", "S3 bucket for the training set"),
    "RECSYS_ARTIFACTS_BUCKET": ("recsys-ml-artifacts", "S3 bucket for model artifacts"),
    "RECSYS_RECOMMENDATIONS_BUCKET": ("recsys-recommendations", "S3 bucket Firehose delivers to"),
    "RECSYS_SCRIPTS_BUCKET": ("recsys-scripts", "S3 bucket for the Glue script and Lambda zip"),
    "RECSYS_KINESIS_STREAM": ("recsys-activity-events", "Kinesis stream of activity events"),
    "RECSYS_FIREHOSE_STREAM": ("recsys-recommendations-delivery", "Firehose delivery stream"),
    "RECSYS_LAMBDA_FUNCTION": ("recsys-model-inference", "Firehose transformation Lambda"),
    "MYSQL_HOST": ("127.0.0.1", "MySQL source host"),
    "MYSQL_PORT": ("3306", "MySQL source port"),
    "MYSQL_USER": ("root", "MySQL source user"),
    "MYSQL_PASSWORD": ("", "MySQL source password"),
    "MYSQL_DATABASE": ("classicmodels", "MySQL source database"),
    "PGHOST": ("127.0.0.1", "PostgreSQL + pgvector host"),
    "PGPORT": ("5433", "PostgreSQL + pgvector port (the stack picks a free one)"),
    "PGUSER": ("postgres", "PostgreSQL user"),
    "PGPASSWORD": ("", "PostgreSQL password"),
    "PGDATABASE": ("postgres", "PostgreSQL database holding item_emb/user_emb"),
    "RECSYS_BUFFER_SECONDS": ("1", "Firehose buffering interval (S3 and Lambda processor), 0-900"),
    "RECSYS_LAMBDA_ZIP": ("build/lambda.zip", "Deployment zip of the transformation Lambda"),
    "RECSYS_LAMBDA_INVOKE": ("runtime", "How local delivery runs the Lambda: runtime (zip under awslambdaric) | api"),
    "RECSYS_POINTER_TTL_SECONDS": ("60", "Lambda: how often it re-reads the serving-model pointer"),
    "RECSYS_TOP_K": ("10", "Lambda: recommended and similar items per event"),
}


def _field(name: str) -> str:
    return name.lower()


@dataclass(frozen=True)
class Settings:
    """A resolved snapshot of every setting (see ``SETTINGS`` for names and meaning)."""

    recsys_state_dir: str
    aws_endpoint_url: str
    aws_default_region: str
    aws_access_key_id: str
    aws_secret_access_key: str
    recsys_datalake_bucket: str
    recsys_artifacts_bucket: str
    recsys_recommendations_bucket: str
    recsys_scripts_bucket: str
    recsys_kinesis_stream: str
    recsys_firehose_stream: str
    recsys_lambda_function: str
    mysql_host: str
    mysql_port: str
    mysql_user: str
    mysql_password: str
    mysql_database: str
    pghost: str
    pgport: str
    pguser: str
    pgpassword: str
    pgdatabase: str
    recsys_buffer_seconds: str
    recsys_lambda_zip: str
    recsys_lambda_invoke: str
    recsys_pointer_ttl_seconds: str
    recsys_top_k: str

    @property
    def state_dir(self) -> Path:
        return Path(self.recsys_state_dir).resolve()

    @property
    def endpoint_url(self) -> str | None:
        return self.aws_endpoint_url or None

    @property
    def region(self) -> str:
        return self.aws_default_region

    @property
    def buckets(self) -> dict[str, str]:
        return {
            "datalake": self.recsys_datalake_bucket,
            "artifacts": self.recsys_artifacts_bucket,
            "recommendations": self.recsys_recommendations_bucket,
            "scripts": self.recsys_scripts_bucket,
        }

    def mysql_params(self, database: str | None = None) -> dict:
        """Keyword arguments for ``pymysql.connect``."""
        return {
            "host": self.mysql_host,
            "port": int(self.mysql_port),
            "user": self.mysql_user,
            "password": self.mysql_password,
            "database": self.mysql_database if database is None else database,
        }

    @property
    def mysql_jdbc_url(self) -> str:
        # jdbc:mysql:// with the MariaDB driver; jdbc:mariadb:// makes Spark quote with " (see ARCHITECTURE.md).
        return f"jdbc:mysql://{self.mysql_host}:{self.mysql_port}/{self.mysql_database}"

    @property
    def pg_dsn(self) -> str:
        """libpq keyword DSN for psycopg2."""
        parts = {
            "host": self.pghost,
            "port": self.pgport,
            "user": self.pguser,
            "dbname": self.pgdatabase,
        }
        if self.pgpassword:
            parts["password"] = self.pgpassword
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def as_env(self) -> dict[str, str]:
        """Every setting as environment variables, for subprocesses."""
        return {f.name.upper(): getattr(self, f.name) for f in fields(self)}


def stack_env_file(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / "stack.env"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Resolve settings: environment, then the running stack's ``stack.env``, then defaults."""
    env = dict(os.environ if environ is None else environ)
    state_dir = env.get("RECSYS_STATE_DIR") or SETTINGS["RECSYS_STATE_DIR"][0]
    stack_file = stack_env_file(state_dir)
    from_stack: dict[str, str] = {}
    if stack_file.exists():
        from dotenv import dotenv_values  # imported here so the LocalStack init hook needs only boto3

        from_stack = {k: v or "" for k, v in dotenv_values(stack_file).items()}
    values = {}
    for name, (default, _) in SETTINGS.items():
        if name in env:
            values[_field(name)] = env[name]
        elif name == "AWS_DEFAULT_REGION" and env.get("AWS_REGION"):
            values[_field(name)] = env["AWS_REGION"]
        else:
            values[_field(name)] = from_stack.get(name, default)
    return Settings(**values)
