"""Streaming commands: ``lambda-zip``, ``replay``, ``firehose``, ``redrive``."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import click

from recsys.apps.redrive import redrive
from recsys.apps.replay import MAX_RATE, MIN_RATE, replay
from recsys.cli.options import FRACTION, SEED, EventRate, FiniteFloatRange
from recsys.contracts import LAMBDA_HANDLER
from recsys.core.config import load_settings
from recsys.deploy.lambda_zip import API_LAMBDA, API_ZIP, DEFAULT_CA_BUNDLE, FIREHOSE_LAMBDA, build_lambda_zip
from recsys.local import aws_state
from recsys.local.firehose.delivery import build_delivery
from recsys.local.firehose.invokers import INVOKE_MODES


@click.command("lambda-zip")
@click.option(
    "--api",
    "api",
    is_flag=True,
    help="Build the recommendations API's zip instead (default output: api.zip beside RECSYS_LAMBDA_ZIP).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Zip to write (default: RECSYS_LAMBDA_ZIP, build/lambda.zip).",
)
@click.option("--rebuild-deps", is_flag=True, help="Reinstall the dependencies even when cached.")
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CA_BUNDLE,
    show_default=True,
    help="RDS CA bundle shipped at the zip's root (the DB's certificate verified on AWS); "
    "`make rds-ca-bundle` writes it. Left out when missing.",
)
def lambda_zip_command(api: bool, output: Path | None, rebuild_deps: bool, ca_bundle: Path) -> None:
    """Build the Firehose transformation Lambda's deployment zip, or with --api the API's (reproducible)."""
    default = load_settings().lambda_zip
    target = output or (default.with_name(API_ZIP) if api else default)
    function = API_LAMBDA if api else FIREHOSE_LAMBDA
    if not ca_bundle.exists():
        click.echo(
            f"warning: no RDS CA bundle at {ca_bundle} (make rds-ca-bundle): on AWS this zip cannot "
            "verify the DB's certificate (Terraform's db_sslmode)",
            err=True,
        )
    bundle = ca_bundle if ca_bundle.exists() else None
    for line in build_lambda_zip(target, force_dependencies=rebuild_deps, function=function, ca_bundle=bundle).lines():
        click.echo(line)


@click.command("replay")
@click.option(
    "--events", type=click.IntRange(1, 10_000_000), default=200, show_default=True, help="Events to synthesise."
)
@click.option(
    "--rate",
    type=EventRate(),
    default=200.0,
    show_default=True,
    help=f"Events per second: 0 (unlimited) or {MIN_RATE:g}-{MAX_RATE:,.0f}.",
)
@click.option(
    "--from-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Replay this JSON-lines file instead of synthesising (lines sent as they are).",
)
@click.option(
    "--from-offset",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    metavar="BYTES",
    help="With --from-file: start at this byte offset (what an interrupted replay reported).",
)
@click.option(
    "--new-customers",
    type=FRACTION,
    default=0.05,
    show_default=True,
    help="Fraction of events from customers unknown to the source and the model.",
)
@click.option(
    "--empty-histories",
    type=FRACTION,
    default=0.05,
    show_default=True,
    help="Fraction of events with an empty browse history.",
)
@click.option("--seed", type=SEED, default=None, help="Random seed (default: a fresh one).")
def replay_command(events, rate, from_file, from_offset, new_customers, empty_histories, seed) -> None:
    """Send activity events to the Kinesis stream (synthesised from the source, or from a file).

    Interrupted (Ctrl-C, SIGTERM) or cut off by its endpoint, it says how many events were sent and
    acknowledged (and, for a file, the --from-offset to resume from) and exits with status 1."""
    if from_offset and from_file is None:
        raise click.UsageError("--from-offset needs --from-file")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        summary = replay(
            load_settings(),
            events=events,
            rate=rate or None,
            from_file=from_file,
            from_offset=from_offset,
            new_customer_fraction=new_customers,
            empty_history_fraction=empty_histories,
            seed=seed,
            show_progress=True,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(summary.line())


@click.command("firehose")
@click.option(
    "--until-idle",
    type=FiniteFloatRange(0, 86_400),
    default=None,
    metavar="SECONDS",
    help="Stop after this long with nothing to read and nothing buffered (bounded runs, tests).",
)
@click.option("--max-batches", type=click.IntRange(1), default=None, help="Stop after this many Lambda batches.")
@click.option(
    "--invoke",
    "mode",
    type=click.Choice(INVOKE_MODES),
    default=None,
    help="Lambda invocation: runtime (zip under awslambdaric, default) or api (Lambda Invoke API). "
    "Default: RECSYS_LAMBDA_INVOKE.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 16),
    default=None,
    help="Invocations in flight at once (runtime mode: that many runtimes). Default: RECSYS_LAMBDA_CONCURRENCY.",
)
@click.option(
    "--code-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Run this unpacked code directory instead of RECSYS_LAMBDA_ZIP (runtime mode).",
)
@click.option("--handler", default=LAMBDA_HANDLER, show_default=True, help="Handler string (runtime mode).")
@click.option(
    "--timeout",
    "timeout_seconds",
    type=FiniteFloatRange(1, 900),
    default=60.0,
    show_default=True,
    help="Function timeout in seconds, 1-900 as on Lambda (runtime mode).",
)
@click.option(
    "--poll-interval",
    type=FiniteFloatRange(0.01, 60),
    default=0.2,
    show_default=True,
    help="Seconds between idle polls, 0.01-60.",
)
@click.option(
    "--wait-for-stream",
    type=FiniteFloatRange(0, 86_400),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for the delivery stream (or the endpoint) to appear, retrying with backoff.",
)
@click.option(
    "--keep-aws-state",
    is_flag=True,
    help="For an emulator that keeps nothing across a restart (docker compose): at start restore the "
    "S3 objects and undelivered records saved in RECSYS_STATE_DIR/aws-state, at stop save them.",
)
def firehose_command(
    until_idle,
    max_batches,
    mode,
    concurrency,
    code_dir,
    handler,
    timeout_seconds,
    poll_interval,
    wait_for_stream,
    keep_aws_state,
) -> None:
    """Local Firehose delivery: Kinesis -> transformation Lambda -> S3, per the delivery stream's configuration."""
    settings = load_settings()

    def stop_now(*_) -> None:  # until delivery runs (restoring, waiting for the stream): stop at once
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_now)
    delivery, state_in_emulator = None, not keep_aws_state
    try:
        if keep_aws_state:  # before delivery reads the stream: the restored records are the undelivered ones
            restored = aws_state.restore(settings, settings.state_dir, show_progress=False)
            state_in_emulator = True  # from here a stop saves it again (the restored save is consumed)
            if restored:
                click.echo(
                    restored.line(f"restored (saved {restored.saved_at})", settings.state_dir / aws_state.RESTORED)
                )
        delivery = build_delivery(
            settings,
            mode=mode,
            code_dir=code_dir,
            handler=handler,
            timeout_seconds=timeout_seconds,
            poll_seconds=poll_interval,
            concurrency=concurrency,
            wait_for_stream_seconds=wait_for_stream,
        )
        config = delivery.config
        click.echo(
            f"delivering {config.source_stream_name} -> {config.lambda_arn.rsplit(':', 1)[-1]} -> "
            f"s3://{config.bucket}/{config.prefix} (lambda buffer {config.lambda_buffer_bytes // 1024} KiB/"
            f"{config.lambda_buffer_seconds:g} s, s3 buffer {config.s3_buffer_bytes // 1024} KiB/"
            f"{config.s3_buffer_seconds:g} s, retries {config.retries}, concurrency {delivery.concurrency})"
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: delivery.stop_requested.set())
        stats = delivery.run(until_idle=until_idle, max_batches=max_batches)
    finally:
        if delivery is not None:
            delivery.close()
        if keep_aws_state and state_in_emulator:
            emulator = urlparse(settings.endpoint_url or "").hostname or "aws"
            saved = aws_state.save(settings, settings.state_dir, emulator=emulator, show_progress=False)
            click.echo(saved.line("saved", aws_state.saved_dir(settings.state_dir)))
    click.echo(stats.line())


@click.command("redrive")
@click.option(
    "--error-code",
    "error_codes",
    multiple=True,
    metavar="CODE",
    help="Only records parked with this errorCode (repeatable), e.g. Lambda.FunctionError. "
    "Default: every parked record.",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"]),
    default=None,
    help="Only records parked at or after this UTC time, e.g. 2026-11-26T15:00.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be re-driven; send and mark nothing.")
def redrive_command(error_codes: tuple[str, ...], since: datetime | None, dry_run: bool) -> None:
    """Put records parked under processing-failed/ back on the source stream, each once (a marker per
    error object records what was sent, so running it again is a no-op)."""
    since = since.replace(tzinfo=UTC) if since else None
    click.echo(
        redrive(load_settings(), error_codes=error_codes, since=since, dry_run=dry_run, show_progress=True).line()
    )
