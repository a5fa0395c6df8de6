"""Cutting routes into corridors: real Andorra routes, a recorded Autobahn drive, edge cases."""

from __future__ import annotations

import csv

import networkx as nx
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import LineString

from commap.errors import InvalidInputError
from commap.geo import roads
from commap.geo.corridor import Corridor, Route, cut, route_from_polyline
from commap.geo.routefile import read_route_file
from tests.support.paths import MAPS, TEST_DATA

ANDORRA_PBF = MAPS / "andorra" / "data" / "andorra.osm.pbf"
DATA = TEST_DATA / "corridor"
TRACE_CSV = DATA / "autobahn_a30_trace.csv"
BRIDGES_CSV = DATA / "autobahn_a30_bridges.csv"

ANDORRA_LA_VELLA = (1.5218, 42.5063)
PAS_DE_LA_CASA = (1.7330, 42.5430)
ENVALIRA_EAST_PORTAL = (1.7331, 42.5468)
DEPARTURE_S = 1737633600.0  # 2025-01-23T12:00:00Z
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def andorra() -> nx.MultiDiGraph:
    return roads.load_road_graph(ANDORRA_PBF)


@pytest.fixture(scope="module")
def envalira(andorra: nx.MultiDiGraph) -> Route:
    """Andorra la Vella -> east portal of the Envalira tunnel (through it)."""
    return roads.shortest_route(andorra, ANDORRA_LA_VELLA, ENVALIRA_EAST_PORTAL)


def _check_invariants(c: Corridor, segment_m: float) -> None:
    n = len(c)
    assert n >= 1
    for name in ("lat", "distance_m", "length_m", "eta_s", "duration_s", "speed_mps"):
        assert getattr(c, name).shape == (n,)
    assert np.all(c.length_m[:-1] == pytest.approx(segment_m))
    assert 0.0 < c.length_m[-1] <= segment_m + 1e-9
    assert c.distance_m[0] == 0.0
    assert np.allclose(c.distance_m[1:], np.cumsum(c.length_m)[:-1])
    assert c.eta_s[0] == 0.0
    assert np.all(np.diff(c.eta_s) > 0)
    assert np.allclose(c.eta_s[1:], np.cumsum(c.duration_s)[:-1])
    assert np.all(c.duration_s > 0)
    assert np.allclose(c.speed_mps, c.length_m / c.duration_s)
    assert np.all(c.t_s > c.departure_s)


# -- road-graph routes ---------------------------------------------------------------------------


def test_andorra_route_lengths_and_times_add_up(andorra: nx.MultiDiGraph) -> None:
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    c = cut(route, departure_s=DEPARTURE_S, overpasses=roads.bridge_geometries(andorra))
    _check_invariants(c, 50.0)
    # the route starts and ends where the positions meet the road, inside its end edges
    route_m = GEOD.line_length(route.lon, route.lat)
    legs_m = GEOD.inv(route.lon[:-1], route.lat[:-1], route.lon[1:], route.lat[1:])[2]
    assert c.total_length_m == pytest.approx(route_m, rel=1e-9)
    assert c.total_duration_s == pytest.approx(float((legs_m / route.speed_mps).sum()), rel=1e-9)
    edge_m = sum(andorra.edges[e]["length_m"] for e in route.edges)
    assert route_m <= edge_m
    assert len(c) == int(np.ceil(route_m / 50.0))
    assert c.departure_s == DEPARTURE_S
    assert c.route is route
    # segment centres lie on the route
    line = LineString(np.column_stack((route.lon, route.lat)))
    offsets_m = shapely.distance(line, shapely.points(c.lon, c.lat)) * 111_000.0
    assert float(offsets_m.max()) < 1.0
    # speeds come from the edges: between the lowest and highest edge speed on the route
    assert c.speed_mps.min() >= route.speed_mps.min() - 1e-9
    assert c.speed_mps.max() <= route.speed_mps.max() + 1e-9


def test_envalira_tunnel_segments_are_flagged(andorra: nx.MultiDiGraph, envalira: Route) -> None:
    c = cut(envalira, departure_s=DEPARTURE_S)
    tunnel_m = float(c.length_m[c.in_tunnel].sum())
    assert 2900.0 < tunnel_m < 3200.0  # Envalira 2.95 km plus a short one in the valley
    tunnel = next(
        d["geometry"] for _, _, d in andorra.edges(data=True) if d["name"] == "Túnel d'Envalira"
    )
    centres = shapely.points(c.lon, c.lat)
    in_envalira = shapely.distance(tunnel, centres) * 111_000.0 < 1.0
    assert in_envalira.sum() == pytest.approx(2952 / 50, abs=2)
    assert np.all(c.in_tunnel[in_envalira])
    assert not c.on_bridge[in_envalira].any()


