"""The demo: the whole pipeline, end to end, on the embedded stack, then a report.

stack up → seed → ETL (Glue script on local Spark) → train + evaluate (ALS and the hybrid, the
validation winner published) → load embeddings → Lambda zip → local Firehose delivery (a separate
``recsys firehose`` process, as in compose) → replay events (plus a few malformed ones) → wait
until every event is accounted for → report (with the strategy mix of the delivered records); with
``keep_up`` the recommendations API is started in the background and left running with the stack.
Each stage is the same function its own command runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from recsys.apps.demo_report import DemoRun, Stage
from recsys.apps.replay import OutgoingRecord, replay, send_records
from recsys.apps.source import planted_truth_for, seed_configured_source
from recsys.contracts import ERROR_KEY_PREFIX, REDRIVE_MARKER_PREFIX
from recsys.core import aws
from recsys.core.config import Settings
from recsys.core.errors import PipelineError
from recsys.deploy.lambda_zip import build_lambda_zip
from recsys.local.firehose.delivery import state_file
from recsys.local.private_files import open_log
from recsys.local.stack import EmbeddedStack
from recsys.pipeline.etl import run_etl
from recsys.pipeline.evaluation_report import cold_start_png
from recsys.pipeline.train import TrainParams, headline_metrics, train_and_publish
from recsys.pipeline.vector_load import load_embeddings
from recsys.serving.events import InvalidEvent, decode_record_data, parse_event
from recsys_seed import SeedSpec

MALFORMED_EVENTS = [  # the error path, shown in the report
    b"not json at all",
    json.dumps(
        {
            "session_id": "demo-malformed-1",
            "customer_number": "103",
            "event_time": "2026-01-01T00:00:00Z",
            "browse_history": [],
        }
    ).encode(),
    json.dumps({"customer_number": 103, "browse_history": [{"product_code": "S10_1678"}]}).encode(),
]
# More new customers (and empty histories) than `recsys replay`'s 5 %, so every cold-start strategy
# shows in the report: a new customer with nothing browsed is served from their attributes alone.
NEW_CUSTOMER_FRACTION = EMPTY_HISTORY_FRACTION = 0.1


@contextmanager
def stage(run: DemoRun, name: str) -> Iterator[dict]:
    """Print the stage, time it, and record it with the detail the body puts in ``holder["detail"]``."""
    click.echo(click.style(f"==> {name}", bold=True))
    started = time.perf_counter()
    holder = {"detail": ""}
    yield holder
    elapsed = time.perf_counter() - started
    run.stages.append(Stage(name, elapsed, holder["detail"]))
    click.echo(f"    {holder['detail']} ({elapsed:.1f} s)")


def firehose_stats_path(settings: Settings) -> Path:
    return state_file(settings, settings.firehose_stream, "stats")


def start_delivery(settings: Settings, log_path: Path) -> subprocess.Popen:
    """``recsys firehose`` as its own process, exactly as the compose service runs it."""
    firehose_stats_path(settings).unlink(missing_ok=True)
    log = open_log(log_path)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("recsys")), "firehose", "--poll-interval", "0.1"],
        env={**os.environ, **settings.as_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_warm(settings: Settings, delivery: subprocess.Popen, timeout: float = 180) -> dict:
    """Wait until the delivery's Lambda runtimes have answered their warm-up (stats.json says ``warm``):
    a real delivery stream is running before events arrive."""
    path = firehose_stats_path(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if delivery.poll() is not None:
            raise PipelineError(f"recsys firehose exited with {delivery.returncode}; see its log")
        if path.exists() and (stats := json.loads(path.read_text())).get("warm"):
            return stats
        time.sleep(0.2)
    raise PipelineError(f"recsys firehose did not warm its Lambda runtimes within {timeout:.0f} s; see its log")


def wait_accounted(settings: Settings, produced: int, delivery: subprocess.Popen, timeout: float = 180) -> dict:
    """Poll the delivery's stats until every produced event is delivered, dropped or failed."""
    path = firehose_stats_path(settings)
    deadline = time.monotonic() + timeout
    stats: dict = {}
    while time.monotonic() < deadline:
        if delivery.poll() is not None:
            raise PipelineError(f"recsys firehose exited with {delivery.returncode}; see its log")
        if path.exists():
            stats = json.loads(path.read_text())
            if stats["records_in"] >= produced and stats["delivered"] + stats["dropped"] + stats["failed"] >= produced:
                return stats
        time.sleep(0.3)
    raise PipelineError(f"only {stats.get('delivered', 0)} of {produced} events accounted for after {timeout:.0f} s")


