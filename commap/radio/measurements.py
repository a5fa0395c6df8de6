"""Measurement records: commap's own CSV and Parquet, G-NetTrack drive tests, gridded measurements.

A *measurement record* is one observation of one network at one place and time. It is the row
of commap's plain measurement CSV or Parquet file, of the fleet store
(:mod:`commap.map.store`, the reports that arrive over gRPC ``ReportMeasurements``) and of what
:func:`read_gnettrack` returns. The schema is data (:data:`RECORD_COLUMNS`): name, pandas dtype,
unit, range, role.

* key columns, required: ``timestamp`` (UTC), ``lat``, ``lon`` (WGS84 degrees), ``network_id``;
* quality columns, at least one present: ``rsrp_dbm``, ``rsrq_db``, ``sinr_db``,
  ``throughput_dl_mbps``, ``throughput_ul_mbps``, ``rtt_ms`` (the numeric KPIs,
  :data:`KPI_COLUMNS`) and ``connected``; a missing value (empty cell, NaN) means "not measured";
* extra columns, optional: ``cell_id`` (serving cell identity), ``network_mode`` (``LTE``,
  ``5G``, ...), ``drive_id`` (the drive or session: a G-NetTrack trace name, a vehicle id).

Older column names are still read (:data:`COLUMN_ALIASES`): ``throughput_mbps`` is the downlink
rate ``throughput_dl_mbps``, ``trace`` is ``drive_id``.

Gridded measurements (:func:`read_indianapolis_grid`) are already aggregated; they come back as a
per-grid-square table with the same statistics columns as the measured layer's H3 table
(:data:`STAT_COLUMNS`).
"""

from __future__ import annotations

import logging
import re
import uuid
import zipfile
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from commap.errors import InvalidInputError
from commap.files import write_text_atomic

__all__ = [
    "COLUMN_ALIASES",
    "GNETTRACK_COLUMNS",
    "GNETTRACK_OPTIONAL_COLUMNS",
    "HAMBURG_BREMEN_NETWORKS",
    "KEY_COLUMNS",
    "KPI_COLUMNS",
    "QUALITY_COLUMNS",
    "RECORD_COLUMNS",
    "RECORD_SUFFIXES",
    "STATS",
    "STAT_COLUMNS",
    "Column",
    "append_records",
    "empty_records",
    "read_gnettrack",
    "read_hamburg_bremen",
    "read_indianapolis_grid",
    "read_records",
    "read_records_csv",
    "read_records_dir",
    "read_records_parquet",
    "sinr_from_throughput",
    "validate_records",
    "write_records_csv",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    """One column of the measurement record.

    Attributes
    ----------
    name : column name.
    dtype : pandas dtype of the validated column.
    unit : unit of the values (``""`` for none).
    role : ``"key"`` (required), ``"quality"`` (at least one required) or ``"extra"``.
    min_value, max_value : accepted range of numeric values (inclusive).
    description : what the column holds.
    """

    name: str
    dtype: str
    unit: str
    role: str
    min_value: float = -np.inf
    max_value: float = np.inf
    description: str = ""


RECORD_COLUMNS: tuple[Column, ...] = (
    Column("timestamp", "datetime64[ns, UTC]", "UTC", "key", description="ISO 8601 time"),
    Column("lat", "float64", "deg", "key", -90.0, 90.0, "WGS84 latitude"),
    Column("lon", "float64", "deg", "key", -180.0, 180.0, "WGS84 longitude"),
    Column("network_id", "str", "", "key", description="network id of the map catalogue"),
    Column("rsrp_dbm", "float64", "dBm", "quality", -160.0, -20.0, "serving-cell RSRP"),
    Column("rsrq_db", "float64", "dB", "quality", -40.0, 20.0, "serving-cell RSRQ"),
    Column("sinr_db", "float64", "dB", "quality", -50.0, 60.0, "serving-cell SINR (or SNR)"),
    Column("throughput_dl_mbps", "float64", "Mbit/s", "quality", 0.0, 1.0e5, "downlink rate"),
    Column("throughput_ul_mbps", "float64", "Mbit/s", "quality", 0.0, 1.0e5, "uplink rate"),
    Column("rtt_ms", "float64", "ms", "quality", 0.0, 6.0e5, "round-trip time (ping)"),
    Column("connected", "boolean", "", "quality", description="UE had a serving cell"),
    Column("cell_id", "Int64", "", "extra", 0.0, 2.0**62, "serving cell identity"),
    Column("network_mode", "str", "", "extra", description="radio technology in use"),
    Column("drive_id", "str", "", "extra", description="drive or session id (trace name)"),
)
_BY_NAME = {c.name: c for c in RECORD_COLUMNS}
KEY_COLUMNS: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS if c.role == "key")
QUALITY_COLUMNS: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS if c.role == "quality")
# the numeric quality columns: the key performance indicators a map keeps statistics of
KPI_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in RECORD_COLUMNS if c.role == "quality" and c.dtype == "float64"
)
# older names still read: alias -> column
COLUMN_ALIASES: dict[str, str] = {"throughput_mbps": "throughput_dl_mbps", "trace": "drive_id"}

