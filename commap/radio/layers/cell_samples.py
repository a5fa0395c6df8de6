"""Every record's cell and values, kept so that a refresh recomputes only the cells it touches.

The statistics of an H3 cell (:func:`commap.radio.layers.measured.cell_statistics`: p10,
median and p90 of every KPI, the connected share, the link SINR) are quantiles: no running sum
updates them exactly. What does is the cell's own rows. :class:`CellSamples` keeps the rows of
:func:`~commap.radio.layers.measured.record_values` (cell, values) of every record added, in a
few *runs*, each sorted by cell: adding a batch appends it as a run and merges the newest runs
while the older is no larger than the newer (a binary counter: at most log2(records / batch)
runs, each record copied about log2 times over its life). :meth:`CellSamples.rows_of` gathers
the rows of some cells from every run by binary search, in arrival order, so that statistics
computed from them equal those of a full aggregation of every record, bit for bit.

Examples
--------
>>> samples = CellSamples(width=1)
>>> samples.add(np.array([7, 3, 7]), np.array([[1.0], [2.0], [3.0]]))
>>> samples.add(np.array([3]), np.array([[4.0]]))
>>> cells, values = samples.rows_of(np.array([3, 7]))
>>> cells.tolist(), values[:, 0].tolist(), len(samples), samples.run_count
([3, 3, 7, 7], [2.0, 4.0, 1.0, 3.0], 4, 2)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from commap.radio.quality import FloatArray

__all__ = ["CellSamples"]


class CellSamples:
    """The rows (cell, values) of every record added, sorted by cell in a few runs.

    Parameters
    ----------
    width : values per row (``len(VALUE_COLUMNS)``).
    """

    def __init__(self, width: int) -> None:
        self.width = int(width)
        self._cells: list[NDArray[np.int64]] = []
        self._values: list[FloatArray] = []

    def __len__(self) -> int:
        return sum(c.shape[0] for c in self._cells)

    @property
    def run_count(self) -> int:
        """Sorted runs held (a few: merged as they grow)."""
        return len(self._cells)

    @property
    def nbytes(self) -> int:
        """Bytes of the rows held."""
        return sum(c.nbytes + v.nbytes for c, v in zip(self._cells, self._values, strict=True))

    def add(self, cells: NDArray[np.int64], values: FloatArray) -> None:
        """Keep the rows of new records (any order; their order within a cell is kept)."""
        if cells.shape[0] == 0:
            return
        order = np.argsort(cells, kind="stable")
        self._cells.append(np.ascontiguousarray(cells[order], dtype=np.int64))
        self._values.append(np.ascontiguousarray(values[order], dtype=np.float64))
        # merge while the older run is no larger: runs shrink geometrically, a row is copied
        # O(log records) times in all
        while len(self._cells) > 1 and self._cells[-2].shape[0] <= self._cells[-1].shape[0]:
            newer_cells, newer_values = self._cells.pop(), self._values.pop()
            older_cells, older_values = self._cells.pop(), self._values.pop()
            merged = np.concatenate([older_cells, newer_cells])
            order = np.argsort(merged, kind="stable")  # older rows first within a cell
            self._cells.append(merged[order])
            self._values.append(np.concatenate([older_values, newer_values])[order])

    def rows_of(self, cells: NDArray[np.int64]) -> tuple[NDArray[np.int64], FloatArray]:
        """Every row of ``cells`` (sorted, unique), sorted by cell, in arrival order within one."""
        found_cells: list[NDArray[np.int64]] = []
        found_values: list[FloatArray] = []
        for run_cells, run_values in zip(self._cells, self._values, strict=True):
            lo = np.searchsorted(run_cells, cells, side="left")
            hi = np.searchsorted(run_cells, cells, side="right")
            rows = _ranges(lo, hi)
            found_cells.append(run_cells[rows])
            found_values.append(run_values[rows])
        if not found_cells:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.width))
        all_cells = np.concatenate(found_cells)
        order = np.argsort(all_cells, kind="stable")  # runs are in arrival order
        return all_cells[order], np.concatenate(found_values)[order]


def _ranges(lo: NDArray[np.intp], hi: NDArray[np.intp]) -> NDArray[np.intp]:
    """The indices ``lo[i]:hi[i]`` of every i, concatenated (vectorised).

    Examples
    --------
    >>> _ranges(np.array([0, 5, 9]), np.array([2, 5, 11])).tolist()
    [0, 1, 9, 10]
    """
    length = hi - lo
    keep = length > 0
    lo, length = lo[keep], length[keep]
    total = int(length.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(length)[:-1]]), length)
    return (starts + np.arange(total)).astype(np.intp)
