"""Streaming benchmark: Lambda batch throughput vs one query per record, end-to-end freshness,
producer throughput. Standalone: starts its own embedded stack (temp state dir) and MySQL database,
and drops/stops them at the end.

    .venv/bin/python benchmarks/bench_streaming.py [--batch 500] [--freshness-events 300] [--producer-events 5000]

Targets: batched Lambda >= 1,000 records/s on 2 cores and >= 5x the per-record version;
freshness p99 <= 3 s from PutRecords to the object in S3 with a 1 s buffer.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the model publisher the streaming tests use


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def firehose_event(events: list[dict]) -> dict:
    return {"invocationId": "bench", "deliveryStreamArn": "arn", "region": "us-east-1", "records": [
        {"recordId": str(i), "approximateArrivalTimestamp": 0,
         "data": base64.b64encode(json.dumps(e).encode()).decode()} for i, e in enumerate(events)]}


def per_record_runtime(handler_module, runtime):
    """The same handler, but every record costs its own lookups (3 round trips per record)."""
    from inference import vector_store
    from inference.recommend import recommend_batch

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

    from inference import handler
    from recsys.lambda_runtime import LocalLambda
    from recsys.firehose import lambda_environment, unpack_zip
    from recsys.replay import synthesize_events

    events = synthesize_events(catalogue, batch, new_customer_fraction=0.1, empty_history_fraction=0.05, seed=1)
    payload = firehose_event(events)
    runtime = handler.ServingRuntime(handler.HandlerConfig(settings.buckets["artifacts"], 60.0, 10))
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
    code_dir = unpack_zip(Path(settings.recsys_lambda_zip), settings.state_dir / "lambda")
    with LocalLambda(code_dir, "inference.handler.lambda_handler", lambda_environment(settings),
                     log_file=settings.state_dir / "bench-lambda.log") as fn:
        body = json.dumps(payload).encode()
        cold = fn.invoke(body)
        assert cold.ok, cold.error()
        warm = min(fn.invoke(body).duration_seconds for _ in range(rounds))
    return {"batch": batch, "batched_s": batched, "per_record_s": per_record, "zip_cold_s": cold.duration_seconds,
            "zip_warm_s": warm}


def bench_freshness(settings, catalogue, events: int, rate: float) -> dict:
    from recsys import aws
    from recsys.firehose import build_delivery
    from recsys.replay import events_to_records, send_records, synthesize_events

    s3 = aws.client("s3", settings)
    bucket = settings.buckets["recommendations"]
    delivery = build_delivery(settings, poll_seconds=0.1)
    worker = threading.Thread(target=delivery.run, daemon=True)
    worker.start()
    put_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    seen_keys: set[str] = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    if obj["Key"] in seen_keys:
                        continue
                    seen_keys.add(obj["Key"])
                    now = time.monotonic()
                    for line in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().splitlines():
                        seen_at.setdefault(json.loads(line).get("session_id", ""), now)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    generated = synthesize_events(catalogue, events, new_customer_fraction=0.1, empty_history_fraction=0.0, seed=2)
    for chunk_start in range(0, events, max(1, int(rate // 10))):
        chunk = generated[chunk_start:chunk_start + max(1, int(rate // 10))]
        send_records(settings, events_to_records(chunk))
        now = time.monotonic()
        for e in chunk:
            put_at[e["session_id"]] = now
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(put_at) <= set(seen_at):
        time.sleep(0.1)
    stop.set()
    delivery.stop_requested.set()
    worker.join(10)
    watcher.join(5)
    delivery.invoker.close()
    lat = [seen_at[s] - put_at[s] for s in put_at if s in seen_at]
    return {"events": events, "delivered": len(lat), "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99),
            "buffer_s": float(settings.recsys_buffer_seconds), "batch_p50": delivery.stats.percentile(0.5)}


def bench_producer(settings, catalogue, events: int) -> dict:
    from recsys.replay import events_to_records, send_records, synthesize_events

    started = time.perf_counter()
    generated = synthesize_events(catalogue, events, seed=3)
    synth = time.perf_counter() - started
    summary = send_records(settings, events_to_records(generated))
    return {"events": events, "synth_per_s": events / synth, "send_per_s": summary.sent / summary.seconds,
            "put_calls": summary.put_calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--freshness-events", type=int, default=300)
    parser.add_argument("--freshness-rate", type=float, default=100.0)
    parser.add_argument("--producer-events", type=int, default=5000)
    args = parser.parse_args()

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    state = tempfile.mkdtemp(prefix="bench-streaming-")
    os.environ.update({"RECSYS_STATE_DIR": state, "MYSQL_DATABASE": f"recsys_bench_streaming_{os.getpid()}",
                       "RECSYS_BUFFER_SECONDS": "1", "RECSYS_POINTER_TTL_SECONDS": "60"})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from fixtures_streaming import train_and_publish
    from recsys.config import load_settings
    from recsys.db import connect_mysql
    from recsys.lambda_zip import build_lambda_zip
    from recsys.replay import load_catalogue
    from recsys.stack import LocalStack
    from recsys_seed import seed_source

    local = LocalStack(load_settings())
    try:
        os.environ.update(local.up())
        zip_report = build_lambda_zip(Path(state) / "build" / "lambda.zip")
        os.environ["RECSYS_LAMBDA_ZIP"] = str(zip_report.path)
        settings = load_settings()
        seed_source(settings, reset=True)
        train_and_publish(settings)
        catalogue = load_catalogue(settings)

        lam = bench_lambda(settings, catalogue, args.batch, args.rounds)
        fresh = bench_freshness(settings, catalogue, args.freshness_events, args.freshness_rate)
        prod = bench_producer(settings, catalogue, args.producer_events)
    finally:
        local.down()
        conn = connect_mysql(load_settings(), database="")
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{os.environ['MYSQL_DATABASE']}`")
        conn.close()

    batched_rps = lam["batch"] / lam["batched_s"]
    per_record_rps = lam["batch"] / lam["per_record_s"]
    print(f"lambda zip: {zip_report.zip_bytes / 2**20:.1f} MiB zipped, {zip_report.unzipped_bytes / 2**20:.1f} MiB unzipped")
    print(f"lambda batch of {lam['batch']} (in-process handler, best of {args.rounds}):")
    print(f"  batched queries      {lam['batched_s'] * 1000:8.1f} ms  {batched_rps:8,.0f} records/s  (target >= 1,000)")
    print(f"  one query per record {lam['per_record_s'] * 1000:8.1f} ms  {per_record_rps:8,.0f} records/s")
    print(f"  ratio                {batched_rps / per_record_rps:8.1f}x  (target >= 5x)")
    print(f"  through the zip under awslambdaric: cold {lam['zip_cold_s'] * 1000:.0f} ms, warm "
          f"{lam['zip_warm_s'] * 1000:.0f} ms = {lam['batch'] / lam['zip_warm_s']:,.0f} records/s")
    print(f"freshness PutRecords -> S3 object, buffer {fresh['buffer_s']:g} s, {fresh['delivered']}/{fresh['events']} "
          f"events at {args.freshness_rate:g}/s: p50 {fresh['p50']:.2f} s, p99 {fresh['p99']:.2f} s (target p99 <= 3 s); "
          f"Lambda batch p50 {fresh['batch_p50'] * 1000:.0f} ms")
    print(f"producer: {prod['events']:,} events, synthesis {prod['synth_per_s']:,.0f} events/s, "
          f"PutRecords {prod['send_per_s']:,.0f} events/s ({prod['put_calls']} calls) against moto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
