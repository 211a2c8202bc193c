"""Application commands: ``recommend``, ``api``, ``demo``, ``web``, ``status``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from recsys import contracts
from recsys.apps.api_server import api_port, serve_api
from recsys.apps.demo import run_demo
from recsys.apps.demo_report import summary_text, write_report
from recsys.apps.recommend import recommend
from recsys.apps.status import pipeline_status
from recsys.apps.web import serve_web
from recsys.cli.options import CUSTOMER_NUMBER, EF_SEARCH, SEED, TOP_K, EventRate
from recsys.cli.stack import EMULATOR_OPTION, settings_with_emulator
from recsys.core.config import load_settings


@click.command("recommend")
@click.option("--customer", type=CUSTOMER_NUMBER, required=True, help="customerNumber to recommend for.")
@click.option("--k", type=TOP_K, default=10, show_default=True, help="How many items.")
@click.option("--include-rated", is_flag=True, help="Do not exclude items the customer already rated.")
@click.option(
    "--ef-search",
    type=EF_SEARCH,
    default=None,
    help="HNSW candidate list size (recall vs latency; default: the one measured for the live version).",
)
def recommend_command(customer: int, k: int, include_rated: bool, ef_search: int | None) -> None:
    """Print a customer's top items (names from MySQL) from the live model in pgvector."""
    result = recommend(load_settings(), customer, k, include_rated=include_rated, ef_search=ef_search)
    for line in result.lines():
        click.echo(line)


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port (default: the port of RECSYS_API_URL, 8000)."
)
@click.option(
    "--pool-size",
    type=click.IntRange(1, 64),
    default=contracts.DEFAULT_API_POOL_SIZE,
    show_default=True,
    help="Database connections kept open.",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log every request.")
def api_command(host: str, port: int | None, pool_size: int, access_log: bool) -> None:
    """Serve the recommendations API (OpenAPI docs at /docs) over the live model in pgvector."""
    settings = load_settings()
    port = port or api_port(settings)
    click.echo(f"recommendations API on http://{host}:{port}/ (docs: /docs, OpenAPI: /openapi.json)")
    serve_api(settings, host, port, pool_size, access_log)


@click.command("demo")
@click.option("--customers", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--products", default=300, show_default=True, type=click.IntRange(1))
@click.option("--ratings", default=30_000, show_default=True, type=click.IntRange(1))
@click.option("--seed", "seed_value", default=42, show_default=True, type=SEED)
@click.option(
    "--events", default=300, show_default=True, type=click.IntRange(1, 1_000_000), help="Activity events to replay."
)
@click.option("--rate", default=150.0, show_default=True, type=EventRate(), help="Events per second (0: unlimited).")
@click.option(
    "--reset",
    is_flag=True,
    help="Rebuild the source tables even when they hold other data (by default a source seeded "
    "differently is refused, and one seeded with these arguments is reused).",
)
@click.option("--keep-up", is_flag=True, help="Leave the stack and the recommendations API running (then: recsys web).")
@click.option("--reports-dir", default=Path("reports"), show_default=True, type=click.Path(path_type=Path))
@EMULATOR_OPTION
def demo_command(customers, products, ratings, seed_value, events, rate, reset, keep_up, reports_dir, emulator) -> None:
    """Run the whole pipeline end to end on the embedded stack and write a report."""
    run = run_demo(
        settings_with_emulator(emulator),
        customers=customers,
        products=products,
        ratings=ratings,
        seed=seed_value,
        events=events,
        rate=rate,
        reset=reset,
        keep_up=keep_up,
        reports_dir=reports_dir,
    )
    page = write_report(run, reports_dir / "demo")
    click.echo(summary_text(run))
    click.echo(f"report: {page.resolve()}")
    if keep_up:
        click.echo(
            f"stack left running: the recommendations API answers on {run.figures['api_url']} "
            "(try /docs), `recsys web` shows the recommendations; `recsys stack down` stops it all"
        )


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8080, show_default=True, type=int)
def web_command(host: str, port: int) -> None:
    """Serve the recommendations page: recent sessions, and per customer what the API recommends now,
    similar products, and what they browsed."""
    settings = load_settings()
    click.echo(f"recommendations page on http://{host}:{port}/ (API: {settings.api_url})")
    serve_web(settings, host, port)


@click.command("status")
def status_command() -> None:
    """Delivery lag, parked records, Lambda errors, API error rate and the live model's age (the AWS
    alarms' signals, from the local stand-ins); exit 1 when one would alarm."""
    signals = pipeline_status(load_settings())
    for signal in signals:
        click.echo(signal.line())
    sys.exit(1 if any(s.alert for s in signals) else 0)
