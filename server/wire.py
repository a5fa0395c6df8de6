"""Repeated protobuf messages encoded from numpy columns in bulk.

A plan answer holds one ``PlanSegment`` per 50 m of route and one ``LatLon`` per route vertex:
thousands of small messages. Built one Python object at a time they were a third of a warm
plan's time on the server; here each column is written into the protobuf wire format with
numpy (every field of a row present, at a fixed place), and the message parses the bytes in C
(``MergeFromString``). The parsed message equals the one built field by field.

Wire format: a field is a key ``(number << 3) | wire_type`` (one byte for numbers < 16) and its
value; doubles are 8 little-endian bytes (type 1), bools and small enums a one-byte varint
(type 0), strings and sub-messages a length (a one-byte varint below 128) and bytes (type 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["latlon_points", "plan_segments", "read_latlon_points"]

_DOUBLE, _VARINT, _BYTES = 1, 0, 2
_ONE_BYTE = 128  # varints (lengths, enum values) below this take one byte


def _key(number: int, wire_type: int) -> int:
    return (number << 3) | wire_type


def _rows(fields: list[tuple[str, str, int | None]], n: int) -> NDArray[np.void]:
    """A packed record array: each field is its key byte (constant) then its value."""
    dtype = []
    for name, kind, _ in fields:
        dtype += [(f"k_{name}", "u1"), (name, kind)]
    rows = np.zeros(n, dtype=np.dtype(dtype, align=False))
    for name, _, key in fields:
        rows[f"k_{name}"] = key
    return rows


def latlon_points(field_number: int, lon: NDArray[np.float64], lat: NDArray[np.float64]) -> bytes:
    """Wire bytes of a repeated ``LatLon`` field (``latitude_deg`` = 1, ``longitude_deg`` = 2).

    Examples
    --------
    >>> import numpy as np
    >>> from commap.v1 import commap_service_pb2 as pb
    >>> summary = pb.RouteSummary()
    >>> summary.MergeFromString(latlon_points(5, np.array([1.5]), np.array([42.5])))
    20
    >>> summary.points[0] == pb.LatLon(latitude_deg=42.5, longitude_deg=1.5)
    True
    >>> latlon_points(5, np.array([]), np.array([]))
    b''
    """
    rows = _rows(
        [("size", "u1", _key(field_number, _BYTES)), ("lat", "<f8", _key(1, _DOUBLE)),
         ("lon", "<f8", _key(2, _DOUBLE))],
        len(lon),
    )  # fmt: skip
    rows["size"] = 18  # the point's length: two keyed doubles
    rows["lat"], rows["lon"] = lat, lon
    return rows.tobytes()


def read_latlon_points(
    data: bytes, n: int, field_number: int = 1
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``(lon, lat)`` of the first ``n`` ``LatLon`` messages of a message's encoding ``data``,
    where they open it as :func:`latlon_points` writes them (the usual encoding: the points
    field first, each point with both fields in order); None where they do not (a point at
    0 deg, whose field is left out, a field written twice, ...): read the messages instead.

    Examples
    --------
    >>> import numpy as np
    >>> lon, lat = read_latlon_points(latlon_points(1, np.array([1.5]), np.array([42.5])), 1)
    >>> lon.tolist(), lat.tolist()
    ([1.5], [42.5])
    >>> read_latlon_points(latlon_points(1, np.array([0.0]), np.array([42.5]))[:-9], 1) is None
    True
    >>> [c.shape for c in read_latlon_points(b"", 0)]
    [(0,), (0,)]
    """
    rows = _rows(
        [("size", "u1", _key(field_number, _BYTES)), ("lat", "<f8", _key(1, _DOUBLE)),
         ("lon", "<f8", _key(2, _DOUBLE))],
        0,
    )  # fmt: skip
    if len(data) < n * rows.dtype.itemsize:
        return None
    read = np.frombuffer(data, dtype=rows.dtype, count=n)
    laid_out = (
        (read["k_size"] == _key(field_number, _BYTES)).all()
        and (read["size"] == 18).all()
        and (read["k_lat"] == _key(1, _DOUBLE)).all()
        and (read["k_lon"] == _key(2, _DOUBLE)).all()
    )
    if not laid_out:
        return None
    return read["lon"].astype(np.float64), read["lat"].astype(np.float64)


