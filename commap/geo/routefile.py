"""Routes from files: GeoJSON line strings and CSV traces (``lat,lon[,timestamp]``).

Both give a :class:`~commap.geo.corridor.Route` through :func:`commap.geo.corridor.route_from_polyline`,
so the same checks apply (at least 2 points, finite and in-range coordinates, strictly
increasing timestamps).

GeoJSON: a ``LineString`` geometry, or a ``Feature`` / ``FeatureCollection`` holding exactly
one ``LineString``. Positions are ``[lon, lat(, ele)]``; per-vertex timestamps may come in the
feature's ``properties`` as ``coordTimes`` or ``times`` (the names GPX converters use).

CSV: a header row with ``lat`` and ``lon`` (also ``latitude``/``longitude``/``lng``), and
optionally ``timestamp`` (also ``time``/``t_s``), ISO 8601 or epoch seconds, in every row.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from commap.errors import InvalidInputError
from commap.geo.corridor import DEFAULT_SPEED_MPS, Route, route_from_polyline
from commap.timeutil import parse_time

__all__ = ["read_route_file"]

_LAT = ("lat", "latitude")
_LON = ("lon", "lng", "longitude")
_TIME = ("timestamp", "time", "t_s")
_GEOJSON_TIMES = ("coordTimes", "times")


def read_route_file(path: str | os.PathLike[str], *, speed_mps: float = DEFAULT_SPEED_MPS) -> Route:
    """Read a route from a GeoJSON (``.geojson``/``.json``) or CSV (``.csv``) file.

    Parameters
    ----------
    path : str or PathLike
        The file; the suffix picks the format.
    speed_mps : float
        Speed for a route without timestamps.

    Raises
    ------
    InvalidInputError
        Missing or unreadable file, unknown suffix, malformed content (the message names the
        file and the row or member), or a route that :func:`route_from_polyline` rejects.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "trace.csv"
    ...     _ = p.write_text("lat,lon,timestamp\\n42.50,1.50,0\\n42.50,1.51,60\\n")
    ...     route = read_route_file(p)
    >>> route.t_s.tolist(), round(float(route.speed_mps[0]), 1)
    ([0.0, 60.0], 13.7)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "one.csv"
    ...     _ = p.write_text("lat,lon\\n42.5,1.5\\n")
    ...     read_route_file(p)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: .../one.csv: a route needs at least 2 points, got 1
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".geojson", ".json", ".csv"):
        raise InvalidInputError(
            f"{path}: unknown route file type {suffix!r}; expected .geojson, .json or .csv",
            field=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{path}: cannot read route file ({exc})", field=str(path)
        ) from None
    if suffix == ".csv":
        lon, lat, times = _parse_csv(text, path)
    else:
        lon, lat, times = _parse_geojson(text, path)
    try:
        return route_from_polyline(lon, lat, t_s=times, speed_mps=speed_mps, name=path.stem)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}", field=str(path)) from None


Columns = tuple[list[float], list[float], list[float] | None]


def _column(
    header: Sequence[str], names: Sequence[str], path: Path, *, required: bool
) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    if required:
        raise InvalidInputError(
            f"{path}: CSV header {list(header)} has no {names[0]!r} column "
            f"(accepted: {', '.join(names)})",
            field=str(path),
        )
    return None


def _number(value: str, what: str, path: Path) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInputError(
            f"{path}: {what}: {value!r} is not a number", field=str(path)
        ) from None


def _parse_csv(text: str, path: Path) -> Columns:
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise InvalidInputError(f"{path}: empty CSV file", field=str(path))
    header, body = rows[0], [r for r in rows[1:] if any(cell.strip() for cell in r)]
    i_lat = _column(header, _LAT, path, required=True)
    i_lon = _column(header, _LON, path, required=True)
    i_time = _column(header, _TIME, path, required=False)
    assert i_lat is not None and i_lon is not None  # required=True raised otherwise
    lon: list[float] = []
    lat: list[float] = []
    times: list[float] | None = [] if i_time is not None else None
    for line, row in enumerate(body, start=2):
        needed = max(i_lat, i_lon, -1 if i_time is None else i_time)
        if len(row) <= needed:
            raise InvalidInputError(f"{path}: row {line} has {len(row)} fields", field=str(path))
        lat.append(_number(row[i_lat], f"row {line} lat", path))
        lon.append(_number(row[i_lon], f"row {line} lon", path))
        if times is not None and i_time is not None:
            times.append(parse_time(row[i_time], field=f"{path}: row {line} timestamp"))
    return lon, lat, times


def _linestring(doc: Any, path: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The one LineString geometry of a GeoJSON document and its feature's properties."""
    if not isinstance(doc, Mapping):
        raise InvalidInputError(f"{path}: GeoJSON must be an object", field=str(path))
    kind = doc.get("type")
    if kind == "LineString":
        return doc, {}
    if kind == "Feature":
        geometry = doc.get("geometry")
        if not isinstance(geometry, Mapping) or geometry.get("type") != "LineString":
            raise InvalidInputError(
                f"{path}: the feature's geometry is not a LineString", field=str(path)
            )
        properties = doc.get("properties")
        return geometry, properties if isinstance(properties, Mapping) else {}
    if kind == "FeatureCollection":
        features = doc.get("features")
        lines = [
            f
            for f in (features if isinstance(features, list) else [])
            if isinstance(f, Mapping)
            and isinstance(f.get("geometry"), Mapping)
            and f["geometry"].get("type") == "LineString"
        ]
        if len(lines) != 1:
            raise InvalidInputError(
                f"{path}: the FeatureCollection holds {len(lines)} LineString features; expected 1",
                field=str(path),
            )
        return _linestring(lines[0], path)
    raise InvalidInputError(
        f"{path}: GeoJSON type {kind!r}; expected LineString, Feature or FeatureCollection",
        field=str(path),
    )


def _parse_geojson(text: str, path: Path) -> Columns:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{path}: invalid JSON ({exc})", field=str(path)) from None
    geometry, properties = _linestring(doc, path)
    coords = geometry.get("coordinates")
    if not isinstance(coords, list):
        raise InvalidInputError(f"{path}: LineString has no coordinate list", field=str(path))
    lon: list[float] = []
    lat: list[float] = []
    for i, position in enumerate(coords):
        if not isinstance(position, list) or len(position) < 2:
            raise InvalidInputError(f"{path}: coordinates[{i}] is not [lon, lat]", field=str(path))
        lon.append(_number(str(position[0]), f"coordinates[{i}] lon", path))
        lat.append(_number(str(position[1]), f"coordinates[{i}] lat", path))
    times = None
    for key in _GEOJSON_TIMES:
        if key in properties:
            raw = properties[key]
            if not isinstance(raw, list):
                raise InvalidInputError(f"{path}: properties.{key} must be a list", field=str(path))
            times = [
                parse_time(v, field=f"{path}: properties.{key}[{i}]") for i, v in enumerate(raw)
            ]
            break
    return lon, lat, times
