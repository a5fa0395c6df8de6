"""CommMap: a road graph, terrain and one coverage layer per network, built and loaded as a unit.

A map has a *spec* (``map.toml``, source files beside it) and a *built* directory
(``manifest.json`` + tables) made by :func:`build_map`. :meth:`CommMap.load` opens a built map by
name (a directory under the maps directory) or path; :meth:`CommMap.quality` returns the
quality of every network along a corridor.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from commap import __version__
from commap.config import Settings
from commap.errors import CommapError, InvalidInputError, MapNotFoundError
from commap.geo.corridor import Corridor, Route
from commap.geo.terrain import Terrain
from commap.map.spec import MapSpec, read_spec
from commap.networks import Network, NetworkCatalogue, NetworkKind
from commap.progress import ProgressArg, as_progress
from commap.radio.layers import LayerContext, load_layer, prepare_layer
from commap.radio.layers.cached import CachedLayer, road_sample_points, write_cache
from commap.radio.quality import CoverageLayer, QualityMatrix, as_points

if TYPE_CHECKING:
    import geopandas as gpd

    from commap.map.build import TileParams

__all__ = ["MANIFEST", "CommMap", "MapSpec", "build_map", "read_spec", "resolve_map_dir"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "commap-map/1"
_MAP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NETWORK_FIELDS = (
    "id",
    "kind",
    "operator",
    "technology",
    "latency_ms",
    "cost_per_mb",
    "frequency_mhz",
    "min_elevation_deg",
    "tle_file",
    "orbital_longitude_deg",
    "display_name",
)

# A status-line callback of the build steps (Progress.message).
_Say = Callable[[str], None]
# Time-invariant layers sampled once along every road at build time (see layers/cached.py).
CACHED_LAYER_TYPES = frozenset({"terrestrial"})


def _bbox(value: Any, where: str) -> tuple[float, float, float, float]:
    try:
        lon0, lat0, lon1, lat1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{where}: bbox must be [lon_min, lat_min, lon_max, lat_max]"
        ) from None
    as_points([lon0, lon1], [lat0, lat1])
    if not (lon0 < lon1 and lat0 < lat1):
        raise InvalidInputError(f"{where}: bbox minimum must be below maximum")
    return (lon0, lat0, lon1, lat1)


def _network(entry: Mapping[str, Any]) -> Network:
    values = {k: entry[k] for k in _NETWORK_FIELDS if k in entry}
    try:
        values["kind"] = NetworkKind(values.get("kind", ""))
        return Network(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"network {entry.get('id')!r}: {exc}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _build_networks(spec: MapSpec, ctx: LayerContext, progress: _Say) -> list[dict[str, Any]]:
    points: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []

    def road_points() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not points:  # computed once, for the first cached layer
            assert ctx.roads is not None
            points.append(road_sample_points(ctx.roads, spacing_m=spec.segment_m / 2.0))
        return points[0]

    built_networks: list[dict[str, Any]] = []
    for entry in spec.networks:
        network = _network(entry)
        progress(f"network {network.id}: preparing {entry['layer'].get('type')} layer")
        record: dict[str, Any] = {k: entry[k] for k in _NETWORK_FIELDS if k in entry}
        record["layer"] = prepare_layer(network, entry["layer"], ctx)
        if ctx.roads is not None and record["layer"].get("type") in CACHED_LAYER_TYPES:
            progress(f"network {network.id}: sampling coverage along every road")
            cache = f"cache/{network.id}.parquet"
            write_cache(
                load_layer(network, record["layer"], ctx), *road_points(), ctx.built_dir / cache
            )
            record["cache"] = cache
        if "measured" in entry:
            from commap.radio.layers.measured import prepare_measured

            record["measured"] = prepare_measured(network, entry["measured"], ctx)
        built_networks.append(record)
    return built_networks


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
    edges : build the per-edge table (:mod:`commap.map.build`) for maps with roads.
    tile_params : tiling and planning parameters of the edge table (default
        :class:`commap.map.build.TileParams`).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InvalidInputError
        A bad spec, a missing or corrupt input file, bad executor options, or another build
        writing ``out_dir`` at the same time.
    """
    from commap.map import build as batch

    report = as_progress(progress, label="edges", unit="tiles")
    spec = read_spec(spec_path)
    batch.check_executor(executor, workers, scheduler)
    params = tile_params or batch.TileParams()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(spec)
    key = _build_key(inputs, params.as_dict() if edges else None)
    partial = out.parent / f".{out.name}.partial-{key[:16]}"
    with _exclusive(out):
        _drop_stale_partials(out, keep=partial)
        try:
            manifest = _base_stage(spec, partial, key, inputs, report.message)
            if edges and manifest.get("roads"):
                manifest["edges"] = batch.run_batch(
                    partial,
                    params,
                    executor=executor,
                    workers=workers,
                    scheduler=scheduler,
                    progress=report,
                )
            manifest["files"] = _file_checksums(partial)
            _write_json_atomic(partial / MANIFEST, manifest)
            _replace_dir(partial, out)
        except CommapError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except BaseException:
            log.warning("build of %s stopped; run it again to resume from %s", out, partial)
            raise
    report.message(f"map {spec.name} built in {out}")
    return out


