"""Field validators for JSON bodies. Each raises :class:`~experiments.errors.ApplicationError` (400) naming the field.

Beyond types and ranges they refuse what Postgres would refuse later (a NUL
character, a lone UTF-16 surrogate, NaN): that is what keeps bad input a 400
instead of a database error.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from experiments.errors import ApplicationError

MAX_ID_LENGTH = 255
MAX_JSON_DEPTH = 8


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The decoded body; NaN/Infinity, bad UTF-8 and absurd nesting are invalid JSON."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApplicationError("invalid_json", f"the body is not valid JSON: {exc}") from None


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def identifier(value: Any, field: str) -> str:
    """A non-empty external id of at most 255 characters (any Unicode)."""
    if value is None:
        raise ApplicationError("required", f"{field} is required", field=field)
    if not isinstance(value, str):
        raise ApplicationError("invalid_type", f"{field} must be a string", field=field)
    if not value.strip():
        raise ApplicationError("blank", f"{field} must not be blank", field=field)
    if len(value) > MAX_ID_LENGTH:
        raise ApplicationError("too_long", f"{field} must be at most {MAX_ID_LENGTH} characters", field=field)
    problem = _text_problem(value)
    if problem:
        raise ApplicationError("invalid", f"{field} {problem}", field=field)
    return value


def text(value: Any, field: str, *, max_length: int, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApplicationError("invalid_type", f"{field} must be a string", field=field)
    if len(value) > max_length:
        raise ApplicationError("too_long", f"{field} must be at most {max_length} characters", field=field)
    problem = _text_problem(value)
    if problem:
        raise ApplicationError("invalid", f"{field} {problem}", field=field)
    return value


def integer(value: Any, field: str, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApplicationError("invalid_type", f"{field} must be an integer", field=field)
    if value < lo or value > hi:
        raise ApplicationError("out_of_range", f"{field} must be between {lo} and {hi}", field=field)
    return value


def boolean(value: Any, field: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApplicationError("invalid_type", f"{field} must be true or false", field=field)
    return value


def number(value: Any, field: str, *, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApplicationError("invalid_type", f"{field} must be a number", field=field)
    if not math.isfinite(float(value)) or value < lo or value > hi:
        raise ApplicationError("out_of_range", f"{field} must be between {lo} and {hi}", field=field)
    return float(value)


MAX_MONEY = Decimal("9999999999.99")


def money(value: Any, field: str) -> Decimal | None:
    """An amount of money: a finite, non-negative JSON number with at most two decimal places (cents)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApplicationError("invalid_type", f"{field} must be a number", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise ApplicationError("out_of_range", f"{field} must be a finite number", field=field)
    # repr() is the shortest text that reads back as this float: 19.99 stays 19.99, 0.1 + 0.2 shows its tail.
    amount = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if amount < 0 or amount > MAX_MONEY:
        raise ApplicationError("out_of_range", f"{field} must be between 0 and {MAX_MONEY}", field=field)
    if amount.as_tuple().exponent < -2 and amount != amount.quantize(Decimal("0.01")):
        raise ApplicationError("too_precise", f"{field} has more than two decimal places", field=field)
    return amount.quantize(Decimal("0.01"))


def timestamp(value: Any, field: str) -> datetime | None:
    """An ISO 8601 date-time with a time zone (``2026-12-03T14:05:00Z``, ``…+01:00``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApplicationError("invalid_type", f"{field} must be an ISO 8601 date-time string", field=field)
    try:
        parsed = datetime.fromisoformat(value) if len(value) <= 64 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ApplicationError("invalid", f"{field} is not an ISO 8601 date-time", field=field)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ApplicationError("invalid", f"{field} must carry a time zone (Z or ±hh:mm)", field=field)
    return parsed


def json_object(value: Any, field: str, *, max_bytes: int = 16_384) -> dict[str, Any]:
    """A JSON object storable as jsonb: bounded size and depth, clean strings."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApplicationError("invalid_type", f"{field} must be a JSON object", field=field)
    _check_tree(value, field, 0)
    if len(json.dumps(value, ensure_ascii=False)) > max_bytes:
        raise ApplicationError("too_large", f"{field} must serialise to at most {max_bytes} characters", field=field)
    return value


def _check_tree(value: Any, field: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ApplicationError("too_deep", f"{field} is nested more than {MAX_JSON_DEPTH} levels", field=field)
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise ApplicationError("invalid", f"{field}: strings {problem}", field=field)
    elif isinstance(value, dict):
        for key, sub in value.items():
            _check_tree(key, field, depth + 1)
            _check_tree(sub, field, depth + 1)
    elif isinstance(value, list):
        for sub in value:
            _check_tree(sub, field, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ApplicationError("invalid", f"{field} contains a non-finite number", field=field)

