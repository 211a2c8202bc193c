"""The poison run: valid activity events with adversarial records mixed in, sent to Kinesis and
delivered by the local Firehose through the Lambda zip; then every record is accounted for.

Used by ``test_streaming_robustness.py`` (slow test) and ``benchmarks/bench_poison.py``.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from recsys.apps.replay import events_to_records, record_for, send_records
from recsys.local.firehose.delivery import build_delivery
from recsys_seed import POISON_KINDS, poison_records, synthesize_events
from tests.support.fixtures_streaming import read_delivered


@dataclass
class PoisonRunReport:
    """Where every record of the run ended up."""

    valid_sent: int
    poison_sent: int
    valid_delivered: int  # distinct valid sessions with a recommendation line
    valid_parked: int
    valid_duplicated: int  # recommendation lines beyond one per session
    poison_parked_alone: int  # parked with Lambda.ProcessingFailedStatus: rejected by the function, alone
    poison_parked_with_batch: int  # parked because a whole invocation failed
    poison_delivered: int
    poison_duplicated: int
    invocations: int
    failed_invocations: int
    seconds: float
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def valid_lost(self) -> int:
        return self.valid_sent - self.valid_delivered - self.valid_parked

    @property
    def poison_lost(self) -> int:
        return self.poison_sent - self.poison_parked_alone - self.poison_parked_with_batch - self.poison_delivered

    def lines(self) -> list[str]:
        return [
            (
                f"poison run: {self.valid_sent:,} valid events + {self.poison_sent:,} poison records "
                f"({len(self.kinds)} kinds) through Kinesis, local Firehose and the Lambda zip in {self.seconds:.1f} s"
            ),
            (
                f"  valid events   {self.valid_delivered:,} delivered, {self.valid_parked} parked, "
                f"{self.valid_lost} lost, {self.valid_duplicated} duplicated"
            ),
            (
                f"  poison records {self.poison_parked_alone:,} parked alone (Lambda.ProcessingFailedStatus), "
                f"{self.poison_parked_with_batch} parked with a failed batch, {self.poison_delivered} delivered, "
                f"{self.poison_lost} lost, {self.poison_duplicated} duplicated"
            ),
            f"  invocations    {self.invocations} ({self.failed_invocations} failed as a whole)",
            "  kinds          " + ", ".join(f"{kind} {n}" for kind, n in self.kinds.items()),
        ]


def poison_run(
    settings, catalogue, *, events: int = 2000, poison: int = 100, seed: int | None = None
) -> PoisonRunReport:
    """Send ``events`` valid events with ``poison`` adversarial records at random places, deliver
    until idle, and count where each one went (by session id and by raw bytes)."""
    run = uuid.uuid4().hex[:8] + "-"
    valid = synthesize_events(catalogue, events, seed=seed)
    bad = poison_records(poison, run)
    records = events_to_records(valid)
    for position, (_, data) in zip(
        np.random.default_rng(seed).integers(0, len(records) + 1, len(bad)), bad, strict=True
    ):
        records.insert(int(position), record_for(data))
    started = time.perf_counter()
    send_records(settings, records)
    delivery = build_delivery(settings)
    try:
        stats = delivery.run(until_idle=2.0)
    finally:
        delivery.close()
    seconds = time.perf_counter() - started

    out = read_delivered(settings)
    sessions = {e["session_id"] for e in valid}
    lines = Counter(r["session_id"] for r in out.recommendations if r.get("session_id") in sessions)
    poison_bytes = {data for _, data in bad}
    parked = [(base64.b64decode(e["rawData"]), e["errorCode"]) for e in out.errors]
    parked_poison = Counter((raw, code) for raw, code in parked if raw in poison_bytes)
    parked_valid = {raw for raw, _ in parked if raw in {r.data for r in events_to_records(valid)}}
    alone = {raw for (raw, code) in parked_poison if code == "Lambda.ProcessingFailedStatus"}
    with_batch = {raw for (raw, code) in parked_poison if code != "Lambda.ProcessingFailedStatus"} - alone
    delivered_poison = sum(1 for r in out.recommendations if str(r.get("session_id", "")).startswith(f"poison-{run}"))
    return PoisonRunReport(
        valid_sent=len(valid),
        poison_sent=len(bad),
        valid_delivered=len(lines),
        valid_parked=len(parked_valid),
        valid_duplicated=sum(lines.values()) - len(lines),
        poison_parked_alone=len(alone),
        poison_parked_with_batch=len(with_batch),
        poison_delivered=delivered_poison,
        poison_duplicated=sum(parked_poison.values()) - len(alone | with_batch),
        invocations=stats.invocations,
        failed_invocations=stats.failed_invocations,
        seconds=seconds,
        kinds=dict(Counter(kind for kind, _ in bad)),
    )


__all__ = ["POISON_KINDS", "PoisonRunReport", "poison_run"]