def _inputs(spec: MapSpec) -> dict[str, Any]:
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
                    found[value] = _sha256(path)
                elif path.is_dir() and value not in (".", ".."):
                    for item in sorted(p for p in path.rglob("*") if p.is_file()):
                        found[f"{value}/{item.relative_to(path)}"] = _sha256(item)
            except OSError:  # a text value that is no file name (too long, ...)
                pass

    visit(spec.raw)
    return {
        "spec": {"file": spec.path.name, "sha256": _sha256(spec.path)},
        "files": dict(sorted(found.items())),
    }


def _code_digest() -> str:
    """Checksum of the commap sources: a partial build of other code is never resumed."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_key(inputs: Mapping[str, Any], edge_params: Mapping[str, Any] | None) -> str:
    payload = {
        "format": FORMAT,
        "commap": __version__,
        "code": _code_digest(),
        "inputs": inputs,
        "edges": edge_params,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


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
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # still held: no other build got it in between


def _drop_stale_partials(out: Path, *, keep: Path) -> None:
    """Partial builds of other inputs or code can never be resumed: remove them."""
    for path in out.parent.glob(f".{out.name}.partial-*"):
        if path != keep:
            log.info("removing stale partial build %s", path)
            shutil.rmtree(path, ignore_errors=True)


def _base_stage(
    spec: MapSpec, partial: Path, key: str, inputs: Mapping[str, Any], say: _Say
) -> dict[str, Any]:
    """The map without its edge table, reused from ``partial`` when complete there."""
    manifest_path = partial / MANIFEST
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
            if previous.get("build_key") == key and previous.get("format") == FORMAT:
                _verify_files(partial, previous)
                say(f"resuming the partial build in {partial}")
                return {k: v for k, v in previous.items() if k not in ("edges", "files")}
        except (OSError, ValueError, AttributeError, CommapError) as exc:
            log.info("partial build %s is not reusable (%s): starting again", partial, exc)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    manifest = _build_into(spec, partial, say)
    manifest.update(inputs=dict(inputs), build_key=key)
    # loadable from here on (batch workers open it); also marks the base stage as complete
    _write_json_atomic(manifest_path, manifest)
    return {k: v for k, v in manifest.items() if k != "files"}


def _file_checksums(built: Path) -> dict[str, str]:
    files = sorted(p for p in built.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(built)): _sha256(p) for p in files}


def _build_into(spec: MapSpec, built: Path, say: _Say) -> dict[str, Any]:
    from commap.geo import roads as roads_mod

    terrain = None
    terrain_record = None
    if spec.terrain:
        say("terrain: loading SRTM tiles")
        tiles = _copy_sources(spec, list(spec.terrain.get("files", [])), built, "terrain")
        terrain = Terrain.from_files([built / f for f in tiles])
        terrain_record = {"files": tiles, "attribution": spec.terrain.get("attribution", "")}
    graph = None
    roads_record = None
    if spec.roads:
        say(f"roads: reading {spec.roads['file']}")
        graph = roads_mod.load_road_graph(spec.source_dir / spec.roads["file"], bbox=spec.bbox)
        roads_mod.write_road_graph(graph, built / "roads")
        length_km = sum(d["length_m"] for _, _, d in graph.edges(data=True)) / 1000.0
        roads_record = {
            "dir": "roads",
            "source": Path(spec.roads["file"]).name,
            "attribution": spec.roads.get("attribution", ""),
            "nodes": graph.number_of_nodes(),
            "edges": graph.number_of_edges(),
            "edge_length_km": round(length_km, 3),
        }
        say(f"roads: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges")
    ctx = LayerContext(
        source_dir=spec.source_dir,
        built_dir=built,
        bbox=spec.bbox,
        terrain=terrain,
        roads=graph,
        seed=spec.seed,
    )
    networks = _build_networks(spec, ctx, say)
    built_files = sorted(p for p in built.rglob("*") if p.is_file())
    return {
        "format": FORMAT,
        "commap_version": __version__,
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "bbox": list(spec.bbox),
        "segment_m": spec.segment_m,
        "seed": spec.seed,
        "default_departure_s": spec.default_departure_s,
        "roads": roads_record,
        "terrain": terrain_record,
        "networks": networks,
        "attribution": _attributions(spec),
        "files": {str(p.relative_to(built)): _sha256(p) for p in built_files},
    }


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


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _replace_dir(new: Path, target: Path) -> None:
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def resolve_map_dir(name_or_path: str | Path, settings: Settings | None = None) -> Path:
    """Resolve a map name (a directory under the maps directory) or a path to a built map.

    A name resolves to ``<maps_dir>/<name>/built`` (or ``<maps_dir>/<name>`` if that holds a
    manifest). Names are matched against the directory listing, never joined into a path
    unchecked.

    Raises
    ------
    MapNotFoundError
        If nothing built is found.
    """
    settings = settings or Settings()
    text = str(name_or_path)
    if _MAP_NAME.match(text):
        known = (
            {p.name for p in settings.maps_dir.iterdir() if p.is_dir()}
            if settings.maps_dir.is_dir()
            else set()
        )
        if text in known:
            base = settings.maps_dir / text
            for candidate in (base / "built", base):
                if (candidate / MANIFEST).is_file():
                    return candidate
            raise MapNotFoundError(
                f"map {text!r} is not built: run `commap build-map {base / 'map.toml'} --out {base / 'built'}`"
            )
        if not Path(text).is_dir():
            names = sorted(known)
            raise MapNotFoundError(
                f"unknown map {text!r}; known maps: {', '.join(names) or 'none'}"
            )
    path = Path(text)
    for candidate in (path, path / "built"):
        if _is_file(candidate / MANIFEST):
            return candidate
    shown = text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"
    raise MapNotFoundError(f"{shown} is not a built map (no {MANIFEST})")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for names the OS refuses (too long, NUL, no permission)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


class CommMap:
    """A loaded communication map.

    Use :meth:`load`; the constructor takes already-loaded parts (for tests and batch workers).
    """

    def __init__(
        self,
        *,
        directory: Path,
        manifest: Mapping[str, Any],
        catalogue: NetworkCatalogue,
        layers: Mapping[str, CoverageLayer],
        roads: nx.MultiDiGraph | None,
        terrain: Terrain | None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.catalogue = catalogue
        self.layers = dict(layers)
        self.roads = roads
        self.terrain = terrain
        self.name: str = str(manifest["name"])
        self.bbox: tuple[float, float, float, float] = _bbox(manifest["bbox"], self.name)
        self.segment_m = float(manifest.get("segment_m", 50.0))
        self.default_departure_s = float(manifest.get("default_departure_s", 0.0))

    @classmethod
    def load(cls, name_or_path: str | Path, *, settings: Settings | None = None) -> CommMap:
        """Load a built map by name or directory.

        Raises
        ------
        MapNotFoundError
            Unknown or unbuilt map.
        InvalidInputError
            The manifest or a table is corrupt.
        """
        from commap.geo import roads as roads_mod

        directory = resolve_map_dir(name_or_path, settings)
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                f"{directory / MANIFEST}: unreadable manifest ({exc})"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InvalidInputError(f"{directory / MANIFEST}: not a {FORMAT} manifest")
        _verify_files(directory, manifest)
        terrain = None
        if manifest.get("terrain"):
            terrain = Terrain.from_files([directory / f for f in manifest["terrain"]["files"]])
        graph = None
        if manifest.get("roads"):
            graph = roads_mod.read_road_graph(directory / manifest["roads"]["dir"])
        networks = [_network(entry) for entry in manifest["networks"]]
        ctx = LayerContext(
            source_dir=directory,
            built_dir=directory,
            bbox=_bbox(manifest["bbox"], str(directory)),
            terrain=terrain,
            roads=graph,
            seed=int(manifest.get("seed", 0)),
        )
        layers: dict[str, CoverageLayer] = {}
        for network, entry in zip(networks, manifest["networks"], strict=True):
            layer = load_layer(network, entry["layer"], ctx)
            if entry.get("cache"):
                layer = CachedLayer(layer, directory / entry["cache"])
            if entry.get("measured"):
                from commap.radio.layers.measured import load_fused_layer

                layer = load_fused_layer(network, layer, entry["measured"], ctx)
            layers[network.id] = layer
        log.info("loaded map %s from %s (%d networks)", manifest["name"], directory, len(networks))
        return cls(
            directory=directory,
            manifest=manifest,
            catalogue=NetworkCatalogue(networks),
            layers=layers,
            roads=graph,
            terrain=terrain,
        )

    # -- geometry -----------------------------------------------------------------------------
    def contains(self, lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.bool_]:
        """True where points lie inside the map's bounding box."""
        lon0, lat0, lon1, lat1 = self.bbox
        return (lon >= lon0) & (lon <= lon1) & (lat >= lat0) & (lat <= lat1)

    def check_inside(self, lon: Any, lat: Any, *, field: str = "position") -> None:
        """Raise :class:`InvalidInputError` naming ``field`` if any point lies outside the map."""
        lon_a, lat_a, _ = as_points(lon, lat)
        outside = ~self.contains(lon_a, lat_a)
        if outside.any():
            i = int(np.argmax(outside))
            raise InvalidInputError(
                f"{field}: point ({lat_a[i]:.5f}, {lon_a[i]:.5f}) lies outside map {self.name} "
                f"(lon {self.bbox[0]}..{self.bbox[2]}, lat {self.bbox[1]}..{self.bbox[3]})",
                field=field,
            )

    # -- routes and corridors -------------------------------------------------------------------
    def routes(
        self, origin: tuple[float, float], destination: tuple[float, float], *, k: int = 1
    ) -> list[Route]:
        """Up to ``k`` routes origin -> destination by travel time (``(lon, lat)`` tuples)."""
        from commap.geo import roads as roads_mod

        if self.roads is None:
            raise InvalidInputError(
                f"map {self.name} has no road graph: give the route as a polyline"
            )
        self.check_inside([origin[0]], [origin[1]], field="origin")
        self.check_inside([destination[0]], [destination[1]], field="destination")
        if k == 1:
            return [roads_mod.shortest_route(self.roads, origin, destination)]
        return roads_mod.k_routes(self.roads, origin, destination, k=k)

    def corridor(
        self, route: Route, *, departure_s: float | None = None, segment_m: float | None = None
    ) -> Corridor:
        """Cut ``route`` into this map's segments (checks the route lies inside the map)."""
        from commap.geo import corridor as corridor_mod
        from commap.geo import roads as roads_mod

        self.check_inside(route.lon, route.lat, field="route")
        overpasses = roads_mod.bridge_geometries(self.roads) if self.roads is not None else None
        return corridor_mod.cut(
            route,
            segment_m=segment_m or self.segment_m,
            departure_s=self.default_departure_s if departure_s is None else departure_s,
            overpasses=overpasses,
        )

    # -- quality ----------------------------------------------------------------------------------
    def quality(self, corridor: Corridor) -> QualityMatrix:
        """Quality of every network (catalogue order) at every corridor segment."""
        columns = [
            self.layers[nid].sample(
                corridor.lon,
                corridor.lat,
                corridor.t_s,
                in_tunnel=corridor.in_tunnel,
                under_bridge=corridor.under_bridge,
            )
            for nid in self.catalogue.ids
        ]
        return QualityMatrix.from_columns(self.catalogue.ids, columns)

    def quality_at(self, lon: Any, lat: Any, t_s: Any | None = None) -> QualityMatrix:
        """Quality of every network at free points (open sky, outside tunnels)."""
        lon_a, lat_a, t_a = as_points(lon, lat, self.default_departure_s if t_s is None else t_s)
        self.check_inside(lon_a, lat_a)
        columns = [self.layers[nid].sample(lon_a, lat_a, t_a) for nid in self.catalogue.ids]
        return QualityMatrix.from_columns(self.catalogue.ids, columns)

    # -- edge table (batch build) -------------------------------------------------------------
    @property
    def has_edge_table(self) -> bool:
        """True when the map was built with its per-edge table (:mod:`commap.map.build`)."""
        edges = self.manifest.get("edges")
        return isinstance(edges, Mapping) and bool(edges.get("tiles"))

    def edge_table(
        self,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        columns: Sequence[str] | None = None,
    ) -> gpd.GeoDataFrame:
        """Per-segment quality, recommended network and handovers of every directed edge.

        See :func:`commap.map.build.read_edge_table` (``bbox`` and ``columns`` filter the read).

        Raises
        ------
        InvalidInputError
            The map was built without an edge table.
        """
        from commap.map.build import read_edge_table

        return read_edge_table(self.directory, bbox=bbox, columns=columns)

    def coverage_gaps(self) -> gpd.GeoDataFrame:
        """Stretches of road where no network is usable (:func:`commap.map.build.read_gaps`)."""
        from commap.map.build import read_gaps

        return read_gaps(self.directory)

    def coverage_stats(self) -> dict[str, Any]:
        """Region coverage statistics per network (:func:`commap.map.build.read_coverage_stats`)."""
        from commap.map.build import read_coverage_stats

        return read_coverage_stats(self.directory)

    def describe(self) -> dict[str, Any]:
        """Summary for listings: name, title, extent, networks, sources."""
        return {
            "name": self.name,
            "title": self.manifest.get("title", self.name),
            "bbox": list(self.bbox),
            "networks": [dict(n) for n in self.manifest["networks"]],
            "attribution": list(self.manifest.get("attribution", [])),
        }


def _verify_files(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Reject a map whose tables are missing or differ from the manifest (half-written maps)."""
    for rel, digest in manifest.get("files", {}).items():
        path = directory / rel
        if not path.is_file():
            raise InvalidInputError(
                f"map {directory}: file {rel} listed in the manifest is missing"
            )
        if path.stat().st_size < (1 << 26) and _sha256(path) != digest:
            raise InvalidInputError(f"map {directory}: file {rel} does not match its checksum")
