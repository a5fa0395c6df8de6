"""Checks a fleet upload must pass before it is stored: plausible times and places, its key.

Values the record schema allows can still be impossible for a report of a vehicle driving on a
map now: a time in the future (beyond clock skew) or before cellular data existed, a position
far outside the map. :func:`check_plausible` rejects the upload naming the first such record, so
that nothing impossible reaches the fleet store (a client can fix and resend the batch).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from commap.errors import InvalidInputError

__all__ = [
    "EARLIEST_MEASUREMENT_S",
    "FUTURE_TOLERANCE_S",
    "MAX_BATCH_KEY_CHARS",
    "OUTSIDE_MAP_MARGIN_DEG",
    "check_batch_key",
    "check_plausible",
]

# 1990-01-01T00:00:00Z: before any cellular data network a record could come from
EARLIEST_MEASUREMENT_S = 631_152_000.0
# how far ahead of the server's clock a vehicle's clock may run
FUTURE_TOLERANCE_S = 600.0
# how far outside the map's bounding box a record may lie (about 55 km north-south)
OUTSIDE_MAP_MARGIN_DEG = 0.5
MAX_BATCH_KEY_CHARS = 200


def check_plausible(
    records: pd.DataFrame,
    *,
    bbox: tuple[float, float, float, float],
    now_s: float | None = None,
    field: str = "measurements",
) -> None:
    """Reject records dated in the future or before 1990, or far outside the map.

    Parameters
    ----------
    records : validated measurement records (``timestamp``, ``lat``, ``lon``), in stream order.
    bbox : the map's ``(lon_min, lat_min, lon_max, lat_max)``.
    now_s : the server's time (default: now).
    field : the request field holding the records (named in the error with the index).

    Raises
    ------
    InvalidInputError
        Naming ``measurements[i].time`` or ``measurements[i].position``.

    Examples
    --------
    >>> rec = pd.DataFrame({"timestamp": pd.to_datetime(["2025-01-23T12:00:00Z"]),
    ...                     "lat": [42.5], "lon": [1.5]})
    >>> check_plausible(rec, bbox=(1.4, 42.4, 1.8, 42.7), now_s=1.8e9)
    >>> check_plausible(rec.iloc[:0], bbox=(1.4, 42.4, 1.8, 42.7))  # nothing to check
    >>> check_plausible(rec.assign(timestamp=pd.to_datetime(["2200-01-01T00:00:00Z"])),
    ...                 bbox=(1.4, 42.4, 1.8, 42.7), now_s=1.8e9)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: measurements[0].time: 2200-01-01T00:00:00Z is in the future (server time 2027-01-15T08:00:00Z)
    >>> check_plausible(rec.assign(lon=[9.0]), bbox=(1.4, 42.4, 1.8, 42.7), now_s=1.8e9)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: measurements[0].position: (42.50000, 9.00000) is far outside the map (lat 42.4..42.7, lon 1.4..1.8)
    """
    if len(records) == 0:
        return
    now = time.time() if now_s is None else now_s
    t_s = records["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
    future = t_s > now + FUTURE_TOLERANCE_S
    if future.any():
        i = int(np.argmax(future))
        raise InvalidInputError(
            f"{field}[{i}].time: {_iso(t_s[i])} is in the future (server time {_iso(now)})",
            field=f"{field}[{i}].time",
        )
    early = t_s < EARLIEST_MEASUREMENT_S
    if early.any():
        i = int(np.argmax(early))
        raise InvalidInputError(
            f"{field}[{i}].time: {_iso(t_s[i])} is before 1990: not a network measurement",
            field=f"{field}[{i}].time",
        )
    lon0, lat0, lon1, lat1 = bbox
    m = OUTSIDE_MAP_MARGIN_DEG
    lat = records["lat"].to_numpy(dtype=np.float64)
    lon = records["lon"].to_numpy(dtype=np.float64)
    outside = (lat < lat0 - m) | (lat > lat1 + m) | (lon < lon0 - m) | (lon > lon1 + m)
    if outside.any():
        i = int(np.argmax(outside))
        raise InvalidInputError(
            f"{field}[{i}].position: ({lat[i]:.5f}, {lon[i]:.5f}) is far outside the map "
            f"(lat {lat0:g}..{lat1:g}, lon {lon0:g}..{lon1:g})",
            field=f"{field}[{i}].position",
        )


def check_batch_key(key: str, *, field: str = "client_batch_id") -> str:
    """A client's batch key, if printable and at most 200 characters.

    Examples
    --------
    >>> check_batch_key("car-7/000042")
    'car-7/000042'
    >>> check_batch_key("")
    ''
    >>> check_batch_key("a\\nb")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: client_batch_id: must be printable text of at most 200 characters
    """
    if len(key) > MAX_BATCH_KEY_CHARS or not key.isprintable():
        raise InvalidInputError(
            f"{field}: must be printable text of at most {MAX_BATCH_KEY_CHARS} characters",
            field=field,
        )
    return key


def _iso(t_s: float) -> str:
    return pd.Timestamp(t_s, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
