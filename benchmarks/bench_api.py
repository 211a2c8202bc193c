"""Recommendations API benchmark: ``GET /customers/{n}/recommendations`` throughput and latency.

Starts its own embedded stack (temporary RECSYS_STATE_DIR, own MySQL database name, dropped at the
end), publishes a clustered synthetic model (100k items x 64-d, 20k customers who each rated 20
items) in the contract layout, loads it with ``recsys load-embeddings``' loader, then serves it
twice, each time as its own uvicorn process with one worker and the same FastAPI app:

* ``recsys api``: the connection pool (``recsys.serving.database.DatabasePool``), the way it ships;
* the baseline: the same app whose database opens a new connection for every request.

For each, a closed loop at concurrency 1, 8 and 32 (keep-alive HTTP clients in threads of this
process, random customers, k=10, already-rated items excluded) gives throughput and p50/p99, and an
open loop at a fixed 200 requests/s gives the latency a caller sees at that rate (measured from
the scheduled send time, so queueing counts). Client and servers share the machine's 2 cores, and
on a shared machine other work takes its share: so each run also counts the CPU time the server
process and the whole PostgreSQL cluster (postmaster, its backends, and backends that already
exited) spent per request, a figure other load does not inflate much.

    .venv/bin/python -m benchmarks.bench_api
    .venv/bin/python -m benchmarks.bench_api --items 20000 --users 5000 --seconds 5   # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from benchmarks.bench_vectordb import clustered, embeddings_csv

TARGET_P99_MS, TARGET_RATE, TARGET_SPEEDUP = 25.0, 200.0, 5.0
CONCURRENCY = (1, 8, 32)
RATED_PER_CUSTOMER = 20
K = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0, help="per closed-loop measurement")
    parser.add_argument("--open-seconds", type=float, default=15.0, help="open loop at --rate")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="open-loop requests/s")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- the baseline server (a subprocess of this script) ---------------------------------------------


class ConnectionPerRequest:
    """The baseline's database: ``run(work)`` opens a connection, runs ``work``, closes it."""

    def __init__(self, params: dict):
        self.params = params

    def run(self, work):
        import psycopg2

        from recsys.serving.database import CONNECTION_ERRORS, DatabaseUnavailable

        try:
            conn = psycopg2.connect(connect_timeout=3, **self.params)
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        try:
            return work(conn)
        finally:
            conn.close()


def serve_baseline(port: int) -> None:
    """The shipped app, its pool swapped for a connection per request, under the same uvicorn."""
    import uvicorn

    from recsys.apps.api_server import api_runtime
    from recsys.core.config import load_settings
    from recsys.serving.api import create_app

    settings = load_settings()
    runtime = api_runtime(settings, pool_size=1)
    runtime.db = ConnectionPerRequest(settings.pg_params())
    uvicorn.run(create_app(runtime), host="127.0.0.1", port=port, access_log=False, log_level="warning")


# ---- data -------------------------------------------------------------------------------------------


def publish_model(settings, args) -> tuple[str, np.ndarray]:
    """A synthetic version in the contract layout (embeddings and rated items); returns (version, user ids)."""
    from recsys.contracts import ITEM_EMBEDDINGS, MODEL_MANIFEST, RATED_ITEMS, USER_EMBEDDINGS, artifact_key
    from recsys.core.aws import client

    rng = np.random.default_rng(42)
    items, users = clustered(rng, (args.items, args.users), args.dim, args.clusters)
    item_ids = np.array([f"P{i:07d}" for i in range(args.items)])
    user_ids = np.arange(1, args.users + 1)
    rated = rng.integers(args.items, size=(args.users, RATED_PER_CUSTOMER))
    pairs = sorted({(int(u), str(item_ids[j])) for u, row in zip(user_ids, rated, strict=True) for j in row})
    files = {
        ITEM_EMBEDDINGS: embeddings_csv(item_ids, items),
        USER_EMBEDDINGS: embeddings_csv(user_ids, users),
        RATED_ITEMS: ("user_id,item_id\n" + "".join(f"{u},{c}\n" for u, c in pairs)).encode(),
    }
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-a91be7c4"
    s3 = client("s3", settings)
    for name, body in files.items():
        s3.put_object(Bucket=settings.artifacts_bucket, Key=artifact_key(version, name), Body=body)
    manifest = {
        "version": version,
        "embedding_dim": args.dim,
        "embedding_transform": "none",
        "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()},
    }
    s3.put_object(
        Bucket=settings.artifacts_bucket, Key=artifact_key(version, MODEL_MANIFEST), Body=json.dumps(manifest).encode()
    )
    return version, user_ids


