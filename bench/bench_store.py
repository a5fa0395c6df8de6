"""Fleet store benchmark: ingest of 10 million records, memory, and incremental refresh.

* Ingest: ``TOTAL_RECORDS`` synthetic records (every field of the record schema, three networks,
  ten days, positions over Andorra) appended to a local :class:`commap.map.store.FleetStore` in
  batches of ``BATCH_RECORDS`` (the size of one large ``ReportMeasurements`` stream): records
  per second, validation and fsyncs included; the first and last tenth of the batches are timed
  apart to show the append cost does not grow with what is stored.
* Memory: peak resident set of the process (``getrusage``) after the ingest and after the reads.
* Reads: :meth:`FleetStore.read` with ``since`` set so that the newest 1 %, 10 % and 100 % of
  the stored records come back; seconds and records per second (median of 3 for 1 % and 10 %).
* Learned-layer refresh (:class:`commap.map.fleet.FleetFusion`, what the server's fusion process
  runs): after every appended batch the fused layers are refreshed incrementally, as a server
  does. Around 1 M, 3 M and 10 M stored records the refreshes of ``PAIRED`` batches alternate
  in-process and on a dask ``LocalCluster`` (``DASK_WORKERS`` worker processes, started once):
  the median seconds of each and records per second of the new batch. The full re-fusion that
  refreshes did before (every stored record read and aggregated again) is timed at 1 M and 3 M
  stored for comparison; at the end, refreshes of ``SMALL_BATCH``-record batches show the cost
  following the size of the new batch.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from commap.map.executors import TaskRunner
from commap.map.fleet import FleetFusion
from commap.map.store import FleetStore
from commap.radio.layers.measured import aggregate_records

TOTAL_RECORDS = 10_000_000
BATCH_RECORDS = 100_000
NETWORKS = ("ad-lte", "ad-nr", "starlink")
T0 = pd.Timestamp("2025-01-20T00:00:00Z")
CHECKPOINTS = (1_000_000, 3_000_000, 10_000_000)  # stored records at which refreshes are shown
FULL_FUSION_AT = (1_000_000, 3_000_000)  # stored records at which the full re-fusion is timed
PAIRED = 6  # batches before each checkpoint: refreshed alternately in-process and on dask
DASK_WORKERS = 2
SMALL_BATCH = 10_000  # a batch a tenth the size, refreshed at the end: the cost follows the batch


def _batch(rng: np.random.Generator, k: int, n: int) -> pd.DataFrame:
    """One vehicle's synthetic batch with every record field."""
    t_ns = T0.value + rng.integers(0, 10 * 86_400, n).astype(np.int64) * 1_000_000_000
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(np.sort(t_ns), utc=True),
            "lat": rng.uniform(42.43, 42.65, n),
            "lon": rng.uniform(1.41, 1.78, n),
            "network_id": np.asarray(NETWORKS, dtype=object)[rng.integers(0, 3, n)],
            "rsrp_dbm": rng.uniform(-130.0, -60.0, n),
            "rsrq_db": rng.uniform(-20.0, -3.0, n),
            "sinr_db": rng.uniform(-10.0, 30.0, n),
            "throughput_dl_mbps": rng.uniform(0.0, 300.0, n),
            "throughput_ul_mbps": rng.uniform(0.0, 50.0, n),
            "rtt_ms": rng.uniform(15.0, 120.0, n),
            "connected": rng.random(n) > 0.02,
            "cell_id": rng.integers(1, 2**28, n),
            "network_mode": np.where(rng.random(n) > 0.5, "LTE", "5G"),
            "drive_id": f"vehicle-{k}",
        }
    )


def _peak_rss_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / (1024.0 if sys.platform != "darwin" else 1024.0**2), 1)


def _full_fusion_s(store: FleetStore) -> float:
    """Seconds of the refresh before: every stored record read and aggregated again."""
    began = time.perf_counter()
    stored = store.read("bench")
    for _, rows in stored.groupby("network_id", sort=True):
        aggregate_records(rows.reset_index(drop=True))
    return time.perf_counter() - began


def _small_batch_refreshes(
    store: FleetStore,
    fusion: FleetFusion,
    rng: np.random.Generator,
    first: int,
    runner: TaskRunner,
) -> list[float]:
    """Seconds of refreshes of ``SMALL_BATCH``-record batches with everything else fused."""
    times = []
    for k in range(first, first + 3):
        store.append("bench", _batch(rng, k, SMALL_BATCH))
        began = time.perf_counter()
        assert fusion.refresh(runner=runner).new_records == SMALL_BATCH
        times.append(time.perf_counter() - began)
    return times


def _checkpoint_batches(n_batches: int, batch_records: int) -> dict[int, int]:
    """Batch index -> checkpoint: the ``PAIRED`` batches that end at each checkpoint."""
    marks: dict[int, int] = {}
    for stored in CHECKPOINTS:
        last = stored // batch_records - 1
        if 0 <= last < n_batches:
            for k in range(max(last - PAIRED + 1, 1), last + 1):
                marks[k] = stored
    return marks


