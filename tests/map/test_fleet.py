"""Incremental fleet refresh on real drive records: equal to a full re-fusion, O(new batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from commap.map.executors import TaskRunner
from commap.map.fleet import FleetFusion
from commap.map.store import FleetStore, Part
from commap.radio.layers.measured import MeasuredLayer, aggregate_records
from commap.radio.measurements import read_gnettrack, read_hamburg_bremen
from tests.support.paths import TEST_DATA

HAMBURG = TEST_DATA / "measured_multi" / "hh_bremen_3mno_drive_2021.csv.gz"
CORK = TEST_DATA / "measured" / "ucc5g_cork_heldout.zip"
BATCHES = 6


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    """Real drives: three operators' LTE over five days (RSRP, RSRQ), and a Cork drive with
    SINR, rates and lost-network seconds (as a fourth network), in arrival order."""
    hamburg = read_hamburg_bremen(HAMBURG)
    cork = read_gnettrack(CORK, network_id="ie-b-lte")
    both = pd.concat([hamburg, cork], ignore_index=True)
    return both.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _batches(records: pd.DataFrame) -> list[pd.DataFrame]:
    # uneven batches that interleave the drives: later batches revisit cells of earlier ones
    rng = np.random.default_rng(3)
    owner = rng.integers(0, BATCHES, len(records))
    return [records[owner == k].reset_index(drop=True) for k in range(BATCHES)]


def _full_fusion(store: FleetStore, map_name: str) -> dict[str, pd.DataFrame]:
    """What a refresh did before: aggregate every stored record again."""
    stored = store.read(map_name)
    return {
        str(nid): aggregate_records(rows.reset_index(drop=True))
        for nid, rows in stored.groupby("network_id", sort=True)
    }


def _assert_same_layers(layers: dict[str, MeasuredLayer], full: dict[str, pd.DataFrame]) -> None:
    assert sorted(layers) == sorted(full)
    for nid, table in full.items():
        pd.testing.assert_frame_equal(layers[nid].table, table, check_exact=True)  # bit for bit
        expected = MeasuredLayer(nid, table)
        lon, lat = table["lon"].to_numpy(), table["lat"].to_numpy()
        # cell centres and points between cells (neighbour fallback) answer alike
        lon = np.concatenate([lon, lon + 0.0007])
        lat = np.concatenate([lat, lat + 0.0004])
        got, want = layers[nid].sample(lon, lat, 0.0), expected.sample(lon, lat, 0.0)
        for name in ("sinr_db", "rsrp_dbm", "confidence", "sample_count", "provenance"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12)


def test_each_refresh_reads_only_new_parts_and_equals_a_full_fusion(
    records: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FleetStore(tmp_path / "fleet")
    networks = sorted(records["network_id"].unique())
    fusion = FleetFusion(store, "fleet", networks)
    read: list[str] = []
    read_parts = FleetStore.read_parts

    def spy(self: FleetStore, parts: list[Part], **kwargs: Any) -> pd.DataFrame:
        read.extend(part.batch_id for part in parts)
        return read_parts(self, parts, **kwargs)

    monkeypatch.setattr(FleetStore, "read_parts", spy)
    for batch in _batches(records):
        stored = store.append("fleet", batch)
        read.clear()
        update = fusion.refresh()
        assert set(read) == {stored.batch_id}  # nothing stored before is read again
        assert update.new_records == len(batch) and fusion.last_batch_id == stored.batch_id
        new_cells = sum(aggregate_records(rows).shape[0] for _, rows in batch.groupby("network_id"))
        assert update.touched_cells == new_cells  # only the cells the batch falls in
        _assert_same_layers(fusion.layers, _full_fusion(store, "fleet"))
    assert fusion.record_count == len(records)
    assert fusion.refresh().new_records == 0  # nothing new: nothing read, nothing touched


def test_a_refresh_leaves_batches_after_until_for_the_next(
    records: pd.DataFrame, tmp_path: Path
) -> None:
    store = FleetStore(tmp_path / "fleet")
    first, second = _batches(records)[:2]
    one = store.append("fleet", first).batch_id
    store.append("fleet", second)
    fusion = FleetFusion(store, "fleet", sorted(records["network_id"].unique()))
    assert fusion.refresh(until=one).new_records == len(first)
    assert fusion.refresh().new_records == len(second)
    _assert_same_layers(fusion.layers, _full_fusion(store, "fleet"))


@pytest.mark.distributed
def test_on_a_dask_cluster_gives_the_same_layers_as_in_process(
    records: pd.DataFrame, tmp_path: Path
) -> None:
    from dask.distributed import LocalCluster

    store = FleetStore(tmp_path / "fleet")
    networks = sorted(records["network_id"].unique())
    in_process = FleetFusion(store, "fleet", networks)
    on_dask = FleetFusion(store, "fleet", networks)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        TaskRunner("dask", scheduler=cluster.scheduler_address) as runner,
    ):
        for batch in _batches(records)[:3]:
            store.append("fleet", batch)
            in_process.refresh()
            update = on_dask.refresh(runner=runner)
            assert update.new_records == len(batch)
            assert runner.workers >= 1
    assert on_dask.record_count == in_process.record_count
    for nid, layer in in_process.layers.items():
        pd.testing.assert_frame_equal(on_dask.layers[nid].table, layer.table)
