"""Time parsing: ISO 8601 or epoch seconds -> epoch seconds (UTC)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from commap.errors import InvalidInputError

__all__ = ["format_time", "parse_time"]


def parse_time(value: str | float | int | datetime, *, field: str = "time") -> float:
    """Parse a time into epoch seconds (UTC).

    Accepts epoch seconds (number or numeric string), ISO 8601 (``Z`` or an offset; a naive
    time is taken as UTC) or a ``datetime``, within years 1..9999 UTC (the range of
    ``datetime`` and of protobuf ``Timestamp``).

    Raises
    ------
    InvalidInputError
        Unparseable, not finite, or outside years 1..9999 UTC.

    Examples
    --------
    >>> parse_time("2025-01-23T12:00:00Z")
    1737633600.0
    >>> parse_time(0)
    0.0
    >>> parse_time("-1e20", field="--time")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: --time: -1e+20 s is outside years 1..9999 UTC
    """
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            seconds = dt.timestamp()
        except (OverflowError, ValueError):  # e.g. year 1 with a positive offset
            raise InvalidInputError(
                f"{field}: {dt.isoformat()} is outside years 1..9999 UTC", field=field
            ) from None
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except (ValueError, OverflowError):
                raise InvalidInputError(
                    f"{field}: {text!r} is neither ISO 8601 nor epoch seconds", field=field
                ) from None
            return parse_time(dt, field=field)
    if not math.isfinite(seconds):
        raise InvalidInputError(f"{field}: must be finite", field=field)
    if not _MIN_S <= seconds <= _MAX_S:
        raise InvalidInputError(f"{field}: {seconds:g} s is outside years 1..9999 UTC", field=field)
    return seconds


# 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z (datetime and protobuf Timestamp)
_MIN_S = -62_135_596_800.0
_MAX_S = 253_402_300_799.0


def format_time(t_s: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with ``Z``.

    Examples
    --------
    >>> format_time(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")
