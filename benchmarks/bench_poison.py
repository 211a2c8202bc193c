"""The poison run (issue 13's closing figures): valid activity events with adversarial records
mixed in, through Kinesis, the local Firehose delivery and the Lambda zip under awslambdaric, then
every record accounted for. Standalone: starts its own embedded stack (temp state dir) and MySQL
database, and drops/stops them at the end.

    .venv/bin/python -m benchmarks.bench_poison [--events 2000] [--poison 100]

Goal: every valid event delivered, every poison record parked alone
(``Lambda.ProcessingFailedStatus``), no invocation failed as a whole, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--poison", type=int, default=100)
    args = parser.parse_args()

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from tests.support.fixtures_streaming import train_and_publish
    from tests.support.poison_run import poison_run

    from recsys.apps.source import seed_configured_source, source_catalogue
    from recsys.core.config import load_settings
    from recsys.deploy.lambda_zip import build_lambda_zip
    from recsys.local.stack import scratch_stack
    from recsys_seed import SeedSpec

    with scratch_stack("bench_poison", RECSYS_BUFFER_SECONDS="1") as scratch:
        zip_report = build_lambda_zip(scratch.state_dir / "build" / "lambda.zip")
        os.environ["RECSYS_LAMBDA_ZIP"] = str(zip_report.path)
        settings = load_settings()
        seed_configured_source(settings, SeedSpec(), reset=True)
        train_and_publish(settings)
        report = poison_run(settings, source_catalogue(settings), events=args.events, poison=args.poison)
    print("\n".join(report.lines()))
    met = (
        report.valid_delivered == report.valid_sent
        and report.poison_parked_alone == report.poison_sent
        and report.failed_invocations == 0
        and report.valid_duplicated == report.poison_duplicated == 0
    )
    print(
        f"goal (all valid delivered, every poison record parked alone, 0 lost, 0 duplicated): "
        f"{'met' if met else 'NOT met'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
