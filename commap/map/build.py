"""Building a map: spec -> built map directory, and the per-edge table of its region, tile by tile.

:func:`build_map` reads the spec (``map.toml``, :func:`read_spec`), builds the base tables (roads,
terrain, one layer per network, road-sample caches) and the edge table, and writes the
:class:`~commap.map.manifest.Manifest`; the directory appears only complete.

The edge table is built tile by tile: the per-tile job (tiles, through-chains, one tile's part)
is :mod:`commap.map.tile`, which batch workers import without pandas; its public names are
re-exported here.

:func:`run_batch` runs the missing tiles with an executor (:mod:`commap.map.executors`),
skips parts whose checksum is already recorded (resume after a crash), and merges the region
outputs (:mod:`commap.map.region`) as tiles arrive: the gap list, per-network coverage
statistics and a GeoPackage. A worker process loads the map once for all its tiles, and keeps
it for later builds of the same map version (a long-lived dask cluster). :func:`build_map` calls it as the last stage of a map build.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from numpy.typing import NDArray

from commap import __version__
from commap.arrays import read_parquet_columns
from commap.errors import CommapError, InvalidInputError
from commap.files import fsync_dir, sha256_file
from commap.geo.terrain import Terrain, srtm_tile_names
from commap.map.comm_map import verify_files
from commap.map.executors import PartLog, check_executor, run_tiles
from commap.map.manifest import (
    FORMAT,
    MANIFEST,
    NETWORK_FIELDS,
    BuildInputs,
    IngestCount,
    Manifest,
    NetworkEntry,
    RoadsSource,
    TerrainSource,
)
from commap.map.parts import EDGES_DIR, PARTS_DIR, PartSummary, part_path
from commap.map.region import EDGES_FORMAT, region_writer
from commap.map.tile import (
    DEFAULT_TILE_RESOLUTION,
    MAX_THROUGH_TURN_DEG,
    EdgeKey,
    TileParams,
    _map_bounds,
    _tiles_of,
    assign_tiles,
    build_tile,
    clear_state,
    load_state,
    map_version,
    summarized_tile,
    through_chains,
)
from commap.progress import ProgressArg, as_progress
from commap.radio.layers import LayerContext, load_layer, prepare_layer
from commap.radio.layers.cached import road_sample_points, write_cache
from commap.radio.quality import USABLE_SINR_DB

__all__ = [
    "CACHED_LAYER_TYPES",
    "DEFAULT_TILE_RESOLUTION",
    "MAX_THROUGH_TURN_DEG",
    "TileParams",
    "assign_tiles",
    "build_map",
    "build_tile",
    "run_batch",
    "through_chains",
]

if TYPE_CHECKING:  # the spec module imports every layer's reader (scipy, ...): read_spec
    # imports it when a whole map is built
    from commap.map.spec import MapSpec

log = logging.getLogger(__name__)

_Say = Callable[[str], None]

# Completion log of a running build (tile + checksum per line); deleted once the map is whole.
PART_LOG = f"{EDGES_DIR}/parts.log"
# Time-invariant layers sampled once along every road at build time (see layers/cached.py).
CACHED_LAYER_TYPES = frozenset({"terrestrial"})

_PLANNER = "exact DP (commap.plan.solve, solver='dp') per through-chain of directed edges in a tile"


# -- what the coordinating process knows of a map ------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """What the coordinating process needs: tiles and map facts, without loading the layers."""

    name: str
    network_ids: tuple[str, ...]
    segment_m: float
    default_departure_s: float
    tiles: dict[str, list[EdgeKey]]
    tile_km: dict[str, float]
    bounds: tuple[float, float, float, float]


@functools.lru_cache(maxsize=2)
def _cached_index(map_dir: str, version: str, resolution: int) -> _Index:
    from commap.geo.roads import EDGES_FILE

    del version  # cache key only
    root = Path(map_dir)
    manifest = Manifest.read(root / MANIFEST)
    if manifest.roads is None:
        raise InvalidInputError(f"map {map_dir} has no road graph: no edge table to build")
    try:  # the columns alone, without pandas (a fifth of the time)
        road, _ = read_parquet_columns(
            root / manifest.roads.dir / EDGES_FILE, ["u", "v", "key", "length_m", "geometry"]
        )
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"map {map_dir}: unreadable road table ({exc})") from None
    keys = list(
        zip(
            *(np.asarray(road[c]).astype(np.int64).tolist() for c in ("u", "v", "key")), strict=True
        )
    )
    geometries = list(shapely.from_wkb(np.asarray(road["geometry"], dtype=object)))
    tiles = _tiles_of(keys, geometries, resolution)
    length = dict(zip(keys, np.asarray(road["length_m"], dtype=float).tolist(), strict=True))
    return _Index(
        name=manifest.name,
        network_ids=manifest.network_ids,
        segment_m=manifest.segment_m,
        # a map without a departure of its own: the edge table is a snapshot at build time
        default_departure_s=(
            manifest.default_departure_s
            if manifest.default_departure_s is not None
            else float(math.floor(time.time() / 3600.0) * 3600.0)
        ),
        tiles=tiles,
        tile_km={t: sum(length[e] for e in edges) / 1000.0 for t, edges in tiles.items()},
        bounds=_map_bounds(geometries, manifest.bbox),
    )


def _index(map_dir: Path, resolution: int) -> _Index:
    return _cached_index(*map_version(map_dir), resolution)


def _clear_state() -> None:
    clear_state()
    _cached_index.cache_clear()


# -- the edge stage: every tile, resumable --------------------------------------------------------


def _finished(map_dir: Path, tiles: Iterable[str], record: PartLog) -> set[str]:
    """Tiles whose part exists and matches its recorded checksum."""
    ok = set()
    for tile in tiles:
        path = part_path(map_dir, tile)
        if tile in record.done and path.is_file() and sha256_file(path) == record.done[tile]:
            ok.add(tile)
    return ok


def _clean_parts(map_dir: Path, tiles: Iterable[str]) -> None:
    """Remove temporaries of killed writers and parts of tiles this build does not have."""
    for stale in (map_dir / EDGES_DIR).glob(".*.tmp-*"):
        stale.unlink()
    parts = map_dir / PARTS_DIR
    if not parts.is_dir():
        return
    wanted = {f"{t}.parquet" for t in tiles}
    for path in parts.iterdir():
        if path.name not in wanted:
            path.unlink()


def run_batch(
    map_dir: str | os.PathLike[str],
    params: TileParams | None = None,
    *,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: ProgressArg = None,
) -> dict[str, Any]:
    """Build every missing tile of a map and merge the region outputs.

    Parts already present with a matching checksum in the build's part log are kept, so a
    build killed midway resumes where it stopped and ends with the same bytes as a clean one.

    Parameters
    ----------
    map_dir : path-like
        Map directory with its base tables and ``manifest.json`` (during :func:`build_map`, the
        partial directory). Executors on other machines must see it at the same path.
    params : TileParams, optional
        Tiling and planning parameters (defaults: :class:`TileParams`).
    executor : {"serial", "processes", "dask"}
        Where tiles run; every executor gives identical output.
    workers : int, optional
        Worker processes for ``processes`` and a dask ``LocalCluster`` (default: CPU count).
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:port``), dask only.
    progress : commap.progress.Progress or callable(str), optional
        Progress callbacks; a plain callable receives status lines. Default: the log.

    Returns
    -------
    dict
        The ``edges`` section of the manifest: format, parameters, tiles with checksums, output
        files and region totals.

    Raises
    ------
    InvalidInputError
        Bad executor options, a map without roads, or an input a tile cannot use.
    """
    workers_n = check_executor(executor, workers, scheduler)
    report = as_progress(progress, label="edges", unit="tiles")
    root = Path(map_dir).resolve()
    params = params or TileParams()
    index = _index(root, params.resolution)
    if params.reference_s is None:
        params = TileParams(
            resolution=params.resolution, app=params.app, reference_s=index.default_departure_s
        )
    tiles = list(index.tiles)
    (root / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    record = PartLog(root / PART_LOG)
    _clean_parts(root, tiles)
    finished = _finished(root, tiles, record)
    # largest tiles first: the last tile to start is a small one, so workers finish together;
    # the GeoPackage takes the segments in this order too, most of them while tiles still run
    order = sorted(tiles, key=lambda t: (-index.tile_km[t], t))
    todo = [t for t in order if t not in finished]
    report.message(
        f"edges: {len(tiles)} tiles ({len(finished)} already built), executor {executor}"
    )
    report.total(len(tiles), done=len(finished))
    assert params.reference_s is not None
    with region_writer(
        root, order=order, network_ids=index.network_ids, reference_s=params.reference_s
    ) as merge:
        for tile in order:
            if tile in finished:
                merge.add(tile)

        def done(tile: str, result: tuple[Path, str, PartSummary]) -> None:
            _, sha256, summary = result
            record.add(tile, sha256)
            merge.add(tile, summary)
            report.advance(1)

        run_tiles(
            summarized_tile,
            root,
            todo,
            params,
            executor=executor,
            workers=workers_n,
            scheduler=scheduler,
            done=done,
            warm=functools.partial(load_state, root, params.resolution),
        )
        report.message("edges: merging gaps, statistics and the GeoPackage")
        region = merge.finish(
            tiles={tile: len(index.tiles[tile]) for tile in index.tiles},
            checksums=record.done,
            bounds=index.bounds,
        )
    section = {
        "format": EDGES_FORMAT,
        "parameters": {
            **params.as_dict(),
            "segment_m": index.segment_m,
            "usable_sinr_db": USABLE_SINR_DB,
            "through_turn_deg": MAX_THROUGH_TURN_DEG,
            "planner": _PLANNER,
        },
        **region,
    }
    (root / PART_LOG).unlink(missing_ok=True)
    _clear_state()
    return section


# -- the whole map --------------------------------------------------------------------------------


def build_map(
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    progress: ProgressArg = None,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    edges: bool = True,
    tile_params: TileParams | None = None,
) -> Path:
    """Build a map from its spec into ``out_dir`` (replaced atomically when complete).

    The build runs in a partial directory beside ``out_dir``, ``.<name>.partial-<key>``, whose
    key hashes the spec, every input file it names, the commap code and the batch parameters.
    A build that was killed resumes from it: the base tables (roads, layers, caches) when they
    were complete, and every edge-table part already recorded. A failure on bad input
    (:class:`~commap.errors.CommapError`) removes it; ``out_dir`` appears only complete.

    Parameters
    ----------
    spec_path : path of ``map.toml``.
    out_dir : the built map directory.
    progress : called with a short message at each step (for CLIs), or a
        :class:`commap.progress.Progress` (tile counts for a progress bar as well).
    executor : ``serial``, ``processes`` or ``dask``: where the edge-table tiles run.
    workers : worker processes for ``processes`` and a dask ``LocalCluster`` (default: CPUs).
    scheduler : address of an existing dask scheduler (``tcp://host:port``; dask only).
    edges : build the per-edge table for maps with roads.
    tile_params : tiling and planning parameters of the edge table (default
        :class:`TileParams`).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InvalidInputError
        A bad spec, a missing or corrupt input file, bad executor options, or another build
        writing ``out_dir`` at the same time.

    Examples
    --------
    >>> build_map("no/such/map.toml", "built")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: map spec no/such/map.toml does not exist
    """
    report = as_progress(progress, label="edges", unit="tiles")
    from commap.map.spec import read_spec

    spec = read_spec(spec_path)
    check_executor(executor, workers, scheduler)
    params = tile_params or TileParams()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(spec)
    key = _build_key(inputs, params.as_dict() if edges else None)
    partial = out.parent / f".{out.name}.partial-{key[:16]}"
    with _exclusive(out):
        _drop_stale_partials(out, keep=partial)
        try:
            manifest = _base_stage(spec, partial, key, inputs, report.message)
            if edges and manifest.roads is not None:
                section = run_batch(
                    partial,
                    params,
                    executor=executor,
                    workers=workers,
                    scheduler=scheduler,
                    progress=report,
                )
                manifest = replace(manifest, edges=section)
            replace(manifest, files=_file_checksums(partial)).write(partial / MANIFEST)
            _replace_dir(partial, out)
        except CommapError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except BaseException:
            log.warning("build of %s stopped; run it again to resume from %s", out, partial)
            raise
    report.message(f"map {spec.name} built in {out}")
    return out


def _inputs(spec: MapSpec) -> BuildInputs:
    """The spec and every file (or directory of files) its values name, with checksums."""
    found: dict[str, str] = {}

    def visit(value: Any) -> None:
        if isinstance(value, Mapping):
            for item in value.values():
                visit(item)
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value and "\n" not in value and len(value) < 1024:
            path = spec.source_dir / value
            try:
                if path.is_file():
                    found[value] = sha256_file(path)
                elif path.is_dir() and value not in (".", ".."):
                    for item in sorted(p for p in path.rglob("*") if p.is_file()):
                        found[f"{value}/{item.relative_to(path)}"] = sha256_file(item)
            except OSError:  # a text value that is no file name (too long, ...)
                pass

    visit(spec.raw)
    return BuildInputs(
        spec_file=spec.path.name,
        spec_sha256=sha256_file(spec.path),
        files=dict(sorted(found.items())),
    )


def _code_digest() -> str:
    """Checksum of the commap sources: a partial build of other code is never resumed."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent  # the whole commap package
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_key(inputs: BuildInputs, edge_params: Mapping[str, Any] | None) -> str:
    payload = {
        "format": FORMAT,
        "commap": __version__,
        "code": _code_digest(),
        "inputs": inputs.to_dict(),
        "edges": edge_params,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# Descriptors of the build locks this process holds. A forked pool worker closes its copies:
# an flock lasts while any descriptor of it is open, and a worker left behind by a killed
# build must not keep the lock from the build that resumes it.
_HELD_LOCKS: set[int] = set()


def _close_held_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_close_held_locks)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``out``: one build of a directory at a time."""
    lock = out.parent / f".{out.name}.lock"
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInputError(
                f"{out}: another build is writing this map (lock {lock})", field="out"
            ) from None
        _HELD_LOCKS.add(handle.fileno())
        try:
            yield
        finally:
            _HELD_LOCKS.discard(handle.fileno())
            lock.unlink(missing_ok=True)  # still held: no other build got it in between


def _drop_stale_partials(out: Path, *, keep: Path) -> None:
    """Partial builds of other inputs or code can never be resumed: remove them."""
    for path in out.parent.glob(f".{out.name}.partial-*"):
        if path != keep:
            log.info("removing stale partial build %s", path)
            shutil.rmtree(path, ignore_errors=True)


def _base_stage(spec: MapSpec, partial: Path, key: str, inputs: BuildInputs, say: _Say) -> Manifest:
    """The map without its edge table, reused from ``partial`` when complete there."""
    manifest_path = partial / MANIFEST
    if manifest_path.is_file():
        try:
            previous = Manifest.read(manifest_path)
            if previous.build_key == key:
                verify_files(partial, previous.files)
                say(f"resuming the partial build in {partial}")
                return replace(previous, edges=None, files={})
        except (OSError, CommapError) as exc:
            log.info("partial build %s is not reusable (%s): starting again", partial, exc)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    manifest = replace(_build_into(spec, partial, say), inputs=inputs, build_key=key)
    # loadable from here on (batch workers open it); also marks the base stage as complete
    manifest.write(manifest_path)
    return replace(manifest, files={})


def _file_checksums(built: Path) -> dict[str, str]:
    files = sorted(p for p in built.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(built)): sha256_file(p) for p in files}


def _copy_sources(spec: MapSpec, files: Sequence[str], built: Path, subdir: str) -> list[str]:
    out: list[str] = []
    (built / subdir).mkdir(exist_ok=True)
    for name in files:
        src = spec.source_dir / name
        if not src.is_file():
            raise InvalidInputError(f"{spec.path}: source file {name} does not exist")
        dst = built / subdir / src.name
        shutil.copyfile(src, dst)
        out.append(f"{subdir}/{src.name}")
    return out


def _build_networks(spec: MapSpec, ctx: LayerContext, progress: _Say) -> list[NetworkEntry]:
    points: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []

    def road_points() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not points:  # computed once, for the first cached layer
            assert ctx.roads is not None
            points.append(road_sample_points(ctx.roads, spacing_m=spec.segment_m / 2.0))
        return points[0]

    built_networks: list[NetworkEntry] = []
    for raw in spec.networks:
        entry = NetworkEntry(fields={k: raw[k] for k in NETWORK_FIELDS if k in raw}, layer={})
        network = entry.network()
        progress(f"network {network.id}: preparing {raw['layer'].get('type')} layer")
        try:
            layer = prepare_layer(network, raw["layer"], ctx)
        except InvalidInputError as exc:  # name the spec file whose layer is wrong
            raise InvalidInputError(f"{spec.path}: {exc}", field=exc.field) from exc
        cache = None
        if ctx.roads is not None and layer.get("type") in CACHED_LAYER_TYPES:
            progress(f"network {network.id}: sampling coverage along every road")
            cache = f"cache/{network.id}.parquet"
            write_cache(load_layer(network, layer, ctx), *road_points(), ctx.built_dir / cache)
        measured = None
        if "measured" in raw:
            from commap.radio.layers.measured import prepare_measured

            measured = prepare_measured(network, raw["measured"], ctx)
        report = layer.pop("ingest", None) or (measured or {}).pop("ingest", None)
        ingest = None
        if report is not None:
            ingest = IngestCount.parse_report(report, f"network {network.id}")
            for name, counts in ingest.items():
                dropped = ", ".join(f"{n} {why}" for why, n in counts.dropped.items()) or "none"
                progress(
                    f"network {network.id}: {name}: {counts.used} records used, dropped: {dropped}"
                )
        built_networks.append(
            replace(entry, layer=layer, cache=cache, measured=measured, ingest=ingest)
        )
    return built_networks


def _build_into(spec: MapSpec, built: Path, say: _Say) -> Manifest:
    from commap.geo import roads as roads_mod

    terrain = None
    terrain_source = None
    if not spec.terrain:
        tiles = srtm_tile_names(spec.bbox)
        warning = (
            f"{spec.path}: no [terrain]: coverage is modelled over flat earth (no hills, no "
            f"terrain shadow); in mountains add the SRTM tiles {', '.join(tiles)} "
            "(files = [...] under [terrain])"
        )
        # the CLI shows warnings as "warning: ..." lines: said once, through the log
        log.warning("%s", warning)
    if spec.terrain:
        say("terrain: loading SRTM tiles")
        tiles = _copy_sources(spec, list(spec.terrain.get("files", [])), built, "terrain")
        terrain = Terrain.from_files([built / f for f in tiles])
        terrain_source = TerrainSource(tuple(tiles), str(spec.terrain.get("attribution", "")))
    graph = None
    roads_source = None
    if spec.roads:
        say(f"roads: reading {spec.roads['file']}")
        graph = roads_mod.load_road_graph(spec.source_dir / spec.roads["file"], bbox=spec.bbox)
        roads_mod.write_road_graph(graph, built / "roads")
        length_km = sum(d["length_m"] for _, _, d in graph.edges(data=True)) / 1000.0
        roads_source = RoadsSource(
            dir="roads",
            source=Path(spec.roads["file"]).name,
            attribution=str(spec.roads.get("attribution", "")),
            nodes=graph.number_of_nodes(),
            edges=graph.number_of_edges(),
            edge_length_km=round(length_km, 3),
        )
        say(f"roads: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges")
    ctx = LayerContext(
        source_dir=spec.source_dir,
        built_dir=built,
        bbox=spec.bbox,
        terrain=terrain,
        roads=graph,
        seed=spec.seed,
        osm_file=spec.source_dir / spec.roads["file"] if spec.roads else None,
    )
    networks = _build_networks(spec, ctx, say)
    return Manifest(
        commap_version=__version__,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        bbox=spec.bbox,
        segment_m=spec.segment_m,
        seed=spec.seed,
        default_departure_s=spec.default_departure_s,
        roads=roads_source,
        terrain=terrain_source,
        networks=tuple(networks),
        attribution=tuple(_attributions(spec)),
        files=_file_checksums(built),
    )


def _attributions(spec: MapSpec) -> list[str]:
    found: list[str] = []
    tables: list[Any] = [spec.roads, spec.terrain]
    for net in spec.networks:
        tables += [net.get("layer"), net.get("measured")]
    for table in tables:
        if isinstance(table, Mapping) and table.get("attribution"):
            text = str(table["attribution"])
            if text not in found:
                found.append(text)
    return found


def _replace_dir(new: Path, target: Path) -> None:
    """Swap the complete ``new`` directory in for ``target`` (two renames, then clean up)."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