# ---- servers ----------------------------------------------------------------------------------------


def start_server(command: list[str], port: int, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {process.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/version")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not answer on port {port}")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- load -------------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP connection; ``get`` returns (status, seconds)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> int:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        response.read()
        return response.status


def path_for(customer: int) -> str:
    return f"/customers/{customer}/recommendations?k={K}"


def closed_loop(port: int, customers: np.ndarray, concurrency: int, seconds: float, seed: int) -> dict:
    """``concurrency`` clients sending back to back for ``seconds``: throughput and latency."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        rng = np.random.default_rng(seed * 1000 + index)
        client, mine, bad = Client(port), [], 0
        start.wait()
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            status = client.get(path_for(int(rng.choice(customers))))
            mine.append(time.perf_counter() - began)
            bad += status != 200
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return summary(latencies, elapsed, errors[0])


def open_loop(port: int, customers: np.ndarray, rate: float, seconds: float, seed: int) -> dict:
    """Requests scheduled every 1/rate s (a pool of 64 clients sends them); latency from the schedule."""
    rng = np.random.default_rng(seed)
    total = int(rate * seconds)
    jobs: queue.Queue = queue.Queue()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker() -> None:
        client = Client(port)
        while (job := jobs.get()) is not None:
            due, customer = job
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            status = client.get(path_for(customer))
            with lock:
                latencies.append(time.perf_counter() - due)
                errors[0] += status != 200

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    began = time.perf_counter() + 0.2
    for i in range(total):
        jobs.put((began + i / rate, int(rng.choice(customers))))
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    return summary(latencies, time.perf_counter() - began, errors[0])


def process_cpu(pid: int, children_done: bool = False) -> float:
    """CPU seconds of a process (with ``children_done``: plus its exited, reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = sum(int(x) for x in fields[11:13] + (fields[13:15] if children_done else []))
    return used / os.sysconf("SC_CLK_TCK")


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster, its live children, its exited backends."""
    total = process_cpu(postmaster, children_done=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    total += process_cpu(int(entry.name))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return total


def summary(latencies: list[float], elapsed: float, errors: int) -> dict:
    from recsys.core.stats import percentile

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


def measure(name: str, port: int, customers: np.ndarray, args, server: int, postmaster: int) -> dict:
    for _ in range(50):  # warm: connections, index pages
        Client(port).get(path_for(int(customers[0])))
    results = {}
    for key in (*CONCURRENCY, "open"):
        before = process_cpu(server) + cluster_cpu(postmaster)
        results[key] = (
            closed_loop(port, customers, key, args.seconds, seed=key)
            if key != "open"
            else open_loop(port, customers, args.rate, args.open_seconds, seed=7)
        )
        r = results[key]
        r["cpu_ms"] = (process_cpu(server) + cluster_cpu(postmaster) - before) / max(r["requests"], 1) * 1e3
        label = f"concurrency {key:>2}" if key != "open" else f"open loop {args.rate:g}/s"
        print(
            f"  {name:<22} {label:<17} {r['rps']:>8,.0f} req/s  p50 {r['p50_ms']:>7.2f} ms  "
            f"p99 {r['p99_ms']:>8.2f} ms  CPU {r['cpu_ms']:.2f} ms/req  ({r['requests']:,} requests, "
            f"{r['errors']} errors)",
            flush=True,
        )
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return 0
    from recsys.local.stack import free_port, scratch_stack
    from recsys.pipeline.vector_load import load_embeddings

    with scratch_stack("bench_api") as settings:
        print(
            f"== recommendations API benchmark: {args.items:,} items x {args.dim}-d, {args.users:,} customers "
            f"({RATED_PER_CUSTOMER} rated each), GET /customers/{{n}}/recommendations?k={K}; 2-core shared machine",
            flush=True,
        )
        started = time.perf_counter()
        version, customers = publish_model(settings, args)
        loaded = load_embeddings(settings, version)
        print(
            f"published and loaded {version} in {time.perf_counter() - started:.0f} s "
            f"(HNSW {loaded.index_seconds:.0f} s)",
            flush=True,
        )
        env = {**os.environ, **settings.as_env()}
        postmaster = json.loads((settings.state_dir / "stack.json").read_text())["postgres"]["pid"]
        print(f"load average before measuring: {os.getloadavg()[0]:.1f}", flush=True)
        pooled_port, baseline_port = free_port(), free_port()
        recsys = str(Path(sys.executable).with_name("recsys"))
        results = {}
        for name, command, port in (
            ("recsys api (pool of 8)", [recsys, "api", "--port", str(pooled_port), "--no-access-log"], pooled_port),
            (
                "baseline (connect/req)",
                [sys.executable, "-m", __spec__.name, "--serve-baseline", str(baseline_port)],
                baseline_port,
            ),
        ):
            server = start_server(command, port, env)
            try:
                results[name] = measure(name, port, customers, args, server.pid, postmaster)
            finally:
                stop_server(server)
    pooled, baseline = results.values()
    best = max(pooled[c]["rps"] for c in CONCURRENCY)
    best_baseline = max(baseline[c]["rps"] for c in CONCURRENCY)
    print("\n== goals")
    checks = [
        (
            (
                f"open loop {args.rate:g} req/s: p99 {pooled['open']['p99_ms']:.1f} ms <= {TARGET_P99_MS:g} ms "
                f"(p50 {pooled['open']['p50_ms']:.1f} ms)"
            ),
            pooled["open"]["p99_ms"] <= TARGET_P99_MS,
        )
    ]
    for c in CONCURRENCY:
        ratio = pooled[c]["rps"] / baseline[c]["rps"]
        checks.append(
            (
                (
                    f"concurrency {c:>2}: {pooled[c]['rps']:,.0f} vs baseline {baseline[c]['rps']:,.0f} req/s = "
                    f"{ratio:.1f}x >= {TARGET_SPEEDUP:g}x"
                ),
                ratio >= TARGET_SPEEDUP,
            )
        )
    checks.append(
        (
            (
                f"best throughput {best:,.0f} vs baseline's best {best_baseline:,.0f} req/s = "
                f"{best / best_baseline:.1f}x >= {TARGET_SPEEDUP:g}x"
            ),
            best / best_baseline >= TARGET_SPEEDUP,
        )
    )
    cpu_ratio = baseline[8]["cpu_ms"] / pooled[8]["cpu_ms"]
    checks.append(
        (
            (
                f"CPU per request at concurrency 8 (API + PostgreSQL): {pooled[8]['cpu_ms']:.2f} vs baseline "
                f"{baseline[8]['cpu_ms']:.2f} ms = {cpu_ratio:.1f}x: the throughput ratio on a machine of its own"
            ),
            cpu_ratio >= TARGET_SPEEDUP,
        )
    )
    for text, ok in checks:
        print(f"  [{'met' if ok else 'NOT MET'}] {text}")
    print(f"load average after measuring: {os.getloadavg()[0]:.1f}")
    errors = sum(r["errors"] for per in results.values() for r in per.values())
    if errors:
        print(f"  {errors} requests did not answer 200")
    return 0


if __name__ == "__main__":
    sys.exit(main())