def test_roads_under_a_bridge_in_andorra(andorra: nx.MultiDiGraph) -> None:
    # the CG-2 passes under the raised roundabout at Escaldes (bridge way 124673945, layer 1)
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    c = cut(route, departure_s=DEPARTURE_S, overpasses=roads.bridge_geometries(andorra))
    under = np.flatnonzero(c.under_bridge)
    assert 1 <= under.size <= 4
    assert np.allclose(c.lat[under], 42.518, atol=0.001)
    assert np.allclose(c.lon[under], 1.5553, atol=0.001)
    assert not (c.under_bridge & c.on_bridge).any()
    # without overpasses nothing is under a bridge
    assert not cut(route, departure_s=DEPARTURE_S).under_bridge.any()


def test_own_bridges_do_not_count_as_overpasses(andorra: nx.MultiDiGraph) -> None:
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    own = [andorra.edges[e]["geometry"] for e in route.edges if andorra.edges[e]["bridge"]]
    assert own
    c = cut(route, departure_s=DEPARTURE_S, overpasses=own)
    assert c.on_bridge.any()
    assert not c.under_bridge.any()


# -- recorded drive (real GPS trace) -------------------------------------------------------------


@pytest.fixture(scope="module")
def autobahn_bridges() -> list[LineString]:
    with BRIDGES_CSV.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        LineString([(float(r["lon0"]), float(r["lat0"])), (float(r["lon1"]), float(r["lat1"]))])
        for r in rows
    ]


def test_recorded_drive_keeps_its_timestamps(autobahn_bridges: list[LineString]) -> None:
    route = read_route_file(TRACE_CSV)
    assert route.t_s is not None
    c = cut(route, departure_s=0.0, overpasses=autobahn_bridges)  # departure_s is overridden
    _check_invariants(c, 50.0)
    assert c.departure_s == route.t_s[0] == 1713543780.0  # 2024-04-19T16:23:00Z
    assert c.total_duration_s == pytest.approx(route.t_s[-1] - route.t_s[0])
    # at each trace vertex the corridor clock equals the recorded one
    legs_m = GEOD.inv(route.lon[:-1], route.lat[:-1], route.lon[1:], route.lat[1:])[2]
    vertex_m = np.concatenate(([0.0], np.cumsum(legs_m)))
    boundary_m = np.concatenate((c.distance_m, [c.total_length_m]))
    boundary_s = np.concatenate((c.eta_s, [c.total_duration_s]))
    recorded = np.interp(vertex_m, boundary_m, boundary_s) + c.departure_s
    assert np.max(np.abs(recorded - route.t_s)) < 0.5
    # an Autobahn drive: median segment speed around 100 km/h
    assert 80.0 < float(np.median(c.speed_mps)) * 3.6 < 130.0


def test_recorded_drive_passes_under_every_bridge(autobahn_bridges: list[LineString]) -> None:
    route = read_route_file(TRACE_CSV)
    c = cut(route, overpasses=autobahn_bridges)
    under = np.flatnonzero(c.under_bridge)
    # 15 bridges cross the trace, one flagged stretch (1-2 segments) each
    runs = np.count_nonzero(np.diff(under) > 1) + 1
    assert runs == len(autobahn_bridges) == 15
    assert 15 <= under.size <= 30
    centres = shapely.points(c.lon[under], c.lat[under])
    nearest_m = np.array([min(b.distance(p) for b in autobahn_bridges) for p in centres]) * 80_000
    assert float(nearest_m.max()) < 60.0
    # shorter segments: only those within ~10 m of a crossing
    fine = cut(route, segment_m=5.0, overpasses=autobahn_bridges)
    assert 15 * 3 <= int(fine.under_bridge.sum()) <= 15 * 6


# -- synthetic geometry --------------------------------------------------------------------------


def _north_line(length_m: float, n: int = 2) -> Route:
    """A polyline due north from (1.5 E, 42.5 N), n vertices, length ``length_m``."""
    lon, lat, _ = GEOD.fwd(
        np.full(n, 1.5), np.full(n, 42.5), np.zeros(n), np.linspace(0.0, length_m, n)
    )
    return route_from_polyline(lon, lat, speed_mps=10.0)


