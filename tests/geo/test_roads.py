"""Road graph loading, GeoParquet round trip, snapping and routing on real OSM extracts."""

from __future__ import annotations

import gzip
import itertools
import re
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest
import shapely
from pyproj import Geod

from commap.errors import InvalidInputError
from commap.geo import roads
from commap.geo.corridor import Route
from tests.support.paths import MAPS, TEST_DATA

ANDORRA_PBF = MAPS / "andorra" / "data" / "andorra.osm.pbf"
MONACO_OSM_GZ = TEST_DATA / "roads" / "monaco.osm.gz"

ANDORRA_LA_VELLA = (1.5218, 42.5063)  # (lon, lat)
PAS_DE_LA_CASA = (1.7330, 42.5430)
ENVALIRA_EAST_PORTAL = (1.7331, 42.5468)
ENCAMP = (1.5803, 42.5347)
CANILLO = (1.5981, 42.5667)
ENVALIRA_TUNNEL_WAY = 6176755

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def andorra() -> nx.MultiDiGraph:
    return roads.load_road_graph(ANDORRA_PBF)


@pytest.fixture(scope="module")
def monaco() -> nx.MultiDiGraph:
    return roads.load_road_graph(MONACO_OSM_GZ)


def _ways(graph: nx.MultiDiGraph) -> dict[int, list[dict]]:
    """OSM way id -> its edges, each road piece once (the reverse lane dropped)."""
    pieces: dict[tuple[int, int, int, float], dict] = {}
    for u, v, data in graph.edges(data=True):
        pieces[(data["osm_id"], min(u, v), max(u, v), round(data["length_m"], 6))] = data
    ways: dict[int, list[dict]] = {}
    for (osm_id, *_), data in pieces.items():
        ways.setdefault(osm_id, []).append(data)
    return ways


def _km(edges: list[dict]) -> float:
    return sum(e["length_m"] for e in edges) / 1000.0


def _route_km(route: Route) -> float:
    return GEOD.line_length(route.lon, route.lat) / 1000.0


def _min_distance_m(route: Route, lonlat: tuple[float, float]) -> float:
    n = route.lon.size
    _, _, dist = GEOD.inv(route.lon, route.lat, np.full(n, lonlat[0]), np.full(n, lonlat[1]))
    return float(np.min(dist))


# -- loading -------------------------------------------------------------------------------------


def test_andorra_matches_the_data_readme(andorra: nx.MultiDiGraph) -> None:
    ways = _ways(andorra)
    # data README (pyrosm "driving"): 1,045 drivable ways, 396.8 km (pyrosm uses haversine)
    assert len(ways) == 1045
    assert 396.0 < _km([e for edges in ways.values() for e in edges]) < 398.0
    assert 1400 < andorra.number_of_nodes() < 1700
    assert 2800 < andorra.number_of_edges() < 3200
    assert andorra.graph["crs"] == "EPSG:4326"
    classes = {e[0]["highway"] for e in ways.values()}
    assert classes <= roads.DRIVABLE_HIGHWAYS
    assert "residential" in classes and "primary" in classes


def test_andorra_tunnels_and_bridges(andorra: nx.MultiDiGraph) -> None:
    ways = _ways(andorra)
    tunnels = {w: e for w, e in ways.items() if e[0]["tunnel"]}
    bridges = {w: e for w, e in ways.items() if e[0]["bridge"]}
    assert len(tunnels) == 13
    assert _km([e for edges in tunnels.values() for e in edges]) == pytest.approx(11.4, abs=0.1)
    envalira = tunnels[ENVALIRA_TUNNEL_WAY]
    assert envalira[0]["name"] == "Túnel d'Envalira"
    assert _km(envalira) == pytest.approx(2.9, abs=0.1)
    assert len(bridges) == 111
    assert _km([e for edges in bridges.values() for e in edges]) == pytest.approx(4.3, abs=0.1)


