"""The ``recsys`` command line: one small command per pipeline stage.

Stage commands are imported lazily so ``recsys --help`` stays fast and a stage's heavy
dependencies (Spark, implicit) load only when that stage runs.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

import click

# command name -> ("module:attribute" of a click.Command, one-line help shown by `recsys --help`)
STAGE_COMMANDS = {
    "stack": ("recsys.cli:stack", "The embedded local stack: up | down | status | env."),
    "seed": ("recsys_seed.cli:seed_command", "Fill the MySQL source with classicmodels-shaped data."),
    "etl": ("recsys.etl:etl_command", "Run the Glue job locally: MySQL -> Parquet training set in S3."),
    "train": ("recsys.train:train_command", "Train implicit ALS, evaluate, publish model artifacts."),
    "load-embeddings": ("recsys.vectordb:load_embeddings_command", "Load a model's embeddings into pgvector."),
    "recommend": ("recsys.vectordb:recommend_command", "Print a customer's top items from pgvector."),
    "lambda-zip": ("recsys.lambda_zip:lambda_zip_command", "Build the transformation Lambda's zip."),
    "replay": ("recsys.replay:replay_command", "Send activity events to the Kinesis stream."),
    "firehose": ("recsys.firehose:firehose_command", "Local Firehose delivery: Kinesis -> Lambda -> S3."),
    "demo": ("recsys.demo:demo_command", "Run the whole pipeline end to end and write a report."),
    "web": ("recsys.web:web_command", "Serve the recommendations page on 127.0.0.1."),
}


class LazyGroup(click.Group):
    """Imports a stage's module only when that stage runs; `--help` uses the one-liners above."""

    def list_commands(self, ctx):
        return list(STAGE_COMMANDS)

    def get_command(self, ctx, name):
        if name not in STAGE_COMMANDS:
            return None
        module, attr = STAGE_COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in STAGE_COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Two-speed recommender pipeline: batch (MySQL -> Glue -> ALS -> pgvector) and streaming
    (Kinesis -> Firehose + Lambda -> S3), local or on AWS, chosen by configuration."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("botocore", "boto3", "urllib3", "py4j", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
def stack() -> None:
    """The embedded local stack: moto (S3, Kinesis, Firehose API), PostgreSQL + pgvector, MySQL check."""


@stack.command("up")
def stack_up() -> None:
    """Start moto and embedded PostgreSQL, check MySQL, create buckets/stream/delivery stream."""
    from recsys.stack import LocalStack

    local = LocalStack()
    local.up()
    for status in local.status():
        click.echo(status.line())
    click.echo('stack ready; point a shell at it with: eval "$(recsys stack env)"')


@stack.command("down")
def stack_down() -> None:
    """Stop what `stack up` started (PostgreSQL data is kept under the state directory)."""
    from recsys.stack import LocalStack

    stopped = LocalStack().down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack.command("status")
def stack_status() -> None:
    """Each service as up/down with its endpoint; exit 1 when something is down."""
    from recsys.stack import LocalStack

    statuses = LocalStack().status()
    for status in statuses:
        click.echo(status.line())
    sys.exit(0 if all(s.up for s in statuses) else 1)


@stack.command("env")
def stack_env() -> None:
    """`export` lines for the running stack: eval "$(recsys stack env)"."""
    import shlex

    from recsys.config import stack_env_file
    from recsys.config import load_settings

    path = stack_env_file(load_settings().state_dir)
    if not path.exists():
        raise click.ClickException("the local stack is not running: start it with `recsys stack up`")
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        click.echo(f"export {key}={shlex.quote(value)}")


def main() -> None:
    """Console entry point: expected failures print one line and exit 1, without a traceback."""
    # before numpy loads: implicit's ALS is slower (and warns) with threaded OpenBLAS
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from recsys.config import load_settings
    from recsys.errors import EXPECTED_ERRORS, UNAVAILABLE_ERRORS, unavailable_message

    try:
        cli(standalone_mode=True)
    except EXPECTED_ERRORS as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except UNAVAILABLE_ERRORS as exc:
        click.echo(f"error: {unavailable_message(exc, load_settings())}", err=True)
        sys.exit(1)
