"""Activity events: validation of a raw Kinesis record into a typed ``ActivityEvent``.

Pure functions, no I/O. ``parse_event`` raises ``InvalidEvent`` naming the first problem, so the
handler can mark that one record ``ProcessingFailed`` and log why.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

HEARTBEAT = "heartbeat"


class InvalidEvent(ValueError):
    """A record that is not a well-formed activity event; the message says what is wrong."""


@dataclass(frozen=True)
class BrowsedItem:
    """One product the customer looked at in the session."""

    product_code: str
    quantity: int
    in_shopping_cart: bool

    @property
    def engagement(self) -> float:
        """How strongly the browse signals interest: quantity, doubled once it is in the cart."""
        return float(self.quantity) * (2.0 if self.in_shopping_cart else 1.0)


@dataclass(frozen=True)
class ActivityEvent:
    """A validated activity event (docs/architecture.md, "Activity event")."""

    session_id: str
    customer_number: int | None
    event_time: str
    browse_history: tuple[BrowsedItem, ...]
    city: str | None = None
    country: str | None = None
    credit_limit: float | None = None
    event_type: str = "browse"

    @property
    def browsed_codes(self) -> list[str]:
        """Browsed product codes, first occurrence order, without repeats."""
        return list(dict.fromkeys(item.product_code for item in self.browse_history))

    @property
    def is_droppable(self) -> bool:
        """The Dropped rule: heartbeats, and anonymous events with nothing browsed (nothing to serve)."""
        return self.event_type == HEARTBEAT or (self.customer_number is None and not self.browse_history)

    def anchor_item(self) -> str | None:
        """The most engaged browsed product (latest wins ties): the seed for ``similar_items``."""
        best: BrowsedItem | None = None
        for item in self.browse_history:
            if best is None or item.engagement >= best.engagement:
                best = item
        return best.product_code if best else None


def decode_record_data(data: str) -> bytes:
    """Strict base64 decode of a Firehose record's ``data``."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidEvent(f"data is not valid base64: {exc}") from exc


def _require(payload: dict, name: str, types: tuple[type, ...], nullable: bool = False):
    if name not in payload:
        raise InvalidEvent(f"missing field {name!r}")
    value = payload[name]
    if value is None and nullable:
        return None
    # bool is an int subclass: a true/false where a number belongs is a type error, not 1/0
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
        raise InvalidEvent(f"field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _optional(payload: dict, name: str, types: tuple[type, ...]):
    if payload.get(name) is None:
        return None
    return _require(payload, name, types)


def _parse_item(index: int, raw) -> BrowsedItem:
    if not isinstance(raw, dict):
        raise InvalidEvent(f"browse_history[{index}] must be an object, got {type(raw).__name__}")
    try:
        code = _require(raw, "product_code", (str,))
        quantity = raw.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidEvent(f"field 'quantity' must be a positive integer, got {quantity!r}")
        in_cart = raw.get("in_shopping_cart", False)
        if not isinstance(in_cart, bool):
            raise InvalidEvent(f"field 'in_shopping_cart' must be true or false, got {in_cart!r}")
    except InvalidEvent as exc:
        raise InvalidEvent(f"browse_history[{index}]: {exc}") from None
    if not code.strip():
        raise InvalidEvent(f"browse_history[{index}]: product_code is empty")
    return BrowsedItem(code, quantity, in_cart)


def _check_time(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"field 'event_time' is not an ISO-8601 timestamp: {value!r}") from None
    return value


def parse_event(data: bytes) -> ActivityEvent:
    """Validate one record's decoded bytes into an ``ActivityEvent`` (raises ``InvalidEvent``)."""
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"data is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(payload).__name__}")
    session_id = _require(payload, "session_id", (str,))
    if not session_id.strip():
        raise InvalidEvent("field 'session_id' is empty")
    event_type = _optional(payload, "event_type", (str,)) or "browse"
    customer = _require(payload, "customer_number", (int,), nullable=True)
    history = _require(payload, "browse_history", (list,))
    return ActivityEvent(
        session_id=session_id,
        customer_number=customer,
        event_time=_check_time(_require(payload, "event_time", (str,))),
        browse_history=tuple(_parse_item(i, item) for i, item in enumerate(history)),
        city=_optional(payload, "city", (str,)),
        country=_optional(payload, "country", (str,)),
        credit_limit=float(v) if (v := _optional(payload, "credit_limit", (int, float))) is not None else None,
        event_type=event_type,
    )