def test_edges_are_consistent(andorra: nx.MultiDiGraph) -> None:
    for u, v, data in andorra.edges(data=True):
        coords = shapely.get_coordinates(data["geometry"])
        assert tuple(coords[0]) == (andorra.nodes[u]["x"], andorra.nodes[u]["y"])
        assert tuple(coords[-1]) == (andorra.nodes[v]["x"], andorra.nodes[v]["y"])
        assert data["length_m"] == pytest.approx(GEOD.line_length(coords[:, 0], coords[:, 1]))
        assert data["travel_time_s"] == pytest.approx(data["length_m"] / data["speed_mps"])
        assert 2.0 < data["speed_mps"] < 40.0
    # intersections are nodes: no edge passes through another edge's end node
    ends = set(andorra.nodes)
    for _, _, data in itertools.islice(andorra.edges(data=True), 500):
        inner = shapely.get_coordinates(data["geometry"])[1:-1]
        assert not (
            {(x, y) for x, y in inner}
            & {(andorra.nodes[n]["x"], andorra.nodes[n]["y"]) for n in ends}
        )


def test_oneway_edges_exist_once(andorra: nx.MultiDiGraph) -> None:
    oneway = [(u, v) for u, v, d in andorra.edges(data=True) if d["oneway"]]
    twoway = [(u, v) for u, v, d in andorra.edges(data=True) if not d["oneway"]]
    assert oneway and twoway
    assert all(andorra.has_edge(v, u) for u, v in twoway)


def test_monaco_osm_gz_loads_with_its_tunnels(monaco: nx.MultiDiGraph) -> None:
    ways = _ways(monaco)
    # data README: 429 drivable ways, 55.0 km, 43 tunnel ways (6.1 km), 12 bridge ways (1.0 km)
    assert len(ways) == 429
    assert _km([e for edges in ways.values() for e in edges]) == pytest.approx(55.0, abs=0.5)
    tunnels = [e for edges in ways.values() if edges[0]["tunnel"] for e in edges]
    assert len({e["osm_id"] for e in tunnels}) == 43
    assert _km(tunnels) == pytest.approx(6.1, abs=0.1)
    assert len({w for w, e in ways.items() if e[0]["bridge"]}) == 12


def test_bbox_keeps_edges_touching_it(andorra: nx.MultiDiGraph) -> None:
    bbox = (1.50, 42.49, 1.55, 42.52)  # Andorra la Vella / Escaldes
    sub = roads.load_road_graph(ANDORRA_PBF, bbox=bbox)
    assert 0 < sub.number_of_edges() < andorra.number_of_edges() / 2
    for _, _, data in sub.edges(data=True):
        xy = shapely.get_coordinates(data["geometry"])
        inside = (
            (xy[:, 0] >= bbox[0])
            & (xy[:, 0] <= bbox[2])
            & (xy[:, 1] >= bbox[1])
            & (xy[:, 1] <= bbox[3])
        )
        assert inside.any()


@pytest.mark.parametrize(
    "bbox", [(1.6, 42.5, 1.5, 42.6), (1.5, 42.5, 1.6), (np.nan, 42.5, 1.6, 42.6)]
)
def test_bad_bbox_is_rejected(bbox: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInputError, match="bbox"):
        roads.load_road_graph(ANDORRA_PBF, bbox=bbox)


def test_bbox_without_roads_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="no drivable road inside bbox"):
        roads.load_road_graph(ANDORRA_PBF, bbox=(0.0, 0.0, 0.1, 0.1))


# -- tag handling on a hand-made extract ----------------------------------------------------------

_XML_HEAD = "<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"test\">\n"


def _osm_xml(ways: dict[int, dict[str, str]]) -> str:
    """One way per entry, each over its own three nodes along a parallel of latitude."""
    nodes, body = [], []
    for i, (way_id, tags) in enumerate(ways.items()):
        refs = [way_id * 10 + j for j in range(3)]
        for j, ref in enumerate(refs):
            nodes.append(
                f'<node id="{ref}" version="1" lat="{42.5 + i * 0.01}" lon="{1.5 + j * 0.001}"/>'
            )
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        tag_xml = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        body.append(f'<way id="{way_id}" version="1">{nds}{tag_xml}</way>')
    return _XML_HEAD + "\n".join(nodes + body) + "\n</osm>\n"


