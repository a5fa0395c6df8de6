"""Fleet uploads: the checks a batch must pass, and storing it exactly once.

Values the record schema allows can still be impossible for a report of a vehicle driving on a
map now: a time in the future (beyond clock skew) or before cellular data existed, a position
far outside the map. :func:`check_plausible` rejects the upload naming the first such record, so
that nothing impossible reaches the fleet store (a client can fix and resend the batch).

:func:`store_stream` is the CPU-heavy part of a ``ReportMeasurements`` call: it decodes the
stream's messages into records, validates them and writes the batch's parts. The server runs it
in its upload process (:mod:`server.processes`), one batch at a time, so that it never competes
with planning for the GIL; the event loop only checks each message's header fields and keeps its
bytes. One process, one :class:`BatchWriter`: the index of client batch keys it keeps is the one
writer's view, so a key is stored once (see :mod:`server.maps`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from commap.errors import InvalidInputError
from commap.map.store import FleetStore, batch_digest, batch_key_digest
from commap.v1 import commap_service_pb2 as pb
from server import convert

__all__ = [
    "EARLIEST_MEASUREMENT_S",
    "FUTURE_TOLERANCE_S",
    "MAX_BATCH_KEY_CHARS",
    "OUTSIDE_MAP_MARGIN_DEG",
    "BatchWriter",
    "StoredBatch",
    "UploadTarget",
    "check_batch_key",
    "check_order",
    "check_plausible",
    "check_stream",
    "store_stream",
]

log = logging.getLogger(__name__)

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


def check_order(
    frame: pd.DataFrame, vehicle_id: str, last_t_s: dict[str, float], first_index: int
) -> None:
    """Reject measurements that go back in time for one vehicle within a stream."""
    times = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
    previous = last_t_s.get(vehicle_id, -math.inf)
    for k, t_s in enumerate(times):
        if t_s < previous:
            field = f"measurements[{first_index + k}].time"
            raise InvalidInputError(
                f"{field}: out of order for vehicle {vehicle_id!r} ({t_s:.3f} s after a record at {previous:.3f} s)",
                field=field,
            )
        previous = float(t_s)
    last_t_s[vehicle_id] = previous


@dataclass(frozen=True)
class UploadTarget:
    """What storing a batch needs to know of its served map (sent to the upload process)."""

    map_name: str
    store_root: str
    known_networks: tuple[str, ...]
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class StoredBatch:
    """One stored upload: its batch id, its records, whether its key was stored before."""

    batch_id: str
    record_count: int
    already_stored: bool = False


class BatchWriter:
    """Stores batches durably, each client batch key once: the only writer of its stores.

    The index of stored keys (digest -> batch id) is read from the part names at the first
    batch of a map, so a batch stored by an earlier writer (a crash between storing and
    acknowledging) is acknowledged again, not stored twice; the temporary files of an earlier
    writer that died mid-batch are removed then.
    """

    def __init__(self) -> None:
        self._stores: dict[str, FleetStore] = {}
        self._keys: dict[tuple[str, str], dict[str, str]] = {}

    def _store(self, root: str) -> FleetStore:
        if root not in self._stores:
            self._stores[root] = FleetStore(root)
        return self._stores[root]

    def store(self, target: UploadTarget, records: pd.DataFrame, batch_key: str) -> StoredBatch:
        """Store one batch, or acknowledge its key again (blocking).

        Raises
        ------
        InvalidInputError
            The batch does not validate, or does not read back unchanged (nothing stored).
        OSError
            The storage cannot take writes (read-only, full).
        """
        store = self._store(target.store_root)
        keys = self._keys.get((target.store_root, target.map_name))
        if keys is None:  # this writer's first batch of the map
            # a writer killed mid-batch (an earlier upload process) left temporary files
            store.remove_stale_temp_parts(target.map_name)
            keys = {batch_digest(p.batch_id): p.batch_id for p in store.parts(target.map_name)}
            self._keys[(target.store_root, target.map_name)] = keys
        digest = batch_key_digest(target.map_name, batch_key) if batch_key else None
        if digest is not None and digest in keys:
            log.info(
                "map %s: batch %s already stored: acknowledged again", target.map_name, keys[digest]
            )
            return StoredBatch(keys[digest], len(records), already_stored=True)
        batch = store.append(
            target.map_name,
            records,
            known_networks=target.known_networks,
            batch_key=batch_key or None,
        )
        try:  # acknowledged means readable: a batch that does not read back is not kept
            back = store.read_stored(batch)
            if len(back) != batch.record_count:
                raise InvalidInputError(f"{len(back)} of {batch.record_count} records read")
        except InvalidInputError as exc:
            for path in batch.parts:
                store.fs.rm(path)
            log.error(
                "map %s: batch %s did not read back, removed: %s",
                target.map_name,
                batch.batch_id,
                exc,
            )
            raise InvalidInputError(
                "measurements: the batch does not survive storage unchanged; nothing stored",
                field="measurements",
            ) from None
        log.info(
            "map %s: stored %d measurements as batch %s",
            target.map_name,
            batch.record_count,
            batch.batch_id,
        )
        keys[batch_digest(batch.batch_id)] = batch.batch_id
        return StoredBatch(batch.batch_id, batch.record_count)


def check_stream(messages: Sequence[bytes]) -> pd.DataFrame:
    """The records of a stream's serialized messages, each record checked as it is read.

    Positions, times, required fields and the order of each vehicle's times are checked here,
    naming ``measurements[i]`` by its index in the whole stream; value ranges by
    :func:`store_stream`.
    """
    frames = []
    last_t_s: dict[str, float] = {}
    index = 0
    for raw in messages:
        message = pb.ReportMeasurementsRequest.FromString(raw)
        frame = convert.measurements_frame(
            message.measurements, vehicle_id=message.vehicle_id, first_index=index
        )
        check_order(frame, message.vehicle_id, last_t_s, index)
        frames.append(frame)
        index += len(message.measurements)
    return pd.concat(frames, ignore_index=True)


_WRITER = BatchWriter()  # the upload process's one writer


def store_stream(target: UploadTarget, messages: Sequence[bytes], batch_key: str) -> StoredBatch:
    """Check a stream's records and store them as one batch (the upload process's job).

    Raises
    ------
    InvalidInputError
        The first bad record (nothing stored).
    OSError
        The storage cannot take writes.
    """
    records = convert.checked_measurements(
        check_stream(messages), known_networks=target.known_networks
    )
    check_plausible(records, bbox=target.bbox)
    return _WRITER.store(target, records, batch_key)
