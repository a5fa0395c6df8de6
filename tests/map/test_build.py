"""Batch map generation (commap.map.build, executors and region).

Most tests build a sub-bbox of the default Andorra map (Andorra la Vella and Escaldes: 814
directed edges, 150 edge-km) at H3 resolution 8, so that there are enough tiles (23) for a
killed build to stop midway; one slow test builds the whole default map.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from commap.errors import InvalidInputError
from commap.files import sha256_file
from commap.geo.roads import route_from_edges
from commap.map import build as batch
from commap.map import executors, region
from commap.map import tile as tile_job
from commap.map.build import TileParams, build_map
from commap.map.comm_map import CommMap
from commap.progress import Progress
from commap.radio.quality import QOUT_SINR_DB, USABLE_SINR_DB
from tests.support.paths import MAPS, REPO
from tests.support.specs import SUBREGION_BBOX, subregion_spec

ANDORRA = MAPS / "andorra"
DATA = ANDORRA / "data"
PARAMS = TileParams(resolution=8)


def _manifest(map_dir: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((map_dir / "manifest.json").read_text(encoding="utf-8"))
    return payload


def _checksums(map_dir: Path) -> dict[str, str]:
    files: dict[str, str] = _manifest(map_dir)["files"]
    return files


def _leftovers(out: Path) -> list[Path]:
    """Anything a build left beside its output (partial directories, locks)."""
    return sorted(out.parent.glob(f".{out.name}.*"))


class RecordingProgress:
    """A Progress that remembers every call."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.resumed = 0
        self.advanced = 0
        self.messages: list[str] = []

    def total(self, steps: int, done: int = 0) -> None:
        self.totals.append(steps)
        self.resumed = done

    def advance(self, steps: int = 1) -> None:
        self.advanced += steps

    def message(self, text: str) -> None:
        self.messages.append(text)