TAG_CASES: dict[int, tuple[dict[str, str], set[str], float | None, bool, bool]] = {
    # way id: tags, directions ("f" forward, "b" backward), forward speed km/h, tunnel, bridge
    1: ({"highway": "residential"}, {"f", "b"}, 30.0, False, False),
    2: ({"highway": "primary", "oneway": "yes"}, {"f"}, 70.0, False, False),
    3: ({"highway": "primary", "oneway": "-1"}, {"b"}, 70.0, False, False),
    4: (
        {"highway": "primary", "oneway": "true", "maxspeed": "50 mph"},
        {"f"},
        80.4672,
        False,
        False,
    ),
    5: ({"highway": "secondary", "oneway": "reversible"}, {"f", "b"}, 60.0, False, False),
    6: ({"highway": "secondary", "junction": "roundabout"}, {"f"}, 60.0, False, False),
    7: ({"highway": "motorway", "maxspeed": "none"}, {"f"}, 130.0, False, False),
    8: ({"highway": "motorway", "oneway": "no"}, {"f", "b"}, 110.0, False, False),
    9: (
        {"highway": "primary", "maxspeed": "90;30", "tunnel": "yes"},
        {"f", "b"},
        60.0,
        True,
        False,
    ),
    10: (
        {"highway": "tertiary", "maxspeed": "FR:urban", "bridge": "viaduct"},
        {"f", "b"},
        50.0,
        False,
        True,
    ),
    11: (
        {"highway": "primary", "maxspeed": "signals", "tunnel": "culvert"},
        {"f", "b"},
        70.0,
        False,
        False,
    ),
    12: (
        {"highway": "unclassified", "oneway": "1", "maxspeed": "DE:zone30"},
        {"f"},
        30.0,
        False,
        False,
    ),
    13: (
        {"highway": "primary_link", "maxspeed:forward": "40", "maxspeed": "60"},
        {"f", "b"},
        40.0,
        False,
        False,
    ),
    # dropped
    20: ({"highway": "service"}, set(), None, False, False),
    21: ({"highway": "track"}, set(), None, False, False),
    22: ({"highway": "footway"}, set(), None, False, False),
    23: ({"highway": "residential", "access": "private"}, set(), None, False, False),
    24: ({"highway": "residential", "access": "no"}, set(), None, False, False),
    25: ({"highway": "residential", "area": "yes"}, set(), None, False, False),
    26: ({"highway": "unclassified", "service": "parking_aisle"}, set(), None, False, False),
    27: ({"highway": "residential", "motor_vehicle": "no"}, set(), None, False, False),
}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> nx.MultiDiGraph:
    path = tmp_path_factory.mktemp("osm") / "tags.osm"
    path.write_text(_osm_xml({w: c[0] for w, c in TAG_CASES.items()}), encoding="utf-8")
    return roads.load_road_graph(path)


@pytest.mark.parametrize("way_id", sorted(TAG_CASES))
def test_tag_rules(tagged: nx.MultiDiGraph, way_id: int) -> None:
    _, directions, speed_kmh, tunnel, bridge = TAG_CASES[way_id]
    first, last = way_id * 10, way_id * 10 + 2
    found = set()
    if tagged.has_edge(first, last):
        found.add("f")
    if tagged.has_edge(last, first):
        found.add("b")
    assert found == directions
    if not directions:
        return
    data = tagged.edges[(first, last, 0)] if "f" in directions else tagged.edges[(last, first, 0)]
    assert data["speed_mps"] * 3.6 == pytest.approx(speed_kmh, rel=1e-6)
    assert (data["tunnel"], data["bridge"]) == (tunnel, bridge)
    assert data["oneway"] == (len(directions) == 1)


def test_backward_lane_geometry_is_reversed(tagged: nx.MultiDiGraph) -> None:
    data = tagged.edges[(32, 30, 0)]  # oneway=-1: only last -> first
    xy = shapely.get_coordinates(data["geometry"])
    assert xy[0, 0] > xy[-1, 0]


