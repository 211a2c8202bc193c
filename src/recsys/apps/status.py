"""``recsys status``: the signals CloudWatch alarms on in AWS (terraform/modules/monitoring), read from
what the local stand-ins keep: the Firehose delivery's stats file (records, failed invocations of the
Lambda, heartbeat), the parked records under ``processing-failed/`` (not yet re-driven), the API's
request counts (``<state>/api.stats.json``) and the serving pointer's age.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.apps.api_server import api_stats_path
from recsys.apps.redrive import redrive
from recsys.contracts import RESULT_FAILED, SERVING_POINTER_KEY
from recsys.core import aws
from recsys.core.config import Settings
from recsys.local.firehose.delivery import HEARTBEAT_SECONDS, state_file


@dataclass(frozen=True)
class Signal:
    name: str
    value: str
    alert: bool  # what would fire the signal's alarm on AWS

    def line(self) -> str:
        return f"{'ALERT' if self.alert else 'ok   '} {self.name:<15} {self.value}"


def _read_json(path: Path) -> tuple[dict[str, Any], float] | None:
    """A state file's content and age in seconds; None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text()), time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return None


def delivery_signals(settings: Settings) -> list[Signal]:
    read = _read_json(state_file(settings, settings.firehose_stream, "stats"))
    if read is None:
        return [Signal("delivery", "no delivery has run (`recsys firehose`)", False)]
    stats, age = read
    waiting = stats["records_in"] - stats["delivered"] - stats["dropped"] - stats["failed"]
    stale = age > 3 * HEARTBEAT_SECONDS
    return [
        Signal(
            "delivery lag",
            f"{waiting} records read and not yet delivered; stats {age:.0f} s old"
            + (" (delivery not running)" if stale else ""),
            waiting > 0 and stale,
        ),
        Signal(
            "lambda errors",
            f"{stats['failed_invocations']} failed of {stats['invocations']} invocations; "
            f"{stats['failed']} records {RESULT_FAILED}",
            stats["failed_invocations"] > 0,
        ),
    ]


def parked_signal(settings: Settings) -> Signal:
    found = redrive(settings, dry_run=True)
    return Signal(
        "parked records",
        f"{found.redriven} not re-driven ({found.found} parked in {found.objects} objects; `recsys redrive`)",
        found.redriven > 0,
    )


def api_signal(settings: Settings) -> Signal:
    read = _read_json(api_stats_path(settings))
    if read is None:
        return Signal("api errors", "no API has run (`recsys api`)", False)
    stats, age = read
    rate = stats["5xx"] / stats["requests"] if stats["requests"] else 0.0
    return Signal(
        "api errors",
        f"{stats['5xx']} 5xx of {stats['requests']} requests ({rate:.1%}); counts {age:.0f} s old",
        stats["5xx"] > 0,
    )


def model_signal(settings: Settings, now: datetime | None = None) -> Signal:
    body = aws.read_object(settings, settings.artifacts_bucket, SERVING_POINTER_KEY)
    if body is None:
        return Signal("live model", "none published (`recsys train`)", True)
    pointer = json.loads(body)
    updated = datetime.fromisoformat(str(pointer["updated_at"]).replace("Z", "+00:00"))
    hours = ((now or datetime.now(UTC)) - updated).total_seconds() / 3600
    return Signal("live model", f"{pointer['version']}, published {hours:.1f} h ago", False)


def pipeline_status(settings: Settings) -> list[Signal]:
    return [*delivery_signals(settings), parked_signal(settings), api_signal(settings), model_signal(settings)]
