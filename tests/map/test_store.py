"""The fleet store on real drive-test records: local directory and fsspec ``memory://``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.map.store import FleetStore, check_map_name
from commap.radio.measurements import RECORD_COLUMNS, read_gnettrack
from tests.support.paths import TEST_DATA

HELDOUT = TEST_DATA / "measured" / "ucc5g_cork_heldout.zip"


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    """The held-out Cork drive with every field (the trace ran no ping test: RTT added)."""
    held = read_gnettrack(HELDOUT, network_id="ie-b-lte")
    held["rtt_ms"] = np.linspace(20.0, 80.0, len(held))
    held.loc[held.index[:3], "connected"] = pd.NA
    return held.reset_index(drop=True)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FleetStore:
    if request.param == "local":
        return FleetStore(tmp_path / "fleet")
    return FleetStore(f"memory://fleet-{uuid.uuid4().hex}")


def test_every_field_round_trips(store: FleetStore, records: pd.DataFrame) -> None:
    batch = store.append("cork", records)
    assert batch.record_count == len(records)
    back = store.read("cork")
    assert list(back.columns) == [c.name for c in RECORD_COLUMNS]
    pd.testing.assert_frame_equal(back, records)
    pd.testing.assert_frame_equal(store.read_batch("cork", batch.batch_id), records)


def test_partitions_by_map_network_and_day(store: FleetStore, records: pd.DataFrame) -> None:
    two_days = records.copy()
    two_days.loc[two_days.index[500:], "timestamp"] += pd.Timedelta(days=1)
    other = records.iloc[:10].assign(network_id="ie-c-lte")
    batch = store.append("cork", pd.concat([two_days, other], ignore_index=True))
    assert len(batch.parts) == 3  # one part per network and day of the batch
    layout = sorted(p.removeprefix(store.root).rsplit("/", 1)[0] for p in batch.parts)
    assert layout == [
        "/map=cork/network=ie-b-lte/day=2019-12-03",
        "/map=cork/network=ie-b-lte/day=2019-12-04",
        "/map=cork/network=ie-c-lte/day=2019-12-03",
    ]
    assert len(store.read("cork", networks=["ie-c-lte"])) == 10
    assert len(store.read("cork")) == len(records) + 10
    assert len(store.read("other")) == 0


def test_incremental_read_since_a_batch(store: FleetStore, records: pd.DataFrame) -> None:
    first = store.append("cork", records.iloc[:600])
    assert store.last_batch_id("cork") == first.batch_id
    second = store.append("cork", records.iloc[600:1000])
    third = store.append("cork", records.iloc[1000:])
    assert first.batch_id < second.batch_id < third.batch_id  # ids sort by arrival
    new = store.read("cork", since=first.batch_id)
    pd.testing.assert_frame_equal(new, records.iloc[600:].reset_index(drop=True))
    assert len(store.read("cork", since=third.batch_id)) == 0
    pd.testing.assert_frame_equal(store.read("cork"), records)


def test_bad_input_stores_nothing(store: FleetStore, records: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="holds no records"):
        store.append("cork", records.iloc[:0])
    with pytest.raises(InvalidInputError, match="unknown network"):
        store.append("cork", records.iloc[:5], known_networks={"other"})
    with pytest.raises(InvalidInputError, match="cannot name a store partition"):
        store.append("cork", records.iloc[:5].assign(network_id=".."))
    for name in ["../x", "Cork", "a/b", ""]:
        with pytest.raises(InvalidInputError, match=r"must match \[a-z0-9_-\]\+"):
            store.append(name, records.iloc[:5])
    assert store.parts("cork") == []


def test_map_names_are_identifiers() -> None:
    assert check_map_name("indianapolis_2-b") == "indianapolis_2-b"
    with pytest.raises(InvalidInputError):
        check_map_name("..")


# --- crashes ------------------------------------------------------------------------------------
def _die_while_appending(root: Path, records_file: Path, *, after_parts: int) -> None:
    """Run a writer process that is SIGKILLed in the middle of a two-part batch."""
    code = textwrap.dedent(
        f"""
        import os, signal
        import pandas as pd
        import pyarrow.parquet as pq
        import commap.map.store as store_module
        from commap.files import atomic_path
        written = []
        def dying(self, directory, name, table):
            if len(written) == {after_parts}:
                with atomic_path(store_module.Path(directory) / name) as tmp:
                    store_module._make_dirs_durably(store_module.Path(directory), self._root_path)
                    pq.write_table(table, tmp)
                    os.kill(os.getpid(), signal.SIGKILL)  # dies before the rename
            written.append(name)
            original(self, directory, name, table)
        original = store_module.FleetStore._write_part
        store_module.FleetStore._write_part = dying
        store_module.FleetStore({str(root)!r}).append("cork", pd.read_parquet({str(records_file)!r}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", code], env=env, check=False, timeout=120)
    assert done.returncode == -9  # killed


@pytest.mark.parametrize("after_parts", [0, 1])
def test_killed_writer_leaves_no_partial_batch_visible(
    tmp_path: Path, records: pd.DataFrame, after_parts: int
) -> None:
    root = tmp_path / "fleet"
    store = FleetStore(root)
    kept = store.append("cork", records.iloc[:100])  # acknowledged before the crash
    two_networks = pd.concat(
        [records.iloc[100:200], records.iloc[200:300].assign(network_id="ie-c-lte")],
        ignore_index=True,
    )
    batch_file = tmp_path / "batch.parquet"
    two_networks.to_parquet(batch_file)
    _die_while_appending(root, batch_file, after_parts=after_parts)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name.startswith(".part-") for p in files)  # the dead writer's temp file
    assert len([p for p in files if p.name.startswith("part-")]) == 1 + after_parts
    # only the acknowledged batch is visible; the half-written one is not
    assert {p.batch_id for p in store.parts("cork")} == {kept.batch_id}
    pd.testing.assert_frame_equal(store.read("cork"), records.iloc[:100])
    assert store.remove_stale_temp_parts("cork") == 1
    assert not [p for p in root.rglob(".*") if p.is_file()]


def test_unreadable_part_is_named_or_set_aside(tmp_path: Path, records: pd.DataFrame) -> None:
    store = FleetStore(tmp_path / "fleet")
    good = store.append("cork", records.iloc[:50])
    bad = store.append("cork", records.iloc[50:60])
    Path(bad.parts[0]).write_bytes(b"PAR1 torn")
    with pytest.raises(InvalidInputError, match="unreadable part"):
        store.read("cork")
    back = store.read("cork", set_aside_unreadable=True)
    pd.testing.assert_frame_equal(back, records.iloc[:50])
    assert Path(bad.parts[0] + ".unreadable").exists()
    assert [p.batch_id for p in store.parts("cork")] == [good.batch_id]