@pytest.mark.parametrize(
    ("value", "kmh"),
    [
        ("50", 50.0),
        ("50 km/h", 50.0),
        ("30 mph", 48.28032),
        ("10 knots", 18.52),
        ("none", 130.0),
        ("walk", 7.0),
        ("90;30;90;30;90;30", 60.0),
        ("DE:rural", 100.0),
        ("FR:urban", 50.0),
        ("RU:zone:20", 20.0),
        ("signals", None),
        ("variable", None),
        ("", None),
        ("0", None),
        (None, None),
    ],
)
def test_parse_maxspeed(value: str | None, kmh: float | None) -> None:
    parsed = roads._parse_maxspeed_kmh(value)
    assert parsed == (None if kmh is None else pytest.approx(kmh))


def test_way_with_missing_node_is_split(tmp_path: Path) -> None:
    # extracts clip ways at their border: the node refs stay, the node is absent
    nodes = "".join(
        f'<node id="{i}" version="1" lat="42.5" lon="{1.5 + i * 0.001}"/>' for i in (1, 2, 4, 5)
    )
    nds = "".join(f'<nd ref="{i}"/>' for i in range(1, 6))
    way = f'<way id="7" version="1">{nds}<tag k="highway" v="residential"/></way>'
    path = tmp_path / "clipped.osm"
    path.write_text(_XML_HEAD + nodes + way + "</osm>", encoding="utf-8")
    graph = roads.load_road_graph(path)
    assert sorted(graph.edges()) == [(1, 2), (2, 1), (4, 5), (5, 4)]


# -- bad files -----------------------------------------------------------------------------------


def test_truncated_pbf(tmp_path: Path) -> None:
    data = ANDORRA_PBF.read_bytes()
    path = tmp_path / "truncated.osm.pbf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match=re.escape("truncated.osm.pbf")):
        roads.load_road_graph(path)