def stop_delivery(delivery: subprocess.Popen) -> None:
    delivery.send_signal(signal.SIGTERM)  # a clean stop drains its buffers
    try:
        delivery.wait(30)
    except subprocess.TimeoutExpired:
        delivery.kill()


class ArrivalWatcher:
    """Polls the recommendations bucket and notes when each object first appears (S3's
    ``LastModified`` has one-second resolution, too coarse for freshness)."""

    def __init__(self, settings: Settings, interval: float = 0.05):
        self.s3 = aws.client("s3", settings)
        self.bucket = settings.recommendations_bucket
        self.interval = interval
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._existing = set(self._keys())
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _keys(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for key in self._keys():
                if key not in self._existing:
                    self.first_seen.setdefault(key, now)
            self._stop.wait(self.interval)

    def __enter__(self) -> ArrivalWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        now = time.time()
        for key in self._keys():  # anything that landed after the last poll
            if key not in self._existing:
                self.first_seen.setdefault(key, now)


@dataclass
class Outputs:
    """What delivery wrote: freshness per delivered event, failure reasons, strategies, records delivered."""

    freshness: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    strategies: dict[str, int] = field(default_factory=dict)
    delivered: int = 0


def collect_outputs(settings: Settings, accepted_at: dict[str, float], first_seen: dict[str, float]) -> Outputs:
    """Freshness (PutRecords accepted -> object in S3) per delivered event, failure reasons, the strategy
    mix of the delivered records, records delivered.

    A parked record's reason comes from running its raw data through the Lambda's own validator.
    """
    s3 = aws.client("s3", settings)
    bucket = settings.recommendations_bucket
    out = Outputs()
    for key, landed in first_seen.items():
        if key.startswith(REDRIVE_MARKER_PREFIX):
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        for line in filter(None, body.splitlines()):
            record = json.loads(line)
            if key.startswith(ERROR_KEY_PREFIX):
                try:
                    parse_event(decode_record_data(record["rawData"]))
                    reason = record.get("errorMessage") or record.get("errorCode", "unknown")
                except InvalidEvent as exc:
                    reason = str(exc).split(": ")[0]
                out.reasons[reason] = out.reasons.get(reason, 0) + 1
            else:
                out.delivered += 1
                out.strategies[record["strategy"]] = out.strategies.get(record["strategy"], 0) + 1
                if record["session_id"] in accepted_at:
                    out.freshness.append(landed - accepted_at[record["session_id"]])
    return out


def run_demo(
    settings: Settings,
    *,
    customers: int,
    products: int,
    ratings: int,
    seed: int,
    events: int,
    rate: float,
    reset: bool,
    keep_up: bool,
    reports_dir: Path,
) -> DemoRun:
    """Run every stage; returns what the summary and report show."""
    run = DemoRun()
    stack = EmbeddedStack(settings)
    with stage(run, "stack up") as s:
        settings = settings.replace(**stack.up())
        for note in stack.notes:
            click.echo(f"    {note}")
        s["detail"] = (
            f"{settings.emulator} at {settings.endpoint_url}, PostgreSQL + pgvector on port {settings.pg_port}"
        )
    try:
        run_batch(run, settings, SeedSpec(customers, products, ratings, seed), reset=reset, reports_dir=reports_dir)
        run_streaming(run, settings, events=events, rate=rate, seed=seed)
        if keep_up:
            with stage(run, "recommendations API (left running)") as s:
                run.figures["api_url"] = stack.start_api()
                s["detail"] = f"recsys api on {run.figures['api_url']} (docs: /docs)"
    finally:
        if not keep_up:
            stack.down()
    return run


def run_batch(run: DemoRun, settings: Settings, spec: SeedSpec, *, reset: bool, reports_dir: Path) -> None:
    """Seed, ETL, train and evaluate, load embeddings, build the Lambda zip."""
    with stage(run, "seed MySQL source") as s:
        summary = seed_configured_source(settings, spec, reset=reset, show_progress=True)
        run.figures.update(customers=spec.customers, products=spec.products, ratings=spec.ratings)
        s["detail"] = summary.line()
    with stage(run, "Glue ETL job (local Spark)") as s:
        manifest = run_etl(settings)
        run.figures["training_rows"] = manifest["row_count"]
        s["detail"] = (
            f"{manifest['row_count']:,} rows published as snapshot {manifest['run_id']}, "
            f"partitioned by {manifest['partition_key']}"
        )
    with stage(run, "train + evaluate ALS and the hybrid") as s:
        truth, note = planted_truth_for(settings)
        result = train_and_publish(
            settings, TrainParams(), reports_dir, truth=truth, ceiling_note=note, show_progress=True
        )
        views, selection = result.evaluation.views, result.evaluation.selection
        run.metrics_table = result.evaluation.text()
        run.metrics = {name: vars(m) for name, m in result.report.rankers.items()}
        run.cold_metrics = {
            view: {name: vars(m) for name, m in report.rankers.items()}
            for view, report in (
                ("attributes only", views.cold_features),
                (f"attributes + first {views.browsed_items} ratings browsed", views.cold_browsed),
            )
        }
        run.figures.update(
            model_version=result.version,
            model_choice=selection.reason,
            cold_customers=views.cold_customers,
            browsed_items=views.browsed_items,
            **headline_metrics(result.evaluation),
        )
        run.train_report_png = next(result.report_dir.glob("*.png"), None)
        run.cold_start_png = cold_start_png(views, selection.kind, title=f"model {result.version}: cold start")
        s["detail"] = f"{selection.kind} model {result.version} published ({selection.reason}), serving pointer moved"
    with stage(run, "load embeddings into pgvector") as s:
        loaded = load_embeddings(settings)
        run.figures.update(items_live=loaded.item_count, users_live=loaded.user_count, embedding_dim=loaded.dimension)
        s["detail"] = loaded.line()
    with stage(run, "build Lambda zip") as s:
        zip_report = build_lambda_zip(settings.lambda_zip)
        s["detail"] = f"{settings.lambda_zip} ({zip_report.zip_bytes / 2**20:.1f} MiB)"


def run_streaming(run: DemoRun, settings: Settings, *, events: int, rate: float, seed: int) -> None:
    """Replay events (and a few malformed ones) through delivery and account for every one."""
    delivery = start_delivery(settings, settings.state_dir / "logs" / "demo-firehose.log")
    try:
        run.figures["concurrency"] = wait_warm(settings, delivery)["concurrency"]
        with (
            stage(run, "replay events -> Kinesis -> Firehose + Lambda -> S3") as s,
            ArrivalWatcher(settings) as watcher,
        ):
            sent = replay(
                settings,
                events=events,
                rate=rate,
                seed=seed,
                show_progress=True,
                new_customer_fraction=NEW_CUSTOMER_FRACTION,
                empty_history_fraction=EMPTY_HISTORY_FRACTION,
            )
            bad = send_records(
                settings, [OutgoingRecord(data, f"malformed-{i}") for i, data in enumerate(MALFORMED_EVENTS)]
            )
            produced = sent.sent + bad.sent
            stats = wait_accounted(settings, produced, delivery)
            s["detail"] = (
                f"{produced} events produced ({len(MALFORMED_EVENTS)} malformed on purpose): "
                f"{stats['delivered']} delivered, {stats['dropped']} dropped, {stats['failed']} failed"
            )
    finally:
        stop_delivery(delivery)
    outputs = collect_outputs(settings, sent.accepted_at, watcher.first_seen)
    run.freshness, run.failure_reasons, run.strategies = outputs.freshness, outputs.reasons, outputs.strategies
    run.figures.update(
        events_produced=produced,
        delivered=stats["delivered"],
        dropped=stats["dropped"],
        failed=stats["failed"],
        delivered_in_s3=outputs.delivered,
        new_customers=sent.new_customers,
        empty_histories=sent.empty_histories,
    )
