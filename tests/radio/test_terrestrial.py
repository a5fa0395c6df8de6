"""The modelled terrestrial layer on the real Andorra terrain, roads and spec, and Cork towers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely

from commap.errors import InvalidInputError
from commap.geo.geodesy import EARTH_RADIUS_M
from commap.geo.roads import load_road_graph
from commap.geo.terrain import Terrain
from commap.networks import Network, NetworkKind
from commap.plan import HandoverProblem
from commap.radio import layers
from commap.radio.layers import LayerContext
from commap.radio.layers.terrestrial import (
    MAX_SINR_DB,
    MODELLED_CONFIDENCE,
    TERRAIN_SHADOWED_CONFIDENCE,
    RadioParams,
    TerrestrialLayer,
    load_layer,
    prepare_layer,
    radio_params,
)
from commap.radio.pathloss import K_FACTOR, ground_distance_m
from commap.radio.quality import NO_SIGNAL_RSRP_DBM, NO_SIGNAL_SINR_DB, CoverageLayer, Provenance
from commap.radio.sites import SITE_COLUMNS, read_site_table, read_sites, road_points
from tests.support.paths import MAPS
from tests.support.specs import read_default_spec

ANDORRA = MAPS / "andorra"
CORK = MAPS / "cork"
SPEC = read_default_spec()
TERRESTRIAL = [n for n in SPEC["networks"] if n["kind"] == "terrestrial"]

# A site on the OSM antenna above Encamp (ground 1628 m) and two road-side points 3.0 km away:
# one in view up the Valira d'Orient (ground 1640 m), one behind the Pic de Maians ridge.
SITE = (1.5682, 42.5212)
LOS_POINT = (1.59624, 42.53854)
RIDGE_POINT = (1.60260, 42.53043)


def _network(entry: dict[str, Any]) -> Network:
    return Network(
        id=entry["id"],
        kind=NetworkKind.TERRESTRIAL,
        operator=entry["operator"],
        technology=entry["technology"],
        latency_ms=entry["latency_ms"],
        frequency_mhz=entry["frequency_mhz"],
    )


def _sites(rows: list[tuple[float, float, float]], environment: str = "rural") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "site_id": f"s{i}",
                "lon": lon,
                "lat": lat,
                "tx_power_dbm": 46.0,
                "frequency_mhz": f_mhz,
                "antenna_height_m": 25.0,
                "environment": environment,
                "source": "test",
            }
            for i, (lon, lat, f_mhz) in enumerate(rows)
        ],
        columns=list(SITE_COLUMNS),
    )


def _east(lon: float, lat: float, distance_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dlon = np.degrees(distance_m / (EARTH_RADIUS_M * np.cos(np.radians(lat))))
    return lon + dlon, np.full(np.shape(distance_m), lat)


@pytest.fixture(scope="module")
def terrain() -> Terrain:
    return Terrain.from_files([ANDORRA / "data" / "N42E001.hgt.zip"])


@pytest.fixture(scope="module")
def roads() -> nx.MultiDiGraph:
    return load_road_graph(ANDORRA / "data" / "andorra.osm.pbf", bbox=tuple(SPEC["bbox"]))


@pytest.fixture(scope="module")
def andorra_built(
    tmp_path_factory: pytest.TempPathFactory, terrain: Terrain, roads: nx.MultiDiGraph
) -> tuple[LayerContext, dict[str, dict[str, Any]]]:
    """The four terrestrial layers of the default map, prepared into a temp dir."""
    ctx = LayerContext(
        source_dir=ANDORRA,
        built_dir=tmp_path_factory.mktemp("andorra"),
        bbox=tuple(SPEC["bbox"]),
        terrain=terrain,
        roads=roads,
        seed=SPEC["seed"],
        osm_file=ANDORRA / SPEC["roads"]["file"],
    )
    built = {n["id"]: layers.prepare_layer(_network(n), n["layer"], ctx) for n in TERRESTRIAL}
    return ctx, built


# --- radio behaviour ---------------------------------------------------------------------------


def test_ridge_blocks_the_signal_on_real_terrain(terrain: Terrain) -> None:
    lon = np.array([LOS_POINT[0], RIDGE_POINT[0]])
    lat = np.array([LOS_POINT[1], RIDGE_POINT[1]])
    d = ground_distance_m(SITE[0], SITE[1], lon, lat)
    assert d == pytest.approx([3000.0, 3000.0], abs=2.0)  # equal distance
    # the profiles: the ridge rises far above the line of sight, the other path is clear
    n = 64
    prof = terrain.profile_m(np.full(2, SITE[0]), np.full(2, SITE[1]), lon, lat, n)
    frac = np.linspace(0.0, 1.0, n)
    bulge = d[:, None] ** 2 * frac * (1 - frac) / (2 * K_FACTOR * EARTH_RADIUS_M)
    ray = (prof[:, :1] + 25.0) + ((prof[:, -1:] + 1.5) - (prof[:, :1] + 25.0)) * frac
    above_ray_m = (prof + bulge - ray)[:, 1:-1].max(axis=1)
    assert above_ray_m[0] < 0.0  # line of sight
    assert above_ray_m[1] > 100.0  # ridge
    layer = TerrestrialLayer("t", _sites([(SITE[0], SITE[1], 800.0)]), RadioParams(), terrain)
    flat = TerrestrialLayer("t", _sites([(SITE[0], SITE[1], 800.0)]), RadioParams(), None)
    q = layer.sample(lon, lat, np.zeros(2))
    q_flat = flat.sample(lon, lat, np.zeros(2))
    assert q_flat.rsrp_dbm[0] == pytest.approx(q_flat.rsrp_dbm[1], abs=0.1)
    assert q.rsrp_dbm[0] == pytest.approx(q_flat.rsrp_dbm[0], abs=0.1)  # no loss in view
    assert q.rsrp_dbm[0] - q.rsrp_dbm[1] > 20.0
    assert q.confidence.tolist() == [MODELLED_CONFIDENCE, TERRAIN_SHADOWED_CONFIDENCE]


def test_rsrp_falls_with_distance() -> None:
    layer = TerrestrialLayer("t", _sites([(1.5, 42.5, 800.0)]), RadioParams(), None)
    lon, lat = _east(1.5, 42.5, np.geomspace(50.0, 19_000.0, 200))
    q = layer.sample(lon, lat, np.zeros(lon.size))
    assert (np.diff(q.rsrp_dbm) < 0).all()
    assert q.rsrp_dbm[0] > -70.0 and q.rsrp_dbm[-1] < -115.0


def test_best_server_and_sinr_between_two_sites() -> None:
    params = RadioParams()
    b_lon, _ = _east(1.5, 42.5, np.array([4000.0]))
    layer = TerrestrialLayer(
        "t", _sites([(1.5, 42.5, 800.0), (float(b_lon[0]), 42.5, 800.0)]), params, None
    )
    lon, lat = _east(1.5, 42.5, np.array([100.0, 2000.0, 3900.0]))
    q = layer.sample(lon, lat, np.zeros(3))
    assert q.sinr_db[0] > 25.0 and q.sinr_db[2] > 25.0  # next to a site
    assert q.sinr_db.max() <= MAX_SINR_DB
    # midway: signal = interference, noise 27 dB below: SINR = -10 log10(load factor) ~ 1.5 dB
    assert q.sinr_db[1] == pytest.approx(-10 * np.log10(params.load_factor), abs=0.1)
    assert abs(q.sinr_db[1]) < 2.0
    assert q.rsrp_dbm[0] == pytest.approx(q.rsrp_dbm[2], abs=0.01)  # symmetric best servers
    # the per-site matrix: site 0 serves the first point, site 1 the last
    per_site = layer.site_rsrp_dbm(lon, lat)
    assert per_site.argmax(axis=1).tolist()[::2] == [0, 1]


def test_sites_on_other_carriers_do_not_interfere() -> None:
    b_lon, _ = _east(1.5, 42.5, np.array([4000.0]))
    layer = TerrestrialLayer(
        "t", _sites([(1.5, 42.5, 800.0), (float(b_lon[0]), 42.5, 1800.0)]), RadioParams(), None
    )
    lon, lat = _east(1.5, 42.5, np.array([1900.0]))
    assert layer.sample(lon, lat, np.zeros(1)).sinr_db[0] > 20.0


def test_tunnels_range_and_sensitivity_give_no_signal(terrain: Terrain) -> None:
    layer = TerrestrialLayer(
        "t", _sites([(1.5, 42.5, 800.0)]), RadioParams(max_range_m=15_000.0), terrain
    )
    lon, lat = _east(1.5, 42.5, np.array([300.0, 300.0, 16_000.0]))
    q = layer.sample(
        lon,
        lat,
        np.zeros(3),
        in_tunnel=np.array([True, False, False]),
        under_bridge=np.array([False, True, False]),
    )
    assert q.rsrp_dbm.tolist() == [NO_SIGNAL_RSRP_DBM, q.rsrp_dbm[1], NO_SIGNAL_RSRP_DBM]
    assert q.sinr_db[[0, 2]].tolist() == [NO_SIGNAL_SINR_DB, NO_SIGNAL_SINR_DB]
    assert q.rsrp_dbm[1] > -90.0  # a bridge does not matter
    deaf = TerrestrialLayer("t", _sites([(1.5, 42.5, 800.0)]), RadioParams(min_rsrp_dbm=-40.0))
    assert deaf.sample(lon[1:2], lat[1:2], np.zeros(1)).rsrp_dbm[0] == NO_SIGNAL_RSRP_DBM


def test_quality_fields_and_protocol() -> None:
    layer = TerrestrialLayer("t", _sites([(1.5, 42.5, 800.0)]), RadioParams(), None)
    assert isinstance(layer, CoverageLayer)
    q = layer.sample(np.array([1.51]), np.array([42.5]), np.array([1.7e9]))
    assert np.isnan(q.elevation_deg).all()
    assert q.provenance.tolist() == [Provenance.MODELLED]
    assert q.sample_count.tolist() == [0]
    assert 0.0 < q.confidence[0] < 1.0
    assert len(layer.sample(np.zeros(0), np.zeros(0), np.zeros(0))) == 0
    with pytest.raises(InvalidInputError, match="in_tunnel"):
        layer.sample(
            np.array([1.5]), np.array([42.5]), np.zeros(1), in_tunnel=np.array([True, False])
        )
    with pytest.raises(InvalidInputError):
        layer.sample(np.array([np.nan]), np.array([42.5]), np.zeros(1))


def test_shadowing_margin_and_link_budget() -> None:
    base = TerrestrialLayer("t", _sites([(1.5, 42.5, 800.0)]), RadioParams(), None)
    margin = TerrestrialLayer(
        "t", _sites([(1.5, 42.5, 800.0)]), RadioParams(shadowing_margin_db=6.0), None
    )
    lon, lat = _east(1.5, 42.5, np.array([1000.0]))
    assert base.sample(lon, lat, np.zeros(1)).rsrp_dbm[0] - margin.sample(
        lon, lat, np.zeros(1)
    ).rsrp_dbm[0] == (pytest.approx(6.0))
    # LTE 10 MHz: 600 subcarriers; 46 dBm - 27.78 dB + 15 dBi
    assert float(RadioParams().rs_eirp_dbm(46.0)) == pytest.approx(33.22, abs=0.01)
    nr = _network(next(n for n in TERRESTRIAL if n["id"] == "ad-nr"))
    assert radio_params(nr, {}).noise_dbm == pytest.approx(-120.23, abs=0.01)  # 30 kHz
    with pytest.raises(InvalidInputError, match="ad-nr: layer"):
        radio_params(nr, {"load_factor": 2.0})
    with pytest.raises(InvalidInputError, match="must be a number"):
        radio_params(nr, {"tx_power_dbm": 1, "max_range_m": "far"})


# --- prepare / load on the real map ------------------------------------------------------------


def test_andorra_layers_are_prepared_and_marked_modelled(
    andorra_built: tuple[LayerContext, dict[str, dict[str, Any]]],
) -> None:
    ctx, built = andorra_built
    for entry in TERRESTRIAL:
        spec = built[entry["id"]]
        assert spec["sites"] == f"sites-{entry['id']}.csv"
        assert spec["modelled"] is True and spec["provenance"] == "modelled"
        assert spec["site_source"] == "generated"
        sites = read_sites(ctx.built_dir / spec["sites"])
        assert len(sites) == spec["site_count"] >= 1
        lon0, lat0, lon1, lat1 = entry["layer"]["placement_region"]
        assert sites["lon"].between(lon0, lon1).all() and sites["lat"].between(lat0, lat1).all()
        assert (sites["frequency_mhz"] == entry["frequency_mhz"]).all()
        placement = spec["placement"]
        assert placement["osm_sites"] + placement["generated_sites"] == len(sites)
        assert 0.0 < placement["road_covered_fraction"] <= 1.0
    # the OSM antenna is inside both national regions and is used first
    for network_id in ("ad-lte", "ad-nr"):
        assert built[network_id]["placement"]["osm_sites"] == 1
    assert built["ad-lte"]["site_count"] >= 10 and built["ad-nr"]["site_count"] >= 15


def test_andorra_layers_load_and_cover_their_roads(
    andorra_built: tuple[LayerContext, dict[str, dict[str, Any]]], roads: nx.MultiDiGraph
) -> None:
    ctx, built = andorra_built
    pts = road_points(roads, step_m=200.0)
    covered = {}
    for entry in TERRESTRIAL:
        layer = load_layer(_network(entry), built[entry["id"]], ctx)
        assert isinstance(layer, TerrestrialLayer) and layer.network_id == entry["id"]
        q = layer.sample(pts.lon, pts.lat, np.zeros(len(pts)))
        lon0, lat0, lon1, lat1 = entry["layer"]["placement_region"]
        inside = (pts.lon >= lon0) & (pts.lon <= lon1) & (pts.lat >= lat0) & (pts.lat <= lat1)
        ok = q.rsrp_dbm > -120.0
        covered[entry["id"]] = (ok[inside].mean(), ok[~inside].mean() if (~inside).any() else 0)
    assert covered["ad-lte"][0] > 0.9  # the national LTE layer reaches nearly every road
    assert covered["ad-nr"][0] > 0.8
    for roaming in ("es-lte", "fr-lte"):  # roaming operators: near their border only
        inside_share, outside_share = covered[roaming]
        assert inside_share > 0.6 and outside_share < 0.15


def test_same_seed_same_sites(
    andorra_built: tuple[LayerContext, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    ctx, _ = andorra_built
    entry = next(n for n in TERRESTRIAL if n["id"] == "ad-nr")
    again = LayerContext(
        source_dir=ctx.source_dir,
        built_dir=tmp_path,
        bbox=ctx.bbox,
        terrain=ctx.terrain,
        roads=ctx.roads,
        seed=ctx.seed,
        osm_file=ctx.osm_file,
    )
    prepare_layer(_network(entry), entry["layer"], again)
    name = "sites-ad-nr.csv"
    assert (tmp_path / name).read_bytes() == (ctx.built_dir / name).read_bytes()


def test_cork_towers_per_operator_and_technology(tmp_path: Path) -> None:
    net = Network(
        id="mno1-3g",
        kind=NetworkKind.TERRESTRIAL,
        operator="mno_1",
        technology="3g",
        latency_ms=50.0,
        frequency_mhz=2000.0,
    )
    spec = {
        "type": "terrestrial",
        "sites": "data/ireland_cork_sites.csv",
        "filter": {"bs_operator": "mno_1", "bs_technology": "3g"},
        "antenna_height_m": 30.0,
        "model": "cost231",
        "environment": "urban",
    }
    ctx = LayerContext(source_dir=CORK, built_dir=tmp_path, bbox=(-8.70, 51.80, -8.25, 52.02))
    built = layers.prepare_layer(net, spec, ctx)
    assert built["site_count"] == 103 and built["site_source"] == spec["sites"]
    assert built["environments"]["urban"] == 103
    layer = layers.load_layer(net, built, ctx)
    # Cork city centre (Patrick Street) is served; 3G power (37 dBm) per 15 kHz of 3.84 MHz
    q = layer.sample(np.array([-8.4730]), np.array([51.8993]), np.array([0.0]))
    assert -110.0 < q.rsrp_dbm[0] < -50.0
    assert q.sinr_db[0] > NO_SIGNAL_SINR_DB


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sites": None}, "must be 'generated' or a CSV path"),
        ({"sites": "data/missing.csv"}, "does not exist"),
        ({"filter": {"bs_operator": "mno_9"}}, "no site rows"),
        ({"filter": "mno_1"}, "must be a table"),
        ({"model": "okumura"}, "unknown model"),
        ({"environment": "city"}, "layer.environment"),
    ],
)
def test_bad_specs_raise(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    net = Network(
        id="c",
        kind=NetworkKind.TERRESTRIAL,
        operator="mno_1",
        technology="3g",
        latency_ms=50.0,
        frequency_mhz=2000.0,
    )
    spec = {"type": "terrestrial", "sites": "data/ireland_cork_sites.csv", **change}
    ctx = LayerContext(source_dir=CORK, built_dir=tmp_path, bbox=(-8.70, 51.80, -8.25, 52.02))
    with pytest.raises(InvalidInputError, match=message):
        prepare_layer(net, spec, ctx)


def test_generated_sites_need_roads(tmp_path: Path) -> None:
    entry = TERRESTRIAL[0]
    ctx = LayerContext(source_dir=ANDORRA, built_dir=tmp_path, bbox=tuple(SPEC["bbox"]))
    with pytest.raises(InvalidInputError, match="needs the map's road graph"):
        prepare_layer(_network(entry), entry["layer"], ctx)
    with pytest.raises(InvalidInputError, match="names no site file"):
        load_layer(_network(entry), {"sites": "generated"}, ctx)


# -- tunnels ---------------------------------------------------------------------------------------

ENVALIRA_WAY = 6176755
LA_VELLA, ENVALIRA_EAST_PORTAL = (1.5218, 42.5063), (1.7331, 42.5468)


def _with_tunnel_coverage(andorra: Any, table: dict[str, Any]) -> Any:
    """The default map with ad-lte's layer reloaded with ``tunnel_coverage = table``."""

    entry = next(e for e in andorra.manifest.networks if e.network().id == "ad-lte")
    ctx = LayerContext(
        source_dir=andorra.directory,
        built_dir=andorra.directory,
        bbox=andorra.bbox,
        terrain=andorra.terrain,
        roads=andorra.roads,
    )
    layer = load_layer(entry.network(), {**entry.layer, "tunnel_coverage": table}, ctx)
    return andorra.replaced(layers={**andorra.layers, "ad-lte": layer})


