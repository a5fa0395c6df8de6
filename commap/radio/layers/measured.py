"""Measured coverage layers: drive tests, fleet reports and gridded measurements.

A measured network answers with its *learned map* (:class:`LearnedLayer`,
:mod:`commap.radio.learned`): at build time :func:`prepare_layer` reads the records once
(:func:`read_layer_records`, also the reader of ``commap validate``), fits
:func:`~commap.radio.learned.fit_network` on the network's link KPI and its SINR and RSRP
(:func:`fit_layer_models`) and writes the models to ``learned/<id>/<kpi>.npz`` (listed in the
manifest's checksummed files). The link KPI is the first the records carry of SINR (``< -5``
dB), downlink rate (``<= 0.5`` Mbit/s), RSRP with RSRQ (``< -115`` dBm or ``< -16`` dB; the
larger of the two probabilities), ``connected`` (``== 0``), the outage rules of
:data:`commap.radio.learned.KPIS`; records that lost the network count as no signal in every
KPI, so ``connected`` is folded into the others and decides alone only without them. Where no record lies within 300 m the layer answers
``unknown`` with the network-wide prior, never "no signal".

Measurements are also aggregated per H3 cell at build time (:func:`prepare_layer`) into one
GeoParquet table per network (``measured/<network id>.parquet`` in the built map: cell, centre,
``sample_count``, p10/median/p90 of every numeric KPI (``rsrp_dbm``, ``rsrq_db``, ``sinr_db``,
``throughput_dl_mbps``, ``throughput_ul_mbps``, ``rtt_ms``), ``connected_ratio``,
``link_sinr_db`` (the SINR the link model uses), ``provenance = "measured"``). :class:`MeasuredLayer` answers
:meth:`~MeasuredLayer.sample` from that table with provenance MEASURED and a confidence that
grows with the sample count; :class:`FusedLayer` lets dense measurements override a modelled
layer.

Map spec
--------
A network is measured-only with ``[networks.layer] type = "measured"``, or modelled plus
measured with a modelled ``[networks.layer]`` and a ``[networks.measured]`` table (same keys,
``type`` optional, plus ``dense_min_samples``)::

    [networks.layer]                       # or [networks.measured]
    type = "measured"
    format = "gnettrack"                   # records | gnettrack | grid
    files = ["data/ucc5g_cork_driving.zip"]  # relative to map.toml; records: .csv, .parquet, dirs
    h3_resolution = 11                     # default 11
    network_modes = ["LTE", "5G"]          # gnettrack: keep these NetworkMode rows
    utc_offset_h = 0.0                     # gnettrack: logged local time minus UTC
    network_id = "op-a-lte"                # records: rows of this network (default: own id)
    start = "2019-11-20T00:00:00Z"         # records/gnettrack: time window (optional)
    end = "2020-01-07T00:00:00Z"
    bandwidth_mhz = 20.0                   # grid: Shannon inversion bandwidth
    rss_rat = "lte"                        # grid: rss_cell rows used for RSRP
    min_cell_share = 0.05                  # grid: best-server eligibility
    grid_deg = 0.0005                      # grid: square size
    min_samples = 1                        # drop cells with fewer samples
    confidence_half_samples = 5.0          # samples at which confidence reaches 0.5
    neighbour_fallback = true              # k-ring-1 fallback (halved confidence)
    dense_min_samples = 5                  # [networks.measured] only: measured wins from here
    attribution = "..."

Resolution: H3 resolution 11 cells have 28.7 m edges, about 50 m across flat-to-flat
(2,150 m²), the size of a 50 m corridor segment, so one segment reads one cell. Resolution 10
(~130 m across) mixes several serving cells per cell; resolution 12 (~19 m across) leaves a
vehicle at 30 km/h with 2 samples per cell per pass.

Confidence: ``c(n) = n / (n + n_half)`` with ``n_half = confidence_half_samples`` (default 5:
1 sample 0.17, 5 samples 0.5, 20 samples 0.8, 100 samples 0.95), i.e. the weight a Bayesian
average gives the measurement against a prior worth ``n_half`` samples. Values from the
k-ring-1 fallback (the six neighbours of an empty cell, sample-weighted) get half of that.

Tunnels: inside a tunnel only the exact cell's measurement counts (no neighbour fallback: the
road outside the portal says nothing about the tube). :class:`MeasuredLayer` alone gives a
tunnel cell never measured the no-signal values of :meth:`Quality.empty` (provenance NONE);
:class:`LearnedLayer` answers it ``unknown`` with the prior (the map spec has no tunnel setting
that says otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from h3.api import basic_int as h3i
from numpy.typing import ArrayLike, NDArray

from commap.errors import InvalidInputError
from commap.files import atomic_path
from commap.networks import Network
from commap.radio.layers import LayerContext
from commap.radio.learned import (
    MIN_PROBABILITY,
    KpiModel,
    LearnedNetwork,
    fit_network,
    normalise_records,
)
from commap.radio.measurements import (
    KPI_COLUMNS,
    QUALITY_COLUMNS,
    STAT_COLUMNS,
    read_gnettrack,
    read_indianapolis_grid,
    read_records,
    sinr_from_throughput,
)
from commap.radio.quality import (
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    QIN_SINR_DB,
    BoolArray,
    CoverageLayer,
    FloatArray,
    Provenance,
    Quality,
    as_points,
    as_sample_points,
)
from commap.timeutil import parse_time

__all__ = [
    "DEFAULT_H3_RESOLUTION",
    "LINK_KPIS",
    "TABLE_COLUMNS",
    "VALUE_COLUMNS",
    "FusedLayer",
    "LayerRecords",
    "LearnedLayer",
    "MeasuredLayer",
    "aggregate_grid",
    "aggregate_records",
    "cell_statistics",
    "confidence_from_count",
    "finish_cell_table",
    "fit_layer_models",
    "link_kpis",
    "load_fused_layer",
    "load_layer",
    "prepare_layer",
    "prepare_measured",
    "read_layer_records",
    "record_values",
    "snr_from_rsrp",
]

log = logging.getLogger(__name__)

DEFAULT_H3_RESOLUTION = 11
FORMATS = ("records", "gnettrack", "grid")
TABLE_COLUMNS: tuple[str, ...] = (
    "h3_cell",
    "lat",
    "lon",
    "sample_count",
    *STAT_COLUMNS,
    "connected_ratio",
    "link_sinr_db",
    "provenance",
)
# the per-record values a cell's statistics are computed from (:func:`record_values`)
VALUE_COLUMNS: tuple[str, ...] = (*KPI_COLUMNS, "link_sinr_db", "connected")
# a sample taken while the UE had lost the network counts as no signal
_NO_SIGNAL: dict[str, float] = {
    "rsrp_dbm": NO_SIGNAL_RSRP_DBM,
    "sinr_db": NO_SIGNAL_SINR_DB,
    "throughput_dl_mbps": 0.0,
    "throughput_ul_mbps": 0.0,
}
_QUANTILES = {"p10": 0.1, "median": 0.5, "p90": 0.9}
_FALLBACK_CONFIDENCE_FACTOR = 0.5
_SPEC_KEYS = frozenset(
    {
        "type",
        "format",
        "files",
        "h3_resolution",
        "network_id",
        "network_modes",
        "utc_offset_h",
        "start",
        "end",
        "bandwidth_mhz",
        "rss_rat",
        "min_cell_share",
        "grid_deg",
        "min_samples",
        "confidence_half_samples",
        "neighbour_fallback",
        "dense_min_samples",
        "attribution",
        "description",
    }
)

# keys that only make sense for some formats
_FORMAT_KEYS: dict[str, tuple[str, ...]] = {
    "network_modes": ("gnettrack",),
    "utc_offset_h": ("gnettrack",),
    "network_id": ("records",),
    "start": ("records", "gnettrack"),
    "end": ("records", "gnettrack"),
    "bandwidth_mhz": ("grid",),
    "rss_rat": ("grid",),
    "min_cell_share": ("grid",),
    "grid_deg": ("grid",),
}


def confidence_from_count(sample_count: Any, *, half_samples: float = 5.0) -> NDArray[np.float64]:
    """Confidence of a measured value from its sample count: ``n / (n + half_samples)``.

    Examples
    --------
    >>> confidence_from_count([0, 5, 20]).tolist()
    [0.0, 0.5, 0.8]
    >>> confidence_from_count([]).shape
    (0,)
    """
    if not half_samples > 0:
        raise InvalidInputError("confidence_half_samples must be > 0")
    n = np.maximum(np.atleast_1d(np.asarray(sample_count, dtype=np.float64)), 0.0)
    result: NDArray[np.float64] = n / (n + half_samples)
    return result


# ---------------------------------------------------------------------------------------------
# aggregation onto H3 cells
# ---------------------------------------------------------------------------------------------
def _cells_of(lat: FloatArray, lon: FloatArray, resolution: int) -> NDArray[np.int64]:
    return np.fromiter(
        (
            h3i.latlng_to_cell(a, b, resolution)
            for a, b in zip(lat.tolist(), lon.tolist(), strict=True)
        ),
        dtype=np.int64,
        count=len(lat),
    )


def _centres(cells: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    latlng = np.array([h3i.cell_to_latlng(int(c)) for c in cells], dtype=np.float64)
    latlng = latlng.reshape(-1, 2)
    return latlng[:, 0], latlng[:, 1]


def _finish_table(table: pd.DataFrame, cells: NDArray[np.int64]) -> pd.DataFrame:
    """Add ids, centres and provenance; order columns; sort by cell id (spatially coherent)."""
    order = np.argsort(cells, kind="stable")
    cells = cells[order]
    table = table.iloc[order].reset_index(drop=True)
    lat, lon = _centres(cells)
    table.insert(0, "h3_cell", [h3i.int_to_str(int(c)) for c in cells])
    table.insert(1, "lat", lat)
    table.insert(2, "lon", lon)
    table["provenance"] = "measured"
    table["sample_count"] = table["sample_count"].astype(np.int64)
    return table[list(TABLE_COLUMNS)]


def _empty_table() -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in TABLE_COLUMNS})
    return table.astype({"h3_cell": "str", "sample_count": np.int64, "provenance": "str"})


def _check_resolution(h3_resolution: int) -> int:
    if isinstance(h3_resolution, bool) or not isinstance(h3_resolution, int | np.integer):
        raise InvalidInputError("h3_resolution must be an integer", field="h3_resolution")
    if not 0 <= int(h3_resolution) <= 15:
        raise InvalidInputError("h3_resolution must be within 0..15", field="h3_resolution")
    return int(h3_resolution)


def _link_sinr_db(values: pd.DataFrame, connected: pd.Series | None) -> FloatArray:
    """Per sample, the SINR the link model uses: measured, else the best equivalent known.

    Order: measured ``sinr_db``; the Shannon equivalent of ``throughput_dl_mbps``
    (:func:`~commap.radio.measurements.sinr_from_throughput`); the noise-limited SNR of
    ``rsrp_dbm`` (:func:`snr_from_rsrp`, an upper bound: interference is not known); for a
    sample that only says the UE was connected, the in-sync threshold ``QIN_SINR_DB`` (the
    least a held link has). Samples with ``connected == False`` are already at the no-signal
    floor; samples that say nothing stay NaN.
    """
    sinr = values["sinr_db"].to_numpy(np.float64).copy()
    for fill in (
        sinr_from_throughput(values["throughput_dl_mbps"].to_numpy(np.float64)),
        snr_from_rsrp(values["rsrp_dbm"].to_numpy(np.float64)),
    ):
        sinr = np.where(np.isnan(sinr), fill, sinr)
    if connected is not None:
        held = np.asarray(connected.eq(True).fillna(False), dtype=bool)
        sinr = np.where(np.isnan(sinr) & held, QIN_SINR_DB, sinr)
    return sinr


def snr_from_rsrp(
    rsrp_dbm: Any, *, noise_figure_db: float = 7.0, min_db: float = -10.0, max_db: float = 30.0
) -> FloatArray:
    """Noise-limited SNR of an RSRP: ``RSRP - (-174 dBm/Hz + 10 log10(15 kHz) + NF)``.

    The reference signal's power per 15 kHz resource element against thermal noise in the same
    bandwidth (-132.2 dBm) plus the receiver's noise figure (7 dB: -125.2 dBm), clipped to
    ``[min_db, max_db]``. Without interference this is an upper bound of the SINR; it puts
    RSRP-only records on the SINR scale the link model uses. NaN stays NaN.

    Examples
    --------
    >>> snr_from_rsrp([-120.0, -100.0, float("nan")]).round(1).tolist()
    [5.2, 25.2, nan]
    >>> snr_from_rsrp([]).shape
    (0,)
    """
    rsrp = np.atleast_1d(np.asarray(rsrp_dbm, dtype=np.float64))
    noise_dbm = -174.0 + 10.0 * np.log10(15.0e3) + noise_figure_db
    result: FloatArray = np.clip(rsrp - noise_dbm, min_db, max_db)
    return result


def aggregate_records(
    records: pd.DataFrame, *, h3_resolution: int = DEFAULT_H3_RESOLUTION
) -> pd.DataFrame:
    """Aggregate measurement records per H3 cell (one network's records).

    Every numeric KPI (:data:`~commap.radio.measurements.KPI_COLUMNS`) gets its p10, median
    and p90 per cell, skipping missing values; ``connected_ratio`` is the share of samples with
    ``connected == True`` among those that say; ``sample_count`` counts every record of the
    cell. Samples with ``connected == False`` count as no signal (``rsrp_dbm`` -160,
    ``sinr_db`` -30, throughputs 0; their RSRQ and RTT are ignored) so that a cell where the
    UE mostly lost the network has a no-signal median. ``link_sinr_db`` is the median of the
    per-sample SINR the link model uses (see :func:`snr_from_rsrp` and the module docstring):
    records with only a throughput, only an RSRP or only ``connected`` still give a value.

    Parameters
    ----------
    records : validated records (:func:`commap.radio.measurements.validate_records`).
    h3_resolution : H3 resolution of the cells.

    Returns
    -------
    pandas.DataFrame
        :data:`TABLE_COLUMNS`, one row per cell, sorted by cell id.

    Examples
    --------
    >>> recs = pd.DataFrame({"lat": [51.9, 51.9, 51.9], "lon": [-8.4, -8.4, -8.4],
    ...                      "rsrp_dbm": [-90.0, -100.0, -95.0]})
    >>> t = aggregate_records(recs)
    >>> t["sample_count"].tolist(), t["rsrp_dbm_median"].tolist(), t["link_sinr_db"].tolist()
    ([3], [-95.0], [30.0])
    >>> len(aggregate_records(recs.iloc[:0]))
    0
    """
    resolution = _check_resolution(h3_resolution)
    if len(records) == 0:
        _check_position_columns(records)
        return _empty_table()
    cells, values = record_values(records, h3_resolution=resolution)
    table = cell_statistics(cells, values)
    return _finish_table(table.reset_index(drop=True), table.index.to_numpy(np.int64))


def _check_position_columns(records: pd.DataFrame) -> None:
    for name in ("lat", "lon"):
        if name not in records:
            raise InvalidInputError(f"records need a {name!r} column", field=name)


def record_values(
    records: pd.DataFrame, *, h3_resolution: int = DEFAULT_H3_RESOLUTION
) -> tuple[NDArray[np.int64], FloatArray]:
    """Each record's H3 cell and the values :func:`aggregate_records` summarises per cell.

    The per-record half of :func:`aggregate_records` (no record depends on another): the
    statistics of a cell can be computed again from its rows here alone, which is what an
    incremental refresh keeps (:mod:`commap.radio.layers.cell_samples`).

    Returns
    -------
    cells : int64 H3 cell of every record, in record order.
    values : ``(records, len(VALUE_COLUMNS))`` float64, the columns of :data:`VALUE_COLUMNS`
        (lost-network samples at the no-signal values, the link SINR, ``connected`` as 0/1/NaN).

    Examples
    --------
    >>> cells, values = record_values(pd.DataFrame({"lat": [51.9], "lon": [-8.4],
    ...                                             "connected": [False]}))
    >>> values[0, VALUE_COLUMNS.index("sinr_db")], values[0, VALUE_COLUMNS.index("connected")]
    (np.float64(-30.0), np.float64(0.0))
    """
    resolution = _check_resolution(h3_resolution)
    _check_position_columns(records)
    n = len(records)
    connected = records.get("connected")
    lost = np.zeros(n, dtype=bool)
    if connected is not None:
        lost = np.asarray(connected.eq(False).fillna(False), dtype=bool)
    # numpy columns, one frame built at once: a column set at a time costs milliseconds each,
    # which a refresh pays per part
    out = np.full((n, len(VALUE_COLUMNS)), np.nan)
    for j, name in enumerate(KPI_COLUMNS):
        # a lost sample is no signal even where the record does not carry the KPI
        column = (
            records[name].astype(np.float64).to_numpy(np.float64) if name in records else out[:, j]
        )
        out[:, j] = np.where(lost, _NO_SIGNAL.get(name, np.nan), column)
    kpis = pd.DataFrame(out[:, : len(KPI_COLUMNS)], columns=list(KPI_COLUMNS), copy=False)
    out[:, VALUE_COLUMNS.index("link_sinr_db")] = _link_sinr_db(kpis, connected)
    if connected is not None:
        out[:, VALUE_COLUMNS.index("connected")] = connected.astype("Float64").astype(np.float64)
    cells = _cells_of(
        records["lat"].to_numpy(np.float64), records["lon"].to_numpy(np.float64), resolution
    )
    return cells, out


def cell_statistics(cells: NDArray[np.int64], values: FloatArray) -> pd.DataFrame:
    """Per cell, ``sample_count`` and the statistics of :func:`aggregate_records`.

    ``cells`` and ``values`` as :func:`record_values` returns them (any subset of whole cells:
    a cell's statistics depend on its own rows only, in their order). Indexed by cell, sorted.
    """
    frame = pd.DataFrame(values, columns=list(VALUE_COLUMNS))
    frame["cell"] = cells
    grouped = frame.groupby("cell", sort=True)
    table = pd.DataFrame({"sample_count": grouped.size()})
    quantiles = grouped[list(KPI_COLUMNS)].quantile(np.array(list(_QUANTILES.values())))
    for name in KPI_COLUMNS:
        for stat, q in _QUANTILES.items():
            table[f"{name}_{stat}"] = quantiles[name].xs(q, level=1)
    table["connected_ratio"] = grouped["connected"].mean()
    table["link_sinr_db"] = grouped["link_sinr_db"].median()
    return table


def finish_cell_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`cell_statistics`' table as :data:`TABLE_COLUMNS` rows (ids, centres, provenance)."""
    if len(table) == 0:
        return _empty_table()
    return _finish_table(table.reset_index(drop=True), table.index.to_numpy(np.int64))


# points per side of the lattice that samples a grid square's area (25 points of 1/25 each)
_SQUARE_LATTICE = 5


def aggregate_grid(
    grid: pd.DataFrame, *, h3_resolution: int = DEFAULT_H3_RESOLUTION, grid_deg: float = 0.0005
) -> pd.DataFrame:
    """Put grid-square values (:func:`commap.radio.measurements.read_indianapolis_grid`) on H3 cells.

    By area, so that every square with data reaches the map: each square is sampled by a 5 x 5
    lattice of points, each standing for 1/25 of its area, and every H3 cell a lattice point
    falls in overlaps the square. A cell's statistics are the mean of its overlapping squares'
    statistics weighted by overlap share x sample count (a mix of percentiles, not the
    percentile of the pooled samples: the grid keeps no samples); its ``sample_count`` is the
    overlap-weighted sum of the squares' counts (at least 1). Squares of 0.0005 deg (~55 x 43
    m) overlap two to four resolution-11 cells. Taking only the cells whose *centre* falls in
    a square would drop about one square in nine.

    Examples
    --------
    >>> g = pd.DataFrame({"lat": [39.77], "lon": [-86.15], "sample_count": [40],
    ...                   "sinr_db_median": [8.0]})
    >>> t = aggregate_grid(g)
    >>> bool(len(t) >= 1 and (t["sinr_db_median"] == 8.0).all())
    True
    >>> t["sample_count"].tolist()  # 40 samples spread by overlap over the square's cells
    [5, 2, 2, 6, 26]
    >>> len(aggregate_grid(g.iloc[:0]))
    0
    """
    resolution = _check_resolution(h3_resolution)
    if len(grid) == 0:
        return _empty_table()
    k = _SQUARE_LATTICE
    offsets = ((np.arange(k) + 0.5) / k - 0.5) * grid_deg
    d_lat, d_lon = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    square = np.repeat(np.arange(len(grid)), k * k)
    lat = np.repeat(grid["lat"].to_numpy(np.float64), k * k) + np.tile(d_lat, len(grid))
    lon = np.repeat(grid["lon"].to_numpy(np.float64), k * k) + np.tile(d_lon, len(grid))
    pairs = pd.DataFrame({"square": square, "cell": _cells_of(lat, lon, resolution)})
    overlap = pairs.groupby(["cell", "square"], sort=True).size().rename("points").reset_index()
    count = grid["sample_count"].to_numpy(np.float64)[overlap["square"].to_numpy()]
    share = overlap["points"].to_numpy(np.float64) / (k * k)
    weight = share * count
    by_cell = overlap["cell"].to_numpy(np.int64)
    cells, inverse = np.unique(by_cell, return_inverse=True)
    table = pd.DataFrame(
        {"sample_count": np.maximum(np.rint(np.bincount(inverse, share * count)), 1)}
    )
    for c in (*STAT_COLUMNS, "link_sinr_db"):
        source = "sinr_db_median" if c == "link_sinr_db" else c
        if source not in grid:
            table[c] = np.nan
            continue
        v = grid[source].to_numpy(np.float64)[overlap["square"].to_numpy()]
        w = np.where(np.isfinite(v), weight, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            table[c] = np.bincount(inverse, w * np.nan_to_num(v)) / np.bincount(inverse, w)
    table["connected_ratio"] = np.nan  # the grid has no connectivity flag per sample
    return _finish_table(table, cells)


# ---------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------
_OLD_STAT_NAMES = {f"throughput_mbps_{s}": f"throughput_dl_mbps_{s}" for s in _QUANTILES}


def _upgrade_table(table: pd.DataFrame) -> pd.DataFrame:
    """A table of an older build with today's columns (renamed, NaN where not kept then)."""
    if all(c in table for c in TABLE_COLUMNS):
        return table[list(TABLE_COLUMNS)]
    table = table.rename(columns=_OLD_STAT_NAMES)
    if "link_sinr_db" not in table and "sinr_db_median" in table:
        table = table.assign(link_sinr_db=table["sinr_db_median"])
    for c in TABLE_COLUMNS:
        if c not in table:
            table[c] = np.nan
    return table[list(TABLE_COLUMNS)]


def _in_sorted(values: NDArray[np.int64], sorted_set: NDArray[np.int64]) -> BoolArray:
    """Whether each value is in ``sorted_set`` (sorted, unique), by binary search.

    Examples
    --------
    >>> _in_sorted(np.array([3, 4, 9]), np.array([1, 3, 9])).tolist()
    [True, False, True]
    """
    if sorted_set.shape[0] == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), sorted_set.shape[0] - 1)
    found: BoolArray = sorted_set[pos] == values
    return found


class MeasuredLayer:
    """Coverage of one network from measurements aggregated per H3 cell.

    Parameters
    ----------
    network_id : the network.
    table : :data:`TABLE_COLUMNS` table (from :func:`aggregate_records`/:func:`aggregate_grid`).
    h3_resolution : resolution of the table's cells.
    confidence_half_samples : see :func:`confidence_from_count`.
    neighbour_fallback : answer points in empty cells from the six neighbours (outside
        tunnels), with half the confidence.

    Notes
    -----
    A cell serves values if its ``link_sinr_db`` is known: measured SINR or its equivalent from
    throughput, RSRP or the connected flag (:func:`aggregate_records`); grid squares with RSRP
    but no throughput stay in :attr:`table` but answer as no data. ``rsrp_dbm`` is NaN where a
    served cell has no RSRP measurement (throughput-only records and grids). Tables written
    before ``link_sinr_db`` and the uplink, RSRQ and RTT statistics existed are read with
    ``link_sinr_db`` = ``sinr_db_median`` and the missing statistics NaN.

    Examples
    --------
    >>> recs = pd.DataFrame({"lat": [51.9] * 5, "lon": [-8.4] * 5, "sinr_db": [5.0] * 5})
    >>> layer = MeasuredLayer("x", aggregate_records(recs))
    >>> q = layer.sample([-8.4, 0.0], [51.9, 0.0], 0.0)
    >>> q.provenance.tolist(), q.sinr_db.tolist(), q.confidence.tolist()
    ([2, 0], [5.0, -30.0], [0.5, 0.0])
    >>> len(layer.sample([], [], []))
    0
    """

    def __init__(
        self,
        network_id: str,
        table: pd.DataFrame,
        *,
        h3_resolution: int = DEFAULT_H3_RESOLUTION,
        confidence_half_samples: float = 5.0,
        neighbour_fallback: bool = True,
    ) -> None:
        table = _upgrade_table(table)
        missing = [
            c
            for c in ("h3_cell", "sample_count", "rsrp_dbm_median", "link_sinr_db")
            if c not in table
        ]
        if missing:
            raise InvalidInputError(
                f"measured table of {network_id}: column {missing[0]!r} is missing"
            )
        self.network_id = network_id
        self.table = table
        self.h3_resolution = _check_resolution(h3_resolution)
        self.confidence_half_samples = float(confidence_half_samples)
        confidence_from_count(0, half_samples=self.confidence_half_samples)  # validates
        self.neighbour_fallback = bool(neighbour_fallback)
        none = np.zeros(0, dtype=np.int64)
        self._serve(self._parse_cells(table["h3_cell"]), none, none)

    def _serve(
        self, table_cells: NDArray[np.int64], near: NDArray[np.int64], ringed: NDArray[np.int64]
    ) -> None:
        """Index the cells of :attr:`table` that serve values.

        ``near`` is a ring index known already: the rings of the (sorted) cells ``ringed``.
        """
        self._table_cells = table_cells  # the table's cells as integers, in table order
        table = self.table
        served = np.isfinite(table["link_sinr_db"].to_numpy(np.float64)) & (
            table["sample_count"].to_numpy(np.int64) > 0
        )
        cells = table_cells[served]
        order = np.argsort(cells, kind="stable")
        self._cells = cells[order]
        self._rsrp = table["rsrp_dbm_median"].to_numpy(np.float64)[served][order]
        self._sinr = table["link_sinr_db"].to_numpy(np.float64)[served][order]
        self._count = table["sample_count"].to_numpy(np.int64)[served][order]
        # every cell within one ring of data (sorted), for the fallback's fast pre-check; only
        # the rings of cells not ringed yet are listed (an update adds a few)
        fresh = self._cells[~_in_sorted(self._cells, ringed)]
        ring = [c for cell in fresh.tolist() for c in h3i.grid_disk(cell, 1)]
        added = np.unique(np.array(ring, dtype=np.int64))
        added = added[~_in_sorted(added, near)]
        # a sorted insert: linear in the index, where a union would hash all of it again
        self._near = np.insert(near, np.searchsorted(near, added), added)

    def updated(self, rows: pd.DataFrame, cells: NDArray[np.int64]) -> MeasuredLayer:
        """This layer with the table rows of ``cells`` replaced or added (a new layer).

        The cost grows with ``rows`` and, in vectorised copies only, with the table: what an
        incremental refresh needs (:class:`commap.map.fleet.FleetFusion`).

        Parameters
        ----------
        rows : :data:`TABLE_COLUMNS` rows (:func:`finish_cell_table`), one per cell of ``cells``.
        cells : the rows' H3 cells as integers, sorted and unique (the rows' order).

        Examples
        --------
        >>> recs = pd.DataFrame({"lat": [51.9], "lon": [-8.4], "sinr_db": [5.0]})
        >>> empty = MeasuredLayer("x", aggregate_records(recs.iloc[:0]))
        >>> cells, values = record_values(recs)
        >>> layer = empty.updated(finish_cell_table(cell_statistics(cells, values)), cells)
        >>> layer.cell_count, layer.sample([-8.4], [51.9], 0.0).sinr_db.tolist()
        (1, [5.0])
        """
        old, table = self._table_cells, self.table
        if old.shape[0] > 1 and not (np.diff(old) > 0).all():  # a table given unsorted
            by_cell = np.argsort(old, kind="stable")
            old, table = old[by_cell], table.take(by_cell)
        pos = np.searchsorted(old, cells)
        known = pos < old.shape[0]
        known[known] = old[pos[known]] == cells[known]
        kept = np.ones(old.shape[0], dtype=bool)
        kept[pos[known]] = False
        merged_cells = np.concatenate([old[kept], cells])
        order = np.argsort(merged_cells, kind="stable")
        table = pd.concat([table[kept], rows[list(TABLE_COLUMNS)]], ignore_index=True)
        layer = object.__new__(MeasuredLayer)
        layer.network_id = self.network_id
        layer.table = table.take(order).reset_index(drop=True)
        layer.h3_resolution = self.h3_resolution
        layer.confidence_half_samples = self.confidence_half_samples
        layer.neighbour_fallback = self.neighbour_fallback
        layer._serve(merged_cells[order], self._near, self._cells)
        return layer

    def _parse_cells(self, cells: pd.Series) -> NDArray[np.int64]:
        try:
            ids = np.array([h3i.str_to_int(str(c)) for c in cells], dtype=np.int64)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"measured table of {self.network_id}: bad h3_cell ({exc})"
            ) from None
        if not all(h3i.is_valid_cell(int(c)) for c in ids):
            raise InvalidInputError(f"measured table of {self.network_id}: invalid h3_cell values")
        if len(ids) and h3i.get_resolution(int(ids[0])) != self.h3_resolution:
            raise InvalidInputError(
                f"measured table of {self.network_id}: cells have resolution "
                f"{h3i.get_resolution(int(ids[0]))}, spec says {self.h3_resolution}",
                field="h3_resolution",
            )
        return ids

    @classmethod
    def read(cls, path: str | Path, network_id: str, **options: Any) -> MeasuredLayer:
        """Load a layer from a table written by :func:`prepare_layer`."""
        path = Path(path)
        try:
            table = pd.read_parquet(path)
        except FileNotFoundError:
            raise InvalidInputError(f"{path}: measured table does not exist") from None
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"{path}: unreadable measured table ({exc})") from None
        return cls(network_id, table, **options)

    @property
    def cell_count(self) -> int:
        """Number of cells that serve values."""
        return int(self._cells.shape[0])

    def _find(self, cells: NDArray[np.int64]) -> tuple[NDArray[np.intp], BoolArray]:
        if self._cells.shape[0] == 0:
            return np.zeros(cells.shape, dtype=np.intp), np.zeros(cells.shape, dtype=bool)
        idx = np.minimum(np.searchsorted(self._cells, cells), self._cells.shape[0] - 1)
        return idx, self._cells[idx] == cells

    def _neighbours(
        self, cells: NDArray[np.int64]
    ) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
        """Sample-weighted RSRP/SINR and summed count of the ring-1 neighbours of each cell."""
        ring = np.zeros((cells.shape[0], 6), dtype=np.int64)  # 0 is no valid cell: pentagon pad
        for i, cell in enumerate(cells.tolist()):
            around = [c for c in h3i.grid_disk(cell, 1) if c != cell]
            ring[i, : len(around)] = around
        idx, hit = self._find(ring.ravel())
        weight = np.where(hit, self._count[idx], 0).reshape(ring.shape).astype(np.float64)
        count = weight.sum(axis=1)
        sinr = self._sinr[idx].reshape(ring.shape)
        rsrp = self._rsrp[idx].reshape(ring.shape)
        rsrp_w = np.where(np.isfinite(rsrp), weight, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sinr_mean = (np.where(weight > 0, sinr, 0.0) * weight).sum(axis=1) / count
            rsrp_mean = (np.nan_to_num(rsrp) * rsrp_w).sum(axis=1) / rsrp_w.sum(axis=1)
        return rsrp_mean, sinr_mean, count.astype(np.int64)

    def sample(
        self,
        lon: ArrayLike,
        lat: ArrayLike,
        t_s: ArrayLike,
        *,
        in_tunnel: ArrayLike | None = None,
        under_bridge: ArrayLike | None = None,
    ) -> Quality:
        """Measured quality at the points (time-invariant; see the module docstring)."""
        lon_a, lat_a, _, tunnel, _ = as_sample_points(lon, lat, t_s, in_tunnel=in_tunnel)
        n = lon_a.shape[0]
        q = Quality.empty(n)
        rsrp, sinr, count = q.rsrp_dbm, q.sinr_db, q.sample_count
        confidence, provenance = q.confidence, q.provenance
        if n == 0 or self._cells.shape[0] == 0:
            return q
        cells = _cells_of(lat_a, lon_a, self.h3_resolution)
        idx, hit = self._find(cells)
        rsrp[hit], sinr[hit], count[hit] = (
            self._rsrp[idx[hit]],
            self._sinr[idx[hit]],
            self._count[idx[hit]],
        )
        confidence[hit] = confidence_from_count(
            count[hit], half_samples=self.confidence_half_samples
        )
        provenance[hit] = Provenance.MEASURED
        miss = ~hit & ~tunnel
        if self.neighbour_fallback and miss.any():
            self._fill_from_neighbours(cells, miss, q)
        return q

    def _fill_from_neighbours(self, cells: NDArray[np.int64], miss: BoolArray, q: Quality) -> None:
        # cheap vectorised pre-check: only cells next to data can get a fallback value
        near = np.minimum(np.searchsorted(self._near, cells), max(self._near.shape[0] - 1, 0))
        miss = miss & (self._near[near] == cells)
        if not miss.any():
            return
        unique, inverse = np.unique(cells[miss], return_inverse=True)
        rsrp_u, sinr_u, count_u = self._neighbours(unique)
        rows = np.flatnonzero(miss)
        found = count_u[inverse] > 0
        rows, pick = rows[found], inverse[found]
        q.rsrp_dbm[rows] = rsrp_u[pick]
        q.sinr_db[rows] = sinr_u[pick]
        q.sample_count[rows] = count_u[pick]
        q.confidence[rows] = _FALLBACK_CONFIDENCE_FACTOR * confidence_from_count(
            count_u[pick], half_samples=self.confidence_half_samples
        )
        q.provenance[rows] = Provenance.MEASURED

    def cell_samples(self, lon: ArrayLike, lat: ArrayLike) -> NDArray[np.int32]:
        """Samples of the cell holding each point (0 where the cell serves no value).

        Examples
        --------
        >>> layer = MeasuredLayer("x", aggregate_records(pd.DataFrame(
        ...     {"lat": [51.9, 51.9], "lon": [-8.4, -8.4], "sinr_db": [3.0, 4.0]})))
        >>> layer.cell_samples([-8.4, 0.0], [51.9, 0.0]).tolist()
        [2, 0]
        >>> layer.cell_samples([], []).tolist()
        []
        """
        lon_a, lat_a, _ = as_points(lon, lat)
        idx, hit = self._find(_cells_of(lat_a, lon_a, self.h3_resolution))
        return np.where(hit, self._count[idx] if hit.size else 0, 0).astype(np.int32)

    def lookup(self, lon: Any, lat: Any) -> pd.DataFrame:
        """Table rows (all statistics, provenance) of the cells holding the points.

        Points in cells without measurements get NaN statistics, ``sample_count`` 0 and
        provenance ``"none"`` (no neighbour fallback here).

        Examples
        --------
        >>> layer = MeasuredLayer("x", aggregate_records(pd.DataFrame(
        ...     {"lat": [51.9], "lon": [-8.4], "sinr_db": [3.0]})))
        >>> layer.lookup([-8.4, 0.0], [51.9, 0.0])["provenance"].tolist()
        ['measured', 'none']
        """
        lon_a, lat_a, _ = as_points(lon, lat)
        cells = [h3i.int_to_str(int(c)) for c in _cells_of(lat_a, lon_a, self.h3_resolution)]
        indexed = self.table.set_index("h3_cell")
        rows = indexed.reindex(cells)
        rows["sample_count"] = rows["sample_count"].fillna(0).astype(np.int64)
        rows["provenance"] = rows["provenance"].fillna("none")
        return rows.reset_index()


class LearnedLayer:
    """A measured network answered by its learned map, anywhere (:mod:`commap.radio.learned`).

    Per point and time: ``outage_prob`` is the learned P(outage) of the network's link KPI(s)
    (:func:`link_kpis`; with RSRP and RSRQ the larger of the two; at the point's time of day
    for a model that weighs it, :attr:`~commap.radio.learned.KpiModel.uses_time_of_day`),
    ``unknown`` where the link model has no record within its unknown radius (the values are
    then the network-wide prior, never the no-signal sentinel), ``sinr_db`` / ``rsrp_dbm`` the
    p50 of the learned SINR / RSRP where the records carry them (else the SINR equivalent of the link KPI's p50, as
    :func:`aggregate_records` derives it, and RSRP NaN), provenance MEASURED where known and
    NONE where unknown, ``confidence = n / (n + k)`` with ``n`` the drives within the finest
    disc and ``k`` the fitted shrinkage of the link model (the weight the estimator gives the
    local evidence), and ``sample_count`` the samples of the point's H3 cell.

    Tunnels: only in-tunnel data counts. A tunnel point whose H3 cell was measured answers with
    that cell's statistics (as :class:`MeasuredLayer`: the link model derives its outage); an
    unmeasured tunnel point is ``unknown`` with the prior (provenance NONE), not dead.

    Parameters
    ----------
    cells : the network's H3 statistics (tunnels, sample counts, exports).
    models : fitted :class:`~commap.radio.learned.KpiModel` per KPI (the link KPIs at least).
    link_kpis : the KPI(s) whose P(outage) is the outage.

    Examples
    --------
    >>> from commap.radio.learned import fit_kpi
    >>> recs = pd.DataFrame({"lat": [51.9] * 4, "lon": [-8.4, -8.4001, -8.4002, -8.4003],
    ...                      "network_id": "x", "drive_id": ["a", "b", "c", "d"],
    ...                      "sinr_db": [5.0, 6.0, -9.0, 7.0]})
    >>> layer = LearnedLayer(MeasuredLayer("x", aggregate_records(recs)),
    ...                      {"sinr_db": fit_kpi(recs, kpi="sinr_db")}, link_kpis=("sinr_db",))
    >>> q = layer.sample([-8.4, 0.0], [51.9, 0.0], 0.0)
    >>> q.unknown.tolist(), q.provenance.tolist(), bool(q.sinr_db[1] > -30.0)
    ([False, True], [2, 0], True)
    >>> bool(0.0 < q.outage_prob[0] < 1.0)
    True
    >>> len(layer.sample([], [], []))
    0
    """

    def __init__(
        self, cells: MeasuredLayer, models: Mapping[str, KpiModel], *, link_kpis: Sequence[str]
    ) -> None:
        missing = [k for k in link_kpis if k not in models]
        if not link_kpis or missing:
            raise InvalidInputError(
                f"learned layer of {cells.network_id}: no model of link KPI "
                f"{missing[0] if missing else '(none given)'}"
            )
        self.network_id = cells.network_id
        self.cells = cells
        self.models = dict(models)
        self.link_kpis = tuple(link_kpis)

    @property
    def table(self) -> pd.DataFrame:
        """The H3 statistics table (see :class:`MeasuredLayer`)."""
        return self.cells.table

    def lookup(self, lon: Any, lat: Any) -> pd.DataFrame:
        """H3 statistics of the cells holding the points (see :meth:`MeasuredLayer.lookup`)."""
        return self.cells.lookup(lon, lat)

    def _prior(self, n: int) -> dict[str, FloatArray]:
        out = {}
        for kpi, model in self.models.items():
            out[kpi] = np.full(n, float(model.prior_quantiles[1]))
        return out

    def sample(
        self,
        lon: ArrayLike,
        lat: ArrayLike,
        t_s: ArrayLike,
        *,
        in_tunnel: ArrayLike | None = None,
        under_bridge: ArrayLike | None = None,
    ) -> Quality:
        """Learned quality at the points at times ``t_s`` (see the class docstring)."""
        lon_a, lat_a, t_a, tunnel, bridge = as_sample_points(
            lon, lat, t_s, in_tunnel=in_tunnel, under_bridge=under_bridge
        )
        n = lon_a.shape[0]
        preds = {kpi: m.predict(lon_a, lat_a, t_a) for kpi, m in self.models.items()}
        p50 = {kpi: p.p50.copy() for kpi, p in preds.items()}
        link = [preds[k] for k in self.link_kpis]
        outage = np.max([p.p_outage for p in link], axis=0) if n else np.zeros(0)
        unknown = np.logical_or.reduce([p.unknown for p in link]) if n else np.zeros(0, bool)
        drives = link[0].n_drives_near
        k = self.models[self.link_kpis[0]].shrink_drives
        confidence = np.where(unknown, 0.0, drives / (drives + k))
        # unmeasured tunnels: the prior, unknown; measured tunnel cells: their own statistics
        hit_tunnel = tunnel & (self.cells.cell_samples(lon_a, lat_a) > 0)
        prior_tunnel = tunnel & ~hit_tunnel
        if prior_tunnel.any():
            prior = self._prior(n)
            for kpi in p50:
                p50[kpi][prior_tunnel] = prior[kpi][prior_tunnel]
            rate = max(float(self.models[k].prior_rate) for k in self.link_kpis)
            outage[prior_tunnel] = np.clip(rate, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)
            unknown[prior_tunnel] = True
            confidence[prior_tunnel] = 0.0
        sinr, rsrp = self._values(p50, n)
        q = Quality(
            rsrp_dbm=rsrp,
            sinr_db=sinr,
            elevation_deg=np.full(n, np.nan),
            confidence=confidence,
            provenance=np.where(unknown, Provenance.NONE, Provenance.MEASURED).astype(np.int8),
            sample_count=self.cells.cell_samples(lon_a, lat_a),
            outage_prob=outage,
            unknown=unknown,
        )
        if hit_tunnel.any():
            rows = np.flatnonzero(hit_tunnel)
            cell = self.cells.sample(
                lon_a[rows],
                lat_a[rows],
                t_a[rows],
                in_tunnel=tunnel[rows],
                under_bridge=bridge[rows],
            )
            for name in ("rsrp_dbm", "sinr_db", "confidence", "provenance", "sample_count"):
                getattr(q, name)[rows] = getattr(cell, name)
            assert q.outage_prob is not None and q.unknown is not None
            q.outage_prob[rows] = np.nan  # the link model judges the cell's statistics
            q.unknown[rows] = False
        return q

    def _values(self, p50: Mapping[str, FloatArray], n: int) -> tuple[FloatArray, FloatArray]:
        """SINR and RSRP at the points from the KPIs' p50 (SINR derived where not learned)."""
        nan = np.full(n, np.nan)
        values = pd.DataFrame({kpi: p50.get(kpi, nan) for kpi in KPI_COLUMNS})
        connected = pd.Series(p50["connected"] >= 0.5) if "connected" in p50 else None
        sinr = _link_sinr_db(values, connected)
        sinr = np.where(np.isfinite(sinr), sinr, NO_SIGNAL_SINR_DB)
        return sinr, p50.get("rsrp_dbm", nan)


class FusedLayer:
    """A modelled layer overridden by measurements where they are dense.

    At each point the measured value is used when the measured layer reports provenance
    MEASURED and knows the point: a learned prediction (a finite ``outage_prob``, not
    ``unknown``: :class:`LearnedLayer`), or an H3 statistic with ``sample_count >=
    dense_min_samples``. Elsewhere (where the learned map is unknown, or the statistics thin)
    the modelled layer's value (with its own provenance, MODELLED) is used. Every field comes
    from one source per point, so provenance, confidence and sample count stay consistent with
    the values.

    Parameters
    ----------
    modelled : any coverage layer of the network (e.g. terrestrial).
    measured : the network's measured layer.
    dense_min_samples : samples a measured value needs to win.

    Examples
    --------
    >>> recs = pd.DataFrame({"lat": [51.9] * 6, "lon": [-8.4] * 6, "sinr_db": [5.0] * 6})
    >>> measured = MeasuredLayer("x", aggregate_records(recs), neighbour_fallback=False)
    >>> fused = FusedLayer(measured, measured, dense_min_samples=7)
    >>> fused.sample([-8.4], [51.9], [0.0]).sample_count.tolist()
    [6]
    >>> len(fused.sample([], [], []))
    0
    """

    def __init__(
        self, modelled: CoverageLayer, measured: CoverageLayer, *, dense_min_samples: int = 5
    ) -> None:
        if dense_min_samples < 1:
            raise InvalidInputError("dense_min_samples must be >= 1", field="dense_min_samples")
        self.modelled = modelled
        self.measured = measured
        self.dense_min_samples = int(dense_min_samples)
        self.network_id = measured.network_id

    def sample(
        self,
        lon: ArrayLike,
        lat: ArrayLike,
        t_s: ArrayLike,
        *,
        in_tunnel: ArrayLike | None = None,
        under_bridge: ArrayLike | None = None,
    ) -> Quality:
        """Measured quality where dense, modelled quality elsewhere."""
        lon_a, lat_a, t_a, tunnel, bridge = as_sample_points(
            lon, lat, t_s, in_tunnel=in_tunnel, under_bridge=under_bridge
        )
        meas = self.measured.sample(lon_a, lat_a, t_a, in_tunnel=tunnel, under_bridge=bridge)
        assert meas.outage_prob is not None and meas.unknown is not None
        learned = np.isfinite(meas.outage_prob)
        dense = (
            (meas.provenance == Provenance.MEASURED)
            & ~meas.unknown
            & (learned | (meas.sample_count >= self.dense_min_samples))
        )
        rest = np.flatnonzero(~dense)
        if rest.size == 0:
            return meas
        # the modelled layer only runs where measurements do not decide
        mod = self.modelled.sample(
            lon_a[rest], lat_a[rest], t_a[rest], in_tunnel=tunnel[rest], under_bridge=bridge[rest]
        )
        fields = (
            "rsrp_dbm",
            "sinr_db",
            "elevation_deg",
            "confidence",
            "provenance",
            "sample_count",
            "outage_prob",
            "unknown",
        )
        merged = {}
        for name in fields:
            values = getattr(meas, name).copy()
            values[rest] = getattr(mod, name)
            merged[name] = values
        return Quality(**merged)


# ---------------------------------------------------------------------------------------------
# map-spec support
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    format: str
    files: tuple[str, ...]
    h3_resolution: int
    min_samples: int
    confidence_half_samples: float
    neighbour_fallback: bool
    dense_min_samples: int
    raw: Mapping[str, Any]


def _spec(network: Network, spec: Mapping[str, Any], where: str) -> _Spec:
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise InvalidInputError(
            f"network {network.id}: {where}: unknown key {unknown[0]!r}; known keys: "
            f"{', '.join(sorted(_SPEC_KEYS))}",
            field=f"{where}.{unknown[0]}",
        )
    if spec.get("type", "measured") != "measured":
        raise InvalidInputError(f"network {network.id}: {where}: type must be 'measured'")
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise InvalidInputError(
            f"network {network.id}: {where}: format {fmt!r} must be one of {', '.join(FORMATS)}",
            field=f"{where}.format",
        )
    wrong = sorted(k for k, formats in _FORMAT_KEYS.items() if k in spec and fmt not in formats)
    if wrong:
        raise InvalidInputError(
            f"network {network.id}: {where}: key {wrong[0]!r} does not apply to format {fmt!r}",
            field=f"{where}.{wrong[0]}",
        )
    files = spec.get("files")
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise InvalidInputError(
            f"network {network.id}: {where}: files must be a non-empty list of file names",
            field=f"{where}.files",
        )
    try:
        return _Spec(
            format=str(fmt),
            files=tuple(files),
            h3_resolution=_check_resolution(spec.get("h3_resolution", DEFAULT_H3_RESOLUTION)),
            min_samples=_positive_int(spec.get("min_samples", 1), "min_samples"),
            confidence_half_samples=float(spec.get("confidence_half_samples", 5.0)),
            neighbour_fallback=bool(spec.get("neighbour_fallback", True)),
            dense_min_samples=_positive_int(spec.get("dense_min_samples", 5), "dense_min_samples"),
            raw=spec,
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"network {network.id}: {where}: {exc}", field=exc.field) from None


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1", field=name)
    return value


def _source_paths(network: Network, spec: _Spec, ctx: LayerContext) -> list[Path]:
    paths = []
    for name in spec.files:
        path = ctx.source_dir / name
        if not path.exists():
            raise InvalidInputError(f"network {network.id}: measured file {name} does not exist")
        if path.is_dir() and spec.format != "records":
            raise InvalidInputError(f"network {network.id}: {name} is a directory (records only)")
        paths.append(path)
    return paths


def _in_time_window(records: pd.DataFrame, raw: Mapping[str, Any]) -> NDArray[np.bool_]:
    t_s = records["timestamp"].astype("int64").to_numpy() / 1e9
    keep = np.ones(len(records), dtype=bool)
    if "start" in raw:
        keep &= t_s >= parse_time(raw["start"], field="start")
    if "end" in raw:
        keep &= t_s < parse_time(raw["end"], field="end")
    return keep


def _read_records(network: Network, spec: _Spec, paths: Sequence[Path]) -> pd.DataFrame:
    raw = spec.raw
    frames = []
    for path in paths:
        if spec.format == "gnettrack":
            modes = raw.get("network_modes")
            frames.append(
                read_gnettrack(
                    path,
                    network_id=network.id,
                    utc_offset_h=float(raw.get("utc_offset_h", 0.0)),
                    network_modes=None if modes is None else [str(m) for m in modes],
                )
            )
        else:
            frames.append(read_records(path))
    return pd.concat(frames, ignore_index=True)


class _Ingest:
    """Counts, per quality field, the records used and the records dropped by reason.

    A row dropped by a filter counts against every field it had a value in; a kept row without
    a value counts as ``nan`` for that field.
    """

    def __init__(self, records: pd.DataFrame) -> None:
        self.fields = [c for c in QUALITY_COLUMNS if c in records]
        self.dropped: dict[str, dict[str, int]] = {f: {} for f in self.fields}

    def keep(self, records: pd.DataFrame, keep: Any, reason: str) -> pd.DataFrame:
        mask = np.asarray(keep, dtype=bool)
        for f in self.fields:
            n = int((~mask & records[f].notna().to_numpy()).sum())
            if n:
                self.dropped[f][reason] = self.dropped[f].get(reason, 0) + n
        return records[mask]

    def report(self, records: pd.DataFrame) -> dict[str, dict[str, Any]]:
        out = {}
        for f in self.fields:
            has = records[f].notna().to_numpy()
            dropped = dict(self.dropped[f])
            if (~has).any():
                dropped["nan"] = int((~has).sum())
            out[f] = {"used": int(has.sum()), "dropped": dropped}
        return out


def _filter_records(
    network: Network, spec: _Spec, records: pd.DataFrame, bbox: tuple[float, float, float, float]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The records a network's table is built from, and the ingest report (see :class:`_Ingest`)."""
    raw = spec.raw
    ingest = _Ingest(records)
    wanted = str(raw.get("network_id", network.id))
    if spec.format == "records":
        found = sorted(set(records["network_id"]))
        records = ingest.keep(records, records["network_id"] == wanted, "wrong_network_id")
        if len(records) == 0:
            raise InvalidInputError(
                f"network {network.id}: no records of network {wanted!r} "
                f"(found: {', '.join(found)})"
            )
    records = ingest.keep(records, _in_time_window(records, raw), "out_of_time_window")
    lon0, lat0, lon1, lat1 = bbox
    lat, lon = records["lat"], records["lon"]
    inside = (lon >= lon0) & (lon <= lon1) & (lat >= lat0) & (lat <= lat1)
    records = ingest.keep(records, inside, "out_of_bbox")
    return records, ingest.report(records)


def _inside(df: pd.DataFrame, bbox: tuple[float, float, float, float]) -> pd.DataFrame:
    lon0, lat0, lon1, lat1 = bbox
    lat, lon = df["lat"], df["lon"]
    return df[(lon >= lon0) & (lon <= lon1) & (lat >= lat0) & (lat <= lat1)]


@dataclass(frozen=True, eq=False)
class LayerRecords:
    """The measurement records a measured layer (or overlay) is made of.

    Attributes
    ----------
    network_id : the map's network (``network_id`` of every record, whatever the source named).
    records : the records inside the map's bbox and time window, with the learned map's column
        names (:func:`commap.radio.learned.normalise_records`); for a grid, one record per grid
        square at its centre with the square's median RSRP and median downlink rate.
    gridded : the records are grid squares (no drives, no times).
    grid : the grid squares inside the bbox with all their statistics (grids only), which the
        H3 table is aggregated from.
    ingest : per quality field, the records used and dropped by reason (drive records only).
    """

    network_id: str
    records: pd.DataFrame
    gridded: bool
    grid: pd.DataFrame | None = None
    ingest: Mapping[str, dict[str, Any]] = field(default_factory=dict)


def _grid_records(network_id: str, grid: pd.DataFrame, min_samples: int) -> pd.DataFrame:
    """One record per grid square at its centre, with its median RSRP and downlink rate.

    The grid's SINR is a Shannon inversion of the rate, not a measurement: left out.
    """
    grid = grid[grid["sample_count"] >= min_samples]
    return pd.DataFrame(
        {
            "lon": grid["lon"].to_numpy(np.float64),
            "lat": grid["lat"].to_numpy(np.float64),
            "network_id": network_id,
            "rsrp_dbm": grid["rsrp_dbm_median"].to_numpy(np.float64),
            "throughput_dl_mbps": grid["throughput_dl_mbps_median"].to_numpy(np.float64),
            "sample_count": grid["sample_count"].to_numpy(np.int64),
        }
    )


def read_layer_records(
    network: Network, spec: Mapping[str, Any], ctx: LayerContext, *, where: str = "layer"
) -> LayerRecords:
    """Read the records a measured layer spec names (records, G-NetTrack or grid files).

    The one reader of measured sources: the map build (:func:`prepare_layer`,
    :func:`prepare_measured`) and the learned-map validation (:mod:`commap.map.validate`)
    both call it. Files are relative to ``ctx.source_dir``; records outside ``ctx.bbox`` or
    the spec's time window, and (records format) rows of other networks are dropped.

    Parameters
    ----------
    network : the map's network.
    spec : the ``[networks.layer]`` or ``[networks.measured]`` table.
    ctx : source directory and bbox.
    where : ``"layer"`` or ``"measured"`` (for messages).

    Raises
    ------
    InvalidInputError
        Bad spec, missing file, no records inside the bbox and time window, records that feed
        no quality value.
    """
    parsed = _spec(network, spec, where)
    paths = _source_paths(network, parsed, ctx)
    raw = parsed.raw
    if parsed.format == "grid":
        grid = read_indianapolis_grid(
            paths,
            bandwidth_mhz=float(raw.get("bandwidth_mhz", 20.0)),
            grid_deg=float(raw.get("grid_deg", 0.0005)),
            rss_rat=str(raw.get("rss_rat", "lte")),
            min_cell_share=float(raw.get("min_cell_share", 0.05)),
        )
        grid = _inside(grid, ctx.bbox).reset_index(drop=True)
        records = _grid_records(network.id, grid, parsed.min_samples)
        return LayerRecords(network.id, normalise_records(records), True, grid=grid)
    records, ingest = _filter_records(
        network, parsed, _read_records(network, parsed, paths), ctx.bbox
    )
    if len(records) == 0:
        dropped = next(iter(ingest.values()))["dropped"] if ingest else {}
        raise InvalidInputError(
            f"network {network.id}: no measurements inside the map bbox {list(ctx.bbox)} "
            f"and time window (records of {', '.join(parsed.files)} dropped: {dropped})"
        )
    if not any(counts["used"] for counts in ingest.values()):
        raise InvalidInputError(
            f"network {network.id}: the records of {', '.join(parsed.files)} feed no quality "
            f"value (every {', '.join(ingest)} value is missing: {ingest})"
        )
    records = normalise_records(records.assign(network_id=network.id).reset_index(drop=True))
    return LayerRecords(network.id, records, False, ingest=ingest)


def _build_table(spec: _Spec, source: LayerRecords, ctx: LayerContext) -> pd.DataFrame:
    if source.grid is not None:
        grid_deg = float(spec.raw.get("grid_deg", 0.0005))
        table = aggregate_grid(source.grid, h3_resolution=spec.h3_resolution, grid_deg=grid_deg)
    else:
        table = aggregate_records(source.records, h3_resolution=spec.h3_resolution)
    # no bbox filter on the cells: a cell at the edge holds data measured inside the bbox
    table = table[table["sample_count"] >= spec.min_samples].reset_index(drop=True)
    if len(table) == 0:
        raise InvalidInputError(
            f"network {source.network_id}: no measurements inside the map bbox {list(ctx.bbox)}"
        )
    return table


def _write_table(table: pd.DataFrame, path: Path) -> None:
    """Write the table as GeoParquet (cell centres as points), atomically."""
    import geopandas as gpd

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame(
        table, geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs="EPSG:4326"
    )
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


# the KPI whose outage a measured layer predicts, by preference (see the module docstring)
LINK_KPIS: tuple[tuple[str, ...], ...] = (
    ("sinr_db",),
    ("throughput_dl_mbps",),
    ("rsrp_dbm", "rsrq_db"),
    ("connected",),
)
# KPIs fitted for the values a layer answers besides the outage (p50 of SINR and RSRP)
_VALUE_KPIS = ("sinr_db", "rsrp_dbm")


def link_kpis(records: pd.DataFrame) -> tuple[str, ...]:
    """The KPI(s) whose outage the learned layer predicts: the first of :data:`LINK_KPIS` present.

    SINR is what radio link monitoring judges; a downlink rate says whether the link carries
    data; RSRP with RSRQ (either failing is an outage) how strong and how clean the serving
    cell was. The ``connected`` flag decides only when the records carry none of these: a
    record that lost the network is already an outage of every other KPI's model (it reads as
    no signal, see :func:`fit_layer_models`), so it is folded in, not chosen over them.

    Raises
    ------
    InvalidInputError
        The records carry none of them.

    Examples
    --------
    >>> link_kpis(pd.DataFrame({"rsrp_dbm": [-90.0], "throughput_dl_mbps": [3.0]}))
    ('throughput_dl_mbps',)
    >>> link_kpis(pd.DataFrame({"rsrp_dbm": [-90.0], "rsrq_db": [-9.0], "sinr_db": [None],
    ...                         "connected": [1.0]}))
    ('rsrp_dbm', 'rsrq_db')
    >>> link_kpis(pd.DataFrame({"rtt_ms": [20.0]}))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: records carry none of sinr_db, throughput_dl_mbps, rsrp_dbm, rsrq_db, connected
    """
    for group in LINK_KPIS:
        present = tuple(k for k in group if k in records and records[k].notna().any())
        if present:
            return present
    names = ", ".join(k for group in LINK_KPIS for k in group)
    raise InvalidInputError(f"records carry none of {names}")


def _lost_as_no_signal(records: pd.DataFrame) -> pd.DataFrame:
    """Records where the UE had lost the network read as no signal (as :func:`aggregate_records`)."""
    if "connected" not in records:
        return records
    lost = np.asarray(records["connected"] == 0.0, dtype=bool)
    if not lost.any():
        return records
    out = records.copy()
    for name in KPI_COLUMNS:
        if name in out:
            out[name] = out[name].astype(np.float64).mask(lost, _NO_SIGNAL.get(name, np.nan))
    return out


def fit_layer_models(source: LayerRecords) -> tuple[tuple[str, ...], LearnedNetwork]:
    """Fit the learned map of a measured network: its link KPI(s) and its SINR and RSRP.

    Records taken while the UE had lost the network count as no signal. Returns the link
    KPI(s) (:func:`link_kpis`) and the fitted models.

    Raises
    ------
    InvalidInputError
        The records carry no link KPI.
    """
    records = _lost_as_no_signal(source.records)
    link = link_kpis(records)
    wanted = [*link, *(k for k in _VALUE_KPIS if k not in link)]
    kpis = [k for k in wanted if k in records and records[k].notna().any()]
    return link, fit_network(records, source.network_id, kpis=kpis)


def _write_models(learned: LearnedNetwork, folder: str, built_dir: Path) -> dict[str, str]:
    files = {}
    for kpi, model in learned.models.items():
        rel = f"{folder}/{kpi}.npz"
        (built_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        model.write(built_dir / rel)
        files[kpi] = rel
    return files


def _prepare(
    network: Network,
    spec: Mapping[str, Any],
    ctx: LayerContext,
    *,
    where: str,
    table_name: str,
    models_dir: str,
) -> dict[str, Any]:
    parsed = _spec(network, spec, where)
    source = read_layer_records(network, spec, ctx, where=where)
    table = _build_table(parsed, source, ctx)
    _write_table(table, ctx.built_dir / table_name)
    link, learned = fit_layer_models(source)
    models = _write_models(learned, models_dir, ctx.built_dir)
    samples = int(table["sample_count"].sum())
    log.info(
        "network %s: %s measurements -> %d H3 cells (res %d), %d samples; learned %s "
        "(outage of %s)",
        network.id,
        parsed.format,
        len(table),
        parsed.h3_resolution,
        samples,
        ", ".join(models),
        " or ".join(link),
    )
    prepared: dict[str, Any] = {
        "type": "measured",
        "format": parsed.format,
        "table": table_name,
        "h3_resolution": parsed.h3_resolution,
        "confidence_half_samples": parsed.confidence_half_samples,
        "neighbour_fallback": parsed.neighbour_fallback,
        "cells": len(table),
        "samples": samples,
        "sources": list(parsed.files),
        "learned": {
            "link_kpis": list(link),
            "models": models,
            "outage": {k: str(learned.models[k].outage) for k in link},
        },
    }
    if source.ingest:  # records and drive tests: per field, records used and dropped by reason
        prepared["ingest"] = dict(source.ingest)
    for key in ("attribution", "description"):
        if key in spec:
            prepared[key] = str(spec[key])
    return prepared


def prepare_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> dict[str, Any]:
    """Aggregate a network's measurements into ``measured/<id>.parquet`` and fit its learned
    map into ``learned/<id>/<kpi>.npz`` (build time).

    Raises
    ------
    InvalidInputError
        Bad spec key or value, missing or bad source file, nothing inside the map bbox.
    """
    return _prepare(
        network,
        spec,
        ctx,
        where="layer",
        table_name=f"measured/{network.id}.parquet",
        models_dir=f"learned/{network.id}",
    )


def load_layer(
    network: Network, spec: Mapping[str, Any], ctx: LayerContext
) -> MeasuredLayer | LearnedLayer:
    """Load the measured layer prepared by :func:`prepare_layer` (load time).

    A layer built with learned models (every build of today) answers with them
    (:class:`LearnedLayer`); a layer of an older build with its H3 statistics alone.
    """
    if "table" not in spec:
        raise InvalidInputError(
            f"network {network.id}: measured layer spec has no table (not built?)"
        )
    try:
        options = {
            "h3_resolution": int(spec.get("h3_resolution", DEFAULT_H3_RESOLUTION)),
            "confidence_half_samples": float(spec.get("confidence_half_samples", 5.0)),
            "neighbour_fallback": bool(spec.get("neighbour_fallback", True)),
        }
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"network {network.id}: bad measured layer spec ({exc})") from None
    cells = MeasuredLayer.read(ctx.built_dir / str(spec["table"]), network.id, **options)
    learned = spec.get("learned")
    if not learned:
        return cells
    try:
        link = tuple(str(k) for k in learned["link_kpis"])
        files = {str(k): str(v) for k, v in learned["models"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"network {network.id}: bad learned-model entry ({exc})") from None
    models = {kpi: KpiModel.read(ctx.built_dir / rel) for kpi, rel in files.items()}
    return LearnedLayer(cells, models, link_kpis=link)


def prepare_measured(
    network: Network, measured_spec: Mapping[str, Any], ctx: LayerContext
) -> dict[str, Any]:
    """Prepare a ``[networks.measured]`` table that overrides a modelled layer (build time).

    Writes ``measured/<id>.fused.parquet`` and ``learned/<id>.fused/<kpi>.npz``; the returned
    spec keeps ``dense_min_samples``.
    """
    prepared = _prepare(
        network,
        measured_spec,
        ctx,
        where="measured",
        table_name=f"measured/{network.id}.fused.parquet",
        models_dir=f"learned/{network.id}.fused",
    )
    prepared["dense_min_samples"] = _spec(network, measured_spec, "measured").dense_min_samples
    return prepared


def load_fused_layer(
    network: Network, layer: CoverageLayer, measured_spec: Mapping[str, Any], ctx: LayerContext
) -> CoverageLayer:
    """Wrap a network's modelled ``layer`` with its prepared measured table (load time)."""
    measured = load_layer(network, measured_spec, ctx)
    dense = measured_spec.get("dense_min_samples", 5)
    if isinstance(dense, bool) or not isinstance(dense, int):
        raise InvalidInputError(f"network {network.id}: dense_min_samples must be an integer")
    return FusedLayer(layer, measured, dense_min_samples=dense)