def test_truncated_osm_gz(tmp_path: Path) -> None:
    path = tmp_path / "truncated.osm.gz"
    path.write_bytes(MONACO_OSM_GZ.read_bytes()[:100_000])
    with pytest.raises(InvalidInputError, match=re.escape("truncated.osm.gz")):
        roads.load_road_graph(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.osm.pbf", b""),
        ("empty.osm", b""),
        ("garbage.osm.pbf", b"not a pbf at all"),
        ("garbage.osm", b"<osm><broken"),
        ("unknown.txt", b"hello"),
        ("footways.osm.gz", gzip.compress(_osm_xml({1: {"highway": "footway"}}).encode())),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=name.replace(".", r"\.")):
        roads.load_road_graph(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        roads.load_road_graph(tmp_path / "nope.osm.pbf")


# -- GeoParquet ------------------------------------------------------------------------------------


def test_geoparquet_round_trip_is_exact(andorra: nx.MultiDiGraph, tmp_path: Path) -> None:
    roads.write_road_graph(andorra, tmp_path / "roads")
    files = sorted(p.name for p in (tmp_path / "roads").iterdir())
    assert files == [roads.EDGES_FILE, roads.NODES_FILE]  # no temporary leftovers
    back = roads.read_road_graph(tmp_path / "roads")
    assert back.graph == andorra.graph
    assert dict(back.nodes(data=True)) == dict(andorra.nodes(data=True))
    assert set(back.edges(keys=True)) == set(andorra.edges(keys=True))
    for u, v, k, data in andorra.edges(keys=True, data=True):
        other = back.edges[u, v, k]
        assert other.keys() == data.keys()
        for name, value in data.items():
            assert other[name] == value, name
            assert type(other[name]) is type(value), name


def test_geoparquet_overwrites_atomically(
    monaco: nx.MultiDiGraph, andorra: nx.MultiDiGraph, tmp_path: Path
) -> None:
    roads.write_road_graph(andorra, tmp_path)
    roads.write_road_graph(monaco, tmp_path)
    assert roads.read_road_graph(tmp_path).number_of_edges() == monaco.number_of_edges()


def test_read_missing_or_corrupt_tables(monaco: nx.MultiDiGraph, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=re.escape("roads_nodes.parquet")):
        roads.read_road_graph(tmp_path)
    roads.write_road_graph(monaco, tmp_path)
    (tmp_path / roads.EDGES_FILE).write_bytes(b"PAR1 broken")
    with pytest.raises(InvalidInputError, match=re.escape("roads_edges.parquet")):
        roads.read_road_graph(tmp_path)


# -- snapping ------------------------------------------------------------------------------------


def test_snap_returns_the_node_at_its_own_position(andorra: nx.MultiDiGraph) -> None:
    for node in itertools.islice(andorra.nodes, 0, None, 97):
        x, y = andorra.nodes[node]["x"], andorra.nodes[node]["y"]
        assert roads.snap(andorra, x, y) == node


def test_snap_is_the_nearest_node(andorra: nx.MultiDiGraph) -> None:
    node = roads.snap(andorra, *ANDORRA_LA_VELLA)
    nodes = list(andorra.nodes)
    n = len(nodes)
    xs = np.array([andorra.nodes[i]["x"] for i in nodes])
    ys = np.array([andorra.nodes[i]["y"] for i in nodes])
    _, _, dist = GEOD.inv(np.full(n, ANDORRA_LA_VELLA[0]), np.full(n, ANDORRA_LA_VELLA[1]), xs, ys)
    assert node == nodes[int(np.argmin(dist))]
    assert float(dist.min()) < 100.0


@pytest.mark.parametrize(
    ("lon", "lat", "match"),
    [
        (1.0, 42.0, "from the nearest road node"),
        (np.nan, 42.5, "finite"),
        (181.0, 42.5, "out of range"),
        (1.5, -91.0, "out of range"),
    ],
)
def test_snap_rejects(andorra: nx.MultiDiGraph, lon: float, lat: float, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        roads.snap(andorra, lon, lat)


def test_snap_limit(andorra: nx.MultiDiGraph) -> None:
    with pytest.raises(InvalidInputError, match="limit 1 m"):
        roads.snap(andorra, ANDORRA_LA_VELLA[0] + 0.0005, ANDORRA_LA_VELLA[1], max_distance_m=1.0)
    with pytest.raises(InvalidInputError, match="max_distance_m"):
        roads.snap(andorra, *ANDORRA_LA_VELLA, max_distance_m=0.0)


# -- routing -------------------------------------------------------------------------------------


def test_andorra_la_vella_to_pas_de_la_casa(andorra: nx.MultiDiGraph) -> None:
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    assert 25.0 < _route_km(route) < 40.0
    # up the Valira d'Orient valley through Encamp and Canillo (CG-2)
    # (town centres from Wikipedia; the CG-2 runs along the river a few hundred metres off)
    assert _min_distance_m(route, ENCAMP) < 500.0
    assert _min_distance_m(route, CANILLO) < 500.0
    assert "CG-2" in route.name
    # in this 2013 extract the Envalira tunnel's east portal does not connect down to
    # Pas de la Casa, so the fastest route climbs over the Port d'Envalira road
    ways = {andorra.edges[e]["osm_id"] for e in route.edges}
    assert ENVALIRA_TUNNEL_WAY not in ways
    assert any(andorra.edges[e]["name"] == "Port d'Envalira" for e in route.edges)
    minutes = sum(andorra.edges[e]["travel_time_s"] for e in route.edges) / 60.0
    assert 20.0 < minutes < 45.0


def test_route_to_the_tunnel_portal_goes_through_envalira(andorra: nx.MultiDiGraph) -> None:
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, ENVALIRA_EAST_PORTAL)
    ways = [andorra.edges[e]["osm_id"] for e in route.edges]
    assert ENVALIRA_TUNNEL_WAY in ways
    legs_m = GEOD.inv(route.lon[:-1], route.lat[:-1], route.lon[1:], route.lat[1:])[2]
    assert float(legs_m[route.in_tunnel].sum()) > 2900.0


def test_route_structure(andorra: nx.MultiDiGraph) -> None:
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    n = route.lon.size
    assert route.lat.size == n and route.speed_mps.size == n - 1
    assert route.in_tunnel.size == n - 1 and route.on_bridge.size == n - 1
    assert route.t_s is None
    for (_, v, _), (u, _, _) in itertools.pairwise(route.edges):
        assert v == u
    # the ends lie on the first and last edge, where the positions project onto the road
    first = andorra.edges[route.edges[0]]["geometry"]
    last = andorra.edges[route.edges[-1]]["geometry"]
    start, end = (
        shapely.Point(route.lon[0], route.lat[0]),
        shapely.Point(route.lon[-1], route.lat[-1]),
    )
    assert first.distance(start) < 1e-7 and last.distance(end) < 1e-7
    assert _min_distance_m(route, ANDORRA_LA_VELLA) < 100.0
    assert _min_distance_m(route, PAS_DE_LA_CASA) < 100.0
    edge_km = sum(andorra.edges[e]["length_m"] for e in route.edges) / 1000.0
    first_km = andorra.edges[route.edges[0]]["length_m"] / 1000.0
    last_km = andorra.edges[route.edges[-1]]["length_m"] / 1000.0
    assert edge_km - first_km - last_km <= _route_km(route) <= edge_km + 1e-9


def test_route_by_length_is_no_longer(andorra: nx.MultiDiGraph) -> None:
    fastest = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    shortest = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, weight="length_m")
    assert _route_km(shortest) <= _route_km(fastest) + 1e-9
    with pytest.raises(InvalidInputError, match="no attribute 'cost'"):
        roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, weight="cost")


