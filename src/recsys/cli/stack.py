"""``recsys stack``: the embedded local stack (moto, PostgreSQL + pgvector, the MySQL check)."""
from __future__ import annotations

import shlex
import sys

import click

from recsys.core.config import load_settings, stack_env_file
from recsys.local.stack import EmbeddedStack


@click.group()
def stack() -> None:
    """The embedded local stack: moto (S3, Kinesis, Firehose API), PostgreSQL + pgvector, MySQL check."""


@stack.command("up")
def stack_up() -> None:
    """Start moto and embedded PostgreSQL, check MySQL, create buckets/stream/delivery stream."""
    local = EmbeddedStack(load_settings())
    local.up()
    for status in local.status():
        click.echo(status.line())
    click.echo('stack ready; point a shell at it with: eval "$(recsys stack env)"')


@stack.command("down")
def stack_down() -> None:
    """Stop what `stack up` started (PostgreSQL data is kept under the state directory)."""
    stopped = EmbeddedStack(load_settings()).down()
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
    """`export` lines for the running stack: eval "$(recsys stack env)"."""
    path = stack_env_file(load_settings().state_dir)
    if not path.exists():
        raise click.ClickException("the local stack is not running: start it with `recsys stack up`")
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        click.echo(f"export {key}={shlex.quote(value)}")