# statistics kept per aggregation unit (H3 cell, grid square) for each numeric quality
STATS: tuple[str, ...] = ("p10", "median", "p90")
STAT_COLUMNS: tuple[str, ...] = tuple(f"{q}_{s}" for q in KPI_COLUMNS for s in STATS)

# G-NetTrack Pro columns commap reads (others are ignored)
GNETTRACK_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "Longitude",
    "Latitude",
    "NetworkMode",
    "RSRP",
    "SNR",
    "DL_bitrate",
    "RAWCELLID",
)
# read when present (older logs lack some): G-NetTrack column -> record column
GNETTRACK_OPTIONAL_COLUMNS: dict[str, str] = {
    "RSRQ": "rsrq_db",
    "UL_bitrate": "throughput_ul_mbps",
    "PINGAVG": "rtt_ms",
}
_GNETTRACK_TIME_FORMAT = "%Y.%m.%d_%H.%M.%S"
_RSRP_SENTINEL_DBM = -140.0  # G-NetTrack logs -200 and the like when it has no measurement
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
_NETWORK_ID = re.compile(r"^\S+$")


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
class _Where:
    """Names a row for error messages: ``file: line N`` for CSV files, ``source: row N`` else."""

    def __init__(self, source: str, *, first_line: int | None) -> None:
        self.source = source
        self.first_line = first_line

    def __call__(self, position: int, column: str) -> str:
        if self.first_line is None:
            return f"{self.source}: row {position}, column {column!r}"
        return f"{self.source}: line {self.first_line + position}, column {column!r}"


def _is_missing(values: pd.Series) -> NDArray[np.bool_]:
    """True where a raw value means "not given" (empty, NaN, None, 'NA', ...)."""
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = values.astype("string").str.strip().str.lower()
        return np.asarray(text.isna() | text.isin(_MISSING), dtype=bool)
    return np.asarray(values.isna(), dtype=bool)


def _fail(where: _Where, position: int, column: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"{where(position, column)}: {problem}", field=column)


def _parse_float(raw: pd.Series, col: Column, where: _Where, *, required: bool) -> pd.Series:
    missing = _is_missing(raw)
    values = pd.to_numeric(raw.where(~missing, np.nan), errors="coerce").astype("float64")
    bad = np.isnan(values.to_numpy()) & ~missing
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, i, col.name, f"{raw.iloc[i]!r} is not a number")
    arr = values.to_numpy()
    if required and missing.any():
        i = int(np.argmax(missing))
        raise _fail(where, i, col.name, "value is missing (a finite number is required)")
    inf = np.isinf(arr)
    if inf.any():
        i = int(np.argmax(inf))
        raise _fail(where, i, col.name, f"{arr[i]} is not finite")
    out = (arr < col.min_value) | (arr > col.max_value)
    if out.any():
        i = int(np.argmax(out))
        raise _fail(
            where, i, col.name, f"{arr[i]:g} is outside [{col.min_value:g}, {col.max_value:g}]"
        )
    return pd.Series(arr, index=raw.index, dtype="float64")


def _parse_int(raw: pd.Series, col: Column, where: _Where) -> pd.Series:
    values = _parse_float(raw, col, where, required=False)
    frac = values.notna().to_numpy() & (values.fillna(0).to_numpy() % 1 != 0)
    if frac.any():
        i = int(np.argmax(frac))
        raise _fail(where, i, col.name, f"{raw.iloc[i]!r} is not an integer")
    return values.astype("Int64")


def _parse_bool(raw: pd.Series, col: Column, where: _Where) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("boolean")
    missing = _is_missing(raw)
    text = raw.astype("string").str.strip().str.lower()
    true = np.asarray(text.isin(_TRUE), dtype=bool)
    false = np.asarray(text.isin(_FALSE), dtype=bool)
    bad = ~(true | false | missing)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, i, col.name, f"{raw.iloc[i]!r} is not true/false")
    out = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    out[true] = True
    out[false] = False
    return out


def _parse_timestamp(raw: pd.Series, col: Column, where: _Where) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")  # naive times are UTC by convention
    else:
        parsed = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
    bad = np.asarray(parsed.isna(), dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, i, col.name, f"{raw.iloc[i]!r} is not an ISO 8601 time")
    return parsed.astype("datetime64[ns, UTC]")


def _parse_text(raw: pd.Series, col: Column, where: _Where, *, required: bool) -> pd.Series:
    text = raw.astype("string").str.strip()
    # text is taken as written: a drive or vehicle called "null", "NA" or "none" keeps its
    # name; only a value that is absent or blank is missing
    missing = np.asarray(text.isna() | text.eq(""), dtype=bool)
    if required:
        if missing.any():
            i = int(np.argmax(missing))
            raise _fail(where, i, col.name, "value is missing")
        bad = ~np.asarray(text.str.match(_NETWORK_ID.pattern), dtype=bool)
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(where, i, col.name, f"{raw.iloc[i]!r} must be non-empty without spaces")
        return text.astype("str")
    return text.mask(pd.Series(missing, index=text.index)).astype("string")