def test_envalira_tunnel_with_a_distributed_antenna_system(andorra: Any) -> None:

    das = {"tunnels": [{"osm_id": ENVALIRA_WAY, "mode": "das", "rsrp_dbm": -95.0, "sinr_db": 10.0}]}
    equipped = _with_tunnel_coverage(andorra, das)
    route = andorra.routes(LA_VELLA, ENVALIRA_EAST_PORTAL)[0]
    corridor = andorra.corridor(route)
    tunnel = next(
        d["geometry"] for *_, d in andorra.roads.edges(data=True) if d["osm_id"] == ENVALIRA_WAY
    )

    in_envalira = corridor.in_tunnel & (
        shapely.distance(tunnel, shapely.points(corridor.lon, corridor.lat)) < 1e-5
    )
    other_tunnels = corridor.in_tunnel & ~in_envalira
    assert in_envalira.sum() > 50 and other_tunnels.any()
    j = andorra.catalogue.ids.index("ad-lte")
    before = _with_tunnel_coverage(andorra, {}).quality(corridor)
    after = equipped.quality(corridor)
    assert (before.rsrp_dbm[in_envalira, j] == NO_SIGNAL_RSRP_DBM).all()
    assert (after.rsrp_dbm[in_envalira, j] == -95.0).all()
    assert (after.sinr_db[in_envalira, j] == 10.0).all()
    assert (after.rsrp_dbm[other_tunnels, j] == NO_SIGNAL_RSRP_DBM).all()  # no DAS there
    outside = ~corridor.in_tunnel
    assert np.array_equal(after.rsrp_dbm[outside, j], before.rsrp_dbm[outside, j])
    # the planner sees it: ad-lte is usable through Envalira
    problem = HandoverProblem.build(corridor, after, andorra.catalogue)
    usable = problem.point_outage < problem.link.unusable_outage_prob
    assert usable[in_envalira, j].all()


