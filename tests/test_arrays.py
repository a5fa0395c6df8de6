"""Parquet columns read into numpy arrays without pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from commap.arrays import read_parquet_columns


def test_numbers_come_as_arrays_and_the_rest_as_lists(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "x": pa.array([1.5, -2.0, 3.25]),
            "n": pa.array([1, 2, 3], pa.int8()),
            "gap": pa.array([1.0, None, 2.0]),
            "name": pa.array(["a", "", "c"]),
            "flag": pa.array([True, False, True]),
        }
    ).replace_schema_metadata({b"k": b"v"})
    pq.write_table(table, path, row_group_size=2)  # two row groups: two chunks per column
    columns, metadata = read_parquet_columns(path)
    assert metadata[b"k"] == b"v"
    assert isinstance(columns["x"], np.ndarray) and columns["x"].tolist() == [1.5, -2.0, 3.25]
    assert isinstance(columns["n"], np.ndarray) and columns["n"].dtype == np.int8
    assert columns["n"].tolist() == [1, 2, 3]
    assert columns["gap"] == [1.0, None, 2.0]
    assert columns["name"] == ["a", "", "c"]
    assert columns["flag"] == [True, False, True]


def test_a_column_subset_keeps_its_values(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": np.arange(10.0), "b": np.arange(10)}), path)
    columns, _ = read_parquet_columns(path, ["b"])
    assert list(columns) == ["b"]
    assert np.array_equal(columns["b"], np.arange(10))