@pytest.fixture(scope="module")
def sub_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return subregion_spec(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def serial_build(sub_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    progress = RecordingProgress()
    out = tmp_path_factory.mktemp("serial") / "built"
    build_map(sub_spec, out, tile_params=PARAMS, progress=progress)
    return out, progress


@pytest.fixture(scope="module")
def serial_map(serial_build: tuple[Path, Any]) -> Path:
    return serial_build[0]


@pytest.fixture(scope="module")
def base_map(sub_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same map built without its edge table."""
    return build_map(sub_spec, tmp_path_factory.mktemp("base") / "built", edges=False)


@pytest.fixture(scope="module")
def sub_map(serial_map: Path) -> CommMap:
    return CommMap.load(serial_map)


@pytest.fixture(scope="module")
def table(sub_map: CommMap) -> gpd.GeoDataFrame:
    return sub_map.edge_table()


# -- pure pieces ---------------------------------------------------------------------------------


def test_tile_params_and_executor_options_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="app"):
        TileParams(app="video")
    with pytest.raises(InvalidInputError, match="resolution"):
        TileParams(resolution=-1)
    with pytest.raises(InvalidInputError, match="workers"):
        executors.check_executor("processes", 0, None)
    with pytest.raises(InvalidInputError, match="scheduler"):
        executors.check_executor("processes", 2, "tcp://127.0.0.1:8786")
    assert executors.check_executor("dask", None, "tcp://127.0.0.1:8786") >= 1


def test_build_map_rejects_bad_executor_before_building(sub_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "built"
    with pytest.raises(InvalidInputError, match="unknown executor"):
        build_map(sub_spec, out, executor="threads")
    assert not out.exists() and _leftovers(out) == []


def test_through_chains_partition_the_edges_and_follow_the_road(sub_map: CommMap) -> None:
    graph = sub_map.roads
    assert graph is not None
    tiles = batch.assign_tiles(graph, PARAMS.resolution)
    assert sum(len(e) for e in tiles.values()) == graph.number_of_edges()
    for edges in tiles.values():
        chains = batch.through_chains(graph, edges)
        flat = [e for chain in chains for e in chain]
        assert sorted(flat) == sorted(edges)  # every edge exactly once
        for chain in chains:
            for a, b in itertools.pairwise(chain):
                assert a[1] == b[0] and b[1] != a[0]  # joined, no U-turn
        assert batch.through_chains(graph, list(reversed(edges))) == chains  # deterministic


def test_a_straight_road_is_one_chain_and_a_u_turn_is_not_followed() -> None:
    graph = nx.MultiDiGraph()
    points = {1: (1.50, 42.5), 2: (1.51, 42.5), 3: (1.52, 42.5)}
    for u, v in ((1, 2), (2, 3), (3, 2), (2, 1)):
        graph.add_edge(u, v, key=0, geometry=shapely.LineString([points[u], points[v]]))
    chains = batch.through_chains(graph, list(graph.edges(keys=True)))
    assert chains == [[(1, 2, 0), (2, 3, 0)], [(3, 2, 0), (2, 1, 0)]]


def test_build_tile_rejects_an_unknown_tile(serial_map: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds no edge"):
        batch.build_tile(serial_map, "8f0000000000000", PARAMS)


# -- the edge table ------------------------------------------------------------------------------


def test_segment_lines_trace_their_edge_end_to_end(sub_map: CommMap, table: Any) -> None:
    """An edge's segment lines, in order, run from its first vertex to its last through every
    vertex of its geometry, each line's ends where the next one starts."""
    graph = sub_map.roads
    assert graph is not None
    for (u, v, k), rows in itertools.islice(table.groupby(["u", "v", "key"]), 200):
        rows = rows.sort_values("seg")
        parts = [shapely.get_coordinates(g) for g in rows.geometry]
        for before, after in itertools.pairwise(parts):
            np.testing.assert_allclose(before[-1], after[0], rtol=0, atol=1e-12)
        traced = np.vstack([parts[0], *(p[1:] for p in parts[1:])])
        edge = shapely.get_coordinates(graph.edges[u, v, k]["geometry"])
        np.testing.assert_array_equal(traced[[0, -1]], edge[[0, -1]])
        inside = {tuple(xy) for xy in traced.tolist()}
        assert all(tuple(xy) in inside for xy in edge.tolist())


def test_every_directed_edge_is_cut_into_map_segments(sub_map: CommMap, table: Any) -> None:
    graph = sub_map.roads
    assert graph is not None
    per_edge = table.groupby(["u", "v", "key"])["length_m"].agg(["sum", "count", "max"])
    assert len(per_edge) == graph.number_of_edges()
    lengths = np.array([graph.edges[e]["length_m"] for e in per_edge.index])
    np.testing.assert_allclose(per_edge["sum"].to_numpy(), lengths, rtol=1e-9)
    assert (per_edge["max"] <= sub_map.segment_m + 1e-9).all()
    assert per_edge["count"].sum() == len(table)
    stats = sub_map.coverage_stats()
    assert stats["edge_km"] == pytest.approx(sub_map.manifest.roads.edge_length_km, abs=1e-3)
    assert stats["segments"] == len(table)


def test_quality_columns_match_the_map_layers(sub_map: CommMap, table: Any) -> None:
    """The table holds what the layers say at the segment centres, at the reference time."""
    graph = sub_map.roads
    assert graph is not None
    reference_s = sub_map.manifest.edges["parameters"]["reference_s"]
    assert reference_s == sub_map.default_departure_s
    box = shapely.box(*SUBREGION_BBOX)
    inside = [e for e in graph.edges(keys=True) if box.contains(graph.edges[e]["geometry"])]
    tunnel_edge = next(e for e in inside if graph.edges[e]["tunnel"])
    bridge_edge = next(e for e in inside if graph.edges[e]["bridge"])
    for edge in [inside[0], tunnel_edge, bridge_edge]:
        corridor = sub_map.corridor(route_from_edges(graph, [edge]), departure_s=reference_s)
        rows = table[
            (table["u"] == edge[0]) & (table["v"] == edge[1]) & (table["key"] == edge[2])
        ].sort_values("seg")
        np.testing.assert_allclose(rows["start_m"].to_numpy(), corridor.distance_m)
        for nid in sub_map.catalogue.ids:
            quality = sub_map.layers[nid].sample(
                corridor.lon,
                corridor.lat,
                np.full(len(corridor), reference_s),
                in_tunnel=corridor.in_tunnel,
                under_bridge=corridor.under_bridge,
            )
            np.testing.assert_allclose(rows[f"{nid}_sinr_db"], quality.sinr_db, atol=1e-4)
    in_tunnel = table[table["in_tunnel"]]
    assert len(in_tunnel) > 0 and in_tunnel["gap"].all()  # no network reaches into a tunnel


def test_gap_and_usable_flags_follow_the_one_usable_threshold(sub_map: CommMap, table: Any) -> None:
    # "usable" is Qin everywhere (plots, reports, viewer), the built table included: a segment
    # between Qout and Qin holds a link already up but cannot set one up
    sinr = np.column_stack([table[f"{nid}_sinr_db"] for nid in sub_map.catalogue.ids])
    usable = (sinr >= USABLE_SINR_DB).sum(axis=1)
    assert ((sinr >= QOUT_SINR_DB) & (sinr < USABLE_SINR_DB)).any()  # the two would differ
    np.testing.assert_array_equal(table["usable_networks"], usable)
    np.testing.assert_array_equal(table["gap"], usable == 0)


def test_handovers_are_where_the_recommended_network_changes(table: Any) -> None:
    ordered = table.sort_values(["tile", "chain", "chain_pos"])
    same_chain = (ordered["tile"].to_numpy()[1:] == ordered["tile"].to_numpy()[:-1]) & (
        ordered["chain"].to_numpy()[1:] == ordered["chain"].to_numpy()[:-1]
    )
    network = ordered["network"].to_numpy()
    changed = same_chain & (network[1:] != network[:-1])
    frm = ordered["handover_from"].to_numpy()[1:]
    np.testing.assert_array_equal(frm != "", changed)
    np.testing.assert_array_equal(frm[changed], network[:-1][changed])
    first = np.concatenate(([True], ~same_chain))
    assert (ordered["handover_from"].to_numpy()[first] == "").all()
    assert (ordered["handover_kind"].to_numpy()[1:][changed] != "").all()


def test_gap_list_and_statistics_add_up(sub_map: CommMap, table: Any) -> None:
    gaps = sub_map.coverage_gaps()
    stats = sub_map.coverage_stats()
    gap_m = float(table.loc[table["gap"], "length_m"].sum())
    assert len(gaps) == stats["gaps"] > 0
    assert float(gaps["length_m"].sum()) == pytest.approx(gap_m)
    assert stats["gap_km"] == pytest.approx(gap_m / 1000.0, abs=1e-3)
    assert (gaps.geometry.geom_type == "LineString").all()
    assert stats["handovers"] == int((table["handover_kind"] != "").sum())
    recommended = sum(n["recommended_km"] for n in stats["networks"].values())
    assert recommended == pytest.approx(stats["edge_km"], abs=0.01)
    for nid, net in stats["networks"].items():
        covered = table.loc[table[f"{nid}_sinr_db"] >= USABLE_SINR_DB, "length_m"].sum() / 1000.0
        assert net["covered_km"] == pytest.approx(covered, abs=1e-3)
        assert sum(net["covered_km_by_provenance"].values()) == pytest.approx(covered, abs=0.01)
    assert region.summary_lines(stats)[0].startswith(f"{stats['edge_km']} edge-km")


def test_parts_are_hilbert_sorted_geoparquet(serial_map: Path, sub_map: CommMap) -> None:
    section = _manifest(serial_map)["edges"]
    assert section["format"] == region.EDGES_FORMAT
    for tile in section["tiles"]:
        part = gpd.read_parquet(serial_map / tile["part"])
        assert part.crs.to_epsg() == 4326 and len(part) == tile["segments"]
        assert (part.geometry.geom_type == "LineString").all()
        assert (part["tile"] == tile["id"]).all()
        bounds = tile_job._state(serial_map, PARAMS.resolution).bounds
        distance = part.geometry.hilbert_distance(total_bounds=bounds).to_numpy()
        assert (np.diff(distance) >= 0).all()


def test_geopackage_opens_with_pyogrio(serial_map: Path, table: Any) -> None:
    path = serial_map / "edges" / "edges.gpkg"
    layers = dict(pyogrio.list_layers(path).tolist())
    assert layers == {"segments": "LineString", "gaps": "LineString", "handovers": "Point"}
    segments = pyogrio.read_dataframe(path, layer="segments")
    assert len(segments) == len(table) and segments.crs.to_epsg() == 4326
    assert set(table.columns) <= set(segments.columns)
    handovers = pyogrio.read_dataframe(path, layer="handovers")
    assert len(handovers) == int((table["handover_kind"] != "").sum())


def test_edge_table_reads_a_bbox_and_columns(sub_map: CommMap, table: Any) -> None:
    box = (1.52, 42.50, 1.53, 42.51)
    part = sub_map.edge_table(bbox=box, columns=["network", "gap"])
    assert 0 < len(part) < len(table)
    assert list(part.columns) == ["network", "gap", "geometry"]
    assert part.intersects(shapely.box(*box)).all()
    assert len(sub_map.edge_table(bbox=(0.0, 0.0, 0.001, 0.001))) == 0


def test_map_without_edge_table_says_so(base_map: Path, serial_map: Path) -> None:
    out = base_map
    cmap = CommMap.load(out)
    assert not cmap.has_edge_table and cmap.manifest.edges is None
    assert not any(name.startswith("edges/") for name in cmap.manifest.files)
    with pytest.raises(InvalidInputError, match="no edge table"):
        cmap.edge_table()
    # the base tables do not depend on the edge stage
    full = _checksums(serial_map)
    assert {k: v for k, v in full.items() if not k.startswith("edges/")} == _checksums(out)


# -- manifest, progress, executors ---------------------------------------------------------------


def test_manifest_records_inputs_parameters_and_checksums(
    serial_build: tuple[Path, RecordingProgress],
) -> None:
    out, progress = serial_build
    manifest = _manifest(out)
    assert set(manifest["inputs"]["files"]) == {
        str(DATA / name) for name in ("andorra.osm.pbf", "N42E001.hgt.zip", "starlink.txt")
    }
    params = manifest["edges"]["parameters"]
    assert params["resolution"] == 8 and params["app"] == "telemetry"
    assert params["segment_m"] == 50.0 and params["usable_sinr_db"] == USABLE_SINR_DB
    for tile in manifest["edges"]["tiles"]:
        assert manifest["files"][tile["part"]] == tile["sha256"]
    assert "edges/parts.log" not in manifest["files"]
    assert isinstance(progress, Progress)
    n_tiles = len(manifest["edges"]["tiles"])
    assert progress.totals == [n_tiles] and progress.advanced == n_tiles
    assert _leftovers(out) == []


def test_processes_executor_gives_identical_edge_tables(
    base_map: Path, serial_map: Path, tmp_path: Path
) -> None:
    """The edge stage alone on a copy of the base tables (build_map end to end: see dask)."""
    copy = tmp_path / "built"
    shutil.copytree(base_map, copy)
    section = batch.run_batch(copy, PARAMS, executor="processes", workers=2)
    assert section == _manifest(serial_map)["edges"]
    expected = {k: v for k, v in _checksums(serial_map).items() if k.startswith("edges/")}
    found = {
        str(p.relative_to(copy)): sha256_file(p) for p in (copy / "edges").rglob("*") if p.is_file()
    }
    assert found == expected


def _edge_checksums(map_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(map_dir)): sha256_file(p)
        for p in (map_dir / "edges").rglob("*")
        if p.is_file()
    }


def test_processes_executor_from_a_threaded_caller_gives_identical_edge_tables(
    base_map: Path, serial_map: Path, tmp_path: Path
) -> None:
    """A caller running other threads (a server) gets clean spawned workers, same output."""
    copy = tmp_path / "built"
    shutil.copytree(base_map, copy)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert executors.pool_start_method() == "spawn"
        section = batch.run_batch(copy, PARAMS, executor="processes", workers=2)
    finally:
        stop.set()
        other.join()
    assert section == _manifest(serial_map)["edges"]
    expected = {k: v for k, v in _checksums(serial_map).items() if k.startswith("edges/")}
    assert _edge_checksums(copy) == expected


@pytest.mark.distributed
def test_dask_cluster_given_by_address_gives_identical_edge_tables(
    base_map: Path, serial_map: Path, tmp_path: Path
) -> None:
    from dask.distributed import Client, LocalCluster

    copy = tmp_path / "built"
    shutil.copytree(base_map, copy)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        section = batch.run_batch(
            copy, PARAMS, executor="dask", scheduler=cluster.scheduler_address
        )
        # the build leaves a cluster it did not start running, for the next job
        with Client(cluster.scheduler_address) as client:
            assert client.submit(sum, [1, 2]).result() == 3
            assert len(client.scheduler_info()["workers"]) == 2
            # fresh workers built every tile without importing pandas or geopandas, whose
            # import costs more CPU than a small tile
            assert sorted(client.run(_heavy_modules_probe()).values()) == [[], []]
    assert section == _manifest(serial_map)["edges"]
    expected = {k: v for k, v in _checksums(serial_map).items() if k.startswith("edges/")}
    assert _edge_checksums(copy) == expected


@pytest.fixture(scope="module")
def dask_scheduler() -> Any:
    """Address of a two-worker cluster that lives for the module's tests (a long-lived cluster)."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def _heavy_modules_probe() -> Any:
    """A function listing the libraries a tile task does without that its process imported.

    For ``client.run`` on dask workers: a nested function travels by value, so the workers do
    not import this test module (which imports pandas).
    """

    def loaded() -> list[str]:
        return [name for name in ("pandas", "geopandas", "pyogrio") if name in sys.modules]

    return loaded


def _worker_map_loads(scheduler: str) -> int:
    """How many times the cluster's workers have loaded a map for tiles, all told."""
    from dask.distributed import Client

    def loads() -> int:
        from commap.map import tile

        return int(tile._map_state.cache_info().misses)

    with Client(scheduler) as client:
        return sum(client.run(loads).values())


def _serial_edges(base: Path, copy: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The edge section and edge-file checksums of a serial edge stage on a copy of ``base``."""
    shutil.copytree(base, copy)
    section = batch.run_batch(copy, PARAMS)
    return section, _edge_checksums(copy)


@pytest.mark.distributed
def test_a_long_lived_dask_cluster_builds_twice_from_the_map_its_workers_loaded(
    base_map: Path, serial_map: Path, dask_scheduler: str, tmp_path: Path
) -> None:
    expected = {k: v for k, v in _checksums(serial_map).items() if k.startswith("edges/")}
    copy = tmp_path / "built"
    loads = []
    for _ in range(2):  # the same map again: a build run twice, or resumed from scratch
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(base_map, copy)
        section = batch.run_batch(copy, PARAMS, executor="dask", scheduler=dask_scheduler)
        assert section == _manifest(serial_map)["edges"]
        assert _edge_checksums(copy) == expected
        loads.append(_worker_map_loads(dask_scheduler))
    assert loads[1] == loads[0]  # no worker loaded the map again


@pytest.mark.distributed
def test_dask_workers_never_build_from_a_replaced_map_they_loaded_before(
    base_map: Path, dask_scheduler: str, tmp_path: Path
) -> None:
    """Another version of the map at the same path, even with the manifest's size and time."""
    other_base = build_map(
        subregion_spec(tmp_path / "spec-other", seed=8), tmp_path / "other-base", edges=False
    )
    other_section, other_files = _serial_edges(other_base, tmp_path / "other-serial")
    copy = tmp_path / "built"
    shutil.copytree(base_map, copy)
    first = batch.run_batch(copy, PARAMS, executor="dask", scheduler=dask_scheduler)
    assert first["totals"] != other_section["totals"]  # the two versions differ
    before = (copy / "manifest.json").stat()
    shutil.rmtree(copy)
    shutil.copytree(other_base, copy)
    assert (copy / "manifest.json").stat().st_size == before.st_size
    os.utime(copy / "manifest.json", ns=(before.st_atime_ns, before.st_mtime_ns))
    second = batch.run_batch(copy, PARAMS, executor="dask", scheduler=dask_scheduler)
    assert second == other_section
    assert _edge_checksums(copy) == other_files


@pytest.mark.distributed
def test_dask_executor_gives_identical_output(
    sub_spec: Path, serial_map: Path, tmp_path: Path
) -> None:
    import socket
    import warnings

    out = tmp_path / "built"
    # another cluster on this machine holds the usual dashboard port: no clash, no warning
    with socket.socket() as taken, warnings.catch_warnings():
        with contextlib.suppress(OSError):  # somebody else holds it already: the same case
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        warnings.simplefilter("error", UserWarning)
        build_map(sub_spec, out, tile_params=PARAMS, executor="dask", workers=2)
    assert _checksums(out) == _checksums(serial_map)
    import dask_geopandas

    parts = dask_geopandas.read_parquet(out / "edges" / "parts")
    assert parts.npartitions == len(_manifest(out)["edges"]["tiles"])
    total_km = float(parts["length_m"].sum().compute()) / 1000.0
    assert total_km == pytest.approx(_manifest(out)["roads"]["edge_length_km"], abs=1e-3)


@pytest.mark.distributed
def test_unreachable_scheduler_is_a_clear_error(
    sub_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "_SCHEDULER_TIMEOUT_S", 1.0)
    out = tmp_path / "built"
    with pytest.raises(InvalidInputError, match="dask scheduler"):
        build_map(sub_spec, out, tile_params=PARAMS, executor="dask", scheduler="tcp://127.0.0.1:9")
    assert not out.exists() and _leftovers(out) == []


# -- crash, resume, corrupt input ----------------------------------------------------------------


def _partial_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.glob(f".{out.name}.partial-*") if p.is_dir())


def _recorded_parts(out: Path) -> int:
    logs = list(out.parent.glob(f".{out.name}.partial-*/edges/parts.log"))
    return sum(len(p.read_text().splitlines()) for p in logs) if logs else 0


def test_killed_build_resumes_with_identical_checksums(
    sub_spec: Path, serial_map: Path, tmp_path: Path
) -> None:
    out = tmp_path / "built"
    code = (
        "from commap.map.build import TileParams, build_map\n"
        f"build_map({str(sub_spec)!r}, {str(out)!r}, tile_params=TileParams(resolution=8))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while _recorded_parts(out) < 1:
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "no part appeared in time"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    n_tiles = len(_manifest(serial_map)["edges"]["tiles"])
    assert not out.exists()
    (partial,) = _partial_dirs(out)
    done = _recorded_parts(out)
    assert 1 <= done < n_tiles, "the kill should land midway"
    progress = RecordingProgress()
    build_map(sub_spec, out, tile_params=PARAMS, progress=progress)
    assert any("resuming" in m for m in progress.messages)
    assert any(f"({done} already built)" in m for m in progress.messages)
    assert progress.resumed == done and progress.resumed + progress.advanced == n_tiles
    assert _checksums(out) == _checksums(serial_map)
    assert not partial.exists() and _leftovers(out) == []


def _truncated_pbf(directory: Path) -> Path:
    path = directory / "truncated.osm.pbf"
    data = (DATA / "andorra.osm.pbf").read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _bad_tle(directory: Path) -> Path:
    path = directory / "bad-starlink.txt"
    lines = (DATA / "starlink.txt").read_text(encoding="utf-8").splitlines()
    line = lines[4]  # line 1 of the second element set: break its checksum digit
    lines[4] = line[:-1] + str((int(line[-1]) + 1) % 10)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: {"roads": _truncated_pbf(d)}, r"truncated\.osm\.pbf: cannot read OSM data"),
        (lambda d: {"tle": _bad_tle(d)}, r"bad-starlink\.txt line 5: TLE checksum mismatch"),
    ],
    ids=["truncated-pbf", "bad-tle"],
)
def test_corrupt_input_fails_clearly_and_keeps_the_old_map(
    corrupt: Any, message: str, serial_map: Path, tmp_path: Path
) -> None:
    spec = subregion_spec(tmp_path / "spec", **corrupt(tmp_path))
    out = tmp_path / "built"
    with pytest.raises(InvalidInputError, match=message):
        build_map(spec, out, tile_params=PARAMS)
    assert not out.exists() and _leftovers(out) == []
    # a map already in place survives a failed rebuild untouched
    shutil.copytree(serial_map, out)
    with pytest.raises(InvalidInputError, match=message):
        build_map(spec, out, tile_params=PARAMS)
    assert _checksums(out) == _checksums(serial_map) and _leftovers(out) == []
    CommMap.load(out)