def test_k_routes_are_distinct_and_no_faster(andorra: nx.MultiDiGraph) -> None:
    routes = roads.k_routes(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, k=3)
    fastest = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    assert 2 <= len(routes) <= 3
    assert routes[0].edges == fastest.edges
    assert len({r.edges for r in routes}) == len(routes)
    times = [sum(andorra.edges[e]["travel_time_s"] for e in r.edges) for r in routes]
    assert times == sorted(times)
    assert all(t <= 1.6 * times[0] for t in times)
    for a, b in itertools.combinations(routes, 2):
        assert roads._overlap(andorra, list(b.edges), list(a.edges)) <= 0.9


def test_k_routes_edge_cases(andorra: nx.MultiDiGraph) -> None:
    one = roads.k_routes(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, k=1)
    assert len(one) == 1
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        roads.k_routes(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, k=0)
    with pytest.raises(InvalidInputError, match="penalty"):
        roads.k_routes(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, penalty=1.0)


def test_islands_of_the_graph_are_not_snapped_to(andorra: nx.MultiDiGraph) -> None:
    main = max(nx.strongly_connected_components(andorra), key=len)
    island = next(n for n in andorra.nodes if n not in main)
    target = (andorra.nodes[island]["x"], andorra.nodes[island]["y"])
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, target)
    assert all(u in main and v in main for u, v, _ in route.edges)
    with pytest.raises(InvalidInputError, match="same point on the road"):
        roads.shortest_route(andorra, ANDORRA_LA_VELLA, ANDORRA_LA_VELLA)


def test_sant_julia_to_pas_de_la_casa(andorra: nx.MultiDiGraph) -> None:
    # both on main roads; the nearest nodes sit on pieces of the graph that cannot be left
    sant_julia, pas_de_la_casa = (1.4913, 42.4637), (1.7332, 42.5426)
    route = roads.shortest_route(andorra, sant_julia, pas_de_la_casa)
    assert 30.0 < _route_km(route) < 45.0
    assert _min_distance_m(route, sant_julia) < 100.0
    assert _min_distance_m(route, pas_de_la_casa) < 100.0
    assert "CG-2" in route.name or "CG-1" in route.name
    assert len(roads.k_routes(andorra, sant_julia, pas_de_la_casa, k=3)) >= 1


