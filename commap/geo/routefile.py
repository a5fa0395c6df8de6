"""Routes from files: CSV traces, GPX tracks, GeoJSON line strings and encoded polylines.

Every format gives a :class:`~commap.geo.corridor.Route` through
:func:`commap.geo.corridor.route_from_polyline`, so the same checks apply (at least 2 points,
finite and in-range coordinates, strictly increasing timestamps). :func:`read_route_file` picks
the reader by the file's suffix, else by its content; :func:`parse_route` reads text already in
memory (a gRPC request, a ``--route`` argument that is not a file).

GPX: the track points (``trkpt``) of the file's tracks, else its route points (``rtept``);
``lat``/``lon`` attributes and an optional ``<time>`` (every point or none).

Encoded polyline: the Google polyline algorithm, precision 5 (``1e-5`` degrees), latitude first;
as a ``.polyline``/``.txt`` file or a string. No timestamps.

GeoJSON: a ``LineString`` geometry, or a ``Feature`` / ``FeatureCollection`` holding exactly
one ``LineString``. Positions are ``[lon, lat(, ele)]``; per-vertex timestamps may come in the
feature's ``properties`` as ``coordTimes`` or ``times`` (the names GPX converters use).

CSV: a header row with ``lat`` and ``lon`` (also ``latitude``/``longitude``/``lng``), and
optionally ``timestamp`` (also ``time``/``t_s``), ISO 8601 or epoch seconds, in every row.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from commap.errors import InvalidInputError
from commap.geo.corridor import DEFAULT_SPEED_MPS, Route, route_from_polyline
from commap.timeutil import parse_time

__all__ = [
    "ROUTE_FORMATS",
    "decode_polyline",
    "encode_polyline",
    "load_route",
    "parse_route",
    "read_route_file",
]

# format name -> file suffixes
ROUTE_FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "gpx": (".gpx",),
    "geojson": (".geojson", ".json"),
    "polyline": (".polyline", ".txt"),
}
_POLYLINE = re.compile(r"^[\x3f-\x7e]+$")  # the characters an encoded polyline is made of

_LAT = ("lat", "latitude")
_LON = ("lon", "lng", "longitude")
_TIME = ("timestamp", "time", "t_s")
_GEOJSON_TIMES = ("coordTimes", "times")


def read_route_file(path: str | os.PathLike[str], *, speed_mps: float = DEFAULT_SPEED_MPS) -> Route:
    """Read a route from a CSV, GPX, GeoJSON or encoded-polyline file.

    Parameters
    ----------
    path : str or PathLike
        The file: ``.csv``, ``.gpx``, ``.geojson``/``.json``, ``.polyline``/``.txt``; any other
        suffix is recognised by its content.
    speed_mps : float
        Speed for a route without timestamps.

    Raises
    ------
    InvalidInputError
        Missing or unreadable file, malformed content (the message names the file and the row
        or member), or a route that :func:`route_from_polyline` rejects.

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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{path}: cannot read route file ({exc})", field=str(path)
        ) from None
    suffix = path.suffix.lower()
    fmt = next((name for name, ends in ROUTE_FORMATS.items() if suffix in ends), None)
    return parse_route(text, fmt=fmt, name=path.stem, source=str(path), speed_mps=speed_mps)


def load_route(value: str | os.PathLike[str], *, speed_mps: float = DEFAULT_SPEED_MPS) -> Route:
    """A route from a file name, or from an encoded polyline given as the string itself.

    Examples
    --------
    >>> route = load_route("_p~iF~ps|U_ulLnnqC_mqNvxq`@")
    >>> route.lat.tolist(), route.lon.tolist()
    ([38.5, 40.7, 43.252], [-120.2, -120.95, -126.453])
    >>> load_route("no-such-file.csv")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: no-such-file.csv: no such route file
    """
    text = os.fspath(value)
    try:
        is_file = Path(text).is_file()
    except OSError:  # e.g. a long polyline is no valid file name
        is_file = False
    if is_file:
        return read_route_file(text, speed_mps=speed_mps)
    if _POLYLINE.match(text.strip()):
        return parse_route(text, fmt="polyline", source="polyline", speed_mps=speed_mps)
    raise InvalidInputError(f"{text}: no such route file", field="route")


