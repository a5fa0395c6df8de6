"""Map-core benchmarks: building the default map, loading it, and the quality matrix of a
100 km corridor.

Targets: quality matrix for 2,000 segments x all networks
(satellites included) in under 1 s on one core; the default map built in under 2 minutes;
the built map loaded in under 0.1 s (``map_load_s``, median of 5 loads, with the parts of one
load under the profiler, for shares only: checksums, terrain, road graph, layers, TLE parsing).
"""

from __future__ import annotations

import cProfile
import itertools
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from commap.geo.corridor import Corridor, Route, cut
from commap.map.build import build_map
from commap.map.comm_map import CommMap

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "maps" / "andorra" / "map.toml"
# A tour of the Andorran valleys, chained into one long drive (lat, lon).
TOUR = [
    (42.4384, 1.4766),  # Spanish border
    (42.5430, 1.7330),  # Pas de la Casa (French border)
    (42.5063, 1.5218),  # Andorra la Vella
    (42.6213, 1.5393),  # El Serrat
    (42.5350, 1.5800),  # Encamp
    (42.5720, 1.4850),  # Arinsal
]


def _chain(cmap: CommMap) -> Route:
    legs = [cmap.routes((a[1], a[0]), (b[1], b[0]))[0] for a, b in itertools.pairwise(TOUR)]
    lon = np.concatenate([leg.lon if i == 0 else leg.lon[1:] for i, leg in enumerate(legs)])
    lat = np.concatenate([leg.lat if i == 0 else leg.lat[1:] for i, leg in enumerate(legs)])
    return Route(
        lon=lon,
        lat=lat,
        speed_mps=np.concatenate([leg.speed_mps for leg in legs]),
        in_tunnel=np.concatenate([leg.in_tunnel for leg in legs]),
        on_bridge=np.concatenate([leg.on_bridge for leg in legs]),
        name="andorra tour",
    )


def _first(corridor: Corridor, n: int) -> Corridor:
    fields = {
        name: getattr(corridor, name)[:n]
        for name in (
            "lon",
            "lat",
            "distance_m",
            "length_m",
            "eta_s",
            "duration_s",
            "speed_mps",
            "in_tunnel",
            "on_bridge",
            "under_bridge",
        )
    }
    return Corridor(**fields, departure_s=corridor.departure_s)


def run() -> dict[str, float | str]:
    """Build the default map once, then time the 2,000-segment quality matrix."""
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_map(SPEC, Path(tmp) / "built")
        figures["build_default_map_s"] = round(time.perf_counter() - start, 2)
        cmap = CommMap.load(Path(tmp) / "built")
        figures.update(_load_figures(Path(tmp) / "built"))
        route = _chain(cmap)
        corridor = cut(route, segment_m=50.0, departure_s=cmap.default_departure_s)
        laps = 1 + 2000 // max(len(corridor), 1)
        if laps > 1:  # repeat the tour until it is long enough
            corridor = cut(
                Route(
                    lon=np.tile(route.lon, laps),
                    lat=np.tile(route.lat, laps),
                    speed_mps=np.concatenate([np.append(route.speed_mps, 13.9)] * laps)[:-1],
                    in_tunnel=np.concatenate([np.append(route.in_tunnel, False)] * laps)[:-1],
                    on_bridge=np.concatenate([np.append(route.on_bridge, False)] * laps)[:-1],
                ),
                segment_m=50.0,
                departure_s=cmap.default_departure_s,
            )
        corridor = _first(corridor, 2000)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            qm = cmap.quality(corridor)
            times.append(time.perf_counter() - start)
        figures["quality_matrix_segments"] = qm.shape[0]
        figures["quality_matrix_networks"] = qm.shape[1]
        figures["quality_matrix_km"] = round(corridor.total_length_m / 1000, 1)
        figures["quality_matrix_median_s"] = round(statistics.median(times), 3)
        per_layer = {}
        for nid, layer in cmap.layers.items():
            lap = []
            for _ in range(3):
                start = time.perf_counter()
                layer.sample(
                    corridor.lon,
                    corridor.lat,
                    corridor.t_s,
                    in_tunnel=corridor.in_tunnel,
                    under_bridge=corridor.under_bridge,
                )
                lap.append(time.perf_counter() - start)
            per_layer[nid] = statistics.median(lap)
        for nid, seconds in per_layer.items():
            figures[f"layer_{nid}_median_s"] = round(seconds, 4)
    return figures


def _load_figures(built: Path) -> dict[str, float | str]:
    """Median time of a whole map load, and where one load spends it."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        CommMap.load(built)
        times.append(time.perf_counter() - start)
    figures: dict[str, float | str] = {"map_load_s": round(statistics.median(times), 3)}
    profile = cProfile.Profile()
    profile.enable()
    CommMap.load(built)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    parts = {
        "verify_files": "checksums",
        "read_road_graph": "road_graph",
        "from_files": "terrain",
        "read_tle_file": "tle_parse",
        "load_layer": "layers",
    }
    for (_, _, name), (_, _, _, cumulative, _) in stats.items():
        if name in parts:
            key = f"map_load_profiled_{parts[name]}_s"
            figures[key] = round(max(float(figures.get(key, 0.0)), cumulative), 3)
    return figures