def _parse_column(raw: pd.Series, col: Column, where: _Where) -> pd.Series:
    if col.dtype == "float64":
        return _parse_float(raw, col, where, required=col.role == "key")
    if col.dtype == "Int64":
        return _parse_int(raw, col, where)
    if col.dtype == "boolean":
        return _parse_bool(raw, col, where)
    if col.dtype.startswith("datetime64"):
        return _parse_timestamp(raw, col, where)
    return _parse_text(raw, col, where, required=col.role == "key")


def _check_columns(columns: Iterable[str], source: str) -> list[str]:
    names = [COLUMN_ALIASES.get(str(c), str(c)) for c in columns]
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise InvalidInputError(
            f"{source}: column {twice[0]!r} is given twice (under its old name too?)",
            field=twice[0],
        )
    unknown = [c for c in names if c not in _BY_NAME]
    if unknown:
        raise InvalidInputError(
            f"{source}: unknown column {unknown[0]!r}; known columns: {', '.join(_BY_NAME)}",
            field=unknown[0],
        )
    missing = [c for c in KEY_COLUMNS if c not in names]
    if missing:
        raise InvalidInputError(
            f"{source}: required column {missing[0]!r} is missing", field=missing[0]
        )
    if not any(c in names for c in QUALITY_COLUMNS):
        raise InvalidInputError(
            f"{source}: at least one quality column is required: {', '.join(QUALITY_COLUMNS)}"
        )
    return names


def validate_records(
    df: pd.DataFrame,
    *,
    source: str = "records",
    known_networks: Collection[str] | None = None,
    first_line: int | None = None,
) -> pd.DataFrame:
    """Validate measurement records and return them with the schema's dtypes.

    Parameters
    ----------
    df : records; values may be text (as read from CSV) or typed.
    source : name used in error messages (a file name, ``"request"``).
    known_networks : if given, every ``network_id`` must be one of them.
    first_line : file line of the first row (CSV: 2); rows are then named by line, else by
        0-based row position.

    Returns
    -------
    pandas.DataFrame
        Columns in schema order, fresh 0..n-1 index.

    Raises
    ------
    InvalidInputError
        Naming the source, line (or row) and column of the first bad value: unknown or missing
        columns, missing or non-finite coordinates, values out of range, text in numeric
        columns, unknown network ids, no rows.

    Examples
    --------
    >>> df = pd.DataFrame({"timestamp": ["2020-01-01T00:00:00Z"], "lat": [51.9],
    ...                    "lon": [-8.4], "network_id": ["ie-b-lte"], "rsrp_dbm": ["-95"]})
    >>> validate_records(df)["rsrp_dbm"].tolist()
    [-95.0]
    >>> validate_records(df.assign(lat=[91.0]))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: records: row 0, column 'lat': 91 is outside [-90, 90]
    >>> validate_records(df.iloc[:0])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: records: holds no records
    """
    names = _check_columns(df.columns, source)
    if len(df) == 0:
        raise InvalidInputError(f"{source}: holds no records")
    where = _Where(source, first_line=first_line)
    frame = df.reset_index(drop=True)
    frame.columns = pd.Index(names)
    out = {
        c.name: _parse_column(frame[c.name], c, where) for c in RECORD_COLUMNS if c.name in names
    }
    if known_networks is not None:
        known = set(known_networks)
        bad = ~out["network_id"].isin(known).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(
                where,
                i,
                "network_id",
                f"unknown network {out['network_id'].iloc[i]!r}; known: {', '.join(sorted(known))}",
            )
    return pd.DataFrame(out)


def empty_records() -> pd.DataFrame:
    """An empty record table with every schema column and dtype.

    Examples
    --------
    >>> empty_records().columns.tolist()[:4]
    ['timestamp', 'lat', 'lon', 'network_id']
    """
    return pd.DataFrame({c.name: pd.Series(dtype=c.dtype) for c in RECORD_COLUMNS})


# ---------------------------------------------------------------------------------------------
# commap's own CSV
# ---------------------------------------------------------------------------------------------
def read_records_csv(
    path: str | Path, *, known_networks: Collection[str] | None = None
) -> pd.DataFrame:
    """Read and validate a measurement-record CSV file.

    Parameters
    ----------
    path : CSV file with a header row (see :data:`RECORD_COLUMNS`).
    known_networks : optional set of allowed ``network_id`` values.

    Raises
    ------
    InvalidInputError
        If the file is missing, empty or has a bad row (the message names file, line, column).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "r.csv"
    ...     _ = p.write_text("timestamp,lat,lon,network_id,sinr_db\\n"
    ...                      "2020-01-01T00:00:00Z,51.9,-8.4,x,12.5\\n")
    ...     read_records_csv(p)["sinr_db"].tolist()
    [12.5]
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: file does not exist") from None
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{path}: file is empty (no header row)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"{path}: not a readable CSV file ({exc})") from None
    return validate_records(raw, source=str(path), known_networks=known_networks, first_line=2)


def read_records_parquet(
    path: str | Path, *, known_networks: Collection[str] | None = None
) -> pd.DataFrame:
    """Read and validate a measurement-record Parquet file (columns as in :data:`RECORD_COLUMNS`).

    Typed columns are taken as they are (timestamps without a zone are UTC); text columns are
    parsed like CSV text. Rows are named by 0-based position in error messages.

    Raises
    ------
    InvalidInputError
        If the file is missing, not Parquet, or has a bad row (naming file, row, column).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "r.parquet"
    ...     pd.DataFrame({"timestamp": pd.to_datetime(["2020-01-01"], utc=True), "lat": [51.9],
    ...                   "lon": [-8.4], "network_id": ["x"], "rtt_ms": [41.0]}).to_parquet(p)
    ...     read_records_parquet(p)["rtt_ms"].tolist()
    [41.0]
    >>> read_records_parquet("missing.parquet")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.parquet: file does not exist
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file does not exist")
    try:
        raw = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInputError(f"{path}: not a readable Parquet file ({exc})") from None
    return validate_records(raw, source=str(path), known_networks=known_networks)