def run(total_records: int = TOTAL_RECORDS, batch_records: int = BATCH_RECORDS) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    n_batches = total_records // batch_records
    marks = _checkpoint_batches(n_batches, batch_records)
    with (
        tempfile.TemporaryDirectory(prefix="commap-bench-store-") as tmp,
        TaskRunner("dask", workers=DASK_WORKERS) as on_dask,
    ):
        store = FleetStore(Path(tmp) / "fleet")
        fusion = FleetFusion(store, "bench", NETWORKS)
        in_process = TaskRunner()
        batch_ids: list[str] = []
        append_s: list[float] = []
        refresh_s: list[float] = []
        timed: dict[tuple[int, str], list[float]] = {}
        full_s: dict[int, float] = {}
        touched: dict[int, list[int]] = {}
        make_s = 0.0
        for k in range(n_batches):
            began = time.perf_counter()
            records = _batch(rng, k, batch_records)
            make_s += time.perf_counter() - began
            began = time.perf_counter()
            batch_ids.append(store.append("bench", records).batch_id)
            append_s.append(time.perf_counter() - began)
            mode = "dask" if k in marks and k % 2 else "in_process"
            began = time.perf_counter()
            update = fusion.refresh(runner=on_dask if mode == "dask" else in_process)
            refresh_s.append(time.perf_counter() - began)
            assert update.new_records == batch_records
            if k in marks:
                timed.setdefault((marks[k], mode), []).append(refresh_s[-1])
                touched.setdefault(marks[k], []).append(update.touched_cells)
            stored = (k + 1) * batch_records
            if stored in FULL_FUSION_AT:
                full_s[stored] = _full_fusion_s(store)
        small_s = _small_batch_refreshes(store, fusion, rng, n_batches, in_process)
        ingest_s = sum(append_s)
        tenth = max(n_batches // 10, 1)
        rss_ingest = _peak_rss_mb()
        parts = len(store.parts("bench"))
        figures: dict[str, Any] = {
            "records": n_batches * batch_records,
            "batch_records": batch_records,
            "batches": n_batches,
            "parts": parts,
            "ingest_s": round(ingest_s, 1),
            "ingest_records_per_s": round(n_batches * batch_records / ingest_s),
            "append_first_tenth_ms": round(1e3 * statistics.median(append_s[:tenth]), 1),
            "append_last_tenth_ms": round(1e3 * statistics.median(append_s[-tenth:]), 1),
            "synthesis_s (not in ingest)": round(make_s, 1),
            "fused_refresh_total_s (every batch, not in ingest)": round(sum(refresh_s), 1),
            "fused_samples_mb": round(fusion.samples_nbytes / 2**20, 1),
            "peak_rss_after_ingest_and_refreshes_mb": rss_ingest,
        }
        for stored in CHECKPOINTS:
            if (stored, "in_process") not in timed:
                continue
            label = f"refresh_100k_at_{stored // 1_000_000}M_stored"
            for mode in ("in_process", "dask"):
                times = timed.get((stored, mode))
                if times:
                    figures[f"{label}_{mode}_s"] = round(statistics.median(times), 3)
                    figures[f"{label}_{mode}_records_per_s"] = round(
                        batch_records / statistics.median(times)
                    )
            figures[f"{label}_touched_cells"] = round(statistics.median(touched[stored]))
            if stored in full_s:
                figures[f"full_refusion_at_{stored // 1_000_000}M_stored_s"] = round(
                    full_s[stored], 2
                )
        figures[
            f"refresh_{SMALL_BATCH // 1000}k_at_{n_batches * batch_records // 1_000_000}M_stored_in_process_s"
        ] = round(statistics.median(small_s), 3)
        figures["load_avg_1min_after_refreshes"] = round(os.getloadavg()[0], 1)
        del fusion  # its rows are not what the reads below measure
        for share in (0.01, 0.10, 1.0):
            new_batches = max(round(n_batches * share), 1)
            since = None if new_batches >= n_batches else batch_ids[-new_batches - 1]
            repeats = 1 if share == 1.0 else 3
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                got = len(store.read("bench", since=since))
                times.append(time.perf_counter() - began)
            assert got == new_batches * batch_records + len(small_s) * SMALL_BATCH  # and the small
            label = f"read_{round(share * 100)}pct"
            figures[f"{label}_records"] = got
            figures[f"{label}_s"] = round(statistics.median(times), 2)
            figures[f"{label}_records_per_s"] = round(got / statistics.median(times))
        figures["peak_rss_after_reads_mb"] = _peak_rss_mb()
        figures["store_bytes_mb"] = round(
            sum(p.stat().st_size for p in (Path(tmp) / "fleet").rglob("*.parquet")) / 2**20, 1
        )
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