def test_far_positions_are_reported_without_node_ids(
    andorra: nx.MultiDiGraph, caplog: pytest.LogCaptureFixture
) -> None:
    off_road = (1.4600, 42.4700)  # on the mountainside west of Sant Julia de Loria
    point = roads.snap_to_road(andorra, *off_road)
    assert point.distance_m > roads.FAR_FROM_ROAD_M
    with caplog.at_level("WARNING", logger="commap.geo.roads"):
        roads.shortest_route(andorra, off_road, PAS_DE_LA_CASA)
    assert f"{point.distance_m:.0f} m from the nearest connected road" in caplog.text
    near = roads.snap_to_road(andorra, *ANDORRA_LA_VELLA)
    assert near.distance_m < 50.0
    with pytest.raises(InvalidInputError) as raised:
        roads.shortest_route(andorra, (1.0, 42.0), PAS_DE_LA_CASA)
    assert "km from the nearest connected road" in str(raised.value)
    assert not re.search(r"node \d", str(raised.value))


def test_route_from_edges_rejects_gaps(andorra: nx.MultiDiGraph) -> None:
    route = roads.shortest_route(andorra, ANDORRA_LA_VELLA, PAS_DE_LA_CASA)
    with pytest.raises(InvalidInputError, match="does not start where"):
        roads.route_from_edges(andorra, [route.edges[0], route.edges[2]])
    with pytest.raises(InvalidInputError, match="not in the road graph"):
        roads.route_from_edges(andorra, [(1, 2, 0)])


def test_bridge_geometries(andorra: nx.MultiDiGraph) -> None:
    found = roads.bridge_geometries(andorra)
    pieces = {
        (d["osm_id"], min(u, v), max(u, v)) for u, v, d in andorra.edges(data=True) if d["bridge"]
    }
    assert len(found) == len(pieces)
    assert all(g.geom_type == "LineString" for g in found)
    assert sum(GEOD.geometry_length(g) for g in found) / 1000.0 == pytest.approx(4.3, abs=0.1)
    assert roads.bridge_geometries(nx.MultiDiGraph()) == []


def test_placeholder_names_do_not_name_routes() -> None:
    # The Andorra extract has a way tagged name=FIXME on an alternative route to Pas de la Casa.
    graph = roads.load_road_graph(ANDORRA_PBF)
    names = {d["name"] for _, _, d in graph.edges(data=True)}
    assert "FIXME" not in names
    for route in roads.k_routes(graph, ANDORRA_LA_VELLA, PAS_DE_LA_CASA, k=3):
        assert "FIXME" not in route.name


def test_routes_by_an_edge_attribute_match_networkx_dijkstra(andorra: nx.MultiDiGraph) -> None:
    # an attribute weight runs commap's own Dijkstra over successor lists; networkx's
    # Dijkstra (what a weight function runs) must find the very same roads
    def travel_time_s(u: Any, v: Any, data: dict[Any, Any]) -> float:
        return min(float(attrs["travel_time_s"]) for attrs in data.values())

    rng = np.random.default_rng(3)
    compared = 0
    for _ in range(80):
        origin = (float(rng.uniform(1.46, 1.74)), float(rng.uniform(42.44, 42.64)))
        destination = (float(rng.uniform(1.46, 1.74)), float(rng.uniform(42.44, 42.64)))
        try:
            fast = roads.shortest_route(andorra, origin, destination, max_snap_m=3000.0)
        except InvalidInputError as exc:
            with pytest.raises(InvalidInputError, match=re.escape(str(exc))):
                roads.shortest_route(
                    andorra, origin, destination, weight=travel_time_s, max_snap_m=3000.0
                )
            continue
        slow = roads.shortest_route(
            andorra, origin, destination, weight=travel_time_s, max_snap_m=3000.0
        )
        assert fast.edges == slow.edges
        assert np.array_equal(fast.lon, slow.lon) and np.array_equal(fast.lat, slow.lat)
        compared += 1
    assert compared >= 30
