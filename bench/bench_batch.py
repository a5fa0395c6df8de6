"""Batch map generation benchmarks: the per-edge table of whole regions.

* Default map (Andorra, 752 directed edge-km): the edge stage (:func:`commap.map.build.run_batch`)
  serial versus a 2-worker dask ``LocalCluster`` (and a 2-process pool), in edge-km per second
  per core; the whole build (``build_map``, base tables + edge table) on 2 cores against the
  2-minute target. Every run is a fresh process on a fresh copy of the base tables, so map loading
  in each worker is included; the dask cluster (the one ``run_batch`` starts,
  :func:`commap.map.executors.local_cluster`: one-thread worker processes, no statistical
  profiler) is started first and its start timed apart (``dask2_cluster_start_s``); medians of
  3 runs. ``dask2_*`` is the first build on that fresh
  cluster: its workers import the tile code and load the map within the timed stage.
  ``dask2_warm_*`` is the next build on the same cluster, of another fresh copy of the map (a
  batch user's long-lived cluster): imports done, the map loaded again (another path).
* Memory: peak resident set of the serial process and of a dask worker (``getrusage``), and
  the traced Python peak (``tracemalloc``) of the largest tile.
* Fixed costs: the map load of one process, and the tile throughput of a warm process
  (``warm_tiles_edge_km_per_s_per_core``: no interpreter start, map load or merge).
* Region size: the edge stage (serial, median of 3) for the bench-only Monaco spec (OSM extract from
  ``tests/data/roads``, no terrain) and three nested Andorra boxes, all with one four-network
  spec (two modelled layers, Starlink, GEO); time per edge-km and the
  log-log slope of time over size (1.0 is linear).
* A region ten times the default map (``tiled_10x``): the Andorra extract's roads copied onto a
  5 x 2 grid of shifted, disjoint valleys (an OSM file generated here, nothing shipped; no
  terrain; the NR layer at 800 MHz: at 3.5 GHz no single site covers the 0.5 % of ten valleys'
  roads the site placement asks for), one edge stage each serial, on 2 processes and on a
  2-worker dask cluster (first build, then the warm figures as above); edge-km per second per
  core against the smaller regions.
* Every edge stage also reports its CPU seconds (the process and every worker it waited for;
  dask workers are asked for theirs before and after the stage, so their start-up is not counted):
  the machine is shared, and a wall time under load says less than the CPU work it took. The
  1-minute load average at the start and the end is recorded with the figures.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from commap.map import build as batch
from commap.map import tile as tile_job
from commap.map.build import build_map
from tests.support.paths import MAPS, REPO, TEST_DATA
from tests.support.specs import default_spec, subregion_spec

__all__ = ["run"]

MONACO_OSM = TEST_DATA / "roads" / "monaco.osm.gz"
ANDORRA_DATA = MAPS / "andorra" / "data"
ANDORRA_HGT = ANDORRA_DATA / "N42E001.hgt.zip"
REPEATS = 3
# Nested boxes around Andorra la Vella, smallest first (the last is the default map's bbox).
ANDORRA_BOXES = {
    "andorra_s": [1.50, 42.49, 1.56, 42.53],
    "andorra_m": [1.46, 42.44, 1.64, 42.60],
    "andorra_l": [1.40, 42.38, 1.80, 42.68],
}
MONACO_BBOX = [7.38, 43.51, 7.51, 43.76]
# Runs in a fresh interpreter: one edge stage, then its wall time and peak memory as JSON.
_EDGE_STAGE = """
import json, resource, sys, time
from commap.map.build import run_batch
def cpu_s():
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
def worker_cpu_s():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
map_dirs, executor, workers = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
scheduler, start_s, client = None, 0.0, None
if executor == "dask":  # a cluster as run_batch starts one, started first: timed apart
    from dask.distributed import Client
    from commap.map.executors import local_cluster
    start = time.perf_counter()
    cluster = local_cluster(workers)
    scheduler, start_s = cluster.scheduler_address, time.perf_counter() - start
    client = Client(cluster)
def edge_stage(map_dir):
    # CPU of this process (with the scheduler of a dask cluster) and of every worker: pool
    # workers are reaped within the stage; dask workers are asked (their start-up is excluded)
    workers_before = client.run(worker_cpu_s) if client else {}
    cpu_start_s = cpu_s()
    start = time.perf_counter()
    section = run_batch(map_dir, executor=executor, workers=workers, scheduler=scheduler,
                        progress=lambda message: None)
    wall_s = time.perf_counter() - start
    cpu = cpu_s() - cpu_start_s
    if client:
        after = client.run(worker_cpu_s)
        cpu += sum(after[w] - workers_before[w] for w in workers_before)
    return section, wall_s, cpu
