"""Array type aliases shared by every module (numpy arrays of one dtype), and Parquet columns
read into numpy arrays without pandas (:func:`read_parquet_columns`), :func:`median`, and
:class:`RecentArrays` (results of pure functions of arrays, for the inputs asked last).

Examples
--------
>>> import numpy as np
>>> values: FloatArray = np.zeros(0)
>>> values.dtype
dtype('float64')
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BoolArray",
    "FloatArray",
    "IntArray",
    "RecentArrays",
    "median",
    "read_parquet_columns",
]

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
BoolArray: TypeAlias = NDArray[np.bool_]
T = TypeVar("T")


class RecentArrays:
    """Results of pure functions of arrays for the inputs asked most recently, bounded in bytes.

    Keys are built by the caller, usually from the input arrays' bytes (:meth:`key`); values
    are arrays or tuples of arrays, made read-only when kept, so that a caller changing one in
    place fails loudly instead of changing later answers. Least recently used values go first
    beyond ``max_bytes`` or ``max_entries`` (many answers of a few points weigh more than their
    arrays); a value larger than ``max_bytes`` is returned and not kept. Thread-safe (two
    threads missing one key at once both make it; the values are equal).

    Examples
    --------
    >>> recent = RecentArrays(max_bytes=16)
    >>> x = np.array([1.0, 2.0])
    >>> recent.get(RecentArrays.key("double", x), lambda: 2 * x).tolist()
    [2.0, 4.0]
    >>> recent.get(RecentArrays.key("double", x), lambda: 3 * x).tolist()  # kept
    [2.0, 4.0]
    >>> recent.get(RecentArrays.key("big", x), lambda: np.zeros(9)).shape, len(recent)
    ((9,), 1)
    >>> one = RecentArrays(max_bytes=1 << 20, max_entries=1)
    >>> _ = [one.get(RecentArrays.key("x", np.array([v])), lambda: np.zeros(1)) for v in (1, 2)]
    >>> len(one)
    1
    """

    def __init__(self, *, max_bytes: int, max_entries: int = 256) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    @property
    def nbytes(self) -> int:
        """Array bytes held."""
        return self._bytes

    @staticmethod
    def key(name: str, *arrays: NDArray[Any]) -> tuple[Any, ...]:
        """A key of ``name`` and the arrays' values (dtype, shape and bytes)."""
        parts: list[Any] = [name]
        for array in arrays:
            array = np.ascontiguousarray(array)
            parts += [array.dtype.str, array.shape, array.tobytes()]
        return tuple(parts)

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value of ``key``: kept, else ``make()`` (then kept)."""
        with self._lock:
            entry = self._values.get(key)
            if entry is not None:
                self._values.move_to_end(key)
                return entry[0]
        value = make()
        size = 0
        for array in _arrays_of(value):
            array.flags.writeable = False
            size += int(array.nbytes)
        with self._lock:
            if size > self.max_bytes or key in self._values:
                return value
            self._values[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._values) > self.max_entries:
                _, (_, dropped) = self._values.popitem(last=False)
                self._bytes -= dropped
        return value


def _arrays_of(value: Any) -> list[NDArray[Any]]:
    """The arrays of an array, a tuple or a dataclass instance (one level down)."""
    if isinstance(value, np.ndarray):
        return [value]
    items = value if isinstance(value, tuple) else getattr(value, "__dict__", {}).values()
    return [item for item in items if isinstance(item, np.ndarray)]


def median(values: ArrayLike) -> float:
    """The median of the values, bit for bit as ``np.median`` (NaN if any is NaN or none given).

    ``np.median`` imports ``numpy.ma`` (40 ms) on its first call, which every map load pays.

    Examples
    --------
    >>> median([3.0, 1.0, 2.0]), median([4.0, 1.0, 2.0, 3.0]), median([1.0, float("nan")])
    (2.0, 2.5, nan)
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())  # NaN sorts last
    n = ordered.size
    if n == 0 or np.isnan(ordered[-1]):
        return float("nan")
    middle = n // 2
    if n % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2.0)


# Arrow primitive types read straight from their data buffer
_NUMPY_OF_ARROW = {
    "double": np.float64,
    "float": np.float32,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
}


def read_parquet_columns(
    path: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> tuple[dict[str, NDArray[Any] | list[Any]], dict[bytes, bytes]]:
    """Columns of a Parquet file and its schema metadata, without importing pandas.

    pyarrow imports pandas (a third of a second) in ``pq.read_table`` of a table pandas wrote
    and in every ``to_numpy``, so numbers are read from their Arrow buffers instead.

    Parameters
    ----------
    path : path-like
        The Parquet file.
    columns : sequence of str, optional
        The columns to read (all without it).

    Returns
    -------
    columns : dict
        Per column, a read-only numpy array for null-free numeric columns, else a list of
        Python values (``None`` for nulls).
    metadata : dict
        The schema's key-value metadata.

    Raises
    ------
    OSError, ValueError, KeyError
        As pyarrow raises them for a missing or unreadable file or an unknown column.
    """
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read(columns=None if columns is None else list(columns))
    values = {name: _column_values(table.column(name)) for name in table.column_names}
    return values, dict(table.schema.metadata or {})


def _column_values(column: pa.ChunkedArray) -> NDArray[Any] | list[Any]:
    array = column.combine_chunks()
    dtype = _NUMPY_OF_ARROW.get(str(array.type))
    if dtype is None or array.null_count:
        return list(array.to_pylist())
    width = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * width
    )