def test_stale_partial_of_other_inputs_is_removed(sub_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "built"
    stale = tmp_path / ".built.partial-0000000000000000"
    (stale / "edges").mkdir(parents=True)
    build_map(sub_spec, out, edges=False)
    assert not stale.exists() and _leftovers(out) == []


# -- the whole default map -----------------------------------------------------------------------


@pytest.mark.slow
def test_whole_default_map_on_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "built"
    build_map(ANDORRA / "map.toml", out, executor="processes", workers=2)
    cmap = CommMap.load(out)
    assert cmap.roads is not None and cmap.has_edge_table
    stats = cmap.coverage_stats()
    assert stats["edge_km"] == pytest.approx(cmap.manifest.roads.edge_length_km, abs=1e-3)
    table = cmap.edge_table(columns=["u", "v", "key", "network", "gap", "in_tunnel"])
    edges = set(map(tuple, table[["u", "v", "key"]].drop_duplicates().to_numpy().tolist()))
    assert edges == set(cmap.roads.edges(keys=True))
    # every network appears, the national operator carries most of the region
    assert set(table["network"]) <= set(cmap.catalogue.ids)
    assert max(stats["networks"], key=lambda n: stats["networks"][n]["recommended_km"]) == "ad-lte"
    # the only gaps are in tunnels (satellites cover the open valleys)
    assert pd.Series(table.loc[table["gap"], "in_tunnel"]).all()
    assert 0.0 < stats["gap_km"] <= stats["tunnel_km"]
