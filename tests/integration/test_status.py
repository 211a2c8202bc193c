"""`recsys status` on the real local stack: the signals the AWS alarms watch, read from the local
stand-ins' own records after real traffic (a delivery with poison records, API requests answered 503)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from tests.support.fixtures_streaming import deliver

from recsys.apps.api_server import RequestCounter, api_runtime, api_stats_path
from recsys.apps.replay import events_to_records, record_for, send_records
from recsys.apps.source import source_catalogue
from recsys.apps.status import pipeline_status
from recsys.serving.api import create_app
from recsys_seed import POISON_KINDS, poison_records, synthesize_events

RECSYS = str(Path(sys.executable).with_name("recsys"))


def test_status_shows_parked_records_api_errors_and_the_model_age(stack, streaming_model, streaming_zip, seeded):
    records = events_to_records(synthesize_events(source_catalogue(stack), 20, seed=5))
    records += [record_for(data) for _, data in poison_records(len(POISON_KINDS), uuid.uuid4().hex[:8])]
    send_records(stack, records)
    stats = deliver()
    assert stats.failed >= len(POISON_KINDS)

    # the API with its database gone: every request answers 503, counted like CloudWatch's Url5xxCount
    unreachable = dataclasses.replace(stack, pg_port=1)
    app = RequestCounter(create_app(api_runtime(unreachable, pool_size=1)), api_stats_path(stack))

    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return [
                (await client.get(f"/customers/{c}/recommendations")).status_code
                for c in streaming_model.customer_numbers[:3]
            ]

    assert asyncio.run(requests()) == [503, 503, 503]
    app.write()

    signals = {s.name: s for s in pipeline_status(stack)}
    assert signals["parked records"].alert and "not re-driven" in signals["parked records"].value
    assert signals["api errors"].alert and signals["api errors"].value.startswith("3 5xx of 3 requests (100.0%)")
    assert signals["live model"].value.startswith(streaming_model.version) and not signals["live model"].alert
    assert "lambda errors" in signals and "delivery lag" in signals

    result = subprocess.run([RECSYS, "status"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr  # a signal would alarm
    assert "ALERT parked records" in result.stdout and "ALERT api errors" in result.stdout
    assert f"ok    live model      {streaming_model.version}" in result.stdout