def test_default_tunnel_coverage_and_by_name(andorra: Any) -> None:
    table = {
        "mode": "das",
        "rsrp_dbm": -100.0,
        "sinr_db": 5.0,
        "tunnels": [{"name": "Túnel d'Envalira", "mode": "none"}],
    }
    equipped = _with_tunnel_coverage(andorra, table)
    corridor = andorra.corridor(andorra.routes(LA_VELLA, ENVALIRA_EAST_PORTAL)[0])
    rsrp = equipped.quality(corridor).rsrp_dbm[:, andorra.catalogue.ids.index("ad-lte")]
    in_tunnel = rsrp[corridor.in_tunnel]
    assert (in_tunnel == -100.0).any() and (in_tunnel == NO_SIGNAL_RSRP_DBM).sum() > 50


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"mode": "das"}, "needs rsrp_dbm and sinr_db"),
        ({"tunnels": [{"osm_id": 1, "mode": "none"}]}, "no tunnel 1 on the map's roads"),
        ({"tunnels": [{"mode": "none"}]}, "give either osm_id or name"),
        ({"mode": "leaky"}, "mode must be one of none, das"),
    ],
)
def test_bad_tunnel_coverage(andorra: Any, table: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        _with_tunnel_coverage(andorra, table)


@pytest.mark.parametrize("network_id", ["ad-lte", "ad-nr", "es-lte", "fr-lte"])
def test_a_site_table_of_arrays_answers_as_the_site_dataframe(
    andorra_dir: Path, network_id: str
) -> None:
    # a loaded map reads its sites as arrays (no pandas); they must give the same coverage
    path = andorra_dir / f"sites-{network_id}.csv"
    table = read_site_table(path)
    frame = read_sites(path)
    assert len(table) == len(frame)
    assert table.to_frame().equals(frame)
    lon, lat = np.linspace(1.45, 1.75, 40), np.linspace(42.45, 42.60, 40)
    tunnel = np.arange(40) % 3 == 0
    answers = [
        TerrestrialLayer(network_id, sites, RadioParams()).sample(
            lon, lat, np.zeros(40), in_tunnel=tunnel
        )
        for sites in (table, frame)
    ]
    for column in ("rsrp_dbm", "sinr_db", "confidence", "provenance"):
        np.testing.assert_array_equal(getattr(answers[0], column), getattr(answers[1], column))
