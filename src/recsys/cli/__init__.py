"""The ``recsys`` command line: one small command per pipeline stage, each a thin layer that loads
settings once and calls the library.

Commands live by area (``stack``, ``batch``, ``streaming``, ``apps``) and their module is imported
only when one of them runs, so ``recsys --help`` stays fast and a stage's heavy dependencies
(Spark, implicit) load only when that stage runs.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from recsys.cli.errors import UNAVAILABLE_ERRORS, unavailable_message
from recsys.core.errors import RecsysError

# command name -> ("module:attribute" of a click.Command, one-line help shown by `recsys --help`)
STAGE_COMMANDS = {
    "stack": ("recsys.cli.stack:stack", "The embedded local stack: up | down | status | env."),
    "seed": ("recsys.cli.batch:seed_command", "Fill the MySQL source with classicmodels-shaped data."),
    "etl": ("recsys.cli.etl:etl_command", "Run the Glue job locally: MySQL -> Parquet training set in S3."),
    "train": ("recsys.cli.batch:train_command", "Train implicit ALS, evaluate, publish model artifacts."),
    "load-embeddings": ("recsys.cli.batch:load_embeddings_command", "Load a model's embeddings into pgvector."),
    "recommend": ("recsys.cli.apps:recommend_command", "Print a customer's top items from pgvector."),
    "api": ("recsys.cli.apps:api_command", "Serve the recommendations API (HTTP JSON) on 127.0.0.1."),
    "lambda-zip": ("recsys.cli.streaming:lambda_zip_command", "Build the transformation Lambda's zip."),
    "replay": ("recsys.cli.streaming:replay_command", "Send activity events to the Kinesis stream."),
    "firehose": ("recsys.cli.streaming:firehose_command", "Local Firehose delivery: Kinesis -> Lambda -> S3."),
    "redrive": ("recsys.cli.streaming:redrive_command", "Send parked records back to the source stream, each once."),
    "pipeline": ("recsys.cli.pipeline:pipeline", "The batch pipeline: run locally, or start/status on AWS."),
    "demo": ("recsys.cli.apps:demo_command", "Run the whole pipeline end to end and write a report."),
    "web": ("recsys.cli.apps:web_command", "Serve the recommendations page on 127.0.0.1."),
    "status": ("recsys.cli.apps:status_command", "Pipeline health: delivery lag, parked records, errors, model age."),
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs; `--help` uses the one-liners above."""

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
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("botocore", "boto3", "urllib3", "py4j", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    """Console entry point: expected failures print one line and exit 1, without a traceback."""
    try:
        cli(standalone_mode=True)
    except RecsysError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except UNAVAILABLE_ERRORS as exc:
        click.echo(f"error: {unavailable_message(exc)}", err=True)
        sys.exit(1)
