"""Fleet measurements fused into one measured layer per network, refreshed incrementally.

A map serves its fleet's measurements as :class:`~commap.radio.layers.measured.MeasuredLayer`
statistics per H3 cell (p10 / median / p90 of every KPI, connected share, link SINR), over
the map's own layers (:func:`commap.service.drive_session.with_measured_layers`).
:class:`FleetFusion` keeps them up to date with a :class:`~commap.map.store.FleetStore` at a
cost that grows with the new batches, not with what is stored:

1. only the parts of batches stored since the last refresh are read (the store's batch ids
   sort by arrival), one task per part: :func:`part_values`, each record's H3 cell and values
   (:func:`~commap.radio.layers.measured.record_values`), run in-process or on a dask cluster
   (:class:`~commap.map.executors.TaskRunner`: the per-partition aggregation, where the time
   goes);
2. the rows are added to the network's :class:`~commap.radio.layers.cell_samples.CellSamples`
   (every record's cell and values, kept between refreshes: quantiles need the values);
3. only the cells the new records fall in are computed again, from all their rows
   (:func:`~commap.radio.layers.measured.cell_statistics`), and replace their rows in the
   layer (:meth:`~commap.radio.layers.measured.MeasuredLayer.updated`: neighbour rings are
   added for new cells only).

The layers equal those of a full aggregation of every stored record
(:func:`~commap.radio.layers.measured.aggregate_records`), bit for bit: a cell's statistics
depend only on its own rows, taken in the same (arrival) order.

Examples
--------
>>> import pandas as pd
>>> store = FleetStore("memory://doc-fusion")
>>> rec = pd.DataFrame({"timestamp": [pd.Timestamp("2025-01-20T10:00:00Z")] * 2,
...                     "lat": [42.5, 42.5], "lon": [1.52, 1.52], "network_id": "ad-lte",
...                     "sinr_db": [4.0, 8.0]})
>>> _ = store.append("doc", rec)
>>> fusion = FleetFusion(store, "doc", ["ad-lte"])
>>> fusion.refresh().new_records, fusion.layers["ad-lte"].table["sinr_db_median"].tolist()
(2, [6.0])
>>> _ = store.append("doc", rec.assign(sinr_db=[10.0, 10.0]))
>>> update = fusion.refresh()
>>> update.new_records, update.touched_cells, fusion.record_count
(2, 1, 4)
>>> fusion.layers["ad-lte"].table["sinr_db_median"].tolist()
[9.0]
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from commap.map.executors import TaskRunner
from commap.map.store import FleetStore, Part
from commap.radio.layers.cell_samples import CellSamples
from commap.radio.layers.measured import (
    DEFAULT_H3_RESOLUTION,
    VALUE_COLUMNS,
    MeasuredLayer,
    aggregate_records,
    cell_statistics,
    finish_cell_table,
    record_values,
)
from commap.radio.measurements import KPI_COLUMNS, empty_records
from commap.radio.quality import FloatArray

__all__ = ["FleetFusion", "FleetUpdate", "PartParams", "PartValues", "part_values"]

log = logging.getLogger(__name__)

# the record columns the layers are computed from (record_values): the rest is not read
_VALUE_SOURCES = ("lat", "lon", *KPI_COLUMNS, "connected")


@dataclass(frozen=True)
class PartParams:
    """What :func:`part_values` needs besides the part (sent to every worker once per run)."""

    store_url: str
    h3_resolution: int = DEFAULT_H3_RESOLUTION
    set_aside_unreadable: bool = True


@dataclass(frozen=True)
class PartValues:
    """Some parts' records (of one network) as (cell, values) rows, in record order."""

    network_id: str
    cells: NDArray[np.int64]
    values: FloatArray


def part_values(parts: tuple[Part, ...], params: PartParams) -> PartValues:
    """Read some parts of one network and give each record's H3 cell and values.

    The per-partition aggregation of a refresh: a pure function of the part files, so it runs
    alike in-process and on dask workers (which must reach the store: a shared path or an
    object-storage URL, not ``memory://``). Parts that cannot be read are set aside (as
    ``params`` says) and give no rows. Several parts per task: each costs milliseconds of
    fixed work, which a refresh of many small parts would otherwise pay per part.
    """
    records = FleetStore(params.store_url).read_parts(
        parts, columns=_VALUE_SOURCES, set_aside_unreadable=params.set_aside_unreadable
    )
    cells, values = record_values(records, h3_resolution=params.h3_resolution)
    return PartValues(parts[0].network_id, cells, values)


