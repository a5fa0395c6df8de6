"""Cell sites: read and write site tables, and place sites over real terrain where none are known.

A *site table* is a :class:`pandas.DataFrame` with the columns of :data:`SITE_COLUMNS`::

    site_id  lon  lat  tx_power_dbm  frequency_mhz  antenna_height_m  environment  source

(``lon``/``lat`` WGS84 degrees, ``tx_power_dbm`` total transmit power of the carrier,
``environment`` one of ``urban``/``suburban``/``rural`` or ``""`` when unknown).
:class:`SiteTable` holds the same columns as numpy arrays: loading a built map reads it with
:func:`read_site_table` and so never imports pandas (a third of a second of every plan).

Sources:

* :func:`read_sites` reads OpenCelliD CSV (``radio,mcc,net,area,cell,unit,lon,lat,range,samples,
  changeable,created,updated,averageSignal``, with or without the header line) and the Irish
  base-station CSV (``bs_id,bs_technology,bs_fc,bs_operator,bs_lat,bs_long,bs_power``), detected
  by the first line. :func:`write_opencellid_csv` writes OpenCelliD CSV plus commap's own columns.
* :func:`read_osm_masts` finds communication masts and antennas in an OSM extract.
* :func:`place_sites` completes a layout with a seeded greedy method over the real terrain and
  road graph (see its docstring); :func:`classify_environment` labels sites by road density.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import shapely
from numpy.typing import NDArray

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.files import write_text_atomic
from commap.geo.geodesy import offset_deg, to_local_m
from commap.radio.pathloss import ENVIRONMENTS, link_loss_db, model_loss_db

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd
    from scipy import sparse

    from commap.geo.terrain import Terrain

__all__ = [
    "IRISH_COLUMNS",
    "OPENCELLID_COLUMNS",
    "SITE_COLUMNS",
    "Placement",
    "RoadPoints",
    "SiteTable",
    "classify_environment",
    "empty_sites",
    "place_sites",
    "read_osm_masts",
    "read_site_table",
    "read_sites",
    "road_points",
    "write_opencellid_csv",
]

log = logging.getLogger(__name__)

Region = tuple[float, float, float, float]

SITE_COLUMNS: Final = (
    "site_id",
    "lon",
    "lat",
    "tx_power_dbm",
    "frequency_mhz",
    "antenna_height_m",
    "environment",
    "source",
)
OPENCELLID_COLUMNS: Final = (
    "radio",
    "mcc",
    "net",
    "area",
    "cell",
    "unit",
    "lon",
    "lat",
    "range",
    "samples",
    "changeable",
    "created",
    "updated",
    "averageSignal",
)
IRISH_COLUMNS: Final = (
    "bs_id",
    "bs_technology",
    "bs_fc",
    "bs_operator",
    "bs_lat",
    "bs_long",
    "bs_power",
)
# commap's columns after the OpenCelliD ones (OpenCelliD has no power, height or environment)
EXTRA_COLUMNS: Final = (
    "site_id",
    "tx_power_dbm",
    "frequency_mhz",
    "antenna_height_m",
    "environment",
    "source",
)
_RADIOS: Final = ("GSM", "UMTS", "LTE", "NR", "CDMA")
# Typical carrier per OpenCelliD radio when the file gives none (EU bands).
_DEFAULT_FREQUENCY_MHZ: Final = {
    "GSM": 900.0,
    "UMTS": 2100.0,
    "LTE": 1800.0,
    "NR": 3500.0,
    "CDMA": 850.0,
}
_RADIO_OF_TECHNOLOGY: Final = {
    "gsm": "GSM",
    "2g": "GSM",
    "3g": "UMTS",
    "umts": "UMTS",
    "lte": "LTE",
    "4g": "LTE",
    "nr": "NR",
    "5g": "NR",
}
# Site environment thresholds, drivable road length within ENV_RADIUS_M of the site (km/km^2).
# Calibrated on the Andorra extract: town centres (Andorra la Vella 7.4, Escaldes 11.1) >= 6,
# villages along the valleys (Encamp 4.8, Ordino 3.7) 3-6, mountain passes (Envalira 2.8) < 3.
ENV_RADIUS_M: Final = 1000.0
URBAN_ROAD_DENSITY_KM_PER_KM2: Final = 6.0
SUBURBAN_ROAD_DENSITY_KM_PER_KM2: Final = 3.0
_MAST_KINDS: Final = ("mast", "tower", "antenna", "communications_tower")


def empty_sites() -> pd.DataFrame:
    """A site table without rows (the column set of :data:`SITE_COLUMNS`).

    Examples
    --------
    >>> list(empty_sites().columns) == list(SITE_COLUMNS)
    True
    """
    return _frame([])


def _frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(list(records), columns=list(SITE_COLUMNS))
    for column in ("lon", "lat", "tx_power_dbm", "frequency_mhz", "antenna_height_m"):
        frame[column] = frame[column].astype(np.float64)
    for column in ("site_id", "environment", "source"):
        frame[column] = frame[column].astype("str")
    return frame


@dataclass(frozen=True)
class SiteTable:
    """A site table as numpy arrays, one per column of :data:`SITE_COLUMNS`.

    Examples
    --------
    >>> table = SiteTable.from_records([])
    >>> len(table), table.lon.dtype.name
    (0, 'float64')
    """

    site_id: NDArray[np.str_]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    tx_power_dbm: NDArray[np.float64]
    frequency_mhz: NDArray[np.float64]
    antenna_height_m: NDArray[np.float64]
    environment: NDArray[np.str_]
    source: NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.lon.shape[0])

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> SiteTable:
        """The table of site records (mappings with the keys of :data:`SITE_COLUMNS`)."""
        return cls(**{c: _column(c, [r[c] for r in records]) for c in SITE_COLUMNS})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SiteTable:
        """The table of a site DataFrame (missing environments become ``""``)."""
        return cls(
            **{
                c: _column(c, frame[c].fillna("").tolist() if c in _TEXT else frame[c].tolist())
                for c in SITE_COLUMNS
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """The site DataFrame, as :func:`read_sites` returns it (imports pandas)."""
        columns = [getattr(self, c).tolist() for c in SITE_COLUMNS]
        return _frame(
            [dict(zip(SITE_COLUMNS, row, strict=True)) for row in zip(*columns, strict=True)]
        )


_TEXT: Final = frozenset({"site_id", "environment", "source"})


def _column(name: str, values: list[Any]) -> NDArray[Any]:
    if name in _TEXT:
        return np.array([str(v) for v in values], dtype=np.str_)
    return np.array(values, dtype=np.float64)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Defaults:
    tx_power_dbm: float
    frequency_mhz: float | None
    antenna_height_m: float


def _number(row: Mapping[str, str], key: str) -> float:
    value = float(row[key])
    if not np.isfinite(value):
        raise ValueError(f"{key} is not finite")
    return value


def _check_site(site: dict[str, Any]) -> dict[str, Any]:
    if not (-180.0 <= site["lon"] <= 180.0 and -90.0 <= site["lat"] <= 90.0):
        raise ValueError("coordinates out of range")
    if site["lon"] == 0.0 and site["lat"] == 0.0:
        raise ValueError("null island coordinates")
    if not -30.0 <= site["tx_power_dbm"] <= 80.0:
        raise ValueError(f"tx power {site['tx_power_dbm']} dBm out of range")
    if not 30.0 <= site["frequency_mhz"] <= 100_000.0:
        raise ValueError(f"frequency {site['frequency_mhz']} MHz out of range")
    if not 0.0 < site["antenna_height_m"] <= 500.0:
        raise ValueError(f"antenna height {site['antenna_height_m']} m out of range")
    if site["environment"] not in ("", *ENVIRONMENTS):
        raise ValueError(f"unknown environment {site['environment']!r}")
    return site


def _opencellid_site(row: Mapping[str, str], defaults: _Defaults) -> dict[str, Any]:
    radio = row["radio"].strip().upper()
    if radio not in _RADIOS:
        raise ValueError(f"unknown radio {row['radio']!r}")
    if row.get("site_id"):  # commap's own columns (written by write_opencellid_csv)
        return {
            "site_id": row["site_id"],
            "lon": _number(row, "lon"),
            "lat": _number(row, "lat"),
            "tx_power_dbm": _number(row, "tx_power_dbm"),
            "frequency_mhz": _number(row, "frequency_mhz"),
            "antenna_height_m": _number(row, "antenna_height_m"),
            "environment": row.get("environment", "").strip(),
            "source": row.get("source", "") or "opencellid",
        }
    ids = [str(int(row[k])) for k in ("mcc", "net", "area", "cell")]
    return {
        "site_id": "-".join([radio, *ids]),
        "lon": _number(row, "lon"),
        "lat": _number(row, "lat"),
        "tx_power_dbm": defaults.tx_power_dbm,
        "frequency_mhz": defaults.frequency_mhz or _DEFAULT_FREQUENCY_MHZ[radio],
        "antenna_height_m": defaults.antenna_height_m,
        "environment": "",
        "source": "opencellid",
    }


def _irish_site(row: Mapping[str, str], defaults: _Defaults) -> dict[str, Any]:
    site_id = row["bs_id"].strip()
    if not site_id:
        raise ValueError("empty bs_id")
    return {
        "site_id": site_id,
        "lon": _number(row, "bs_long"),
        "lat": _number(row, "bs_lat"),
        "tx_power_dbm": _number(row, "bs_power"),
        "frequency_mhz": _number(row, "bs_fc"),
        "antenna_height_m": defaults.antenna_height_m,
        "environment": "",
        "source": "ireland",
    }


_Parser = Callable[[Mapping[str, str], _Defaults], dict[str, Any]]


def _detect(first: list[str], path: Path) -> tuple[list[str], _Parser, bool]:
    """Column names, row parser and whether the first line is data (headerless OpenCelliD)."""
    names = [c.strip() for c in first]
    if set(IRISH_COLUMNS) <= set(names):
        return names, _irish_site, False
    if set(OPENCELLID_COLUMNS[:8]) <= set(names):
        return names, _opencellid_site, False
    if len(names) == len(OPENCELLID_COLUMNS) and names[0].upper() in _RADIOS:
        return list(OPENCELLID_COLUMNS), _opencellid_site, True
    raise InvalidInputError(
        f"{path}, line 1: not an OpenCelliD or Irish base-station CSV header "
        f"(expected {','.join(OPENCELLID_COLUMNS[:8])},... or {','.join(IRISH_COLUMNS)})",
        field=str(path),
    )


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _matches(row: Mapping[str, str], flt: Mapping[str, str]) -> bool:
    return all(row.get(k, "").strip() == v for k, v in flt.items())


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        with _open_text(path) as f:
            for line_no, row in enumerate(csv.reader(f), start=1):
                if row and any(cell.strip() for cell in row):
                    yield line_no, row
    except FileNotFoundError:
        raise InvalidInputError(f"site file {path} does not exist", field=str(path)) from None
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise InvalidInputError(f"{path}: cannot read site CSV ({exc})", field=str(path)) from None


def read_sites(
    path: str | os.PathLike[str],
    *,
    filter: Mapping[str, Any] | None = None,  # the spec key is called filter
    tx_power_dbm: float = 46.0,
    frequency_mhz: float | None = None,
    antenna_height_m: float = 25.0,
    max_bad_fraction: float = 0.1,
) -> pd.DataFrame:
    """Read cell sites from an OpenCelliD or Irish base-station CSV (format from the header).

    OpenCelliD rows carry no power, carrier or height: ``tx_power_dbm``, ``antenna_height_m``
    and ``frequency_mhz`` (default: a typical carrier per ``radio``) fill them, unless the file
    has commap's extra columns (as :func:`write_opencellid_csv` writes). Irish rows give power
    (``bs_power``) and carrier (``bs_fc``); the antenna height is ``antenna_height_m``.
    ``.gz`` files are read transparently.

    Parameters
    ----------
    path : path-like
        The CSV file.
    filter : mapping, optional
        Keep only rows whose raw columns equal these values, e.g.
        ``{"bs_operator": "mno_1", "bs_technology": "3g"}`` or ``{"radio": "LTE", "mcc": "213"}``.
    tx_power_dbm, frequency_mhz, antenna_height_m : float
        Defaults for values the format does not carry.
    max_bad_fraction : float, default 0.1
        Rows that cannot be parsed are skipped with a logged count; if more than this
        fraction of the (filtered) rows is bad the file is rejected.

    Returns
    -------
    pandas.DataFrame
        A site table (:data:`SITE_COLUMNS`), in file order.

    Raises
    ------
    InvalidInputError
        Missing or unreadable file, unknown header, a filter column the file does not have,
        no site left, or too many bad rows (the message names the file and the first bad line).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = p.write_text("bs_id,bs_technology,bs_fc,bs_operator,bs_lat,bs_long,bs_power\\n"
    ...                  "a,3g,2000,mno_1,51.9,-8.47,37\\n")
    >>> read_sites(p)[["site_id", "frequency_mhz", "tx_power_dbm"]].values.tolist()
    [['a', 2000.0, 37.0]]
    >>> _ = p.write_text("bs_id,bs_technology,bs_fc,bs_operator,bs_lat,bs_long,bs_power\\n")
    >>> read_sites(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: ...: no site rows
    """
    return _frame(
        _read_records(
            Path(path),
            filter=filter,
            tx_power_dbm=tx_power_dbm,
            frequency_mhz=frequency_mhz,
            antenna_height_m=antenna_height_m,
            max_bad_fraction=max_bad_fraction,
        )
    )


def read_site_table(path: str | os.PathLike[str]) -> SiteTable:
    """Read a site file as :func:`read_sites` does (its defaults), into numpy arrays.

    Loading a built map needs nothing more, and so imports no pandas.

    Parameters
    ----------
    path : path-like
        The CSV file (as :func:`write_opencellid_csv` writes it, or any format
        :func:`read_sites` reads).

    Returns
    -------
    SiteTable
        The sites in file order.

    Raises
    ------
    InvalidInputError
        As :func:`read_sites`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = p.write_text("bs_id,bs_technology,bs_fc,bs_operator,bs_lat,bs_long,bs_power\\n"
    ...                  "a,3g,2000,mno_1,51.9,-8.47,37\\n")
    >>> table = read_site_table(p)
    >>> len(table), table.site_id.tolist(), table.frequency_mhz.tolist()
    (1, ['a'], [2000.0])
    """
    return SiteTable.from_records(_read_records(Path(path)))


def _read_records(
    path: Path,
    *,
    filter: Mapping[str, Any] | None = None,  # the spec key is called filter
    tx_power_dbm: float = 46.0,
    frequency_mhz: float | None = None,
    antenna_height_m: float = 25.0,
    max_bad_fraction: float = 0.1,
) -> list[dict[str, Any]]:
    flt = {str(k): str(v) for k, v in (filter or {}).items()}
    defaults = _Defaults(float(tx_power_dbm), frequency_mhz, float(antenna_height_m))
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise InvalidInputError(f"{path}: empty file", field=str(path))
    names, parse, first_is_data = _detect(first[1], path)
    unknown = sorted(set(flt) - set(names))
    if unknown:
        raise InvalidInputError(
            f"{path}: filter column(s) {unknown} not in the file (columns: {', '.join(names)})",
            field="filter",
        )
    records: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    data_rows = ([first] if first_is_data else []) + list(rows)
    for line_no, raw in data_rows:
        if len(raw) < len(names):
            bad.append((line_no, f"{len(raw)} fields, expected {len(names)}"))
            continue
        row = dict(zip(names, raw, strict=False))
        if not _matches(row, flt):
            continue
        try:
            records.append(_check_site(parse(row, defaults)))
        except (ValueError, KeyError) as exc:
            bad.append((line_no, str(exc)))
    _judge_bad_rows(path, len(records), bad, max_bad_fraction)
    return records


def _judge_bad_rows(
    path: Path, good: int, bad: list[tuple[int, str]], max_bad_fraction: float
) -> None:
    total = good + len(bad)
    if total == 0:
        raise InvalidInputError(f"{path}: no site rows", field=str(path))
    if bad:
        line, reason = bad[0]
        if good == 0 or len(bad) > max_bad_fraction * total:
            raise InvalidInputError(
                f"{path}: {len(bad)} of {total} site rows are malformed "
                f"(first at line {line}: {reason})",
                field=str(path),
            )
        log.warning(
            "%s: skipped %d malformed site rows (first at line %d: %s)",
            path,
            len(bad),
            line,
            reason,
        )


# --- writing ---------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if np.isfinite(value) else ""


def write_opencellid_csv(
    sites: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    technology: str = "lte",
    mcc: int = 0,
    net: int = 0,
) -> Path:
    """Write a site table as OpenCelliD CSV plus commap's columns, atomically.

    The 14 OpenCelliD columns come first (``radio`` from ``technology``, ``cell`` numbered from
    1, ``area``/``unit``/``range``/``samples``/``created``/``updated``/``averageSignal`` 0,
    ``changeable`` 1 because positions are modelled), followed by :data:`EXTRA_COLUMNS` so that
    :func:`read_sites` gets the table back unchanged. The file is written to a temporary name
    in the same directory and renamed into place.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "sites.csv"
    >>> write_opencellid_csv(empty_sites(), p).read_text().split(",")[:3]
    ['radio', 'mcc', 'net']
    """
    path = Path(path)
    radio = _RADIO_OF_TECHNOLOGY.get(technology.lower(), technology.upper())
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")
    writer.writerow([*OPENCELLID_COLUMNS, *EXTRA_COLUMNS])
    numbers = {c: sites[c].to_numpy(np.float64) for c in SITE_COLUMNS[1:6]}
    texts = {c: sites[c].astype(str).tolist() for c in ("site_id", "environment", "source")}
    for i in range(len(sites)):
        lon, lat, power, freq, height = (_fmt(float(numbers[c][i])) for c in SITE_COLUMNS[1:6])
        opencellid = [radio, mcc, net, 0, i + 1, 0, lon, lat, 0, 0, 1, 0, 0, 0]
        writer.writerow(
            [
                *opencellid,
                texts["site_id"][i],
                power,
                freq,
                height,
                texts["environment"][i],
                texts["source"][i],
            ]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, lines.getvalue())
    return path


# --- OSM masts -------------------------------------------------------------------------------


def _is_communication_mast(tags: Mapping[str, str]) -> bool:
    kind = tags.get("man_made")
    if kind not in _MAST_KINDS:
        return False
    if kind == "communications_tower" or tags.get("tower:type") == "communication":
        return True
    return any(k.startswith("communication") and v != "no" for k, v in tags.items())


def _in_region(lon: FloatArray, lat: FloatArray, region: Region) -> NDArray[np.bool_]:
    return np.asarray(
        (lon >= region[0]) & (lon <= region[2]) & (lat >= region[1]) & (lat <= region[3]),
        dtype=bool,
    )


def read_osm_masts(path: str | os.PathLike[str], region: Region | None = None) -> pd.DataFrame:
    """Communication masts, towers and antennas mapped in an OSM extract.

    Kept: ``man_made`` = ``mast``/``tower``/``antenna``/``communications_tower`` carrying a
    ``communication*`` tag (not ``no``) or ``tower:type=communication`` (every
    ``communications_tower``). Nodes give their position, ways the mean of their nodes.

    Returns
    -------
    pandas.DataFrame
        Columns ``osm_id`` (``n123``/``w123``), ``lon``, ``lat``, ``man_made``; sorted by id.

    Raises
    ------
    InvalidInputError
        If the file cannot be read.

    Examples
    --------
    >>> read_osm_masts("missing.osm.pbf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.osm.pbf: cannot read OSM data (...)
    """
    import osmium

    path = Path(path)
    records: list[dict[str, Any]] = []
    try:
        processor = (
            osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
            .with_locations()
            .with_filter(osmium.filter.KeyFilter("man_made"))
        )
        for obj in processor:
            tags = {t.k: t.v for t in obj.tags}
            if not _is_communication_mast(tags):
                continue
            if isinstance(obj, osmium.osm.Node) and obj.location.valid():
                lon, lat = obj.location.lon, obj.location.lat
            elif isinstance(obj, osmium.osm.Way):
                locs = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
                if not locs:
                    continue
                lon, lat = (float(np.mean(c)) for c in zip(*locs, strict=True))
            else:
                continue
            records.append(
                {
                    "osm_id": f"{obj.type_str()}{obj.id}",
                    "lon": lon,
                    "lat": lat,
                    "man_made": tags["man_made"],
                }
            )
    except (RuntimeError, OSError) as exc:
        raise InvalidInputError(f"{path}: cannot read OSM data ({exc})", field=str(path)) from None
    import pandas as pd

    masts = pd.DataFrame.from_records(records, columns=["osm_id", "lon", "lat", "man_made"])
    masts = masts.astype({"lon": np.float64, "lat": np.float64})
    if region is not None:
        masts = masts[_in_region(masts["lon"].to_numpy(), masts["lat"].to_numpy(), region)]
    return masts.sort_values("osm_id", ignore_index=True)


# --- roads and environment -------------------------------------------------------------------


@dataclass(frozen=True)
class RoadPoints:
    """Points spread along the roads, each standing for ``weight_m`` metres of road."""

    lon: FloatArray
    lat: FloatArray
    weight_m: FloatArray

    def __len__(self) -> int:
        return int(self.lon.shape[0])

    @property
    def length_m(self) -> float:
        """Road length represented."""
        return float(self.weight_m.sum())


def road_points(
    roads: nx.MultiDiGraph,
    region: Region | None = None,
    *,
    step_m: float = 100.0,
    include_tunnels: bool = True,
) -> RoadPoints:
    """Sample the road graph about every ``step_m`` metres (each road counted once).

    Edges in both directions of a two-way road are one road. Edges without ``geometry`` are
    straight lines between their nodes' ``x``/``y``. Points are kept inside ``region``
    (lon_min, lat_min, lon_max, lat_max). The graph must be in EPSG:4326 (``G.graph["crs"]``).

    Examples
    --------
    >>> import networkx as nx
    >>> len(road_points(nx.MultiDiGraph(crs="EPSG:4326")))
    0
    """
    crs = str(roads.graph.get("crs", "EPSG:4326")).upper()
    if crs not in ("EPSG:4326", "WGS84", "OGC:CRS84"):
        raise InvalidInputError(f"road graph must be in EPSG:4326, not {crs}", field="roads")
    seen: set[tuple[Any, Any, float]] = set()
    geoms: list[shapely.LineString] = []
    lengths: list[float] = []
    for u, v, data in roads.edges(data=True):
        if not include_tunnels and data.get("tunnel"):
            continue
        length = float(data.get("length_m", 0.0))
        key = (min(u, v), max(u, v), round(length, 1))
        if length <= 0.0 or key in seen:
            continue
        seen.add(key)
        geom = data.get("geometry")
        if geom is None:
            a, b = roads.nodes[u], roads.nodes[v]
            geom = shapely.LineString([(a["x"], a["y"]), (b["x"], b["y"])])
        geoms.append(geom)
        lengths.append(length)
    if not geoms:
        empty = np.zeros(0)
        return RoadPoints(empty, empty.copy(), empty.copy())
    length_arr = np.asarray(lengths)
    counts = np.maximum(1, np.ceil(length_arr / step_m)).astype(np.int64)
    frac = np.concatenate([(np.arange(k) + 0.5) / k for k in counts])
    points = shapely.line_interpolate_point(
        np.repeat(np.asarray(geoms, dtype=object), counts), frac, normalized=True
    )
    lon = np.asarray(shapely.get_x(points), dtype=np.float64)
    lat = np.asarray(shapely.get_y(points), dtype=np.float64)
    weight = np.repeat(length_arr / counts, counts)
    keep = _in_region(lon, lat, region) if region is not None else np.ones(lon.shape, bool)
    return RoadPoints(lon[keep], lat[keep], weight[keep])


def _local_xy(lon: FloatArray, lat: FloatArray, lat0: float) -> NDArray[np.float64]:
    """Local metres around latitude ``lat0`` as ``(n, 2)`` rows (neighbour searches, grids)."""
    return np.column_stack(to_local_m(lon, lat, lat0=lat0))


def classify_environment(lon: FloatArray, lat: FloatArray, roads: RoadPoints) -> NDArray[np.str_]:
    """Environment per site from the road length within 1 km (km of road per km^2).

    ``urban`` at >= 6 km/km^2, ``suburban`` at >= 3 km/km^2, else ``rural`` (thresholds
    calibrated on the Andorra extract, see :data:`URBAN_ROAD_DENSITY_KM_PER_KM2`). ``roads``
    should extend at least 1 km beyond the sites.

    Examples
    --------
    >>> empty = RoadPoints(np.zeros(0), np.zeros(0), np.zeros(0))
    >>> classify_environment(np.array([1.5]), np.array([42.5]), empty).tolist()
    ['rural']
    """
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    out = np.full(lon.shape, "rural", dtype="<U8")
    if len(roads) == 0 or lon.size == 0:
        return out
    from scipy.spatial import cKDTree  # scipy: only where sites are placed (a map build)

    lat0 = float(np.mean(lat))
    tree = cKDTree(_local_xy(roads.lon, roads.lat, lat0))
    neighbours = tree.query_ball_point(_local_xy(lon, lat, lat0), r=ENV_RADIUS_M)
    area_km2 = np.pi * (ENV_RADIUS_M / 1000.0) ** 2
    density = np.array([roads.weight_m[idx].sum() / 1000.0 / area_km2 for idx in neighbours])
    out[density >= SUBURBAN_ROAD_DENSITY_KM_PER_KM2] = "suburban"
    out[density >= URBAN_ROAD_DENSITY_KM_PER_KM2] = "urban"
    return out


# --- placement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Result of :func:`place_sites`: the sites and figures for the manifest."""

    sites: pd.DataFrame
    osm_sites: int
    generated_sites: int
    candidates: int
    road_length_m: float
    covered_length_m: float

    @property
    def coverage_fraction(self) -> float:
        """Share of the region's road length covered at the design path loss."""
        return self.covered_length_m / self.road_length_m if self.road_length_m > 0 else 0.0


def _buffered(region: Region, margin_m: float) -> Region:
    dlon, dlat = (
        float(d) for d in offset_deg(margin_m, margin_m, lat0=(region[1] + region[3]) / 2.0)
    )
    return (region[0] - dlon, region[1] - dlat, region[2] + dlon, region[3] + dlat)


def _rng(seed: int, name: str) -> np.random.Generator:
    # crc32, not hash(): stable across processes, so the same seed gives the same sites.
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def _candidates(
    pts: RoadPoints,
    region: Region,
    *,
    cell_m: float,
    offset_m: float,
    n_offsets: int,
    terrain: Terrain | None,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Road anchors (one random road point per ``cell_m`` grid cell) + the highest spot nearby."""
    lat0 = float(np.mean(pts.lat))
    xy = _local_xy(pts.lon, pts.lat, lat0)
    cells = np.floor(xy / cell_m).astype(np.int64)
    order = rng.permutation(len(pts))
    _, first = np.unique(cells[order], axis=0, return_index=True)
    anchors = np.sort(order[first])
    a_lon, a_lat = pts.lon[anchors], pts.lat[anchors]
    cand_lon, cand_lat = [a_lon], [a_lat]
    if terrain is not None and n_offsets > 0:
        radius = offset_m * np.sqrt(rng.random((anchors.size, n_offsets)))
        angle = rng.random((anchors.size, n_offsets)) * 2.0 * np.pi
        dlon, dlat = offset_deg(radius * np.cos(angle), radius * np.sin(angle), lat0=lat0)
        o_lon, o_lat = a_lon[:, None] + dlon, a_lat[:, None] + dlat
        best = np.argmax(terrain.elevation_m(o_lon, o_lat), axis=1)
        rows = np.arange(anchors.size)
        cand_lon.append(o_lon[rows, best])
        cand_lat.append(o_lat[rows, best])
    lon, lat = np.concatenate(cand_lon), np.concatenate(cand_lat)
    keep = _in_region(lon, lat, region)
    return lon[keep], lat[keep]


def _coverage_radius_m(
    model: str,
    frequency_mhz: float,
    antenna_height_m: float,
    max_path_loss_db: float,
    max_range_m: float,
) -> float:
    """Largest distance at which the clutter loss alone (most favourable environment) fits."""
    d = np.geomspace(10.0, max_range_m, 400)
    best = np.min(
        [
            model_loss_db(model, d, frequency_mhz, base_height_m=antenna_height_m, environment=env)
            for env in ENVIRONMENTS
        ],
        axis=0,
    )
    ok = np.flatnonzero(best <= max_path_loss_db)
    return float(d[ok[-1]]) if ok.size else 0.0


@dataclass(frozen=True)
class _Radio:
    """What decides whether a site covers a road point during placement."""

    radius_m: float
    frequency_mhz: float
    antenna_height_m: float
    mobile_height_m: float
    max_path_loss_db: float
    model: str
    terrain: Terrain | None


def _coverage_matrix(
    s_lon: FloatArray,
    s_lat: FloatArray,
    s_env: NDArray[np.str_],
    pts: RoadPoints,
    radio: _Radio,
) -> sparse.csr_matrix:
    """Boolean (sites x road points): path loss incl. terrain within the design budget."""
    from scipy import sparse
    from scipy.spatial import cKDTree

    n_sites = s_lon.size
    if n_sites == 0 or len(pts) == 0 or radio.radius_m <= 0:
        return sparse.csr_matrix((n_sites, len(pts)), dtype=bool)
    lat0 = float(np.mean(pts.lat))
    tree = cKDTree(_local_xy(pts.lon, pts.lat, lat0))
    near = tree.query_ball_point(_local_xy(s_lon, s_lat, lat0), r=radio.radius_m)
    site_idx = np.repeat(np.arange(n_sites), [len(n) for n in near])
    pt_idx = np.concatenate([np.asarray(n, dtype=np.int64) for n in near])
    loss = link_loss_db(
        tx_lon=s_lon[site_idx],
        tx_lat=s_lat[site_idx],
        tx_height_m=radio.antenna_height_m,
        rx_lon=pts.lon[pt_idx],
        rx_lat=pts.lat[pt_idx],
        rx_height_m=radio.mobile_height_m,
        frequency_mhz=radio.frequency_mhz,
        environment=s_env[site_idx],
        model=radio.model,
        terrain=radio.terrain,
        max_loss_db=radio.max_path_loss_db,
    )
    ok = loss.total_db <= radio.max_path_loss_db
    return sparse.csr_matrix(
        (np.ones(int(ok.sum()), dtype=bool), (site_idx[ok], pt_idx[ok])),
        shape=(n_sites, len(pts)),
    )


def _spaced(lon: FloatArray, lat: FloatArray, spacing_m: float) -> NDArray[np.intp]:
    """Indices of a greedy subset (in order) with every pair at least ``spacing_m`` apart."""
    kept: list[int] = []
    xy = _local_xy(lon, lat, float(np.mean(lat))) if lon.size else np.zeros((0, 2))
    for i in range(lon.size):
        if all(np.hypot(*(xy[i] - xy[j])) >= spacing_m for j in kept):
            kept.append(i)
    return np.asarray(kept, dtype=np.intp)


def place_sites(
    *,
    region: Region,
    roads: nx.MultiDiGraph,
    terrain: Terrain | None,
    spacing_m: float,
    max_path_loss_db: float,
    frequency_mhz: float,
    tx_power_dbm: float,
    antenna_height_m: float,
    seed: int,
    name: str,
    masts: pd.DataFrame | None = None,
    model: str = "auto",
    mobile_height_m: float = 1.5,
    max_sites: int = 200,
    coverage_goal: float = 0.98,
    min_gain_fraction: float = 0.005,
    road_step_m: float = 100.0,
    max_range_m: float = 20_000.0,
) -> Placement:
    """Place a network's sites: known masts first, then a seeded greedy cover of the roads.

    Method (deterministic for a given ``seed`` and ``name``):

    1. The region's roads are sampled every ``road_step_m`` (tunnels excluded: no site
       reaches into them); each point stands for its share of road length.
    2. OSM communication masts in the region (``masts``, e.g. from :func:`read_osm_masts`) are
       taken first, thinned to ``spacing_m``.
    3. Candidates: the region is cut into cells of ``spacing_m / 3``; in each cell holding
       road, one road point is drawn at random (the *anchor*, a rooftop or roadside site), and
       of 8 random spots within ``min(spacing_m / 4, 750 m)`` of it the highest on the terrain
       is added (a hillside site looking down the valley).
    4. A road point counts as covered by a site when the path loss (the layer's model plus
       terrain diffraction, i.e. line of sight or low loss) is at most ``max_path_loss_db``,
       the layer's link budget to the design RSRP.
    5. Greedy: repeatedly add the candidate that newly covers the most road length, ties
       (within 10 %) going to the higher ground, keeping ``spacing_m`` to every chosen site;
       stop when ``coverage_goal`` of the road length is covered, the best candidate adds less
       than ``min_gain_fraction`` of it (saturation), or ``max_sites`` is reached.

    Site environments come from :func:`classify_environment` on the roads around them.

    Parameters
    ----------
    region : (lon_min, lat_min, lon_max, lat_max)
        Where sites may go, WGS84.
    roads : networkx.MultiDiGraph
        Road graph (EPSG:4326, ``geometry``/``length_m`` per edge, ``x``/``y`` per node).
    terrain : Terrain or None
        Elevation model (flat earth and no hillside candidates without it).
    spacing_m : float
        Minimum distance between sites.
    max_path_loss_db : float
        Design path loss for "covered".
    frequency_mhz, tx_power_dbm, antenna_height_m : float
        Carrier, power and antenna height of every placed site.
    seed : int
        Random seed (the map's).
    name : str
        Network id: site-id prefix and part of the random stream.
    masts : pandas.DataFrame, optional
        Known masts (``osm_id``, ``lon``, ``lat``).
    model, mobile_height_m, max_range_m
        Path-loss model (see :func:`commap.radio.pathloss.model_loss_db`), UE height, link range.
    max_sites, coverage_goal, min_gain_fraction, road_step_m
        Stopping rules and road sampling, see above.

    Returns
    -------
    Placement

    Raises
    ------
    InvalidInputError
        On a malformed region or non-positive spacing.

    Examples
    --------
    >>> import networkx as nx
    >>> p = place_sites(region=(1.4, 42.4, 1.5, 42.5), roads=nx.MultiDiGraph(crs="EPSG:4326"),
    ...                 terrain=None, spacing_m=3000.0, max_path_loss_db=140.0,
    ...                 frequency_mhz=800.0, tx_power_dbm=46.0, antenna_height_m=25.0, seed=1,
    ...                 name="x")
    >>> len(p.sites), p.coverage_fraction
    (0, 0.0)
    """
    if not (region[0] < region[2] and region[1] < region[3]):
        raise InvalidInputError(
            f"placement region {list(region)} is empty", field="placement_region"
        )
    if spacing_m <= 0:
        raise InvalidInputError("site_spacing_m must be > 0", field="site_spacing_m")
    pts = road_points(roads, region, step_m=road_step_m, include_tunnels=False)
    env_pts = road_points(roads, _buffered(region, ENV_RADIUS_M), step_m=road_step_m)
    masts = _masts_in(masts, region, spacing_m)
    m_lon, m_lat = masts["lon"].to_numpy(np.float64), masts["lat"].to_numpy(np.float64)
    c_lon, c_lat = np.zeros(0), np.zeros(0)
    if len(pts):
        c_lon, c_lat = _candidates(
            pts,
            region,
            cell_m=spacing_m / 3.0,
            offset_m=min(spacing_m / 4.0, 750.0),
            n_offsets=8,
            terrain=terrain,
            rng=_rng(seed, name),
        )
    radius_m = _coverage_radius_m(
        model, frequency_mhz, antenna_height_m, max_path_loss_db, max_range_m
    )
    radio = _Radio(
        radius_m, frequency_mhz, antenna_height_m, mobile_height_m, max_path_loss_db, model, terrain
    )
    m_env = classify_environment(m_lon, m_lat, env_pts)
    c_env = classify_environment(c_lon, c_lat, env_pts)
    covered = np.asarray(_coverage_matrix(m_lon, m_lat, m_env, pts, radio).sum(axis=0) > 0)
    covered = covered.ravel()
    cover = _coverage_matrix(c_lon, c_lat, c_env, pts, radio)
    elev = terrain.elevation_m(c_lon, c_lat) if terrain is not None else np.zeros(c_lon.size)
    chosen = _greedy(
        cover,
        pts.weight_m,
        covered,
        c_lon,
        c_lat,
        elev,
        spacing_m=spacing_m,
        taken_lon=m_lon,
        taken_lat=m_lat,
        max_new=max(0, max_sites - len(masts)),
        coverage_goal=coverage_goal,
        min_gain_m=min_gain_fraction * pts.length_m,
    )
    for i in chosen:
        covered |= cover[i].toarray().ravel()
    records = [
        {
            "site_id": f"{name}-osm-{osm_id}",
            "lon": lon,
            "lat": lat,
            "environment": env,
            "source": "osm",
        }
        for osm_id, lon, lat, env in zip(masts["osm_id"], m_lon, m_lat, m_env, strict=True)
    ] + [
        {
            "site_id": f"{name}-g{k:03d}",
            "lon": float(c_lon[i]),
            "lat": float(c_lat[i]),
            "environment": str(c_env[i]),
            "source": "generated",
        }
        for k, i in enumerate(chosen, start=1)
    ]
    for record in records:
        record.update(
            tx_power_dbm=tx_power_dbm,
            frequency_mhz=frequency_mhz,
            antenna_height_m=antenna_height_m,
        )
    placement = Placement(
        sites=_frame(records),
        osm_sites=len(masts),
        generated_sites=len(chosen),
        candidates=int(c_lon.size),
        road_length_m=pts.length_m,
        covered_length_m=float(pts.weight_m[covered].sum()),
    )
    log.info(
        "%s: %d OSM + %d generated sites from %d candidates, %.0f%% of %.1f km road covered",
        name,
        placement.osm_sites,
        placement.generated_sites,
        placement.candidates,
        100.0 * placement.coverage_fraction,
        placement.road_length_m / 1000.0,
    )
    return placement


def _masts_in(masts: pd.DataFrame | None, region: Region, spacing_m: float) -> pd.DataFrame:
    """Known masts inside the region, thinned (in id order) to the site spacing."""
    if masts is None or masts.empty:
        import pandas as pd

        return pd.DataFrame(
            {"osm_id": pd.Series(dtype="str"), "lon": np.zeros(0), "lat": np.zeros(0)}
        )
    lon, lat = masts["lon"].to_numpy(np.float64), masts["lat"].to_numpy(np.float64)
    inside = masts[_in_region(lon, lat, region)].reset_index(drop=True)
    keep = _spaced(
        inside["lon"].to_numpy(np.float64), inside["lat"].to_numpy(np.float64), spacing_m
    )
    return inside.iloc[keep].reset_index(drop=True)


def _greedy(
    cover: sparse.csr_matrix,
    weight_m: FloatArray,
    covered: NDArray[np.bool_],
    lon: FloatArray,
    lat: FloatArray,
    elevation_m: FloatArray,
    *,
    spacing_m: float,
    taken_lon: FloatArray,
    taken_lat: FloatArray,
    max_new: int,
    coverage_goal: float,
    min_gain_m: float,
) -> list[int]:
    """Greedy maximum coverage with a minimum spacing; returns candidate indices in order."""
    covered = covered.copy()
    total = float(weight_m.sum())
    if lon.size == 0 or total <= 0:
        return []
    lat0 = float(np.mean(lat))
    xy = _local_xy(lon, lat, lat0)
    blocked = np.zeros(lon.size, dtype=bool)
    for t in _local_xy(taken_lon, taken_lat, lat0):
        blocked |= np.hypot(*(xy - t).T) < spacing_m
    # Up to +10 % score for the highest candidate: breaks near-ties towards elevated spots.
    span = float(np.ptp(elevation_m)) or 1.0
    bonus = 1.0 + 0.1 * (elevation_m - elevation_m.min()) / span
    chosen: list[int] = []
    while len(chosen) < max_new and weight_m[covered].sum() < coverage_goal * total:
        gain = cover @ np.where(covered, 0.0, weight_m)
        score = np.where(blocked, -1.0, gain * bonus)
        best = int(np.argmax(score))
        if blocked[best] or gain[best] < max(min_gain_m, 1e-9):
            break
        chosen.append(best)
        covered |= cover[best].toarray().ravel()
        blocked |= np.hypot(*(xy - xy[best]).T) < spacing_m
    return chosen
