"""Hostile requests against the recommendations API: status codes, server memory, /health latency.

Starts its own embedded stack (temporary state dir, own MySQL database name, dropped at the end)
and ``recsys api`` as its own process (uvicorn, the shipped server and limits), then:

* sends every hostile case of docs/api.md ("Bounded requests") with a real HTTP client, or a raw
  socket where a client would refuse to send the request, and prints the status code of each;
* runs the maximal request (a body exactly at ``RECSYS_API_MAX_BODY_BYTES`` that the parser must
  read to its end: small integers in an extra field) back to back from one thread, so one is
  always being processed, while another thread asks ``/health`` every 20 ms, and prints the
  ``/health`` latency (p50, p99, max) and the server's peak RSS, against the same run's idle baseline.

The stack has no model loaded: ``/health`` answers 503 after its database and S3 checks (the
work it does in production, minus the cached pointer), and the maximal request a 503 after its
whole parse. ``--max-body-bytes`` runs the server with another limit (1048576: the maximum).

Goal: ``/health`` answers within 100 ms (max) during the maximal request; no 500, no 2xx for a
hostile case; RSS stays within 100 MB of idle (the limit bounds what a request can make it hold).

    .venv/bin/python benchmarks/bench_hostile_api.py
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

GOAL_HEALTH_MS = 100.0
GOAL_RSS_GROWTH_MB = 100.0
EVENT_HEAD = '{"session_id": "s", "customer_number": 103, "event_time": "2026-11-26T14:00:00Z", '


def event(browse: str = '[{"product_code": "S10_1678"}]', customer: str = "103") -> str:
    return EVENT_HEAD.replace("103", customer) + f'"browse_history": {browse}}}'


def maximal_body(limit: int) -> bytes:
    """A valid-depth event whose extra field fills the body to ``limit`` bytes with small integers."""
    head = (EVENT_HEAD + '"browse_history": [{"product_code": "S10_1678"}], "padding": [').encode()
    count = (limit - len(head) - 2) // 2
    body = head + b",".join([b"7"] * count) + b"]}"
    return body + b" " * (limit - len(body))


def raw(port: int, request: bytes, timeout: float = 30) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def hostile_cases(base: str, port: int, limit: int) -> list[tuple[str, int, float]]:
    """(case, status, seconds) for every hostile request."""
    results = []

    def post(name: str, content, **headers) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=base, timeout=120) as http:
            try:
                status = http.post(
                    "/recommendations", content=content, headers={"content-type": "application/json", **headers}
                ).status_code
            except httpx.HTTPError as exc:  # the server closed while the client was still sending
                status = f"closed ({type(exc).__name__})"
        results.append((name, status, time.monotonic() - started))

    def get(name: str, path: str) -> None:
        started = time.monotonic()
        results.append((name, httpx.get(base + path, timeout=30).status_code, time.monotonic() - started))

    post("100k '['", "[" * 100_000)
    post("50k '{\"a\":'", '{"a":' * 50_000)
    post("20k deep inside browse_history", event("[" * 20_000 + "]" * 20_000))
    post("customer_number of 4,301 digits", event(customer="9" * 4301))
    post("100 MB body with Content-Length", b" " * 100_000_000)

    def chunks():
        for _ in range(1600):
            yield b" " * 65536

    post("100 MB chunked body", chunks())
    for name, request in [
        (
            "Content-Length: 10737418240",
            (
                b"POST /recommendations HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ncontent-length: 10737418240\r\n\r\n"
            ),
        ),
        ("NUL in the request line", b"GET /customers/\x00103/recommendations HTTP/1.1\r\nhost: x\r\n\r\n"),
        ("non-ASCII in the request line", b"GET /customers/\xc3\xa9/recommendations HTTP/1.1\r\nhost: x\r\n\r\n"),
    ]:
        started = time.monotonic()
        results.append((name, raw(port, request), time.monotonic() - started))
    for text in ("1_03", "+103", "%20103", "103.0"):
        get(f"/customers/{text}/recommendations", f"/customers/{text}/recommendations")
    for text in ("10.0", "1_0"):
        get(f"?k={text}", f"/customers/103/recommendations?k={text}")
    return results


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)


def health_latencies(base: str, seconds: float, during=None) -> list[float]:
    """/health every 20 ms for ``seconds`` (ms each), while ``during`` (a callable) runs in two threads."""
    stop = threading.Event()
    workers = [
        threading.Thread(target=lambda: [during() for _ in iter(stop.is_set, True)], daemon=True)
        for _ in range(1 if during else 0)
    ]
    for worker in workers:
        worker.start()
    latencies = []
    with httpx.Client(base_url=base, timeout=30) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            http.get("/health")
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
    stop.set()
    for worker in workers:
        worker.join(60)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per /health measurement")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="RECSYS_API_MAX_BODY_BYTES of the server")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from recsys.core.config import load_settings
    from recsys.local.stack import free_port, port_answers, scratch_stack

    extra = {"RECSYS_API_MAX_BODY_BYTES": str(args.max_body_bytes)} if args.max_body_bytes else {}
    with scratch_stack("bench_hostile", **extra) as settings:
        limit = settings.api_max_body_bytes
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("recsys")), "api", "--port", str(port), "--no-access-log"],
            env={**os.environ, **load_settings().as_env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_answers(port):
                assert server.poll() is None and time.monotonic() < deadline, "recsys api did not start"
                time.sleep(0.1)
            idle = health_latencies(base, 2)  # warm-up: connections, first S3 read
            idle = health_latencies(base, args.seconds)
            idle_rss = psutil.Process(server.pid).memory_info().rss
            sampler = RssSampler(server.pid)
            sampler.start()
            cases = hostile_cases(base, port, limit)
            cases_rss = sampler.peak
            body = maximal_body(limit)
            with httpx.Client(base_url=base, timeout=60) as http:
                started = time.perf_counter()
                maximal_status = http.post(
                    "/recommendations", content=body, headers={"content-type": "application/json"}
                ).status_code
                maximal_seconds = time.perf_counter() - started

            def maximal():
                with httpx.Client(base_url=base, timeout=60) as http:
                    http.post("/recommendations", content=body, headers={"content-type": "application/json"})

            sampler.peak = 0
            loaded = health_latencies(base, args.seconds, during=maximal)
            sampler.stop.set()
            loaded_rss = sampler.peak
        finally:
            server.terminate()
            server.wait(30)

    print(f"body limit {limit:,} bytes (RECSYS_API_MAX_BODY_BYTES)\n")
    print(f"{'hostile case':<46} {'status':>8} {'seconds':>8}")
    for name, status, seconds in cases:
        print(f"{name:<46} {status!s:>8} {seconds:>8.3f}")
    print("(the 100 MB bodies' seconds are the client's: it sends until the server's 413 closes the connection)")
    print(
        f"\nmaximal request (a valid event of {len(body):,} bytes, small integers in an extra field): "
        f"{maximal_status} in {maximal_seconds:.3f} s (503: this stack has no model live, after the whole parse)"
    )
    mb = 1 / 2**20
    print(
        f"\nserver RSS: idle {idle_rss * mb:.0f} MiB, peak during the hostile cases {cases_rss * mb:.0f} MiB, "
        f"peak during the maximal requests {loaded_rss * mb:.0f} MiB"
    )
    for name, values in (("idle (baseline)", idle), ("during maximal requests", loaded)):
        print(
            f"/health {name:<25} n={len(values):>4} p50 {percentile(values, 0.5):6.1f} ms  "
            f"p99 {percentile(values, 0.99):6.1f} ms  max {max(values):6.1f} ms"
        )
    bad = [c for c in cases if not isinstance(c[1], int) or c[1] >= 500 or c[1] < 400]
    goals = {
        f"/health max <= {GOAL_HEALTH_MS:.0f} ms during maximal requests": max(loaded) <= GOAL_HEALTH_MS,
        "no 5xx or 2xx for a hostile case": not bad,
        f"RSS growth <= {GOAL_RSS_GROWTH_MB:.0f} MB": (max(cases_rss, loaded_rss) - idle_rss) / 1e6
        <= GOAL_RSS_GROWTH_MB,
    }
    for goal, met in goals.items():
        print(f"goal {'met' if met else 'NOT met'}: {goal}")
    print(
        json.dumps(
            {
                "cases": {n: s for n, s, _ in cases},
                "idle_rss": idle_rss,
                "peak_rss": max(cases_rss, loaded_rss),
                "health_ms_idle_max": max(idle),
                "health_ms_loaded_max": max(loaded),
                "health_ms_loaded_p99": percentile(loaded, 0.99),
            }
        )
    )
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
