"""Embedded stack benchmark, per emulator (moto, LocalStack): start, resources, stop, memory, and the
AWS state kept across `stack down`/`up` (save and restore) against a naive copy measured in the same run.

For each emulator it starts a bare emulator (no PostgreSQL, no MySQL) on a loopback port, creates the
project's resources, fills the buckets with ``--objects`` objects of ``--object-kib`` KiB and the stream
with ``--records`` records, then saves (``recsys.local.aws_state.save``) and restores into a fresh emulator
(``restore``). The baseline moves the same objects with one sequential GET/PUT loop and the same records
with PutRecords of 500 (no ordering rule). Timings on a shared 2-core machine vary with load.

    .venv/bin/python -m benchmarks.bench_stack                       # 200 x 256 KiB (50 MiB), 20k records
    .venv/bin/python -m benchmarks.bench_stack --emulators moto --objects 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from recsys.core import aws
from recsys.core.config import load_settings
from recsys.local import aws_state
from recsys.local.aws_resources import ensure_resources
from recsys.local.emulators import emulator_for
from recsys.local.stack import LOCAL_CREDENTIALS, free_port

TARGET_MIB_PER_S, TARGET_RECORDS_PER_S, TARGET_VS_BASELINE = 10.0, 1_000.0, 1.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulators", default="moto,localstack")
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--object-kib", type=int, default=256)
    parser.add_argument("--records", type=int, default=20_000)
    return parser.parse_args()


class Running:
    """One emulator with the project's resources; figures of its start, first calls and stop."""

    def __init__(self, name: str, state_dir: Path):
        self.emulator = emulator_for(load_settings({"RECSYS_STATE_DIR": str(state_dir), "RECSYS_EMULATOR": name}))
        self.state_dir = state_dir
        port = free_port()
        started = time.perf_counter()
        self.process = self.emulator.start(port, state_dir / name, state_dir / "logs" / f"{name}.log")
        self.healthy_s = time.perf_counter() - started
        self.settings = load_settings(
            {
                "RECSYS_STATE_DIR": str(state_dir),
                "RECSYS_EMULATOR": name,
                "AWS_ENDPOINT_URL": self.emulator.endpoint(port),
                **LOCAL_CREDENTIALS,
            }
        )
        started = time.perf_counter()
        ensure_resources(self.settings)
        self.resources_s = time.perf_counter() - started

    def rss_mib(self) -> float:
        process = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20

    def stop(self) -> float:
        started = time.perf_counter()
        self.emulator.stop(self.process.pid)
        return time.perf_counter() - started


def fill(settings, objects: int, kib: int, records: int) -> None:
    s3, kinesis = aws.client("s3", settings), aws.client("kinesis", settings)
    body = os.urandom(kib * 1024)
    for i in range(objects):
        s3.put_object(Bucket=settings.artifacts_bucket, Key=f"models/bench/{i:05d}.bin", Body=body)
    for start in range(0, records, 500):
        batch = [
            {"PartitionKey": f"session-{n % 997}", "Data": b'{"n": %d, "pad": "%s"}' % (n, b"x" * 200)}
            for n in range(start, min(start + 500, records))
        ]
        kinesis.put_records(StreamName=settings.kinesis_stream, Records=batch)


def naive_copy(source, target) -> float:
    """Baseline: every object GET then PUT sequentially, every record re-put in PutRecords of 500."""
    started = time.perf_counter()
    s3_in, s3_out = aws.client("s3", source), aws.client("s3", target)
    for page in s3_in.get_paginator("list_objects_v2").paginate(Bucket=source.artifacts_bucket):
        for obj in page.get("Contents", []):
            body = s3_in.get_object(Bucket=source.artifacts_bucket, Key=obj["Key"])["Body"].read()
            s3_out.put_object(Bucket=target.artifacts_bucket, Key=obj["Key"], Body=body)
    k_in, k_out = aws.client("kinesis", source), aws.client("kinesis", target)
    for shard in k_in.list_shards(StreamName=source.kinesis_stream)["Shards"]:
        iterator = k_in.get_shard_iterator(
            StreamName=source.kinesis_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            got = k_in.get_records(ShardIterator=iterator, Limit=10_000)
            for start in range(0, len(got["Records"]), 500):
                k_out.put_records(
                    StreamName=target.kinesis_stream,
                    Records=[
                        {"PartitionKey": r["PartitionKey"], "Data": r["Data"]}
                        for r in got["Records"][start : start + 500]
                    ],
                )
            if not got["Records"] and got.get("MillisBehindLatest", 0) == 0:
                break
            iterator = got.get("NextShardIterator")
    return time.perf_counter() - started


def bench(name: str, args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"recsys-bench-stack-{name}-"))
    try:
        first = Running(name, root / "a")
        fill(first.settings, args.objects, args.object_kib, args.records)
        rss = first.rss_mib()
        saved = aws_state.save(first.settings, root / "a", emulator=name, show_progress=False)
        second = Running(name, root / "b")
        shutil.copytree(root / "a" / aws_state.SAVED, root / "b" / aws_state.SAVED)
        restored = aws_state.restore(second.settings, root / "b", show_progress=False)
        stops = [second.stop()]
        third = Running(name, root / "c")
        baseline = naive_copy(first.settings, third.settings)
        size = sum(f.stat().st_size for f in (root / "b" / aws_state.RESTORED).rglob("*") if f.is_file())
        figures = {
            "healthy_s": first.healthy_s,
            "resources_s": first.resources_s,
            "rss_mib": rss,
            "save_s": saved.seconds,
            "restore_s": restored.seconds,
            "baseline_s": baseline,
            "mib": saved.bytes / 2**20,
            "records": saved.records,
            "on_disk_mib": size / 2**20,
        }
        figures["stop_s"] = max(stops + [first.stop(), third.stop()])
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    args = parse_args()
    print(f"stack benchmark: {args.objects} objects x {args.object_kib} KiB, {args.records:,} records")
    for name in args.emulators.split(","):
        f = bench(name, args)
        moved = f["save_s"] + f["restore_s"]
        mib_s = 2 * f["mib"] / moved
        rec_s = 2 * f["records"] / moved
        print(f"\n== {name}")
        print(
            f"  start to healthy        {f['healthy_s']:6.1f} s   resources (first calls) {f['resources_s']:5.1f} s"
            f"   stop (slowest of 3) {f['stop_s']:5.1f} s   RSS with children {f['rss_mib']:6.0f} MiB"
        )
        print(
            f"  save                    {f['save_s']:6.1f} s   restore {f['restore_s']:5.1f} s   "
            f"({f['mib']:.0f} MiB, {f['records']:,} records, {f['on_disk_mib']:.0f} MiB on disk)"
        )
        print(
            f"  save+restore            {mib_s:6.1f} MiB/s and {rec_s:,.0f} records/s each way "
            f"(goal >= {TARGET_MIB_PER_S:g} MiB/s, >= {TARGET_RECORDS_PER_S:,.0f} records/s): "
            f"{'met' if mib_s >= TARGET_MIB_PER_S and rec_s >= TARGET_RECORDS_PER_S else 'NOT met'}"
        )
        ratio = moved / f["baseline_s"]
        print(
            f"  vs naive copy           {moved:6.1f} s vs {f['baseline_s']:.1f} s = {ratio:.2f}x "
            f"(goal <= {TARGET_VS_BASELINE:g}x; the save also writes disk and keeps per-key order): "
            f"{'met' if ratio <= TARGET_VS_BASELINE else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