def plan_segments(
    field_number: int,
    *,
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    distance_m: NDArray[np.float64],
    length_m: NDArray[np.float64],
    eta_s: NDArray[np.float64],
    duration_s: NDArray[np.float64],
    network_ids: Sequence[str],
    provenance: NDArray[np.integer],
    outage_probability: NDArray[np.float64],
    in_tunnel: NDArray[np.bool_],
) -> bytes | None:
    """Wire bytes of a repeated ``PlanSegment`` field; None where a row would not fit the
    one-byte lengths and enum values assumed here (the caller builds those messages itself).

    Examples
    --------
    >>> import numpy as np
    >>> from commap.v1 import commap_service_pb2 as pb
    >>> one = np.array([1.0])
    >>> data = plan_segments(6, lon=one, lat=one * 42, distance_m=one * 0, length_m=one * 50,
    ...     eta_s=one * 3, duration_s=one * 2, network_ids=["ad-lte"], provenance=np.array([2]),
    ...     outage_probability=one * 0.1, in_tunnel=np.array([True]))
    >>> plan = pb.Plan()
    >>> _ = plan.MergeFromString(data)
    >>> plan.segments[0].network_id, plan.segments[0].length_m, plan.segments[0].in_tunnel
    ('ad-lte', 50.0, True)
    """
    n = len(lon)
    if n == 0:
        return b""
    names, codes = np.unique(np.asarray(network_ids, dtype=object), return_inverse=True)
    encoded = [str(name).encode() for name in names]
    provenance = np.asarray(provenance)
    if (
        max(len(e) for e in encoded) > 48
        or int(provenance.min()) < 0
        or int(provenance.max()) >= _ONE_BYTE
    ):
        return None
    rows = _rows(
        [
            ("size", "u1", _key(field_number, _BYTES)),
            ("position_size", "u1", _key(1, _BYTES)),
            ("lat", "<f8", _key(1, _DOUBLE)),
            ("lon", "<f8", _key(2, _DOUBLE)),
            ("distance_m", "<f8", _key(2, _DOUBLE)),
            ("length_m", "<f8", _key(3, _DOUBLE)),
            ("eta_s", "<f8", _key(4, _DOUBLE)),
            ("provenance", "u1", _key(6, _VARINT)),
            ("outage_probability", "<f8", _key(7, _DOUBLE)),
            ("in_tunnel", "u1", _key(8, _VARINT)),
            ("duration_s", "<f8", _key(9, _DOUBLE)),
            ("network_size", "u1", _key(5, _BYTES)),
        ],
        n,
    )
    fixed = rows.dtype.itemsize  # up to the network id's length byte
    name_len = np.array([len(e) for e in encoded], dtype=np.int64)[codes]
    rows["size"] = fixed - 2 + name_len  # what follows the segment's own key and length
    rows["position_size"] = 18
    rows["network_size"] = name_len
    for name, column in (
        ("lat", lat), ("lon", lon), ("distance_m", distance_m), ("length_m", length_m),
        ("eta_s", eta_s), ("provenance", provenance), ("outage_probability", outage_probability),
        ("in_tunnel", in_tunnel), ("duration_s", duration_s),
    ):  # fmt: skip
        rows[name] = column
    starts = np.concatenate([[0], np.cumsum(fixed + name_len)[:-1]]).astype(np.int64)
    out = np.empty(int(n * fixed + name_len.sum()), dtype=np.uint8)
    out[starts[:, None] + np.arange(fixed)] = rows.view(np.uint8).reshape(n, fixed)
    for code, name_bytes in enumerate(encoded):  # a plan uses a handful of networks
        at = starts[codes == code] + fixed
        out[at[:, None] + np.arange(len(name_bytes))] = np.frombuffer(name_bytes, dtype=np.uint8)
    return out.tobytes()
