"""Activity events: validation of a raw Kinesis record into a typed ``ActivityEvent``.

Pure functions, no I/O. ``parse_event`` is total: for any bytes it returns an ``ActivityEvent`` or
raises ``InvalidEvent`` naming the first problem, so the handler can mark that one record
``ProcessingFailed`` and log why. Everything downstream (numpy, psycopg2, JSON output) can take
what it lets through: sizes, nesting depth, integer ranges and string contents are bounded here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, overload

from recsys.contracts import MAX_CUSTOMER_NUMBER, MAX_PARTITION_KEY_CHARS

HEARTBEAT = "heartbeat"

MAX_EVENT_BYTES = 1024 * 1024  # a Kinesis record's data is at most 1 MiB
MAX_DEPTH = 8  # an event is 3 levels deep (event -> browse_history -> item); unknown fields get some slack
MAX_INTEGER_DIGITS = 20  # longer integer literals are refused before Python builds them
MAX_BROWSE_ITEMS = 500
MAX_QUANTITY = 1_000_000
MAX_CREDIT_LIMIT = 99_999_999.99  # creditLimit DECIMAL(10,2) in the source
MAX_TEXT_CHARS = {
    "session_id": MAX_PARTITION_KEY_CHARS,
    "product_code": 64,
    "event_time": 64,
    "event_type": 32,
    "city": 128,
    "country": 128,
}
# C0 controls (NUL included), DEL, and UTF-16 surrogates (a lone "\ud800" decodes in JSON but not in UTF-8)
_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class InvalidEvent(ValueError):
    """A record that is not a well-formed activity event; the message says what is wrong."""


class UnacceptableDocument(InvalidEvent):
    """The bytes are not an acceptable JSON document at all: not UTF-8 JSON, too large, nested too
    deep or holding too long an integer (the API answers 400 for these, 422 for other ``InvalidEvent``)."""


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
        raise InvalidEvent(f"data is not valid base64: {exc}") from None


def _shown(value: object, limit: int = 40) -> str:
    """A short, printable rendering of a refused value for the message (never the whole of it)."""
    text = (
        ascii(value)
        if not isinstance(value, int) or value.bit_length() < 200
        else f"<integer of {value.bit_length()} bits>"
    )
    return text if len(text) <= limit else text[:limit] + "..."


# The document's skeleton is its bytes with every string (escapes included) emptied: numbers and
# structure are left. An integer literal of too many digits there is the integer part of a number
# (after , : [ or blank) followed by neither a fraction, an exponent nor more digits.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_LONG_INTEGER = re.compile(rb"(?:^|[\s,:\[])-?(\d{%d,})(?![.eE\d])" % (MAX_INTEGER_DIGITS + 1))
_INNERMOST = re.compile(rb"\[\]|\{\}")
_DIGITS_AS_ZERO = bytes(ord("0") if chr(c).isdigit() else ord(" ") for c in range(256))
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _no_constant(name: str) -> NoReturn:
    raise InvalidEvent(f"{name} is not a JSON number")


def _check_skeleton(skeleton: bytes) -> None:
    """Integer length and depth, before parsing, with byte translations and the regex engine (C):
    a hostile 1 MiB document costs a few milliseconds.

    Depth: each pass removes every innermost empty pair; a document MAX_DEPTH deep is gone after
    MAX_DEPTH passes, a deeper one still shrinks at the next (one that does not is unbalanced: the
    parser names its syntax error)."""
    if b"0" * (MAX_INTEGER_DIGITS + 1) in skeleton.translate(_DIGITS_AS_ZERO):  # a long digit run somewhere
        long_integer = _LONG_INTEGER.search(skeleton)
        if long_integer:
            raise UnacceptableDocument(
                f"data is not an acceptable JSON document: an integer of "
                f"{len(long_integer.group(1))} digits (at most {MAX_INTEGER_DIGITS})"
            )
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        brackets = _INNERMOST.sub(b"", brackets)
        if not brackets:
            return
    if len(_INNERMOST.sub(b"", brackets)) < len(brackets):
        raise UnacceptableDocument(f"data is not an acceptable JSON document: nested deeper than {MAX_DEPTH} levels")


def _load(data: bytes) -> Any:
    if len(data) > MAX_EVENT_BYTES:
        raise UnacceptableDocument(f"event of {len(data):,} bytes (at most {MAX_EVENT_BYTES:,})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnacceptableDocument(f"data is not JSON: {exc}") from None
    _check_skeleton(_JSON_STRING.sub(b'""', data))
    try:
        # floats parse in C: an overflow (1e999 -> inf) fails the range check of the field that holds it
        return json.loads(text, parse_constant=_no_constant)
    except InvalidEvent as exc:
        raise UnacceptableDocument(f"data is not an acceptable JSON document: {exc}") from None
    except RecursionError:  # an unbalanced document the skeleton check left to the parser
        raise UnacceptableDocument("data is not an acceptable JSON document: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError
        raise UnacceptableDocument(f"data is not JSON: {exc}") from None


def _require(payload: dict[str, Any], name: str, types: tuple[type, ...], nullable: bool = False) -> Any:
    if name not in payload:
        raise InvalidEvent(f"missing field {name!r}")
    value = payload[name]
    if value is None and nullable:
        return None
    # bool is an int subclass: a true/false where a number belongs is a type error, not 1/0
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
        raise InvalidEvent(f"field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _optional(payload: dict[str, Any], name: str, types: tuple[type, ...]) -> Any:
    if payload.get(name) is None:
        return None
    return _require(payload, name, types)


@overload
def _text(name: str, value: str, *, required: bool = True) -> str: ...
@overload
def _text(name: str, value: str | None, *, required: bool = True) -> str | None: ...
def _text(name: str, value: str | None, *, required: bool = True) -> str | None:
    """A string field: not blank when required, bounded, printable (no control characters or surrogates)."""
    if value is None:
        return None
    if required and not value.strip():
        raise InvalidEvent(f"field {name!r} is empty")
    limit = MAX_TEXT_CHARS[name]
    if len(value) > limit:
        raise InvalidEvent(f"field {name!r} has {len(value):,} characters (at most {limit})")
    bad = _FORBIDDEN_CHARACTERS.search(value)
    if bad:
        raise InvalidEvent(f"field {name!r} contains the character U+{ord(bad.group()):04X}")
    return value


def _in_range(name: str, value: int | float, low: int | float, high: int | float) -> int | float:
    if not low <= value <= high:
        raise InvalidEvent(f"field {name!r} must be {low}..{high:,}, got {_shown(value)}")
    return value


def _parse_item(index: int, raw: object) -> BrowsedItem:
    if not isinstance(raw, dict):
        raise InvalidEvent(f"browse_history[{index}] must be an object, got {type(raw).__name__}")
    try:
        code = _text("product_code", _require(raw, "product_code", (str,)))
        quantity = raw.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidEvent(f"field 'quantity' must be a positive integer, got {_shown(quantity)}")
        _in_range("quantity", quantity, 1, MAX_QUANTITY)
        in_cart = raw.get("in_shopping_cart", False)
        if not isinstance(in_cart, bool):
            raise InvalidEvent(f"field 'in_shopping_cart' must be true or false, got {_shown(in_cart)}")
    except InvalidEvent as exc:
        raise InvalidEvent(f"browse_history[{index}]: {exc}") from None
    return BrowsedItem(code, quantity, in_cart)


def _check_time(value: str) -> str:
    _text("event_time", value)
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"field 'event_time' is not an ISO-8601 timestamp: {_shown(value)}") from None
    return value


def parse_event(data: bytes) -> ActivityEvent:
    """Validate one record's decoded bytes into an ``ActivityEvent`` (raises ``InvalidEvent``)."""
    payload = _load(data)
    if not isinstance(payload, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(payload).__name__}")
    session_id = _text("session_id", _require(payload, "session_id", (str,)))
    event_type = _text("event_type", _optional(payload, "event_type", (str,))) or "browse"
    customer = _require(payload, "customer_number", (int,), nullable=True)
    if customer is not None:
        _in_range("customer_number", customer, 1, MAX_CUSTOMER_NUMBER)
    history = _require(payload, "browse_history", (list,))
    if len(history) > MAX_BROWSE_ITEMS:
        raise InvalidEvent(f"field 'browse_history' has {len(history):,} items (at most {MAX_BROWSE_ITEMS})")
    credit = _optional(payload, "credit_limit", (int, float))
    return ActivityEvent(
        session_id=session_id,
        customer_number=customer,
        event_time=_check_time(_require(payload, "event_time", (str,))),
        browse_history=tuple(_parse_item(i, item) for i, item in enumerate(history)),
        city=_text("city", _optional(payload, "city", (str,)), required=False),
        country=_text("country", _optional(payload, "country", (str,)), required=False),
        credit_limit=None if credit is None else float(_in_range("credit_limit", credit, 0, MAX_CREDIT_LIMIT)),
        event_type=event_type,
    )
