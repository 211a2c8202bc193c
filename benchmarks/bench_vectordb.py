"""Vector DB benchmark: COPY rate, HNSW build, k-NN latency/QPS/recall, batching, index vs seq scan.

Starts its own embedded stack (temporary RECSYS_STATE_DIR, own MySQL database name, dropped at
the end), publishes a clustered synthetic model to moto S3 in the contract layout, loads it with
``recsys.vectordb.load_embeddings`` and queries it with ``inference.vector_store`` (what the Lambda
and the CLI use). Exact top-k comes from numpy in the same run.

    .venv/bin/python benchmarks/bench_vectordb.py                 # 100k items x 64-d
    .venv/bin/python benchmarks/bench_vectordb.py --items 1000000  # if the machine has the time
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

TARGET_RECALL, TARGET_P99_MS, TARGET_SPEEDUP = 0.95, 10.0, 10.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--queries", type=int, default=1000, help="single-query latency sample")
    parser.add_argument("--seqscan-queries", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500, help="queries per batched statement")
    parser.add_argument("--ef-search", default="40,64,100,200", help="comma-separated values to sweep")
    parser.add_argument("--k", type=int, default=10)
    return parser.parse_args()


def clustered(rng: np.random.Generator, counts: tuple[int, ...], dim: int, clusters: int) -> list[np.ndarray]:
    """Arrays around shared random centres (items and users in one space, as ALS factors are)."""
    centres = rng.normal(size=(clusters, dim))
    spread = rng.uniform(0.8, 1.6, size=clusters)  # overlapping clusters of different tightness
    out = []
    for n in counts:
        which = rng.integers(clusters, size=n)
        out.append((centres[which] + spread[which, None] * rng.normal(size=(n, dim))).astype(np.float32))
    return out


def embeddings_csv(ids, vectors: np.ndarray) -> bytes:
    """The contract CSV (``id,"[x,...]"``); %-formatting per row is much faster than the trainer's
    per-float writer at a million rows."""
    row = ",".join(["%.9g"] * vectors.shape[1])
    return ("id,embedding\n" + "".join(f'{i},"[{row % tuple(v)}]"\n' for i, v in zip(ids, vectors))).encode()


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k item rows by cosine, in chunks to bound memory."""
    normed = items / np.linalg.norm(items, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    chunk = max(1, 2**26 // len(items))  # ~256 MB of similarities at a time
    out = []
    for start in range(0, len(q), chunk):
        sims = q[start:start + chunk] @ normed.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out.append(np.take_along_axis(top, order, axis=1))
    return np.vstack(out)


def recall(expected_rows: np.ndarray, item_ids: np.ndarray, got) -> float:
    return float(np.mean([len(set(item_ids[e]) & {h.product_code for h in g}) / len(e)
                          for e, g in zip(expected_rows, got)]))


def timed_single(vs, conn, queries: np.ndarray, k: int, ef_search: int, seqscan: bool = False):
    """One statement per query: latencies (s) and results."""
    latencies, results = [], []
    for q in queries:
        started = time.perf_counter()
        if seqscan:
            with conn.cursor() as cur:
                cur.execute("SET LOCAL enable_indexscan = off")
        results.append(vs.nearest_items(conn, [q], k, ef_search=ef_search)[0])
        conn.commit()
        latencies.append(time.perf_counter() - started)
    return np.array(latencies), results


def publish(settings, s3, version: str, item_ids, items, user_ids, users) -> None:
    import hashlib
    import json

    bucket = settings.artifacts_bucket
    files = {"item_embeddings.csv": embeddings_csv(item_ids, items),
             "user_embeddings.csv": embeddings_csv(user_ids, users)}
    for name, body in files.items():
        s3.put_object(Bucket=bucket, Key=f"models/{version}/{name}", Body=body)
    manifest = {"version": version, "created_at": datetime.now(timezone.utc).isoformat(),
                "embedding_dim": items.shape[1], "embedding_transform": "none",
                "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()}}
    s3.put_object(Bucket=bucket, Key=f"models/{version}/manifest.json", Body=json.dumps(manifest))


def main() -> int:
    args = parse_args()
    from recsys.local.stack import scratch_stack

    with scratch_stack("bench_vectordb") as settings:
        return run(args, settings)


def run(args, settings) -> int:
    from inference import vector_store as vs
    from recsys.core.aws import client
    from recsys.core.db import connect_pg
    from recsys.pipeline.vector_load import HnswParams, load_embeddings

    rng = np.random.default_rng(42)
    print(f"== vector DB benchmark: {args.items:,} items x {args.dim}-d, {args.clusters} clusters, "
          f"{args.users:,} users; k={args.k}; 2-core shared machine")
    started = time.perf_counter()
    items, users, queries = clustered(rng, (args.items, args.users, args.queries), args.dim, args.clusters)
    item_ids = np.array([f"P{i:07d}" for i in range(args.items)])
    user_ids = np.arange(1, args.users + 1)
    version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-be9c0001"
    publish(settings, client("s3", settings), version, item_ids, items, user_ids, users)
    print(f"generated and published CSVs in {time.perf_counter() - started:.1f} s")

    result = load_embeddings(settings, version)
    rows = result.item_count + result.user_count
    print(f"load: COPY {rows:,} rows in {result.copy_seconds:.1f} s = {rows / result.copy_seconds:,.0f} rows/s; "
          f"HNSW build (items + users, m={HnswParams().m}, ef_construction={HnswParams().ef_construction}) "
          f"{result.index_seconds:.1f} s")

    started = time.perf_counter()
    expected = exact_top_k(items, queries, args.k)
    print(f"exact top-{args.k} in numpy for {len(queries):,} queries: {time.perf_counter() - started:.2f} s")

    conn = connect_pg(settings)
    vs.nearest_items(conn, queries[:20], args.k)  # warm the index pages and the session
    conn.commit()
    print(f"\n{'ef_search':>9} {'recall@10':>10} {'p50 ms':>8} {'p99 ms':>8} {'QPS':>8}")
    sweep = {}
    for ef in [int(x) for x in args.ef_search.split(",")]:
        latencies, got = timed_single(vs, conn, queries, args.k, ef)
        sweep[ef] = (recall(expected, item_ids, got), np.percentile(latencies, 50) * 1e3,
                     np.percentile(latencies, 99) * 1e3, len(latencies) / latencies.sum())
        print(f"{ef:>9} {sweep[ef][0]:>10.4f} {sweep[ef][1]:>8.2f} {sweep[ef][2]:>8.2f} {sweep[ef][3]:>8.0f}")

    chosen = vs.DEFAULT_EF_SEARCH
    if chosen not in sweep:
        latencies, got = timed_single(vs, conn, queries, args.k, chosen)
        sweep[chosen] = (recall(expected, item_ids, got), np.percentile(latencies, 50) * 1e3,
                         np.percentile(latencies, 99) * 1e3, len(latencies) / latencies.sum())
    rec, p50, p99, qps = sweep[chosen]

    n_seq = min(args.seqscan_queries, len(queries))
    seq_lat, seq_got = timed_single(vs, conn, queries[:n_seq], args.k, chosen, seqscan=True)
    seq_qps = n_seq / seq_lat.sum()
    print(f"\nseq scan (enable_indexscan=off, same statement), {n_seq} queries: p50 {np.median(seq_lat) * 1e3:.1f} ms, "
          f"{seq_qps:.1f} QPS, recall {recall(expected[:n_seq], item_ids, seq_got):.4f} (exact)")

    n_batch = min(args.batch, len(queries))
    started = time.perf_counter()
    batch_got = vs.nearest_items(conn, queries[:n_batch], args.k, ef_search=chosen)
    conn.commit()
    batch_s = time.perf_counter() - started
    started = time.perf_counter()
    for q in queries[:n_batch]:
        vs.nearest_items(conn, [q], args.k, ef_search=chosen)
        conn.commit()
    single_s = time.perf_counter() - started
    print(f"batched: {n_batch} lookups in ONE statement {batch_s * 1e3:.0f} ms ({n_batch / batch_s:,.0f} lookups/s) vs "
          f"{n_batch} statements {single_s * 1e3:.0f} ms ({n_batch / single_s:,.0f}/s): {single_s / batch_s:.1f}x; "
          f"recall {recall(expected[:n_batch], item_ids, batch_got):.4f}")
    conn.close()

    speedup = qps / seq_qps
    print(f"\n== at ef_search={chosen} (DEFAULT_EF_SEARCH), m={HnswParams().m}, "
          f"ef_construction={HnswParams().ef_construction}:")
    checks = [
        (f"recall@{args.k} {rec:.4f} >= {TARGET_RECALL}", rec >= TARGET_RECALL),
        (f"p99 {p99:.2f} ms <= {TARGET_P99_MS} ms (p50 {p50:.2f} ms)", p99 <= TARGET_P99_MS),
        (f"index QPS {qps:,.0f} vs seq scan {seq_qps:,.1f} = {speedup:.0f}x >= {TARGET_SPEEDUP:.0f}x",
         speedup >= TARGET_SPEEDUP),
    ]
    for text, ok in checks:
        print(f"  [{'met' if ok else 'NOT MET'}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