def test_segments_of_a_straight_line() -> None:
    c = cut(_north_line(1234.0, n=7), departure_s=100.0)
    _check_invariants(c, 50.0)
    assert len(c) == 25
    assert c.length_m[-1] == pytest.approx(34.0)
    assert np.allclose(c.lon, 1.5)
    # centres: 25 m, 75 m, ... north of the start
    _, _, from_start = GEOD.inv(np.full(len(c), 1.5), np.full(len(c), 42.5), c.lon, c.lat)
    assert np.allclose(from_start, c.distance_m + c.length_m / 2, atol=1e-6)
    assert np.allclose(c.duration_s, c.length_m / 10.0)
    assert c.t_s[0] == pytest.approx(102.5)


def test_length_that_is_a_multiple_of_the_segment() -> None:
    route = _north_line(1000.0)
    total = GEOD.line_length(route.lon, route.lat)
    c = cut(route, segment_m=total / 4, departure_s=0.0)
    assert len(c) == 4
    assert np.allclose(c.length_m, total / 4)


def test_degenerate_two_point_short_route() -> None:
    c = cut(_north_line(3.0), departure_s=0.0)
    assert len(c) == 1
    assert c.length_m[0] == pytest.approx(3.0)
    assert c.duration_s[0] == pytest.approx(0.3)
    big = cut(_north_line(3.0), segment_m=1e6, departure_s=0.0)
    assert len(big) == 1


def _crossing(offset_m: float, angle_deg: float, half_m: float = 15.0) -> LineString:
    """A line through the point ``offset_m`` north of the start, at ``angle_deg`` to north."""
    lon, lat, _ = GEOD.fwd(1.5, 42.5, 0.0, offset_m)
    a_lon, a_lat, _ = GEOD.fwd(lon, lat, angle_deg, half_m)
    b_lon, b_lat, _ = GEOD.fwd(lon, lat, angle_deg + 180.0, half_m)
    return LineString([(a_lon, a_lat), (b_lon, b_lat)])


def test_under_bridge_rules() -> None:
    route = _north_line(500.0, n=11)  # vertices every 50 m: crossings at 130 m fall mid-leg
    cases = {
        "perpendicular": (_crossing(130.0, 90.0), {2}),
        "oblique": (_crossing(130.0, 45.0), {2}),
        "shallow (trace along a bridge)": (_crossing(130.0, 5.0, half_m=40.0), set()),
        "near the centre": (_crossing(170.0, 90.0), {3}),
        "touching the route (a road joining it)": (
            LineString([(1.5, GEOD.fwd(1.5, 42.5, 0.0, 130.0)[1]), (1.5002, 42.50118)]),
            set(),
        ),
        "off to the side": (LineString([(1.501, 42.501), (1.502, 42.501)]), set()),
    }
    for name, (bridge, expected) in cases.items():
        c = cut(route, departure_s=0.0, overpasses=[bridge])
        assert set(np.flatnonzero(c.under_bridge).tolist()) == expected, name
    # 5 m segments: centres within under_bridge_m (10 m) of the crossing at 130 m are those
    # at 122.5, 127.5, 132.5 and 137.5 m
    fine = cut(route, segment_m=5.0, departure_s=0.0, overpasses=[_crossing(130.0, 90.0)])
    assert np.flatnonzero(fine.under_bridge).tolist() == [24, 25, 26, 27]
    narrow = cut(
        route,
        segment_m=5.0,
        departure_s=0.0,
        overpasses=[_crossing(130.0, 90.0)],
        under_bridge_m=0.0,
    )
    assert int(narrow.under_bridge.sum()) == 1
    # on a bridge the route is above whatever it crosses
    lifted = Route(
        lon=route.lon,
        lat=route.lat,
        speed_mps=route.speed_mps,
        in_tunnel=route.in_tunnel,
        on_bridge=np.ones_like(route.on_bridge),
    )
    c = cut(lifted, departure_s=0.0, overpasses=[_crossing(130.0, 90.0)])
    assert not c.under_bridge.any()


def test_stops_in_a_recorded_trace() -> None:
    # a stop: the same position twice, 60 s apart
    lon, lat, _ = GEOD.fwd(
        np.full(4, 1.5), np.full(4, 42.5), np.zeros(4), [0.0, 100.0, 100.0, 200.0]
    )
    route = route_from_polyline(lon, lat, t_s=[0.0, 10.0, 70.0, 80.0])
    c = cut(route, departure_s=None)
    _check_invariants(c, 50.0)
    assert c.total_duration_s == pytest.approx(80.0)
    assert c.duration_s.max() == pytest.approx(65.0)  # the stop lands in one segment


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(-0.01, 0.01), st.floats(-0.01, 0.01)), min_size=1, max_size=30
    ),
    segment_m=st.floats(1.0, 2000.0),
    speed=st.floats(0.5, 60.0),
)
def test_invariants_on_random_polylines(
    steps: list[tuple[float, float]], segment_m: float, speed: float
) -> None:
    xy = np.cumsum(np.array([(0.0, 0.0), *steps]), axis=0) + np.array([1.5, 42.5])
    legs_m = GEOD.inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])[2]
    if not (legs_m > 1e-6).any():  # below a micrometre a leg is a repeated position
        with pytest.raises(InvalidInputError, match="zero length"):
            route_from_polyline(xy[:, 0], xy[:, 1], speed_mps=speed)
        return
    route = route_from_polyline(xy[:, 0], xy[:, 1], speed_mps=speed)
    c = cut(route, segment_m=segment_m, departure_s=0.0)
    _check_invariants(c, segment_m)
    assert c.total_length_m == pytest.approx(legs_m.sum(), rel=1e-9, abs=1e-4)
    assert c.total_duration_s == pytest.approx(legs_m.sum() / speed, rel=1e-9, abs=1e-4)


