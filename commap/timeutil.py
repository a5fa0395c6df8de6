"""Time parsing: ISO 8601 or epoch seconds -> epoch seconds (UTC)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from numpy.typing import ArrayLike

from commap.errors import InvalidInputError

__all__ = ["check_trip_times", "format_time", "parse_time"]


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
    Times no calendar date can name (past year 9999, not finite) are shown in seconds.

    Examples
    --------
    >>> format_time(0)
    '1970-01-01T00:00:00Z'
    >>> format_time(1e304)
    '1e+304 s since 1970 (outside years 1..9999)'
    >>> format_time(float("nan"))
    'nan s since 1970 (outside years 1..9999)'
    """
    if not _MIN_S <= t_s <= _MAX_S:
        return f"{t_s:g} s since 1970 (outside years 1..9999)"
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


def check_trip_times(departure_s: float, t_s: ArrayLike, *, field: str = "departure") -> None:
    """Refuse a trip whose times fall outside years 1..9999 UTC (or are not finite).

    Every answer states its times as dates (protobuf ``Timestamp``, ISO 8601): a trip that
    departs on 9999-12-31 or crawls at 1e-300 m/s ends past the last date they can hold.

    Raises
    ------
    InvalidInputError
        Naming ``field``, the departure and how long the trip would last.

    Examples
    --------
    >>> check_trip_times(1737633600.0, [1737633600.0, 1737637200.0])
    >>> check_trip_times(253402300000.0, [253402300000.0, 253402301000.0])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: departure: a trip departing 9999-12-31T23:46:40Z and lasting 1000 s ends past 9999-12-31T23:59:59Z, the last time a plan can state: give an earlier departure or realistic speeds
    >>> check_trip_times(0.0, [])
    """
    times = np.asarray(t_s, dtype=np.float64)
    every = np.append(times, departure_s)
    if np.isfinite(every).all() and every.min() >= _MIN_S and every.max() <= _MAX_S:
        return
    lasting_s = float(np.max(times, initial=departure_s)) - departure_s
    raise InvalidInputError(
        f"{field}: a trip departing {format_time(departure_s)} and lasting {lasting_s:.4g} s "
        f"ends past {format_time(_MAX_S)}, the last time a plan can state: give an earlier "
        "departure or realistic speeds",
        field=field,
    )