def parse_route(
    text: str | bytes,
    *,
    fmt: str | None = None,
    name: str = "",
    source: str = "route",
    speed_mps: float = DEFAULT_SPEED_MPS,
) -> Route:
    """A route from the content of a route file (``fmt`` a key of :data:`ROUTE_FORMATS`).

    Without ``fmt`` the content decides: ``<`` starts GPX, ``{`` GeoJSON, a first line with a
    comma CSV, anything else an encoded polyline. ``source`` names the input in messages.

    Examples
    --------
    >>> gpx = ('<gpx><trk><trkseg><trkpt lat="42.5" lon="1.5"/><trkpt lat="42.5" lon="1.51"/>'
    ...        '</trkseg></trk></gpx>')
    >>> parse_route(gpx).lon.tolist()
    [1.5, 1.51]
    >>> parse_route("", fmt="gpx")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: route: invalid GPX (no element found: line 1, column 0)
    >>> parse_route("x", fmt="kml")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: route: unknown route format 'kml'; expected csv, gpx, geojson or polyline
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{source}: not UTF-8 text ({exc})", field=source) from None
    fmt = fmt or _sniff(text)
    where = Path(source)
    if fmt == "csv":
        lon, lat, times = _parse_csv(text, where)
    elif fmt == "gpx":
        lon, lat, times = _parse_gpx(text, where)
    elif fmt == "geojson":
        lon, lat, times = _parse_geojson(text, where)
    elif fmt == "polyline":
        lat, lon = decode_polyline(text.strip(), field=source)
        times = None
    else:
        raise InvalidInputError(
            f"{source}: unknown route format {fmt!r}; expected csv, gpx, geojson or polyline",
            field=source,
        )
    try:
        return route_from_polyline(lon, lat, t_s=times, speed_mps=speed_mps, name=name)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}", field=source) from None


def _sniff(text: str) -> str:
    head = text.lstrip()
    if head.startswith("<"):
        return "gpx"
    if head.startswith("{"):
        return "geojson"
    first = head.splitlines()[0] if head else ""
    return "csv" if "," in first else "polyline"


def decode_polyline(
    text: str, *, precision: int = 5, field: str = "polyline"
) -> tuple[list[float], list[float]]:
    """Latitudes and longitudes of an encoded polyline (Google's algorithm).

    Examples
    --------
    >>> decode_polyline("_p~iF~ps|U_ulLnnqC_mqNvxq`@")
    ([38.5, 40.7, 43.252], [-120.2, -120.95, -126.453])
    >>> decode_polyline("")
    ([], [])
    >>> decode_polyline("_p~iF")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: polyline: truncated at character 5 (a latitude without its longitude)
    """
    scale = 10.0**precision
    values: list[int] = []
    shift = result = 0
    for i, char in enumerate(text):
        code = ord(char) - 63
        if not 0 <= code < 64:
            raise InvalidInputError(
                f"{field}: character {i + 1} ({char!r}) is not part of an encoded polyline",
                field=field,
            )
        result |= (code & 0x1F) << shift
        shift += 5
        if code < 0x20:
            values.append(~(result >> 1) if result & 1 else result >> 1)
            shift = result = 0
    if shift or len(values) % 2:
        what = "an unfinished number" if shift else "a latitude without its longitude"
        raise InvalidInputError(
            f"{field}: truncated at character {len(text)} ({what})", field=field
        )
    lat = list(itertools.accumulate(values[0::2]))
    lon = list(itertools.accumulate(values[1::2]))
    return [v / scale for v in lat], [v / scale for v in lon]


def encode_polyline(lat: Sequence[float], lon: Sequence[float], *, precision: int = 5) -> str:
    """Encode positions with Google's polyline algorithm (the inverse of :func:`decode_polyline`).

    Examples
    --------
    >>> encode_polyline([38.5, 40.7, 43.252], [-120.2, -120.95, -126.453])
    '_p~iF~ps|U_ulLnnqC_mqNvxq`@'
    >>> encode_polyline([], [])
    ''
    """
    scale = 10**precision
    out: list[str] = []
    prev = (0, 0)
    for point in zip(lat, lon, strict=True):
        here = (round(point[0] * scale), round(point[1] * scale))
        for delta in (here[0] - prev[0], here[1] - prev[1]):
            value = ~(delta << 1) if delta < 0 else delta << 1
            while value >= 0x20:
                out.append(chr((0x20 | (value & 0x1F)) + 63))
                value >>= 5
            out.append(chr(value + 63))
        prev = here
    return "".join(out)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_gpx(text: str, path: Path) -> Columns:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:  # no entity expansion from untrusted input
        raise InvalidInputError(f"{path}: GPX with a DOCTYPE is not accepted", field=str(path))
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InvalidInputError(f"{path}: invalid GPX ({exc})", field=str(path)) from None
    if _local(root.tag) != "gpx":
        raise InvalidInputError(
            f"{path}: the root element is <{_local(root.tag)}>, not <gpx>", field=str(path)
        )
    points = [e for e in root.iter() if _local(e.tag) == "trkpt"]
    points = points or [e for e in root.iter() if _local(e.tag) == "rtept"]
    lon: list[float] = []
    lat: list[float] = []
    stamps: list[str | None] = []
    for i, point in enumerate(points):
        lat.append(_number(point.get("lat", ""), f"point {i + 1} lat", path))
        lon.append(_number(point.get("lon", ""), f"point {i + 1} lon", path))
        stamp = next((c.text for c in point if _local(c.tag) == "time"), None)
        stamps.append(stamp.strip() if stamp else None)
    timed = [s for s in stamps if s is not None]
    if timed and len(timed) != len(stamps):
        raise InvalidInputError(
            f"{path}: {len(timed)} of {len(stamps)} track points have a <time>; give all or none",
            field=str(path),
        )
    times = [parse_time(s, field=f"{path}: point {i + 1} time") for i, s in enumerate(timed)]
    return lon, lat, times or None


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
