"""Array type aliases shared by every module (numpy arrays of one dtype), and Parquet columns
read into numpy arrays without pandas (:func:`read_parquet_columns`), and :func:`median`.

Examples
--------
>>> import numpy as np
>>> values: FloatArray = np.zeros(0)
>>> values.dtype
dtype('float64')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BoolArray", "FloatArray", "IntArray", "median", "read_parquet_columns"]

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
BoolArray: TypeAlias = NDArray[np.bool_]


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
