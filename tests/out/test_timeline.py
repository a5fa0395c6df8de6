"""Exports of maps and plans (GeoPackage, GeoJSON, KML) on the real Andorra map."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest

from commap.errors import InvalidInputError
from commap.map.comm_map import CommMap
from commap.out.gis import (
    export_map,
    export_plan,
    kml_map_layers,
    map_layers,
    plan_layers,
    read_plan_layers,
    write_layers,
)
from commap.out.plot import route_title
from commap.out.style import CLASSES, network_colors
from commap.out.timeline import (
    RouteTimeline,
    classify,
    read_plan,
    road_edges,
    road_pieces,
    timeline_from_plan,
    with_map_quality,
)
from commap.plan import Plan, plan_corridor, write_plan
from commap.radio.quality import USABLE_SINR_DB

# Andorra la Vella -> Pas de la Casa (the CG-2 over the Envalira pass, into France)
ORIGIN = (1.5218, 42.5063)
DESTINATION = (1.7330, 42.5430)


@pytest.fixture(scope="module")
def plan_and_timeline(andorra: CommMap) -> tuple[Plan, RouteTimeline]:
    route = andorra.routes(ORIGIN, DESTINATION)[0]
    corridor = andorra.corridor(route)
    matrix = andorra.quality(corridor)
    plan = plan_corridor(corridor, matrix, andorra.catalogue, app="infotainment")
    return plan, timeline_from_plan(plan, corridor=corridor, matrix=matrix)


@pytest.fixture(scope="module")
def layers(andorra: CommMap) -> dict[str, gpd.GeoDataFrame]:
    return map_layers(andorra, spacing_m=1000.0)


# -- classes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "values", "expected"),
    [
        ("sinr_db", [25.0, 20.0, 19.9, 0.0, USABLE_SINR_DB, -4.0, -30.0], [0, 0, 1, 2, 3, 4, 4]),
        ("rsrp_dbm", [-70.0, -80.0, -95.0, -119.0, -121.0, -160.0], [0, 0, 2, 4, 5, 5]),
        ("elevation_deg", [80.0, 45.0, 25.0, -90.0], [0, 1, 2, 3]),
        ("sinr_db", [math.nan], [-1]),
        ("rsrp_dbm", [], []),
    ],
)
def test_classify_buckets(metric: str, values: list[float], expected: list[int]) -> None:
    assert classify(metric, values).tolist() == expected


def test_classify_rejects_unknown_metric() -> None:
    with pytest.raises(InvalidInputError, match="unknown quality metric"):
        classify("snr", [1.0])


def test_classes_are_ordered_best_first() -> None:
    for classes in CLASSES.values():
        lowers = [c.lower for c in classes]
        assert lowers == sorted(lowers, reverse=True)
        assert lowers[-1] == -math.inf


def test_network_colors_are_stable_and_distinct() -> None:
    ids = [f"n{i}" for i in range(12)]
    colors = network_colors(ids)
    assert colors == network_colors(ids)
    assert len(set(colors.values())) == 12


# -- roads ---------------------------------------------------------------------------------------


def test_road_edges_merge_both_directions(andorra: CommMap) -> None:
    graph = andorra.roads
    assert graph is not None
    edges = road_edges(graph)
    # every two-way road is one line: fewer lines than directed edges, but not fewer than half
    assert graph.number_of_edges() / 2 <= len(edges) < graph.number_of_edges()
    assert edges.crs.to_string() == "EPSG:4326"
    assert edges["tunnel"].any() and edges["bridge"].any()
    # the drivable network of the extract is about 397 km (data README: 396.8 km of ways)
    assert 380.0 < edges["length_m"].sum() / 1000.0 < 410.0


def test_road_pieces_keep_length_and_spacing(andorra: CommMap) -> None:
    assert andorra.roads is not None
    edges = road_edges(andorra.roads)
    pieces = road_pieces(andorra.roads, spacing_m=300.0)
    assert pieces["length_m"].sum() == pytest.approx(edges["length_m"].sum(), rel=1e-9)
    long_roads = pieces["length_m"] > 0
    assert pieces.loc[long_roads, "length_m"].max() < 2 * 300.0 + 1.0
    assert (pieces["piece_id"].to_numpy() == np.arange(len(pieces))).all()
    # midpoints lie inside the map
    assert andorra.contains(pieces["lon"].to_numpy(), pieces["lat"].to_numpy()).all()


def test_road_pieces_reject_bad_spacing(andorra: CommMap) -> None:
    assert andorra.roads is not None
    with pytest.raises(InvalidInputError, match="spacing_m"):
        road_pieces(andorra.roads, spacing_m=0.0)


# -- map layers ----------------------------------------------------------------------------------


def test_map_layers_cover_every_piece_and_network(
    andorra: CommMap, layers: dict[str, gpd.GeoDataFrame]
) -> None:
    coverage = layers["coverage"]
    n_pieces = coverage["piece_id"].nunique()
    assert len(coverage) == n_pieces * len(andorra.catalogue)
    assert set(coverage["network_id"]) == set(andorra.catalogue.ids)
    assert set(coverage["provenance"]) == {"modelled"}
    # tunnels block every network, terrestrial and satellite
    assert not coverage.loc[coverage["tunnel"], "usable"].any()
    # one "usable" everywhere: the flag, the SINR classes and the threshold agree
    assert (coverage["usable"] == (coverage["sinr_db"] >= USABLE_SINR_DB)).all()
    unusable = coverage["sinr_class"] == CLASSES["sinr_db"][-1].name
    assert (unusable == (coverage["sinr_db"] < USABLE_SINR_DB)).all()
    # classes agree with values
    lte = coverage[coverage["network_id"] == "ad-lte"]
    good = lte["sinr_db"] >= 20.0
    assert (lte.loc[good, "sinr_class"] == "excellent").all()
    assert (lte["usable"] == (lte["sinr_db"] >= USABLE_SINR_DB)).all()
    sat = coverage[coverage["kind"] == "leo"]
    assert (sat["rsrp_class"] == "").all() and (sat["visibility_class"] != "").all()
    # the national LTE network covers most roads, the French one little (it is across the border)
    share = coverage.groupby("network_id")["usable"].mean()
    assert share["ad-lte"] > 0.8 > 0.2 > share["fr-lte"]


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".kml"])
def test_export_map_formats_round_trip(
    layers: dict[str, gpd.GeoDataFrame], tmp_path: Path, suffix: str
) -> None:
    out = write_layers(layers, tmp_path / f"andorra{suffix}")
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp left
    if suffix == ".geojson":
        doc = json.loads(out.read_text(encoding="utf-8"))
        kinds = {f["properties"]["layer"] for f in doc["features"]}
        assert kinds == {"roads", "coverage"}
        assert len(doc["features"]) == len(layers["roads"]) + len(layers["coverage"])
        return
    names = set(pyogrio.list_layers(out)[:, 0])
    assert names == {"roads", "coverage"}
    back = gpd.read_file(out, layer="coverage", engine="pyogrio")
    assert len(back) == len(layers["coverage"])
    if suffix == ".kml":
        text = out.read_text(encoding="utf-8").lower()
        # coloured by class for Google Earth: KML colours are aabbggrr
        best = CLASSES["sinr_db"][0].color.lstrip("#").lower()
        assert f"<color>ff{best[4:6]}{best[2:4]}{best[0:2]}</color>" in text


def test_write_layers_rejects_bad_requests(
    layers: dict[str, gpd.GeoDataFrame], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="unknown export format"):
        write_layers(layers, tmp_path / "map.shp")
    with pytest.raises(InvalidInputError, match="no layers"):
        write_layers({}, tmp_path / "map.gpkg")
    with pytest.raises(InvalidInputError, match="EPSG:4326"):
        write_layers({"roads": layers["roads"].to_crs(3857)}, tmp_path / "map.gpkg")
    assert list(tmp_path.iterdir()) == []


def test_export_map_writes_file(andorra: CommMap, tmp_path: Path) -> None:
    out = export_map(
        andorra, tmp_path / "sub" / "map.gpkg", spacing_m=2000.0, network_ids=["ad-lte"]
    )
    coverage = gpd.read_file(out, layer="coverage", engine="pyogrio")
    assert set(coverage["network_id"]) == {"ad-lte"}


# -- plans ---------------------------------------------------------------------------------------


def test_plan_layers_follow_the_plan(plan_and_timeline: tuple[Plan, RouteTimeline]) -> None:
    plan, timeline = plan_and_timeline
    out = plan_layers(timeline, drop_risk_prob=0.05)
    route, hand, drop = out["route"], out["handovers"], out["drop_risk"]
    assert len(route) == len(list(plan.stretches()))
    assert len(hand) == len(plan.handovers) > 0
    assert list(route["network_id"]) == [nid for _, _, nid in plan.stretches()]
    # stretches tile the route
    assert route["start_m"].iloc[0] == 0.0
    assert np.allclose(route["start_m"].to_numpy()[1:], route["end_m"].to_numpy()[:-1])
    assert route["end_m"].iloc[-1] == pytest.approx(timeline.corridor.total_length_m)
    assert route["drop_expected"].sum() == pytest.approx(plan.outage_risk.sum())
    # the Envalira tunnel has no coverage at all: a drop-risk stretch
    assert len(drop) >= 1 and (drop["max_drop_prob"] >= 0.05).all()
    assert (hand["from_network"] != hand["to_network"]).all()


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".kml"])
def test_export_plan_formats(
    plan_and_timeline: tuple[Plan, RouteTimeline], tmp_path: Path, suffix: str
) -> None:
    plan, timeline = plan_and_timeline
    out = export_plan(timeline, tmp_path / f"plan{suffix}")
    if suffix == ".geojson":
        back = read_plan_layers(out)
    else:
        back = {
            n: gpd.read_file(out, layer=n, engine="pyogrio") for n in pyogrio.list_layers(out)[:, 0]
        }
    assert len(back["handovers"]) == len(plan.handovers)
    assert len(back["route"]) == len(list(plan.stretches()))


def test_read_plan_files_of_the_planner(
    plan_and_timeline: tuple[Plan, RouteTimeline], tmp_path: Path
) -> None:
    plan, timeline = plan_and_timeline
    tl = read_plan(write_plan(plan, tmp_path / "plan.json"))
    assert tl.serving == timeline.serving
    assert len(tl.handovers) == len(plan.handovers)
    assert tl.corridor.total_length_m == pytest.approx(timeline.corridor.total_length_m)
    for suffix in (".json", ".geojson", ".gpkg"):
        layers = read_plan_layers(write_plan(plan, tmp_path / f"p{suffix}"))
        assert len(layers["handovers"]) == len(plan.handovers)
        assert list(layers["route"]["network_id"]) == [n for _, _, n in plan.stretches()]


def test_plan_file_gets_signal_levels_back_from_the_map(
    andorra: CommMap, plan_and_timeline: tuple[Plan, RouteTimeline], tmp_path: Path
) -> None:
    plan, timeline = plan_and_timeline
    bare = read_plan(write_plan(plan, tmp_path / "plan.json"))
    assert np.isnan(bare.matrix.sinr_db).all()
    filled = with_map_quality(bare, andorra)
    open_road = ~timeline.corridor.in_tunnel & ~timeline.corridor.under_bridge
    # the same segments, the same map: the same values away from tunnels and bridges
    assert np.allclose(filled.matrix.sinr_db[open_road], timeline.matrix.sinr_db[open_road])


def test_read_plan_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not a commap plan"):
        read_plan(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="cannot read plan"):
        read_plan(broken)
    with pytest.raises(InvalidInputError, match="unknown plan format"):
        read_plan_layers(tmp_path / "plan.csv")


@pytest.mark.parametrize("suffix", [".json", ".geojson", ".gpkg"])
def test_every_plan_file_reads_back_as_the_plan(
    plan_and_timeline: tuple[Plan, RouteTimeline], tmp_path: Path, suffix: str
) -> None:
    plan, timeline = plan_and_timeline
    back = read_plan(write_plan(plan, tmp_path / f"plan{suffix}"))
    assert back.serving == timeline.serving
    assert [h["segment"] for h in back.handovers] == [h.segment for h in plan.handovers]
    assert np.allclose(back.drop_prob, plan.outage_risk)
    assert back.totals is not None
    assert back.totals["expected_drops"] == pytest.approx(plan.totals.expected_drops)
    assert back.app == plan.app
    # the pictures' title states the plan's own figures, not a sum of its own
    title = route_title(back)
    assert f"{plan.totals.expected_drops:.2f} expected drops" in title
    assert f"{plan.totals.handovers} handovers" in title


def test_kml_of_the_default_map_is_light_and_covers_every_road(
    andorra: CommMap, tmp_path: Path
) -> None:
    out = export_map(andorra, tmp_path / "andorra.kml")  # the README's export, default spacing
    assert out.stat().st_size < 5_000_000  # Google Earth opens it at once
    names = set(pyogrio.list_layers(out)[:, 0])
    assert names == {"roads"} | {f"coverage {n}" for n in andorra.catalogue.ids}
    full = map_layers(andorra)
    light = kml_map_layers(full)
    utm = "EPSG:32631"
    for nid in andorra.catalogue.ids:
        pieces = full["coverage"][full["coverage"]["network_id"] == nid]
        lines = light[f"coverage {nid}"]
        # one line set per class, no piece lost: the same road length, give or take simplification
        assert sorted(lines["label"]) == sorted(set(pieces["label"]))
        assert lines.to_crs(utm).length.sum() == pytest.approx(
            pieces.to_crs(utm).length.sum(), rel=0.02
        )
    back = gpd.read_file(out, layer="coverage ad-lte", engine="pyogrio")
    # few attributes: the name and the style; the values stay in the GeoPackage
    assert not {"network_id", "sinr_db", "rsrp_dbm", "piece_id", "color"} & set(back.columns)
    assert len(back) == len(light["coverage ad-lte"])
