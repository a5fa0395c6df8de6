"""A multi-network drive on a one-second grid: per second and network, outage and signal.

A *multi-network drive* is a drive on which several networks were measured at the same time
(one modem per operator; e.g. the Hamburg - Bremen drive tests, three operators' LTE every
second). :func:`drive_seconds` puts its records on a one-second grid: per second and network
the network's record of that second (a record is held for up to ``hold_s`` seconds over
logging gaps; seconds where a network has no record even then are not scored), and whether
that second is an **outage second** of the network (:data:`OUTAGE_RULES`: SINR below Qout,
RSRP below -115 dBm, RSRQ below -16 dB, a downlink rate of at most 0.5 Mbit/s, or no serving
cell at all; the rules of :data:`commap.radio.learned.KPIS`), and the value a signal-based rule
ranks networks by (RSRP, else SINR, else downlink rate in dB, 10 log10 Mbit/s; ``-inf`` in an
outage second).

Examples
--------
>>> t = pd.to_datetime([0, 1, 2], unit="s", utc=True)
>>> records = pd.DataFrame({"timestamp": list(t) * 2, "lon": [8.8] * 6, "lat": [53.0] * 6,
...                         "network_id": ["a"] * 3 + ["b"] * 3,
...                         "rsrp_dbm": [-90.0, -120.0, -90.0, -100.0, -100.0, -100.0]})
>>> s = drive_seconds(records)
>>> s.network_ids, s.outage.sum(axis=0).tolist()
(('a', 'b'), [1, 0])
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.radio.learned import KPIS, OutageRule, normalise_records

__all__ = ["OUTAGE_RULES", "DriveSeconds", "drive_seconds"]

log = logging.getLogger(__name__)

# the outage second of a network: any of these rules holds for its record of that second
OUTAGE_RULES: dict[str, OutageRule] = {
    kpi: KPIS[kpi].outage
    for kpi in ("sinr_db", "rsrp_dbm", "rsrq_db", "throughput_dl_mbps", "connected")
}
# the value a signal rule ranks networks by (higher is better): the first present
_RANK_KPIS = ("rsrp_dbm", "sinr_db", "throughput_dl_mbps")


def _rank_value(kpi: str, values: FloatArray) -> FloatArray:
    """A KPI as a rank value in dB: a rate as 10 log10 of Mbit/s, so that a hysteresis in dB
    (3 dB: twice the rate) means the same on every drive, not 3 Mbit/s at 2 and at 200.

    >>> _rank_value("throughput_dl_mbps", np.array([2.0, 200.0, 0.0])).round(1).tolist()
    [3.0, 23.0, -inf]
    """
    if kpi != "throughput_dl_mbps":
        return values
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(values, 0.0))


@dataclass(frozen=True, eq=False)
class DriveSeconds:
    """A multi-network drive on a one-second grid (``n`` scored seconds, ``k`` networks).

    Attributes
    ----------
    network_ids : the networks, in column order.
    t_s : epoch seconds.
    lon, lat : position of each second (WGS84 degrees).
    piece : leg of each second (a new leg at a drive change or a pause over ``max_gap_s``).
    outage : ``(n, k)``, the network's record fails an outage rule.
    rank : ``(n, k)``, the value the reactive rule compares (higher is better; NaN unknown).
    unscored_s : seconds dropped because a network had no record.
    """

    network_ids: tuple[str, ...]
    t_s: FloatArray
    lon: FloatArray
    lat: FloatArray
    piece: IntArray
    outage: BoolArray
    rank: FloatArray
    unscored_s: int = 0

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    def columns(self, network_ids: Sequence[str]) -> DriveSeconds:
        """The same seconds with only ``network_ids`` (in that order).

        Examples
        --------
        >>> out = np.array([[True, False, False]])
        >>> s = DriveSeconds(("a", "b", "c"), np.zeros(1), np.zeros(1), np.zeros(1),
        ...                  np.zeros(1, np.int64), out, np.zeros((1, 3)))
        >>> s.columns(["c", "a"]).outage.tolist()
        [[False, True]]
        """
        cols = [self.network_ids.index(n) for n in network_ids]
        return replace(
            self,
            network_ids=tuple(network_ids),
            outage=self.outage[:, cols],
            rank=self.rank[:, cols],
        )

    def pieces(self) -> list[slice]:
        """Index ranges of the legs, in time order."""
        if len(self) == 0:
            return []
        edges = np.flatnonzero(np.diff(self.piece)) + 1
        bounds = np.concatenate(([0], edges, [len(self)]))
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


def _epoch_s(timestamps: pd.Series) -> FloatArray:
    t = pd.to_datetime(timestamps, utc=True)
    return np.asarray((t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1), dtype=np.float64)


def drive_seconds(
    records: pd.DataFrame,
    *,
    network_ids: Sequence[str] | None = None,
    hold_s: int = 2,
    max_gap_s: float = 30.0,
) -> DriveSeconds:
    """Put a multi-network drive's records on a one-second grid (see the module docstring).

    Parameters
    ----------
    records : measurement records (``timestamp``, ``lon``, ``lat``, ``network_id``, KPIs;
        ``drive_id`` optional) of several networks measured at the same time.
    network_ids : the networks to score (default: every network of the records, sorted).
    hold_s : a network's record stands for up to this many following seconds without one.
    max_gap_s : a pause longer than this starts a new leg.

    Raises
    ------
    InvalidInputError
        No timestamps, fewer than two networks, a named network without records, or no second
        at which every network has a record.
    """
    recs = normalise_records(records)
    if "timestamp" not in recs or len(recs) == 0:
        raise InvalidInputError("a multi-network drive needs timestamped records", field="drive")
    found = sorted(pd.unique(recs["network_id"].astype(str)))
    ids = tuple(network_ids) if network_ids else tuple(found)
    missing = [n for n in ids if n not in found]
    if missing:
        raise InvalidInputError(
            f"network {missing[0]} has no record in the drive (found: {', '.join(found)})",
            field="network_ids",
        )
    if len(ids) < 2:
        raise InvalidInputError("a multi-network drive needs at least two networks", field="drive")
    recs = recs[recs["network_id"].astype(str).isin(ids)].copy()
    recs["second"] = np.floor(_epoch_s(recs["timestamp"])).astype(np.int64)
    recs = recs.sort_values(["second", "network_id"], kind="stable")
    grid = np.unique(recs["second"].to_numpy())
    drive = (
        recs.drop_duplicates("second").set_index("second")["drive_id"].astype(str).reindex(grid)
        if "drive_id" in recs
        else pd.Series("", index=grid)
    )
    new_piece = np.r_[
        True, (np.diff(grid) > max_gap_s) | (drive.to_numpy()[1:] != drive.to_numpy()[:-1])
    ]
    piece = np.cumsum(new_piece) - 1
    n, k = grid.size, len(ids)
    outage = np.zeros((n, k), dtype=bool)
    rank = np.full((n, k), np.nan)
    seen = np.zeros((n, k), dtype=bool)
    lon = np.zeros(n)
    lat = np.zeros(n)
    weight = np.zeros(n)
    for j, nid in enumerate(ids):
        rows = recs[recs["network_id"].astype(str) == nid].drop_duplicates("second")
        rows = rows.set_index("second").reindex(grid)
        rows["piece"] = piece
        has = rows["lon"].notna().to_numpy()
        lon += np.where(has, rows["lon"].fillna(0.0).to_numpy(), 0.0)
        lat += np.where(has, rows["lat"].fillna(0.0).to_numpy(), 0.0)
        weight += has
        held = rows.groupby("piece", sort=False).ffill(limit=hold_s)
        seen[:, j] = held["lon"].notna().to_numpy()
        for kpi, rule in OUTAGE_RULES.items():
            if kpi in held:
                outage[:, j] |= np.nan_to_num(rule(held[kpi].to_numpy(np.float64)), nan=0.0) > 0
        for kpi in _RANK_KPIS:
            if kpi in held and held[kpi].notna().any():
                rank[:, j] = _rank_value(kpi, held[kpi].to_numpy(np.float64))
                break
    keep = seen.all(axis=1)
    if not keep.any():
        raise InvalidInputError(
            f"no second at which every network ({', '.join(ids)}) has a record", field="drive"
        )
    rank = np.where(outage, -np.inf, rank)
    _, piece_codes = np.unique(piece[keep], return_inverse=True)
    result = DriveSeconds(
        network_ids=ids,
        t_s=grid[keep].astype(np.float64),
        lon=lon[keep] / weight[keep],
        lat=lat[keep] / weight[keep],
        piece=piece_codes.astype(np.int64),
        outage=outage[keep],
        rank=rank[keep],
        unscored_s=int((~keep).sum()),
    )
    log.info(
        "multi-network drive: %d seconds scored in %d legs, %d not (a network without a record)",
        len(result),
        len(result.pieces()),
        result.unscored_s,
    )
    return result
