"""``recsys stack``: the embedded local stack (an AWS emulator, PostgreSQL + pgvector, the MySQL check)."""

from __future__ import annotations

import shlex
import sys

import click

from recsys.core.config import load_settings, stack_env_file
from recsys.local.stack import EmbeddedStack

EMULATOR_OPTION = click.option(
    "--emulator",
    type=click.Choice(["moto", "localstack"]),
    default=None,
    help="AWS API emulator (default: RECSYS_EMULATOR, moto). docs/emulators.md says how they differ.",
)


def settings_with_emulator(emulator: str | None):
    """Settings, with ``--emulator`` (when given) over RECSYS_EMULATOR."""
    settings = load_settings()
    return settings.replace(RECSYS_EMULATOR=emulator) if emulator else settings


@click.group()
def stack() -> None:
    """The embedded local stack: an AWS emulator (S3, Kinesis, Firehose API), PostgreSQL + pgvector, MySQL check."""


@stack.command("up")
@EMULATOR_OPTION
def stack_up(emulator: str | None) -> None:
    """Start the emulator and embedded PostgreSQL, check MySQL, restore the AWS state the last `down`
    saved, create buckets/stream/delivery stream."""
    local = EmbeddedStack(settings_with_emulator(emulator))
    local.up()
    for note in local.notes:
        click.echo(note)
    for status in local.status():
        click.echo(status.line())
    click.echo('stack ready; point a shell at it with: eval "$(recsys stack env)"')


@stack.command("down")
@click.option(
    "--discard",
    is_flag=True,
    help="Do not save the emulator's S3 objects and Kinesis records (the next `up` starts empty).",
)
def stack_down(discard: bool) -> None:
    """Save the emulator's AWS state under the state directory, then stop what `stack up` started
    (PostgreSQL data is kept too). Stop `recsys firehose` first."""
    local = EmbeddedStack(load_settings())
    stopped = local.down(discard=discard)
    for note in local.notes:
        click.echo(note)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack.command("status")
def stack_status() -> None:
    """Each service as up/down with its endpoint; exit 1 when something is down."""
    statuses = EmbeddedStack(load_settings()).status()
    for status in statuses:
        click.echo(status.line())
    sys.exit(0 if all(s.up for s in statuses) else 1)


@stack.command("env")
def stack_env() -> None:
    """`export` lines for the running stack (PGPASSWORD included): eval "$(recsys stack env)"."""
    path = stack_env_file(load_settings().state_dir)
    if not path.exists():
        raise click.ClickException("the local stack is not running: start it with `recsys stack up`")
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        click.echo(f"export {key}={shlex.quote(value)}")
