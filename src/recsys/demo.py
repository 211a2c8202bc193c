"""``recsys demo``: the whole pipeline, end to end, on the embedded stack, then a report.

stack up → seed → ETL (Glue script on local Spark) → train + evaluate → load embeddings →
Lambda zip → local Firehose delivery (a separate ``recsys firehose`` process, as in compose) →
replay events (plus a few malformed ones) → wait until every event is accounted for → report.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from recsys import aws
from recsys.config import Settings, load_settings
from recsys.errors import PipelineError

MALFORMED_EVENTS = [  # the error path, shown in the report
    b"not json at all",
    json.dumps({"session_id": "demo-malformed-1", "customer_number": "103", "event_time": "2026-01-01T00:00:00Z",
                "browse_history": []}).encode(),
    json.dumps({"customer_number": 103, "browse_history": [{"product_code": "S10_1678"}]}).encode(),
]


@dataclass
class Stage:
    name: str
    seconds: float
    detail: str


@dataclass
class DemoRun:
    """Everything the summary and the report show."""

    stages: list[Stage] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    freshness: list[float] = field(default_factory=list)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    metrics_table: str = ""
    metrics: dict = field(default_factory=dict)
    train_report_png: Path | None = None

    @contextmanager
    def stage(self, name: str):
        click.echo(click.style(f"==> {name}", bold=True))
        started = time.perf_counter()
        holder = {"detail": ""}
        yield holder
        elapsed = time.perf_counter() - started
        self.stages.append(Stage(name, elapsed, holder["detail"]))
        click.echo(f"    {holder['detail']} ({elapsed:.1f} s)")


def firehose_stats_path(settings: Settings) -> Path:
    return settings.state_dir / "firehose" / f"{settings.recsys_firehose_stream}.stats.json"


def start_delivery(settings: Settings, log_path: Path) -> subprocess.Popen:
    """``recsys firehose`` as its own process, exactly as the compose service runs it."""
    firehose_stats_path(settings).unlink(missing_ok=True)
    log = open(log_path, "wb")
    return subprocess.Popen([str(Path(sys.executable).with_name("recsys")), "firehose", "--poll-interval", "0.1"],
                            env={**os.environ, **settings.as_env()}, stdout=log, stderr=subprocess.STDOUT)


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
            if stats["records_in"] >= produced and \
                    stats["delivered"] + stats["dropped"] + stats["failed"] >= produced:
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
        self.bucket = settings.recsys_recommendations_bucket
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

    def __enter__(self) -> "ArrivalWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        now = time.time()
        for key in self._keys():  # anything that landed after the last poll
            if key not in self._existing:
                self.first_seen.setdefault(key, now)


def collect_outputs(settings: Settings, accepted_at: dict[str, float],
                    first_seen: dict[str, float]) -> tuple[list[float], dict[str, int], int]:
    """Freshness (PutRecords accepted -> object in S3) per delivered event, failure reasons, records delivered.

    A parked record's reason comes from running its raw data through the Lambda's own validator.
    """
    from inference.events import InvalidEvent, decode_record_data, parse_event

    s3 = aws.client("s3", settings)
    bucket = settings.recsys_recommendations_bucket
    freshness, reasons, delivered = [], {}, 0
    for key, landed in first_seen.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        for line in filter(None, body.splitlines()):
            record = json.loads(line)
            if key.startswith("processing-failed/"):
                try:
                    parse_event(decode_record_data(record["rawData"]))
                    reason = record.get("errorMessage") or record.get("errorCode", "unknown")
                except InvalidEvent as exc:
                    reason = str(exc).split(": ")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
            else:
                delivered += 1
                if record["session_id"] in accepted_at:
                    freshness.append(landed - accepted_at[record["session_id"]])
    return freshness, reasons, delivered


def run_demo(settings: Settings, *, customers: int, products: int, ratings: int, seed: int, events: int,
             rate: float, reset: bool, keep_up: bool, reports_dir: Path) -> DemoRun:
    """Run every stage; returns what the summary and report show."""
    from recsys.etl import run_etl
    from recsys.lambda_zip import build_lambda_zip
    from recsys.replay import OutgoingRecord, replay, send_records
    from recsys.stack import LocalStack
    from recsys.train import TrainParams, headline_metrics, train_and_publish
    from recsys.vectordb import load_embeddings
    from recsys_seed import SeedSpec, seed_source

    run = DemoRun()
    stack = LocalStack(settings)
    with run.stage("stack up") as s:
        stack_env = stack.up()
        os.environ.update(stack_env)  # stage functions and the delivery process read the environment
        settings = load_settings({**settings.as_env(), **stack_env})
        s["detail"] = f"moto at {settings.endpoint_url}, PostgreSQL + pgvector on port {settings.pgport}"
    try:
        with run.stage("seed MySQL source") as s:
            summary = seed_source(settings, SeedSpec(customers, products, ratings, seed), reset=reset,
                                  show_progress=True)
            run.figures.update(customers=customers, products=products, ratings=ratings)
            s["detail"] = summary.line()
        with run.stage("Glue ETL job (local Spark)") as s:
            manifest = run_etl(settings)
            run.figures["training_rows"] = manifest["row_count"]
            s["detail"] = (f"{manifest['row_count']:,} rows published as snapshot {manifest['run_id']}, "
                           f"partitioned by {manifest['partition_key']}")
        with run.stage("train + evaluate implicit ALS") as s:
            result = train_and_publish(settings, TrainParams(), reports_dir, show_progress=True)
            run.metrics_table = result.report.table()
            run.metrics = {name: vars(m) for name, m in result.report.rankers.items()}
            run.figures.update(model_version=result.version, **headline_metrics(result.report))
            run.train_report_png = next(result.report_dir.glob("*.png"), None)
            s["detail"] = f"model {result.version} published, serving pointer moved"
        with run.stage("load embeddings into pgvector") as s:
            loaded = load_embeddings(settings)
            run.figures.update(items_live=loaded.item_count, users_live=loaded.user_count,
                               embedding_dim=loaded.dimension)
            s["detail"] = loaded.line()
        with run.stage("build Lambda zip") as s:
            zip_report = build_lambda_zip(Path(settings.recsys_lambda_zip))
            s["detail"] = f"{settings.recsys_lambda_zip} ({zip_report.zip_bytes / 2**20:.1f} MiB)"
        log_path = settings.state_dir / "logs" / "demo-firehose.log"
        delivery = start_delivery(settings, log_path)
        try:
            with run.stage("replay events -> Kinesis -> Firehose + Lambda -> S3") as s, \
                    ArrivalWatcher(settings) as watcher:
                sent = replay(settings, events=events, rate=rate, seed=seed, show_progress=True)
                bad = send_records(settings, [OutgoingRecord(data, f"malformed-{i}")
                                              for i, data in enumerate(MALFORMED_EVENTS)])
                produced = sent.sent + bad.sent
                stats = wait_accounted(settings, produced, delivery)
                s["detail"] = (f"{produced} events produced ({len(MALFORMED_EVENTS)} malformed on purpose): "
                               f"{stats['delivered']} delivered, {stats['dropped']} dropped, {stats['failed']} failed")
        finally:
            stop_delivery(delivery)
        freshness, reasons, delivered_in_s3 = collect_outputs(settings, sent.accepted_at, watcher.first_seen)
        run.freshness, run.failure_reasons = freshness, reasons
        run.figures.update(events_produced=produced, delivered=stats["delivered"], dropped=stats["dropped"],
                           failed=stats["failed"], delivered_in_s3=delivered_in_s3,
                           new_customers=sent.new_customers, empty_histories=sent.empty_histories)
    finally:
        if not keep_up:
            stack.down()
    return run


@click.command("demo")
@click.option("--customers", default=1000, show_default=True, type=int)
@click.option("--products", default=300, show_default=True, type=int)
@click.option("--ratings", default=30_000, show_default=True, type=int)
@click.option("--seed", "seed_value", default=42, show_default=True, type=int)
@click.option("--events", default=300, show_default=True, type=int, help="Activity events to replay.")
@click.option("--rate", default=150.0, show_default=True, type=float, help="Events per second.")
@click.option("--reset", is_flag=True,
              help="Rebuild the source tables even when they hold other data (by default a source seeded "
                   "differently is refused, and one seeded with these arguments is reused).")
@click.option("--keep-up", is_flag=True, help="Leave the stack running (then: recsys web).")
@click.option("--reports-dir", default=Path("reports"), show_default=True, type=click.Path(path_type=Path))
def demo_command(customers, products, ratings, seed_value, events, rate, reset, keep_up, reports_dir) -> None:
    """Run the whole pipeline end to end on the embedded stack and write a report."""
    from recsys.report import summary_text, write_report

    run = run_demo(load_settings(), customers=customers, products=products, ratings=ratings, seed=seed_value,
                   events=events, rate=rate, reset=reset, keep_up=keep_up, reports_dir=reports_dir)
    page = write_report(run, reports_dir / "demo")
    click.echo(summary_text(run))
    click.echo(f"report: {page.resolve()}")
    if keep_up:
        click.echo("stack left running: `recsys web` shows the recommendations; `recsys stack down` stops it")
