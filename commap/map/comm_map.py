"""CommMap: a road graph, terrain and one coverage layer per network, loaded as a unit.

A map has a *spec* (``map.toml``, source files beside it) and a *built* directory
(``manifest.json`` + tables) made by :func:`commap.map.build.build_map`. :meth:`CommMap.load`
opens a built map by name (a directory under the maps directory) or path; :meth:`CommMap.quality`
returns the quality of every network along a corridor.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from commap.arrays import FloatArray
from commap.config import Settings
from commap.errors import InvalidInputError
from commap.files import sha256_file
from commap.geo.corridor import Corridor, Route
from commap.geo.terrain import Terrain
from commap.map.manifest import MANIFEST, Manifest, resolve_map_dir
from commap.networks import NetworkCatalogue
from commap.plan.cancel import check_stop
from commap.radio.layers import LayerContext, load_layer
from commap.radio.layers.cached import CachedLayer
from commap.radio.quality import CoverageLayer, Quality, QualityMatrix, as_points

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["STALE_REFUSE_DAYS", "STALE_WARN_DAYS", "CommMap", "verify_files"]

log = logging.getLogger(__name__)

# Orbital elements age: SGP4 errors grow by a few km per day. Beyond a week a satellite may sit
# in another part of the sky than predicted (the user is told); beyond a month the predictions
# are worthless (refused unless asked for).
STALE_WARN_DAYS = 7.0
STALE_REFUSE_DAYS = 30.0
_DAY_S = 86400.0

# Files above this size are checked for presence only: hashing them would slow every load.
_CHECKSUM_MAX_BYTES = 1 << 26


class CommMap:
    """A loaded communication map.

    Use :meth:`load`; the constructor takes already-loaded parts (for tests and batch workers).
    """

    def __init__(
        self,
        *,
        directory: Path,
        manifest: Manifest,
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
        self.name = manifest.name
        self.bbox = manifest.bbox
        self.segment_m = manifest.segment_m

    def replaced(
        self,
        *,
        manifest: Manifest | None = None,
        catalogue: NetworkCatalogue | None = None,
        layers: Mapping[str, CoverageLayer] | None = None,
    ) -> CommMap:
        """The same map with some parts replaced (the rest shared, not copied)."""
        return CommMap(
            directory=self.directory,
            manifest=self.manifest if manifest is None else manifest,
            catalogue=self.catalogue if catalogue is None else catalogue,
            layers=self.layers if layers is None else layers,
            roads=self.roads,
            terrain=self.terrain,
        )

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
        manifest = Manifest.read(directory / MANIFEST)
        verify_files(directory, manifest.files)
        terrain = None
        if manifest.terrain is not None:
            terrain = Terrain.on_demand([directory / f for f in manifest.terrain.files])
        graph = None
        if manifest.roads is not None:
            graph = roads_mod.read_road_graph(directory / manifest.roads.dir)
        networks = [entry.network() for entry in manifest.networks]
        ctx = LayerContext(
            source_dir=directory,
            built_dir=directory,
            bbox=manifest.bbox,
            terrain=terrain,
            roads=graph,
            seed=manifest.seed,
        )
        layers: dict[str, CoverageLayer] = {}
        for network, entry in zip(networks, manifest.networks, strict=True):
            layer = load_layer(network, entry.layer, ctx)
            if entry.cache:
                layer = CachedLayer(layer, directory / entry.cache)
            if entry.measured:
                from commap.radio.layers.measured import load_fused_layer

                layer = load_fused_layer(network, layer, entry.measured, ctx)
            layers[network.id] = layer
        log.info("loaded map %s from %s (%d networks)", manifest.name, directory, len(networks))
        return cls(
            directory=directory,
            manifest=manifest,
            catalogue=NetworkCatalogue(networks),
            layers=layers,
            roads=graph,
            terrain=terrain,
        )

    @property
    def default_departure_s(self) -> float:
        """Departure of requests that give none: the map's own (its spec's
        ``default_departure``), else now."""
        fixed = self.manifest.default_departure_s
        return time.time() if fixed is None else fixed

    # -- orbital elements -----------------------------------------------------------------------
    def element_epochs(self) -> dict[str, float]:
        """Epoch (Unix seconds, median over its TLEs) of every LEO constellation, by network id."""
        epochs: dict[str, float] = {}
        for nid, layer in self.layers.items():
            inner = getattr(layer, "inner", layer)
            epoch = getattr(inner, "epoch_s", None)
            if epoch is not None:
                epochs[nid] = float(round(epoch))  # whole seconds: how it is shown
        return epochs

    def check_elements(
        self,
        t_s: Any,
        *,
        allow_stale: bool = False,
        used: Collection[str] | None = None,
    ) -> list[str]:
        """Notices about orbital elements far from the times ``t_s`` (scalar or array).

        Returns one line per LEO constellation more than :data:`STALE_WARN_DAYS` from its
        elements among ``used`` (every one when None): a constellation the answer does not rely
        on needs no warning.

        Raises
        ------
        InvalidInputError
            A constellation of the map is more than :data:`STALE_REFUSE_DAYS` from its elements
            and ``allow_stale`` is False: its positions would be fiction.
        """
        from commap.timeutil import format_time

        times = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        notices: list[str] = []
        for nid, epoch in self.element_epochs().items():
            gaps_s = np.abs(times - epoch)
            days = float(gaps_s.max(initial=0.0)) / _DAY_S
            if days > STALE_REFUSE_DAYS and not allow_stale:
                # the time furthest from the epoch, whole seconds: a segment's time on a trip is
                # not the departure the user gave, so it is not called one
                far = format_time(round(float(times[int(np.argmax(gaps_s))])))
                raise InvalidInputError(
                    f"{far} (of this request) is {days:.0f} days from the "
                    f"{nid} orbital elements (epoch {format_time(epoch)}): its satellite "
                    f"positions would be wrong. Load fresh elements (commap update-elements --map "
                    f"{self.name} --tle {nid}=FILE), give a departure near the epoch, or allow "
                    "stale elements (--allow-stale-elements)",
                    field="departure",
                )
            if days > STALE_WARN_DAYS and (used is None or nid in used):
                notices.append(
                    f"{nid}: orbital elements from {format_time(epoch)} are {days:.1f} days from "
                    "this departure: satellite positions may be off by tens of km"
                )
        return notices

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
    def quality(self, corridor: Corridor, *, reference_s: float | None = None) -> QualityMatrix:
        """Quality of every network (catalogue order) at every corridor segment.

        Each segment is sampled at the time the vehicle passes it (``corridor.t_s``), or, with
        ``reference_s``, every segment at that one time (the edge table of a whole region has
        no journey to time it by).
        """
        t_s = corridor.t_s if reference_s is None else np.full(len(corridor), reference_s)
        columns = [_sample_in_slices(self.layers[nid], corridor, t_s) for nid in self.catalogue.ids]
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
        edges = self.manifest.edges
        return edges is not None and bool(edges.get("tiles"))

    def edge_table(
        self,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        columns: Sequence[str] | None = None,
    ) -> gpd.GeoDataFrame:
        """Per-segment quality, recommended network and handovers of every directed edge.

        See :func:`commap.map.region.read_edge_table` (``bbox`` and ``columns`` filter the read).

        Raises
        ------
        InvalidInputError
            The map was built without an edge table.
        """
        from commap.map.region import read_edge_table

        return read_edge_table(self.directory, bbox=bbox, columns=columns)

    def coverage_gaps(self) -> gpd.GeoDataFrame:
        """Stretches of road where no network is usable (:func:`commap.map.region.read_gaps`)."""
        from commap.map.region import read_gaps

        return read_gaps(self.directory)

    def coverage_stats(self) -> dict[str, Any]:
        """Region coverage statistics per network (:func:`commap.map.region.read_coverage_stats`)."""
        from commap.map.region import read_coverage_stats

        return read_coverage_stats(self.directory)

    def describe(self) -> dict[str, Any]:
        """Summary for listings: name, title, extent, networks, sources."""
        return {
            "name": self.name,
            "title": self.manifest.display_title,
            "bbox": list(self.bbox),
            "networks": [n.to_dict() for n in self.manifest.networks],
            "attribution": list(self.manifest.attribution),
        }


def verify_files(directory: Path, checksums: Mapping[str, str]) -> None:
    """Reject a map whose tables are missing or differ from the manifest (half-written maps).

    Raises
    ------
    InvalidInputError
        A listed file is missing or does not match its checksum.

    Examples
    --------
    >>> verify_files(Path("."), {"no-such-table.parquet": "0" * 64})
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: map .: file no-such-table.parquet listed in the manifest is missing
    """
    for rel, digest in checksums.items():
        path = directory / rel
        if not path.is_file():
            raise InvalidInputError(
                f"map {directory}: file {rel} listed in the manifest is missing"
            )
        if path.stat().st_size < _CHECKSUM_MAX_BYTES and sha256_file(path) != digest:
            raise InvalidInputError(f"map {directory}: file {rel} does not match its checksum")


# A corridor is sampled in slices of this many segments (tens of milliseconds of work each), so
# that a stopped request (commap.plan.cancel) is seen within a fraction of a second. The slices
# are fixed, not timed: a plan is the same whether or not it can be stopped.
SAMPLE_SLICE_SEGMENTS = 512


def _sample_in_slices(layer: Any, corridor: Corridor, t_s: FloatArray) -> Quality:
    """``layer.sample`` over the corridor in slices, checking the request's stop flag between."""
    n = len(corridor)
    pieces: list[Quality] = []
    for start in range(0, max(n, 1), SAMPLE_SLICE_SEGMENTS):
        check_stop("sampling the map")
        stop = min(start + SAMPLE_SLICE_SEGMENTS, n)
        pieces.append(
            layer.sample(
                corridor.lon[start:stop],
                corridor.lat[start:stop],
                t_s[start:stop],
                in_tunnel=corridor.in_tunnel[start:stop],
                under_bridge=corridor.under_bridge[start:stop],
            )
        )
    if len(pieces) == 1:
        return pieces[0]
    values = {
        f.name: np.concatenate([getattr(p, f.name) for p in pieces])
        for f in dataclasses.fields(Quality)
    }
    return Quality(**values)
