"""Streaming benchmark: Lambda batch throughput vs one query per record, end-to-end freshness,
producer throughput. Standalone: starts its own embedded stack (temp state dir) and MySQL database,
and drops/stops them at the end.

    .venv/bin/python -m benchmarks.bench_streaming [--batch 500] [--freshness-events 300] [--producer-events 5000]

Targets: batched Lambda >= 1,000 records/s on 2 cores and >= 5x the per-record version;
freshness p99 <= 3 s from PutRecords to the object in S3 with a 1 s buffer, on a freshly started
delivery (first batch included), against a same-run baseline: one invocation at a time, no warm-up.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time


def firehose_event(events: list[dict]) -> dict:
    return {
        "invocationId": "bench",
        "deliveryStreamArn": "arn",
        "region": "us-east-1",
        "records": [
            {
                "recordId": str(i),
                "approximateArrivalTimestamp": 0,
                "data": base64.b64encode(json.dumps(e).encode()).decode(),
            }
            for i, e in enumerate(events)
        ],
    }


def per_record_runtime(handler_module, runtime):
    """The same handler, but every record costs its own lookups (3 round trips per record)."""
    from recsys.serving import vector_store
    from recsys.serving.recommend import recommend_batch

    class PerRecord(type(runtime)):
        def serve(self, events):
            pointer_model = self.models.current()

            def work(conn):
                with vector_store.consistent_read(conn):
                    model = self._model_for(conn, pointer_model)
                    lines = []
                    for event in events:
                        lines += [r.to_json_line() for r in recommend_batch(conn, [event], model, self.config.top_k)]
                    return lines

            return self.db.run(work)

    clone = PerRecord.__new__(PerRecord)
    clone.__dict__.update(runtime.__dict__)
    return clone


def bench_lambda(settings, catalogue, batch: int, rounds: int) -> dict:
    from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent

    from recsys.local.aws_resources import lambda_environment
    from recsys.local.firehose.invokers import unpack_zip
    from recsys.local.lambda_python import lambda_python
    from recsys.local.lambda_runtime import LocalLambda
    from recsys.serving import handler
    from recsys_seed import synthesize_events

    events = synthesize_events(catalogue, batch, new_customer_fraction=0.1, empty_history_fraction=0.05, seed=1)
    payload = firehose_event(events)
    runtime = handler.ServingRuntime(handler.HandlerConfig(settings.artifacts_bucket, 60.0, 10))
    slow = per_record_runtime(handler, runtime)

    def timed(rt) -> float:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            response = handler.transform(KinesisFirehoseEvent(payload), rt).asdict()
            best = min(best, time.perf_counter() - started)
            assert all(r["result"] == "Ok" for r in response["records"]), "benchmark batch must be served"
        return best

    timed(runtime)  # warm: model loaded, connection open
    batched, per_record = timed(runtime), timed(slow)
    code_dir = unpack_zip(settings.lambda_zip, settings.state_dir / "lambda")
    with LocalLambda(
        code_dir,
        "recsys.serving.handler.lambda_handler",
        lambda_environment(settings),
        log_file=settings.state_dir / "bench-lambda.log",
        python=lambda_python(settings),
    ) as fn:
        body = json.dumps(payload).encode()
        cold = fn.invoke(body)
        assert cold.ok, cold.error()
        warm = min(fn.invoke(body).duration_seconds for _ in range(rounds))
    return {
        "batch": batch,
        "batched_s": batched,
        "per_record_s": per_record,
        "zip_cold_s": cold.duration_seconds,
        "zip_warm_s": warm,
    }


def bench_freshness(
    settings, catalogue, events: int, rate: float, *, concurrency: int, warm_up: bool, seed: int
) -> dict:
    """Seconds from PutRecords accepting each event to its object appearing in S3, for a freshly
    started delivery (new runtimes): with ``warm_up`` the events are sent once the runtimes are warm,
    as on a delivery stream that runs before traffic arrives; without it the first batch is cold."""
    from recsys.apps.demo import ArrivalWatcher, collect_outputs
    from recsys.apps.replay import events_to_records, send_records
    from recsys.core.stats import percentile
    from recsys.local.firehose.delivery import build_delivery
    from recsys_seed import synthesize_events

    delivery = build_delivery(settings, poll_seconds=0.1, concurrency=concurrency, warm_up=warm_up)
    worker = threading.Thread(target=delivery.run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while warm_up and not delivery.stats.warm and time.monotonic() < deadline:
        time.sleep(0.05)
    generated = synthesize_events(catalogue, events, new_customer_fraction=0.1, empty_history_fraction=0.0, seed=seed)
    with ArrivalWatcher(settings) as watcher:
        sent = send_records(settings, events_to_records(generated), rate=rate)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and delivery.stats.delivered + delivery.stats.failed < sent.sent:
            time.sleep(0.1)
        time.sleep(0.3)  # let the watcher see the last object
    delivery.stop_requested.set()
    worker.join(10)
    delivery.close()
    lat = collect_outputs(settings, sent.accepted_at, watcher.first_seen).freshness
    return {
        "events": events,
        "delivered": len(lat),
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "latencies": lat,
        "objects": delivery.stats.objects,
        "buffer_s": float(settings.buffer_seconds),
        "batch_p50": delivery.stats.batch_percentile(50),
        "concurrency": concurrency,
        "warm_up": warm_up,
    }


def bench_producer(settings, catalogue, events: int) -> dict:
    from recsys.apps.replay import events_to_records, send_records
    from recsys_seed import synthesize_events

    started = time.perf_counter()
    generated = synthesize_events(catalogue, events, seed=3)
    synth = time.perf_counter() - started
    summary = send_records(settings, events_to_records(generated))
    return {
        "events": events,
        "synth_per_s": events / synth,
        "send_per_s": summary.sent / summary.seconds,
        "put_calls": summary.put_calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--freshness-events", type=int, default=300)
    parser.add_argument("--freshness-rate", type=float, default=150.0)  # the demo's rate
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--producer-events", type=int, default=5000)
    args = parser.parse_args()

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from tests.support.fixtures_streaming import train_and_publish

    from recsys.apps.demo_report import freshness_text
    from recsys.apps.source import seed_configured_source, source_catalogue
    from recsys.core.config import load_settings
    from recsys.deploy.lambda_zip import build_lambda_zip
    from recsys.local.stack import scratch_stack
    from recsys_seed import SeedSpec

    with scratch_stack("bench_streaming", RECSYS_BUFFER_SECONDS="1", RECSYS_POINTER_TTL_SECONDS="60") as scratch:
        zip_report = build_lambda_zip(scratch.state_dir / "build" / "lambda.zip")
        os.environ["RECSYS_LAMBDA_ZIP"] = str(zip_report.path)
        settings = load_settings()
        seed_configured_source(settings, SeedSpec(), reset=True)
        train_and_publish(settings)
        catalogue = source_catalogue(settings)

        lam = bench_lambda(settings, catalogue, args.batch, args.rounds)
        baseline = bench_freshness(
            settings, catalogue, args.freshness_events, args.freshness_rate, concurrency=1, warm_up=False, seed=2
        )
        fresh = bench_freshness(
            settings,
            catalogue,
            args.freshness_events,
            args.freshness_rate,
            concurrency=args.concurrency,
            warm_up=True,
            seed=4,
        )
        prod = bench_producer(settings, catalogue, args.producer_events)

    batched_rps = lam["batch"] / lam["batched_s"]
    per_record_rps = lam["batch"] / lam["per_record_s"]
    zipped, unzipped = zip_report.zip_bytes / 2**20, zip_report.unzipped_bytes / 2**20
    print(f"lambda zip: {zipped:.1f} MiB zipped, {unzipped:.1f} MiB unzipped")
    print(f"lambda batch of {lam['batch']} (in-process handler, best of {args.rounds}):")
    print(f"  batched queries      {lam['batched_s'] * 1000:8.1f} ms  {batched_rps:8,.0f} records/s  (target >= 1,000)")
    print(f"  one query per record {lam['per_record_s'] * 1000:8.1f} ms  {per_record_rps:8,.0f} records/s")
    print(f"  ratio                {batched_rps / per_record_rps:8.1f}x  (target >= 5x)")
    print(
        f"  through the zip under awslambdaric: cold {lam['zip_cold_s'] * 1000:.0f} ms, warm "
        f"{lam['zip_warm_s'] * 1000:.0f} ms = {lam['batch'] / lam['zip_warm_s']:,.0f} records/s"
    )
    print(
        f"freshness PutRecords -> S3 object, buffer {fresh['buffer_s']:g} s, {args.freshness_events} events at "
        f"{args.freshness_rate:g}/s, each run on a freshly started delivery (first batch included):"
    )
    for label, result in (
        (f"concurrency {fresh['concurrency']} + warm-up", fresh),
        ("baseline: concurrency 1, cold", baseline),
    ):
        print(
            f"  {label:<30} {result['delivered']}/{result['events']} delivered, "
            f"{freshness_text(result['latencies'])}; {result['objects']} objects, "
            f"Lambda batch p50 {result['batch_p50'] * 1000:.0f} ms"
        )
    print(
        f"producer: {prod['events']:,} events, synthesis {prod['synth_per_s']:,.0f} events/s, "
        f"PutRecords {prod['send_per_s']:,.0f} events/s ({prod['put_calls']} calls) against moto"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
