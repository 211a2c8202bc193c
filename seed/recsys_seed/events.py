"""Synthetic activity events drawn from the source's customers and the planted tastes.

Browse histories are products sampled without replacement by softmax of the customer's true
affinity (``PlantedTruth``), so the recommendations that come back can be judged. A fraction of
events come from new customers (numbers not in the source, hence unknown to the model; they carry
the city, country and credit limit of the customer whose taste they borrow, which planted-v2 ties
to that taste) and a fraction have empty histories. Events have the activity-event shape of
docs/architecture.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsys_seed.generate import planted_truth
from recsys_seed.seeder import SeedError, source_spec

HISTORY_LENGTH = (1, 8)
CART_PROBABILITY = 0.3
TASTE_TEMPERATURE = 1.0


@dataclass(frozen=True)
class Catalogue:
    """What events are drawn from: the source's customers and products, and the planted tastes."""

    customers: list[tuple[int, str, str, float]]  # customerNumber, city, country, creditLimit
    product_codes: np.ndarray  # (P,) in the planted truth's order
    affinity: Callable[[int], np.ndarray]  # customer row -> affinity for every product
    customer_rows: dict[int, int]  # customerNumber -> row of the planted truth
    planted: bool  # False: the source was not seeded by recsys_seed, histories are uniform

    @property
    def customer_numbers(self) -> set[int]:
        return {c[0] for c in self.customers}


def load_catalogue(conn) -> Catalogue:
    """Customers and products from the source (a pymysql connection), tastes from its planted truth."""
    with conn.cursor() as cur:
        cur.execute("SELECT customerNumber, city, country, creditLimit FROM customers ORDER BY customerNumber")
        customers = [(int(n), city, country, float(credit)) for n, city, country, credit in cur.fetchall()]
        cur.execute("SELECT productCode FROM products ORDER BY productCode")
        codes = [code for (code,) in cur.fetchall()]
    if not customers or not codes:
        raise SeedError("the source has no customers or products: seed it first")
    spec = source_spec(conn)
    if spec is None:
        uniform = np.zeros(len(codes), dtype=np.float32)
        return Catalogue(
            customers, np.array(codes), lambda row: uniform, {c[0]: i for i, c in enumerate(customers)}, planted=False
        )
    truth = planted_truth(spec)
    return Catalogue(customers, truth.product_codes, truth.affinity, truth.customer_index, planted=True)


def _session_id(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def browse_history(rng: np.random.Generator, codes: np.ndarray, affinity: np.ndarray, length: int) -> list[dict]:
    """``length`` distinct products sampled by softmax of ``affinity`` (Gumbel top-k)."""
    noisy = affinity / TASTE_TEMPERATURE + rng.gumbel(size=affinity.shape)
    picked = np.argsort(-noisy)[:length]
    return [
        {
            "product_code": str(codes[j]),
            "quantity": int(rng.integers(1, 4)),
            "in_shopping_cart": bool(rng.random() < CART_PROBABILITY),
        }
        for j in picked
    ]


def synthesize_events(
    catalogue: Catalogue,
    n: int,
    *,
    new_customer_fraction: float = 0.05,
    empty_history_fraction: float = 0.05,
    seed: int | None = None,
) -> list[dict]:
    """``n`` activity events drawn from the catalogue's planted tastes."""
    for name, value in (("new-customers", new_customer_fraction), ("empty-histories", empty_history_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"--{name} must be a fraction in 0..1, got {value}")
    rng = np.random.default_rng(seed)
    first_new = max(c[0] for c in catalogue.customers) + 1
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = []
    for i in range(n):
        number, city, country, credit = catalogue.customers[int(rng.integers(len(catalogue.customers)))]
        taste_row = catalogue.customer_rows.get(number, 0)
        if rng.random() < new_customer_fraction:
            number = first_new + i  # unknown to MySQL and the model; browses with a borrowed taste
        empty = rng.random() < empty_history_fraction
        length = 0 if empty else int(rng.integers(HISTORY_LENGTH[0], HISTORY_LENGTH[1] + 1))
        history = browse_history(rng, catalogue.product_codes, catalogue.affinity(taste_row), length) if length else []
        events.append(
            {
                "session_id": _session_id(rng),
                "customer_number": number,
                "city": city,
                "country": country,
                "credit_limit": credit,
                "event_time": now,
                "browse_history": history,
            }
        )
    return events


# -- poison records: what an adversarial producer can put on the stream ----------------------------
POISON_KINDS = (
    "deep_nesting",  # JSON nested 50,000 levels deep (json.loads hits the recursion limit)
    "huge_integer",  # an integer literal of 5,000 digits (beyond Python's int parsing limit)
    "customer_out_of_range",  # customer_number beyond a 32-bit INT
    "nul_in_product_code",  # a NUL character, which PostgreSQL text cannot hold
    "lone_surrogate",  # "\ud800": valid JSON, not encodable as UTF-8
    "quantity_overflow",  # a 401-digit quantity: float() overflows
    "credit_limit_infinite",  # 1e999 parses as infinity
    "nan_constant",  # NaN is not JSON, though Python's json accepts it
    "session_id_too_long",  # longer than a Kinesis partition key may be
    "invalid_utf8",  # bytes that are not UTF-8 at all
)
_HOLE = "__POISON__"


def poison_record(kind: str, index: int = 0, run: str = "") -> bytes:
    """One malformed record of ``kind`` (``POISON_KINDS``): an otherwise valid event, session
    ``poison-<run><kind>-<index>`` (``run`` tells the records of separate runs apart)."""
    session = f"poison-{run}{kind}-{index}"
    event: dict[str, Any] = {
        "session_id": session,
        "customer_number": 103,
        "city": "Nantes",
        "country": "France",
        "credit_limit": 21000.0,
        "event_time": "2026-11-26T14:00:00Z",
        "browse_history": [{"product_code": "S10_1678", "quantity": 1, "in_shopping_cart": False}],
    }
    item = event["browse_history"][0]
    holes = {}
    if kind == "deep_nesting":
        event["extra"] = _HOLE
        holes[_HOLE] = "[" * 50_000 + "]" * 50_000
    elif kind == "huge_integer":
        event["customer_number"] = _HOLE
        holes[_HOLE] = "9" * 5_000
    elif kind == "customer_out_of_range":
        event["customer_number"] = 2**40
    elif kind == "nul_in_product_code":
        item["product_code"] = "S10\x001678"
    elif kind == "lone_surrogate":
        item["product_code"] = "S10_\ud800"
    elif kind == "quantity_overflow":
        item["quantity"] = 10**400
    elif kind == "credit_limit_infinite":
        event["credit_limit"] = _HOLE
        holes[_HOLE] = "1e999"
    elif kind == "nan_constant":
        event["credit_limit"] = float("nan")
    elif kind == "session_id_too_long":
        event["session_id"] = session + "-" + "x" * 300
    elif kind == "invalid_utf8":
        return json.dumps(event).encode()[:-2] + b"\xff\xfe}"
    else:
        raise ValueError(f"unknown poison kind {kind!r}; expected one of {', '.join(POISON_KINDS)}")
    text = json.dumps(event)
    for hole, literal in holes.items():
        text = text.replace(json.dumps(hole), literal)
    return text.encode()


def poison_records(n: int, run: str = "") -> list[tuple[str, bytes]]:
    """``n`` malformed records, cycling through ``POISON_KINDS``, as (kind, data)."""
    return [(kind, poison_record(kind, i, run)) for i in range(n) for kind in [POISON_KINDS[i % len(POISON_KINDS)]]]