def test_a_1000_km_route_is_cut_in_one_go() -> None:
    n = 30_000
    t = np.linspace(0.0, 1.0, n)
    route = route_from_polyline(
        -3.0 + 10.0 * t + 0.02 * np.sin(t * 500), 40.0 + 4.0 * t, speed_mps=30.0
    )
    c = cut(route, departure_s=0.0, overpasses=[_crossing(130.0, 90.0)])
    assert 900_000 < c.total_length_m < 1_100_000
    assert len(c) == int(np.ceil(c.total_length_m / 50.0))
    assert np.all(np.diff(c.eta_s) > 0)


# -- rejected inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("segment_m", [0.0, -5.0, np.nan, np.inf])
def test_bad_segment_length(segment_m: float) -> None:
    with pytest.raises(InvalidInputError, match="segment_m must be > 0"):
        cut(_north_line(100.0), segment_m=segment_m, departure_s=0.0)


def test_bad_overpasses() -> None:
    with pytest.raises(InvalidInputError, match="overpasses must be shapely geometries"):
        cut(_north_line(100.0), departure_s=0.0, overpasses=[None])
    empty = cut(_north_line(100.0), departure_s=0.0, overpasses=[LineString()])
    assert not empty.under_bridge.any()


def test_departure_is_required_without_timestamps() -> None:
    with pytest.raises(InvalidInputError, match="departure_s"):
        cut(_north_line(100.0))


@pytest.mark.parametrize(
    ("lon", "lat", "kwargs", "match"),
    [
        ([1.5], [42.5], {}, "at least 2 points"),
        ([], [], {}, "at least 2 points"),
        ([1.5, np.nan], [42.5, 42.6], {}, r"lon: value at index 1 is not finite"),
        ([1.5, 1.6], [42.5, 91.0], {}, r"lat\[1\] = 91.0 is outside"),
        ([1.5, 181.0], [42.5, 42.5], {}, r"lon\[1\] = 181.0 is outside"),
        ([1.5, 1.6, 1.7], [42.5, 42.6], {}, "differ in length"),
        ([1.5, 1.5], [42.5, 42.5], {}, "zero length"),
        ([1.5, 1.6], [42.5, 42.5], {"speed_mps": 0.0}, "speed_mps must be > 0"),
        ([1.5, 1.6, 1.7], [42.5] * 3, {"t_s": [0.0, 5.0, 5.0]}, r"t_s\[2\] = 5.0 is duplicate"),
        ([1.5, 1.6, 1.7], [42.5] * 3, {"t_s": [0.0, 5.0, 3.0]}, "out of order"),
        ([1.5, 1.6, 1.7], [42.5] * 3, {"t_s": [0.0, 5.0]}, "t_s has 2 values for 3 points"),
        ([[1.5, 1.6]], [[42.5, 42.5]], {}, "1-D"),
        (["a", "b"], [42.5, 42.5], {}, "numbers"),
    ],
)
def test_bad_polylines(lon: list, lat: list, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        route_from_polyline(lon, lat, **kwargs)


def test_malformed_route_objects() -> None:
    good = _north_line(100.0, n=3)
    bad_shape = Route(
        lon=good.lon,
        lat=good.lat,
        speed_mps=good.speed_mps[:1],
        in_tunnel=good.in_tunnel,
        on_bridge=good.on_bridge,
    )
    with pytest.raises(InvalidInputError, match=r"route\.speed_mps needs one value per leg"):
        cut(bad_shape, departure_s=0.0)
    stopped = Route(
        lon=good.lon,
        lat=good.lat,
        speed_mps=np.array([10.0, 0.0]),
        in_tunnel=good.in_tunnel,
        on_bridge=good.on_bridge,
    )
    with pytest.raises(InvalidInputError, match="must be > 0 on every leg"):
        cut(stopped, departure_s=0.0)