section, wall_s, cpu = edge_stage(map_dirs[0])
# a long-lived cluster's next build (another copy of the map): workers have their imports
warm_wall_s, warm_cpu_s = (edge_stage(map_dirs[1])[1:] if len(map_dirs) > 1 else (0.0, 0.0))
if client:
    client.close()
    cluster.close()  # workers end and are reaped: their peak memory shows in RUSAGE_CHILDREN
print(json.dumps({
    "wall_s": wall_s,
    "cpu_s": cpu,
    "warm_wall_s": warm_wall_s,
    "warm_cpu_s": warm_cpu_s,
    "cluster_start_s": start_s,
    "edge_km": section["totals"]["edge_km"],
    "segments": section["totals"]["segments"],
    "tiles": len(section["tiles"]),
    "self_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""
_FULL_BUILD = """
import json, sys, time
from commap.map.build import build_map
start = time.perf_counter()
build_map(sys.argv[1], sys.argv[2], executor=sys.argv[3], workers=int(sys.argv[4]))
print(json.dumps({"wall_s": time.perf_counter() - start}))
"""


def _python(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (repository on the path); its last stdout line."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _size_spec(directory: Path, name: str) -> Path:
    """A region of the size series: Monaco (no terrain) or an Andorra box.

    One spec for every region (two modelled layers of one operator, Starlink, GEO): only roads,
    terrain and bbox differ, so times per edge-km compare.
    """
    if name == "monaco":
        bbox, roads, terrain = MONACO_BBOX, MONACO_OSM, None
    else:
        bbox, roads, terrain = ANDORRA_BOXES[name], ANDORRA_DATA / "andorra.osm.pbf", ANDORRA_HGT
    region = name.replace("_", "-")
    return subregion_spec(
        directory,
        name=region,
        title=f"{region} (bench only): two modelled operator layers, Starlink, GEO",
        bbox=bbox,
        roads=roads,
        terrain=terrain,
        seed=1,
        operator="op",
        country=None,
    )


def _edge_stage(base: Path, work: Path, executor: str, workers: int) -> dict[str, Any]:
    """The edge stage on a fresh copy of the base tables ``base``.

    On dask, then a second edge stage on another fresh copy on the same cluster (``warm_*``).
    """
    copies = [work / f"{executor}-{workers}-{i}-{time.monotonic_ns()}" for i in range(2)]
    copies = copies if executor == "dask" else copies[:1]
    for copy in copies:
        shutil.copytree(base, copy)
    try:
        return _python(_EDGE_STAGE, ",".join(map(str, copies)), executor, str(workers))
    finally:
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)


_MEDIAN_KEYS = ("wall_s", "cpu_s", "warm_wall_s", "warm_cpu_s", "cluster_start_s")


def _median_runs(base: Path, work: Path, executor: str, workers: int) -> dict[str, Any]:
    runs = [_edge_stage(base, work, executor, workers) for _ in range(REPEATS)]
    best = dict(runs[0])
    for key in (*_MEDIAN_KEYS, "self_rss_mb", "children_rss_mb"):
        best[key] = statistics.median(r[key] for r in runs)
    return best


def _traced_peak_mb(base: Path, work: Path) -> float:
    """tracemalloc peak of the largest tile of the map at ``base`` (Python allocations)."""
    copy = work / "traced"
    shutil.copytree(base, copy)
    state = tile_job._state(copy, batch.DEFAULT_TILE_RESOLUTION)
    largest = max(state.tiles, key=lambda t: len(state.tiles[t]))
    params = batch.TileParams(reference_s=state.cmap.default_departure_s)
    tracemalloc.start()
    try:
        batch.build_tile(copy, largest, params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        batch._clear_state()
        shutil.rmtree(copy, ignore_errors=True)
    return peak / 2**20


def _warm_rates(base: Path, work: Path) -> tuple[float, float]:
    """Map load time and tile throughput (edge-km/s) of one warm process, in this process."""
    copy = work / "warm"
    shutil.copytree(base, copy)
    try:
        start = time.perf_counter()
        state = tile_job._state(copy, batch.DEFAULT_TILE_RESOLUTION)
        load_s = time.perf_counter() - start
        params = batch.TileParams(reference_s=state.cmap.default_departure_s)
        start = time.perf_counter()
        for tile in state.tiles:
            batch.build_tile(copy, tile, params)
        tiles_s = time.perf_counter() - start
        length_m = sum(d["length_m"] for _, _, d in state.roads.edges(data=True))
    finally:
        batch._clear_state()
        shutil.rmtree(copy, ignore_errors=True)
    return load_s, length_m / 1000.0 / tiles_s


def _default_map(work: Path, figures: dict[str, float | str]) -> None:
    base = build_map(default_spec(work / "spec-default"), work / "default-base", edges=False)
    serial = _median_runs(base, work, "serial", 1)
    dask2 = _median_runs(base, work, "dask", 2)
    procs2 = _median_runs(base, work, "processes", 2)
    km = float(serial["edge_km"])
    figures["default_edge_km"] = km
    figures["default_tiles"] = serial["tiles"]
    figures["default_segments"] = serial["segments"]
    figures["serial_edges_s"] = round(serial["wall_s"], 2)
    figures["serial_edge_km_per_s_per_core"] = round(km / serial["wall_s"], 1)
    figures["dask2_cluster_start_s"] = round(dask2["cluster_start_s"], 2)
    figures["dask2_edges_s"] = round(dask2["wall_s"], 2)
    figures["dask2_edge_km_per_s_per_core"] = round(km / dask2["wall_s"] / 2, 1)
    figures["dask2_speedup"] = round(serial["wall_s"] / dask2["wall_s"], 2)
    figures["dask2_warm_edges_s"] = round(dask2["warm_wall_s"], 2)
    figures["dask2_warm_edge_km_per_s_per_core"] = round(km / dask2["warm_wall_s"] / 2, 1)
    figures["dask2_warm_speedup"] = round(serial["wall_s"] / dask2["warm_wall_s"], 2)
    figures["processes2_edges_s"] = round(procs2["wall_s"], 2)
    figures["processes2_edge_km_per_s_per_core"] = round(km / procs2["wall_s"] / 2, 1)
    figures["processes2_speedup"] = round(serial["wall_s"] / procs2["wall_s"], 2)
    figures["serial_cpu_s"] = round(serial["cpu_s"], 2)
    figures["processes2_cpu_s"] = round(procs2["cpu_s"], 2)
    figures["dask2_cpu_s"] = round(dask2["cpu_s"], 2)
    figures["dask2_warm_cpu_s"] = round(dask2["warm_cpu_s"], 2)
    figures["serial_peak_rss_mb"] = round(serial["self_rss_mb"], 0)
    figures["dask2_worker_peak_rss_mb"] = round(dask2["children_rss_mb"], 0)
    figures["processes2_worker_peak_rss_mb"] = round(procs2["children_rss_mb"], 0)
    figures["largest_tile_traced_peak_mb"] = round(_traced_peak_mb(base, work), 1)
    load_s, warm_rate = _warm_rates(base, work)
    figures["map_load_s"] = round(load_s, 2)
    figures["warm_tiles_edge_km_per_s_per_core"] = round(warm_rate, 1)
    for executor in ("processes", "dask"):
        full = _python(_FULL_BUILD, str(work / "spec-default" / "map.toml"),
                       str(work / f"full-{executor}"), executor, "2")  # fmt: skip
        figures[f"default_map_build_2cores_{executor}_s"] = round(full["wall_s"], 1)


def _tiled_roads(path: Path, columns: int, rows: int) -> list[float]:
    """Write ``columns x rows`` shifted copies of the default map's roads to ``path``.

    Takes every highway of the Andorra extract with a node in the default map's bbox; copies
    are disjoint (shifted by the roads' extent plus 0.01 degrees, node and way ids offset).
    Returns the bbox of all copies.
    """
    import osmium

    lon0, lat0, lon1, lat1 = ANDORRA_BOXES["andorra_l"]
    ways = []
    reader = (
        osmium.FileProcessor(
            str(ANDORRA_DATA / "andorra.osm.pbf"), osmium.osm.NODE | osmium.osm.WAY
        )
        .with_locations()
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    for way in reader:
        nodes = [(n.ref, n.lon, n.lat) for n in way.nodes if n.location.valid()]
        if any(lon0 <= x <= lon1 and lat0 <= y <= lat1 for _, x, y in nodes):
            ways.append((way.id, {t.k: t.v for t in way.tags}, nodes))
    locations = {ref: (x, y) for _, _, nodes in ways for ref, x, y in nodes}
    xs, ys = [x for x, _ in locations.values()], [y for _, y in locations.values()]
    dx, dy = max(xs) - min(xs) + 0.01, max(ys) - min(ys) + 0.01
    id_step = 10 ** len(str(max(max(locations), max(w for w, _, _ in ways))))
    shifts = [(c % columns * dx, c // columns * dy) for c in range(columns * rows)]
    writer = osmium.SimpleWriter(str(path))
    try:  # every node, then every way: a sorted file
        for copy, (sx, sy) in enumerate(shifts):
            for ref, (x, y) in sorted(locations.items()):
                node = osmium.osm.mutable.Node(id=ref + copy * id_step, location=(x + sx, y + sy))
                writer.add_node(node)
        for copy in range(len(shifts)):
            for way_id, tags, nodes in ways:
                refs = [ref + copy * id_step for ref, _, _ in nodes]
                writer.add_way(
                    osmium.osm.mutable.Way(id=way_id + copy * id_step, nodes=refs, tags=tags)
                )
    finally:
        writer.close()
    return [min(xs), min(ys), min(xs) + columns * dx, min(ys) + rows * dy]


def _tiled_base(work: Path) -> Path:
    """Base tables of the ten-valley region (see the module docstring)."""
    roads = work / "tiled-10x.osm.pbf"
    bbox = _tiled_roads(roads, 5, 2)
    spec = subregion_spec(
        work / "spec-tiled-10x",
        name="tiled-10x",
        title="ten shifted copies of the Andorra roads (bench only)",
        bbox=bbox,
        roads=roads,
        terrain=None,
        seed=1,
        operator="op",
        country=None,
    )
    spec.write_text(spec.read_text().replace("frequency_mhz = 3500.0", "frequency_mhz = 800.0"))
    return build_map(spec, work / "tiled-10x-base", edges=False)


def _tiled_region(work: Path, figures: dict[str, float | str]) -> tuple[float, float]:
    """The 10x region once per executor; its serial (edge-km, seconds) for the size series."""
    base = _tiled_base(work)
    serial = _edge_stage(base, work, "serial", 1)
    km = float(serial["edge_km"])
    figures["size_tiled_10x_edge_km"] = km
    figures["size_tiled_10x_tiles"] = serial["tiles"]
    for executor, workers, run in (
        ("serial", 1, serial),
        ("processes", 2, _edge_stage(base, work, "processes", 2)),
        ("dask", 2, _edge_stage(base, work, "dask", 2)),
    ):
        label = executor if executor == "serial" else f"{executor}{workers}"
        figures[f"tiled_10x_{label}_edges_s"] = round(run["wall_s"], 2)
        figures[f"tiled_10x_{label}_cpu_s"] = round(run["cpu_s"], 2)
        figures[f"tiled_10x_{label}_edge_km_per_s_per_core"] = round(
            km / run["wall_s"] / workers, 1
        )
        if executor != "serial":
            figures[f"tiled_10x_{label}_speedup"] = round(serial["wall_s"] / run["wall_s"], 2)
        if executor == "dask":
            figures[f"tiled_10x_{label}_warm_edges_s"] = round(run["warm_wall_s"], 2)
            figures[f"tiled_10x_{label}_warm_cpu_s"] = round(run["warm_cpu_s"], 2)
            figures[f"tiled_10x_{label}_warm_speedup"] = round(
                serial["wall_s"] / run["warm_wall_s"], 2
            )
    figures["size_tiled_10x_ms_per_edge_km"] = round(1000 * serial["wall_s"] / km, 1)
    return km, float(serial["wall_s"])


def _scaling(work: Path, figures: dict[str, float | str]) -> None:
    sizes: list[float] = []
    times: list[float] = []
    for name in ("monaco", *ANDORRA_BOXES):
        spec = _size_spec(work / f"spec-{name}", name)
        base = build_map(spec, work / f"{name}-base", edges=False)
        result = _median_runs(base, work, "serial", 1)
        km, wall = float(result["edge_km"]), float(result["wall_s"])
        figures[f"size_{name}_edge_km"] = km
        figures[f"size_{name}_edges_s"] = round(wall, 2)
        figures[f"size_{name}_ms_per_edge_km"] = round(1000 * wall / km, 1)
        sizes.append(km)
        times.append(wall)
    km, wall = _tiled_region(work, figures)
    sizes.append(km)
    times.append(wall)
    slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
    figures["size_loglog_slope"] = round(float(slope), 2)
    # the fixed cost of a run (interpreter, imports, map load), from a linear fit
    per_km, fixed = np.polyfit(sizes, times, 1)
    figures["size_fit_fixed_s"] = round(float(fixed), 2)
    figures["size_fit_ms_per_edge_km"] = round(1000 * float(per_km), 2)


def run() -> dict[str, float | str]:
    """Measure the edge stage of the default map, memory, and growth with region size."""
    figures: dict[str, float | str] = {"load_avg_1min_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        _default_map(work, figures)
        _scaling(work, figures)
    figures["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    if not all(math.isfinite(v) for v in figures.values() if isinstance(v, float)):
        raise RuntimeError(f"non-finite figure in {figures}")
    return figures
