"""Streaming commands: ``lambda-zip``, ``replay``, ``firehose``."""
from __future__ import annotations

import signal
from pathlib import Path

import click

from recsys.apps.replay import replay
from recsys.contracts import LAMBDA_HANDLER
from recsys.core.config import load_settings
from recsys.deploy.lambda_zip import API_LAMBDA, API_ZIP, FIREHOSE_LAMBDA, build_lambda_zip
from recsys.local.firehose.delivery import build_delivery
from recsys.local.firehose.invokers import INVOKE_MODES


@click.command("lambda-zip")
@click.option("--api", "api", is_flag=True,
              help="Build the recommendations API's zip instead (default output: api.zip beside RECSYS_LAMBDA_ZIP).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zip to write (default: RECSYS_LAMBDA_ZIP, build/lambda.zip).")
@click.option("--rebuild-deps", is_flag=True, help="Reinstall the dependencies even when cached.")
def lambda_zip_command(api: bool, output: Path | None, rebuild_deps: bool) -> None:
    """Build the Firehose transformation Lambda's deployment zip, or with --api the API's (reproducible)."""
    default = load_settings().lambda_zip
    target = output or (default.with_name(API_ZIP) if api else default)
    function = API_LAMBDA if api else FIREHOSE_LAMBDA
    for line in build_lambda_zip(target, force_dependencies=rebuild_deps, function=function).lines():
        click.echo(line)


@click.command("replay")
@click.option("--events", type=int, default=200, show_default=True, help="Events to synthesise.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second (0: unlimited).")
@click.option("--from-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Replay this JSON-lines file instead of synthesising (lines sent as they are).")
@click.option("--new-customers", type=float, default=0.05, show_default=True,
              help="Fraction of events from customers unknown to the source and the model.")
@click.option("--empty-histories", type=float, default=0.05, show_default=True,
              help="Fraction of events with an empty browse history.")
@click.option("--seed", type=int, default=None, help="Random seed (default: a fresh one).")
def replay_command(events, rate, from_file, new_customers, empty_histories, seed) -> None:
    """Send activity events to the Kinesis stream (synthesised from the source, or from a file)."""
    summary = replay(load_settings(), events=events, rate=rate or None, from_file=from_file,
                     new_customer_fraction=new_customers, empty_history_fraction=empty_histories, seed=seed,
                     show_progress=True)
    click.echo(summary.line())


@click.command("firehose")
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="Stop after this long with nothing to read and nothing buffered (bounded runs, tests).")
@click.option("--max-batches", type=int, default=None, help="Stop after this many Lambda batches.")
@click.option("--invoke", "mode", type=click.Choice(INVOKE_MODES), default=None,
              help="Lambda invocation: runtime (zip under awslambdaric, default) or api (Lambda Invoke API). "
                   "Default: RECSYS_LAMBDA_INVOKE.")
@click.option("--code-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Run this unpacked code directory instead of RECSYS_LAMBDA_ZIP (runtime mode).")
@click.option("--handler", default=LAMBDA_HANDLER, show_default=True, help="Handler string (runtime mode).")
@click.option("--timeout", "timeout_seconds", type=float, default=60.0, show_default=True,
              help="Function timeout in seconds (runtime mode).")
@click.option("--poll-interval", type=float, default=0.2, show_default=True, help="Seconds between idle polls.")
def firehose_command(until_idle, max_batches, mode, code_dir, handler, timeout_seconds, poll_interval) -> None:
    """Local Firehose delivery: Kinesis -> transformation Lambda -> S3, per the delivery stream's configuration."""
    delivery = build_delivery(load_settings(), mode=mode, code_dir=code_dir, handler=handler,
                              timeout_seconds=timeout_seconds, poll_seconds=poll_interval)
    config = delivery.config
    click.echo(f"delivering {config.source_stream_name} -> {config.lambda_arn.rsplit(':', 1)[-1]} -> "
               f"s3://{config.bucket}/{config.prefix} (lambda buffer {config.lambda_buffer_bytes // 1024} KiB/"
               f"{config.lambda_buffer_seconds:g} s, s3 buffer {config.s3_buffer_bytes // 1024} KiB/"
               f"{config.s3_buffer_seconds:g} s, retries {config.retries})")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: delivery.stop_requested.set())
    try:
        stats = delivery.run(until_idle=until_idle, max_batches=max_batches)
    finally:
        delivery.invoker.close()
    click.echo(stats.line())