RECORD_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")


def _record_suffix(path: Path) -> str:
    """The record suffix of a file name (``.csv.gz`` counts as one), else ``""``."""
    name = path.name.lower()
    return next((s for s in sorted(RECORD_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def read_records(
    path: str | Path, *, known_networks: Collection[str] | None = None
) -> pd.DataFrame:
    """Read a record file by its suffix (``.csv``, ``.csv.gz``, ``.parquet``) or a directory of them.

    Examples
    --------
    >>> read_records("r.txt")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: r.txt: not a record file (.csv, .csv.gz, .parquet) or directory
    """
    path = Path(path)
    if path.is_dir():
        return read_records_dir(path, known_networks=known_networks)
    suffix = _record_suffix(path)
    if suffix == ".parquet":
        return read_records_parquet(path, known_networks=known_networks)
    if suffix:
        return read_records_csv(path, known_networks=known_networks)
    raise InvalidInputError(f"{path}: not a record file (.csv, .csv.gz, .parquet) or directory")


def read_records_dir(
    directory: str | Path, *, known_networks: Collection[str] | None = None
) -> pd.DataFrame:
    """Read every ``*.csv`` and ``*.parquet`` record file of a directory (not its sub-directories).

    Files are read in name order. An empty directory gives an empty table with the schema's
    columns.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     len(read_records_dir(d))
    0
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInputError(f"{directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and _record_suffix(p))
    frames = [read_records(p, known_networks=known_networks) for p in files]
    return _concat(frames)


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return empty_records()
    return pd.concat(frames, ignore_index=True)


def _to_csv_text(df: pd.DataFrame) -> str:
    out = df.copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if "connected" in out:
        out["connected"] = out["connected"].map({True: "true", False: "false"}).fillna("")
    # "\r\n" as the terminator makes the csv writer quote any text holding a bare \r or \n
    # (a network or vehicle id), so every written file reads back.
    text: str = out.to_csv(index=False, lineterminator="\r\n", na_rep="")
    return text


def write_records_csv(
    df: pd.DataFrame, path: str | Path, *, known_networks: Collection[str] | None = None
) -> Path:
    """Validate records and write them atomically as a record CSV.

    The file appears complete or not at all (temp file + fsync + ``os.replace``). Timestamps
    are written as ISO 8601 UTC with microseconds and ``Z``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidInputError
        If the records do not validate (nothing is written).
    """
    path = Path(path)
    records = validate_records(df, source=str(path), known_networks=known_networks)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, _to_csv_text(records))  # fsyncs the file and the directory
    return path


def append_records(
    df: pd.DataFrame, directory: str | Path, *, known_networks: Collection[str] | None = None
) -> Path:
    """Store one batch of records as a new, durable part file in ``directory``.

    Each call writes ``records-<UTC time>-<random>.csv`` (names sort by arrival time) and
    fsyncs it and the directory before returning, so an acknowledged batch survives a crash.
    Existing parts are never rewritten.

    Returns
    -------
    Path
        The new part file.

    Raises
    ------
    InvalidInputError
        If the batch does not validate or is empty (nothing is written).
    """
    directory = Path(directory)
    records = validate_records(df, source="batch", known_networks=known_networks)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"records-{stamp}-{uuid.uuid4().hex[:12]}.csv"
    write_text_atomic(path, _to_csv_text(records))  # fsyncs the file and the directory
    log.debug("appended %d records to %s", len(records), path)
    return path


# ---------------------------------------------------------------------------------------------
# G-NetTrack Pro drive tests
# ---------------------------------------------------------------------------------------------
def _gnettrack_members(path: Path) -> list[tuple[str, Callable[[], IO[bytes]]]]:
    """(name, opener) of every CSV in a file or zip."""
    if path.suffix.lower() != ".zip":
        return [(path.name, lambda: path.open("rb"))]
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{path}: not a readable zip file ({exc})") from None
    names = sorted(
        n
        for n in archive.namelist()
        if n.lower().endswith(".csv") and not n.startswith("__MACOSX/")
    )
    if not names:
        raise InvalidInputError(f"{path}: zip holds no .csv file")
    return [(n, lambda n=n: archive.open(n)) for n in names]  # type: ignore[misc]


def _read_gnettrack_member(source: str, opener: Callable[[], IO[bytes]]) -> pd.DataFrame:
    try:
        with opener() as f:
            raw = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{source}: file is empty (no header row)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{source}: not a readable G-NetTrack CSV ({exc})") from None
    missing = [c for c in GNETTRACK_COLUMNS if c not in raw.columns]
    if missing:
        raise InvalidInputError(
            f"{source}: G-NetTrack column {missing[0]!r} is missing", field=missing[0]
        )
    return raw


def _gnettrack_numbers(raw: pd.DataFrame, name: str, where: _Where) -> NDArray[np.float64]:
    # "-" marks a missing value in G-NetTrack logs
    text = raw[name].str.strip()
    missing = np.asarray(text.isin(["-", ""]), dtype=bool)
    values = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(np.float64)
    bad = np.isnan(values) & ~missing
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, i, name, f"{raw[name].iloc[i]!r} is not a number")
    return values


def _gnettrack_to_records(
    raw: pd.DataFrame, source: str, drive_id: str, network_id: str, utc_offset_h: float
) -> pd.DataFrame:
    where = _Where(source, first_line=2)
    times = pd.to_datetime(
        raw["Timestamp"].str.strip(), format=_GNETTRACK_TIME_FORMAT, errors="coerce"
    )
    bad = np.asarray(times.isna(), dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(
            where, i, "Timestamp", f"{raw['Timestamp'].iloc[i]!r} is not YYYY.MM.DD_hh.mm.ss"
        )
    num = {
        c: _gnettrack_numbers(raw, c, where) for c in GNETTRACK_COLUMNS[1:] if c != "NetworkMode"
    }
    optional = {
        column: _gnettrack_numbers(raw, name, where)
        if name in raw.columns
        else np.full(len(raw), np.nan)
        for name, column in GNETTRACK_OPTIONAL_COLUMNS.items()
    }
    rsrp = num["RSRP"]
    cell = num["RAWCELLID"]
    mode = raw["NetworkMode"].str.strip()
    return pd.DataFrame(
        {
            "timestamp": (times - pd.Timedelta(hours=utc_offset_h)).dt.tz_localize("UTC"),
            "lat": num["Latitude"],
            "lon": num["Longitude"],
            "network_id": network_id,
            "rsrp_dbm": rsrp,
            "rsrq_db": optional["rsrq_db"],
            "sinr_db": num["SNR"],
            "throughput_dl_mbps": num["DL_bitrate"] / 1000.0,  # kbit/s -> Mbit/s
            "throughput_ul_mbps": optional["throughput_ul_mbps"] / 1000.0,
            "rtt_ms": optional["rtt_ms"],
            # a row with a serving cell identity was attached to the network
            "connected": np.isfinite(cell) & (np.nan_to_num(cell) > 0),
            "cell_id": cell,
            "network_mode": mode.mask(mode.isin(["-", ""])),
            "drive_id": drive_id,
        }
    )


def _clean_gnettrack(df: pd.DataFrame, source: str) -> pd.DataFrame:
    n0 = len(df)
    no_fix = ~(np.isfinite(df["lat"]) & np.isfinite(df["lon"])) | (
        (df["lat"] == 0) & (df["lon"] == 0)
    )
    sentinel = df["rsrp_dbm"] < _RSRP_SENTINEL_DBM
    df = df[~(no_fix | sentinel)]
    # two rows in one second: keep the later, it carries the newer values
    df = df.drop_duplicates(subset="timestamp", keep="last")
    dropped = n0 - len(df)
    if dropped:
        log.debug(
            "%s: dropped %d of %d rows (%d without GPS fix, %d RSRP sentinels, duplicates)",
            source,
            dropped,
            n0,
            int(no_fix.sum()),
            int(sentinel.sum()),
        )
    return df


def read_gnettrack(
    path: str | Path,
    *,
    network_id: str,
    utc_offset_h: float = 0.0,
    network_modes: Collection[str] | None = None,
) -> pd.DataFrame:
    """Read G-NetTrack Pro drive-test logs (a CSV file or a zip of them) as measurement records.

    Mapping: ``rsrp_dbm`` = ``RSRP``, ``rsrq_db`` = ``RSRQ``, ``sinr_db`` = ``SNR``,
    ``throughput_dl_mbps`` = ``DL_bitrate`` / 1000, ``throughput_ul_mbps`` = ``UL_bitrate`` /
    1000 (kbit/s logged), ``rtt_ms`` = ``PINGAVG`` (``-`` unless a ping test ran),
    ``connected`` = a serving cell identity is logged, ``cell_id`` = ``RAWCELLID``,
    ``network_mode`` = ``NetworkMode``, ``drive_id`` = file name without ``.csv`` (the trace).
    ``RSRQ``, ``UL_bitrate`` and ``PINGAVG`` may be absent (not measured); the other columns of
    :data:`GNETTRACK_COLUMNS` are required.
    ``-`` marks missing values. Rows without a GPS fix and rows with ``RSRP`` below -140 dBm
    (logger sentinels down to -200) are dropped; of two rows in the same second the later one
    is kept.

    Parameters
    ----------
    path : ``.csv`` file or ``.zip`` holding ``.csv`` files (read in name order).
    network_id : the network every row belongs to (G-NetTrack logs one operator per trace).
    utc_offset_h : offset of the logged local time from UTC (Ireland Nov-Jan: 0).
    network_modes : keep only rows whose ``NetworkMode`` is one of these (e.g. LTE and 5G
        rows for an LTE layer: in 3G rows the RSRP column holds RSCP); None keeps all.

    Returns
    -------
    pandas.DataFrame
        Validated records sorted by drive (trace) and time.

    Raises
    ------
    InvalidInputError
        Unreadable file, missing G-NetTrack column, text in a numeric column (naming file,
        line, column), or no rows left.

    Examples
    --------
    >>> read_gnettrack("missing.zip", network_id="x")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.zip: file does not exist
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file does not exist")
    frames = []
    for name, opener in _gnettrack_members(path):
        source = f"{path}:{name}" if path.suffix.lower() == ".zip" else str(path)
        raw = _read_gnettrack_member(source, opener)
        df = _gnettrack_to_records(raw, source, Path(name).stem, network_id, utc_offset_h)
        if network_modes is not None:
            df = df[df["network_mode"].isin(list(network_modes))]
        frames.append(_clean_gnettrack(df, source))
    records = pd.concat(frames, ignore_index=True)
    if len(records) == 0:
        raise InvalidInputError(f"{path}: no usable G-NetTrack rows (after filters)")
    records = records.sort_values(["drive_id", "timestamp"], kind="stable")
    return validate_records(records, source=str(path))


# ---------------------------------------------------------------------------------------------
# gridded measurements (Indianapolis "5G in the wild")
# ---------------------------------------------------------------------------------------------
# Hamburg - Bremen three-operator drive tests: MNC of the German operators -> network id
HAMBURG_BREMEN_NETWORKS: dict[int, str] = {1: "de-telekom", 2: "de-vodafone", 3: "de-telefonica"}
_HAMBURG_BREMEN_COLUMNS = ("drive", "segment", "timestamp_ms", "lat", "lon", "mnc", "tech")


def read_hamburg_bremen(path: str | Path) -> pd.DataFrame:
    """LTE records of the Hamburg - Bremen three-operator drive tests (``hh_bremen_3mno_drive``).

    One record per operator and second of every drive leg with a timestamp: the second's first
    LTE row (``rsrp_dbm``, ``rsrq_db``, ``cell_id``). ``network_id`` from the MNC
    (:data:`HAMBURG_BREMEN_NETWORKS`), ``drive_id`` = ``drive/segment`` (the leg). GSM rows are
    left out: the loggers record GSM cells alongside LTE, and a second with GSM rows but no LTE
    row is a logging gap (its neighbours' RSRP is the usual), not a fall-back off LTE.

    Raises
    ------
    InvalidInputError
        Missing file or columns, no LTE row.

    Examples
    --------
    >>> read_hamburg_bremen("missing.csv.gz")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.csv.gz: file does not exist
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file does not exist")
    try:
        raw = pd.read_csv(path, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in _HAMBURG_BREMEN_COLUMNS if c not in raw]
    if missing:
        raise InvalidInputError(f"{path}: columns {missing} are missing")
    raw = raw.dropna(subset=["timestamp_ms", "lat", "lon", "mnc"])
    raw = raw[raw["mnc"].isin(list(HAMBURG_BREMEN_NETWORKS)) & raw["tech"].eq("Lte")]
    raw = raw.assign(second=(raw["timestamp_ms"] // 1000).astype(np.int64))
    raw = raw.sort_values(["drive", "segment", "mnc", "timestamp_ms"], kind="stable")
    first = raw.drop_duplicates(["drive", "segment", "mnc", "second"], keep="first")
    records = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                first["timestamp_ms"].to_numpy(np.int64), unit="ms", utc=True
            ),
            "lat": first["lat"].to_numpy(np.float64),
            "lon": first["lon"].to_numpy(np.float64),
            "network_id": first["mnc"].astype(int).map(HAMBURG_BREMEN_NETWORKS).to_numpy(),
            "rsrp_dbm": first.get("rsrp_dbm", pd.Series(np.nan, index=first.index)).to_numpy(),
            "rsrq_db": first.get("rsrq_db", pd.Series(np.nan, index=first.index)).to_numpy(),
            "cell_id": first.get("cell_id", pd.Series(np.nan, index=first.index)).to_numpy(),
            "network_mode": "LTE",
            "drive_id": (
                first["drive"].astype(str) + "/" + first["segment"].astype(str)
            ).to_numpy(),
        }
    )
    records = records.sort_values(["timestamp", "network_id"], kind="stable")
    return validate_records(records.reset_index(drop=True), source=str(path))


def sinr_from_throughput(
    throughput_mbps: Any,
    *,
    bandwidth_mhz: float = 20.0,
    min_db: float = -10.0,
    max_db: float = 30.0,
) -> NDArray[np.float64]:
    """SINR equivalent of a throughput by inverting Shannon: ``C = B log2(1 + SINR)``.

    ``SINR = 2 ** (C / B) - 1`` with ``B`` the effective bandwidth, clipped to
    ``[min_db, max_db]``. This is not a radio measurement: it puts throughput-only grids on
    the SINR scale the link model uses. With the default 20 MHz (one LTE carrier) 10 Mbit/s
    maps to -3.8 dB, 50 Mbit/s to 7.2 dB, 150 Mbit/s to 22.6 dB; carrier aggregation and MIMO
    make real rates exceed the single-carrier Shannon bound, hence the 30 dB cap (CQI 15 needs
    about 20 dB). Zero throughput gives ``min_db`` (-10 dB, below the -5 dB out-of-sync
    threshold); NaN stays NaN.

    Examples
    --------
    >>> sinr_from_throughput([0.0, 20.0, 1000.0]).round(1).tolist()
    [-10.0, 0.0, 30.0]
    >>> sinr_from_throughput([]).shape
    (0,)
    """
    if bandwidth_mhz <= 0:
        raise InvalidInputError("bandwidth_mhz must be > 0", field="bandwidth_mhz")
    rate = np.atleast_1d(np.asarray(throughput_mbps, dtype=np.float64))
    with np.errstate(divide="ignore", over="ignore"):
        spectral = np.minimum(rate / bandwidth_mhz, 60.0)  # bit/s/Hz; cap avoids overflow
        sinr_db = 10.0 * np.log10(np.exp2(spectral) - 1.0)
    return np.where(np.isnan(rate), np.nan, np.clip(sinr_db, min_db, max_db))


_GRID_KINDS: dict[str, tuple[frozenset[str], bool]] = {
    # kind: (columns that identify it, lat/lon columns swapped upstream)
    "throughput": (frozenset({"thput_sample_num", "all_thput_50"}), True),
    "rss": (frozenset({"rat", "cid", "freq", "sample", "rsrp_50"}), False),
}


def _grid_kind(df: pd.DataFrame, source: str) -> str:
    for kind, (cols, _) in _GRID_KINDS.items():
        if cols <= set(df.columns):
            return kind
    raise InvalidInputError(
        f"{source}: not a supported grid file (expected a thput_grid or rss_cell table with "
        "grid_lat, grid_lon and all_thput_50 or rsrp_50 columns)"
    )


def _read_grid_file(path: Path, swapped: bool | None) -> tuple[str, pd.DataFrame]:
    try:
        df = pd.read_csv(path, na_values="None")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: file does not exist") from None
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{path}: file is empty (no header row)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable grid CSV ({exc})") from None
    for c in ("grid_lat", "grid_lon"):
        if c not in df.columns:
            raise InvalidInputError(f"{path}: grid column {c!r} is missing", field=c)
    kind = _grid_kind(df, str(path))
    is_swapped = _GRID_KINDS[kind][1] if swapped is None else swapped
    # upstream quirk: thput_grid/connectivity/cell_set files hold the longitude in grid_lat
    lat_col, lon_col = ("grid_lon", "grid_lat") if is_swapped else ("grid_lat", "grid_lon")
    where = _Where(str(path), first_line=2)
    df["lat"] = _parse_float(df[lat_col], _BY_NAME["lat"], where, required=True)
    df["lon"] = _parse_float(df[lon_col], _BY_NAME["lon"], where, required=True)
    return kind, df


def _grid_keys(df: pd.DataFrame, grid_deg: float) -> pd.MultiIndex:
    i = np.round(df["lat"].to_numpy() / grid_deg).astype(np.int64)
    j = np.round(df["lon"].to_numpy() / grid_deg).astype(np.int64)
    return pd.MultiIndex.from_arrays([i, j], names=["gi", "gj"])


def _throughput_table(df: pd.DataFrame, grid_deg: float, bandwidth_mhz: float) -> pd.DataFrame:
    df = df[df["thput_sample_num"].fillna(0) > 0]
    out = pd.DataFrame(index=_grid_keys(df, grid_deg))
    out["thput_samples"] = df["thput_sample_num"].to_numpy(np.float64)
    for stat, col in zip(STATS, ("all_thput_10", "all_thput_50", "all_thput_90"), strict=True):
        rate = df[col].to_numpy(np.float64)
        out[f"throughput_dl_mbps_{stat}"] = rate
        out[f"sinr_db_{stat}"] = sinr_from_throughput(rate, bandwidth_mhz=bandwidth_mhz)
    return out.groupby(level=[0, 1]).first()


def _rss_table(df: pd.DataFrame, grid_deg: float, rat: str, min_cell_share: float) -> pd.DataFrame:
    df = df[(df["rat"] == rat) & df["rsrp_50"].notna()].copy()
    df.index = _grid_keys(df, grid_deg)
    share = df["sample"] / df["total_sample"].where(df["total_sample"] > 0)
    # best server: the strongest cell among those holding a real share of the grid's samples;
    # cells heard a handful of times only (share below min_cell_share) would bias the max up
    eligible = df[share.to_numpy() >= min_cell_share]
    fallback = df.sort_values("sample", ascending=False).groupby(level=[0, 1]).head(1)
    best = eligible.sort_values("rsrp_50", ascending=False).groupby(level=[0, 1]).head(1)
    chosen = pd.concat([best, fallback[~fallback.index.isin(best.index)]])
    out = pd.DataFrame(index=chosen.index)
    out["rss_samples"] = chosen["total_sample"].to_numpy(np.float64)
    for stat, col in zip(STATS, ("rsrp_10", "rsrp_50", "rsrp_90"), strict=True):
        out[f"rsrp_dbm_{stat}"] = chosen[col].to_numpy(np.float64)
    return out


def read_indianapolis_grid(
    paths: Sequence[str | Path],
    *,
    bandwidth_mhz: float = 20.0,
    grid_deg: float = 0.0005,
    rss_rat: str = "lte",
    min_cell_share: float = 0.05,
    swapped: bool | None = None,
) -> pd.DataFrame:
    """Read one operator's gridded measurements ("5G in the wild", Indianapolis) per grid square.

    How a grid square becomes quality values:

    * ``thput_grid`` files (``_v3``: all phones, zero-rate samples included) give the sample
      count (``thput_sample_num``) and ``throughput_dl_mbps_p10/median/p90`` (``all_thput_10/50/90``);
      ``sinr_db_*`` is the SINR equivalent of those rates (:func:`sinr_from_throughput`, Shannon
      inverted over ``bandwidth_mhz``).
    * ``rss_cell`` files (T-Mobile only) give ``rsrp_dbm_p10/median/p90``: the percentiles of
      the best server, the strongest cell (by median RSRP, technology ``rss_rat``) among cells
      with at least ``min_cell_share`` of the square's samples (else the most-sampled cell).
      Operators without an rss file get NaN RSRP (not measured).

    Upstream ``thput_grid`` files name the longitude column ``grid_lat`` and the latitude
    ``grid_lon``; they are swapped back here (``rss_cell`` files are correct). ``swapped``
    overrides the per-kind default for every file. The string ``None`` marks missing values.

    Parameters
    ----------
    paths : the operator's grid files (plain or compressed CSV).
    bandwidth_mhz : effective bandwidth of the Shannon inversion.
    grid_deg : grid step; coordinates are multiples of it and taken as the square's centre.
    rss_rat : ``"lte"`` or ``"sub6"`` rows of the rss file.
    min_cell_share : see above.
    swapped : force (True) or forbid (False) the column swap; None: per file kind.

    Returns
    -------
    pandas.DataFrame
        One row per grid square with data: ``lat``, ``lon`` (centre), ``sample_count`` and the
        :data:`STAT_COLUMNS` (NaN where not measured), sorted by latitude then longitude.

    Raises
    ------
    InvalidInputError
        No files, unreadable or unsupported file, files whose coordinates disagree.

    Examples
    --------
    >>> read_indianapolis_grid([])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: no grid files given
    """
    if not paths:
        raise InvalidInputError("no grid files given")
    if grid_deg <= 0:
        raise InvalidInputError("grid_deg must be > 0", field="grid_deg")
    tables: dict[str, pd.DataFrame] = {}
    centres: list[tuple[str, float, float]] = []
    for p in paths:
        kind, df = _read_grid_file(Path(p), swapped)
        centres.append((str(p), float(df["lat"].median()), float(df["lon"].median())))
        if kind == "throughput":
            table = _throughput_table(df, grid_deg, bandwidth_mhz)
        else:
            table = _rss_table(df, grid_deg, rss_rat, min_cell_share)
        # a second file of the same kind fills squares the first one lacks
        tables[kind] = tables[kind].combine_first(table) if kind in tables else table
    _check_same_area(centres)
    return _grid_result(pd.concat(list(tables.values()), axis=1), grid_deg)


def _check_same_area(centres: list[tuple[str, float, float]]) -> None:
    name0, lat0, lon0 = centres[0]
    for name, lat, lon in centres[1:]:
        if abs(lat - lat0) > 0.5 or abs(lon - lon0) > 0.5:
            raise InvalidInputError(
                f"{name}: its grid lies far from {name0}'s ({lat:.3f}, {lon:.3f} vs "
                f"{lat0:.3f}, {lon0:.3f}); are its grid_lat/grid_lon columns swapped?"
            )


def _grid_result(merged: pd.DataFrame, grid_deg: float) -> pd.DataFrame:
    out = pd.DataFrame(index=merged.index)
    gi = merged.index.get_level_values("gi").to_numpy()
    gj = merged.index.get_level_values("gj").to_numpy()
    # multiples of the step, rounded so that 0.0005 steps print as written upstream
    out["lat"] = np.round(gi * grid_deg, 9)
    out["lon"] = np.round(gj * grid_deg, 9)
    counts = [merged[c] for c in ("thput_samples", "rss_samples") if c in merged]
    # samples behind the values: throughput samples where measured, else the RSRP samples
    count = counts[0].copy() if counts else pd.Series(0.0, index=merged.index)
    for other in counts[1:]:
        count = count.fillna(other)
    out["sample_count"] = count.fillna(0).astype(np.int64)
    for c in STAT_COLUMNS:
        out[c] = merged[c].astype(np.float64) if c in merged else np.nan
    out = out[out["sample_count"] > 0]
    return out.sort_values(["lat", "lon"]).reset_index(drop=True)