def _tasks(parts: list[Part], workers: int) -> list[tuple[Part, ...]]:
    """The parts split into tasks: per network, ``workers`` runs of consecutive parts.

    Examples
    --------
    >>> p = [Part(f"p{i}", n, "d", "b", i, 4) for i, n in enumerate("aaab")]
    >>> [[x.path for x in task] for task in _tasks(p, 2)]
    [['p0', 'p1'], ['p2'], ['p3']]
    """
    by_network: dict[str, list[Part]] = {}
    for part in parts:
        by_network.setdefault(part.network_id, []).append(part)
    tasks = []
    for nid in sorted(by_network):
        group = by_network[nid]
        for chunk in np.array_split(np.arange(len(group)), min(workers, len(group))):
            tasks.append(tuple(group[i] for i in chunk))
    return tasks


@dataclass(frozen=True)
class FleetUpdate:
    """What one :meth:`FleetFusion.refresh` took in."""

    new_records: int
    new_parts: int
    touched_cells: int  # cells whose statistics were computed again, all networks
    networks: tuple[str, ...]  # networks whose layer changed


@dataclass
class _Network:
    samples: CellSamples
    layer: MeasuredLayer


@dataclass
class FleetFusion:
    """The measured layers of a map's stored fleet records, refreshed incrementally.

    Parameters
    ----------
    store : the fleet store.
    map_name : the map whose records are fused.
    known_networks : the map's networks; parts of other networks are skipped (kept stored).
    h3_resolution : resolution of the layers' cells.
    """

    store: FleetStore
    map_name: str
    known_networks: Collection[str]
    h3_resolution: int = DEFAULT_H3_RESOLUTION
    last_batch_id: str | None = None  # the newest batch fused in
    record_count: int = 0  # records fused in, all networks
    _networks: dict[str, _Network] = field(default_factory=dict, repr=False)

    @property
    def layers(self) -> dict[str, MeasuredLayer]:
        """One layer per network with fused records, by network id (sorted)."""
        return {nid: self._networks[nid].layer for nid in sorted(self._networks)}

    @property
    def samples_nbytes(self) -> int:
        """Bytes of the per-record rows kept between refreshes."""
        return sum(n.samples.nbytes for n in self._networks.values())

    def _new_parts(self, until: str | None) -> tuple[list[Part], str | None]:
        """The parts of the map's networks stored since the last refresh; the newest batch."""
        last = self.last_batch_id
        parts = [
            p
            for p in self.store.parts(self.map_name)
            if (last is None or p.batch_id > last) and (until is None or p.batch_id <= until)
        ]
        known = set(self.known_networks)
        skipped = [p for p in parts if p.network_id not in known]
        if skipped:
            log.warning(
                "map %s: %d stored parts name networks the map does not have (%s): skipped",
                self.map_name,
                len(skipped),
                ", ".join(sorted({p.network_id for p in skipped})),
            )
        newest = parts[-1].batch_id if parts else last
        return [p for p in parts if p.network_id in known], newest

    def refresh(
        self,
        *,
        until: str | None = None,
        runner: TaskRunner | None = None,
        set_aside_unreadable: bool = True,
    ) -> FleetUpdate:
        """Fuse in the batches stored since the last refresh (all at the first).

        Parameters
        ----------
        until : a batch id: leave later batches for the next refresh; None: every batch.
        runner : where the per-part work runs (default: in-process).
        set_aside_unreadable : rename an unreadable part ``*.unreadable`` and go on; False:
            raise :class:`~commap.errors.InvalidInputError`.
        """
        parts, newest = self._new_parts(until)
        params = PartParams(self.store.url, self.h3_resolution, set_aside_unreadable)
        runner = runner or TaskRunner()
        by_network: dict[str, list[PartValues]] = {}
        for result in runner.map(part_values, _tasks(parts, runner.workers), params):
            if len(result.cells):  # in batch order: records keep their arrival order
                by_network.setdefault(result.network_id, []).append(result)
        new_records = touched = 0
        for nid, found in sorted(by_network.items()):
            cells = np.concatenate([r.cells for r in found])
            values = np.concatenate([r.values for r in found])
            touched += self._add(nid, cells, values)
            new_records += cells.shape[0]
        self.record_count += new_records
        self.last_batch_id = newest
        return FleetUpdate(new_records, len(parts), touched, tuple(sorted(by_network)))

    def _add(self, network_id: str, cells: NDArray[np.int64], values: FloatArray) -> int:
        """Add one network's new rows; recompute the cells they fall in. Returns that count."""
        state = self._networks.get(network_id)
        if state is None:
            empty = MeasuredLayer(
                network_id,
                aggregate_records(empty_records(), h3_resolution=self.h3_resolution),
                h3_resolution=self.h3_resolution,
            )
            state = self._networks[network_id] = _Network(CellSamples(len(VALUE_COLUMNS)), empty)
        state.samples.add(cells, values)
        touched = np.unique(cells)
        stats = cell_statistics(*state.samples.rows_of(touched))
        state.layer = state.layer.updated(finish_cell_table(stats), touched)
        return int(touched.shape[0])
