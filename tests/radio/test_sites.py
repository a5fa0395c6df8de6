"""Site tables: OpenCelliD / Irish readers, the writer, OSM masts and seeded placement."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.geo.roads import load_road_graph
from commap.geo.terrain import Terrain
from commap.radio.pathloss import ground_distance_m
from commap.radio.sites import (
    OPENCELLID_COLUMNS,
    SITE_COLUMNS,
    classify_environment,
    place_sites,
    read_osm_masts,
    read_sites,
    road_points,
    write_opencellid_csv,
)
from tests.support.paths import MAPS

ANDORRA = MAPS / "andorra" / "data"
CORK_SITES = MAPS / "cork" / "data" / "ireland_cork_sites.csv"
AD_NR_REGION = (1.48, 42.45, 1.60, 42.58)  # maps/andorra/map.toml, network ad-nr
OSM_ANTENNAS = {"n2021871842", "n2021871844"}  # man_made=antenna + communication:radio=yes


@pytest.fixture(scope="module")
def roads() -> nx.MultiDiGraph:
    return load_road_graph(ANDORRA / "andorra.osm.pbf", bbox=(1.40, 42.38, 1.80, 42.68))


@pytest.fixture(scope="module")
def terrain() -> Terrain:
    return Terrain.from_files([ANDORRA / "N42E001.hgt.zip"])


def _cork_rows() -> list[dict[str, str]]:
    with CORK_SITES.open(newline="") as f:
        return list(csv.DictReader(f))


def _as_opencellid(rows: list[dict[str, str]], *, header: bool = True) -> str:
    """Real Cork positions in OpenCelliD layout (UMTS, MCC 272, cell = bs_id number)."""
    lines = [",".join(OPENCELLID_COLUMNS)] if header else []
    for row in rows:
        cell = row["bs_id"].rsplit("_", 1)[1]
        lines.append(f"UMTS,272,1,0,{cell},0,{row['bs_long']},{row['bs_lat']},1000,5,1,0,0,0")
    return "\n".join(lines) + "\n"


# --- readers -----------------------------------------------------------------------------------


def test_reads_the_real_irish_file() -> None:
    sites = read_sites(CORK_SITES)
    assert list(sites.columns) == list(SITE_COLUMNS)
    assert len(sites) == 370
    assert sites["site_id"].is_unique
    assert set(sites["tx_power_dbm"]) == {33.0, 37.0, 40.0}  # bs_power
    assert set(sites["frequency_mhz"]) == {900.0, 1800.0, 2000.0}  # bs_fc
    assert sites["lat"].between(51.80, 52.02).all() and sites["lon"].between(-8.70, -8.25).all()
    assert (sites["source"] == "ireland").all()


def test_filter_keeps_one_operator_and_technology() -> None:
    sites = read_sites(
        CORK_SITES, filter={"bs_operator": "mno_1", "bs_technology": "3g"}, antenna_height_m=30.0
    )
    assert len(sites) == 103
    assert (sites["frequency_mhz"] == 2000.0).all()
    assert (sites["antenna_height_m"] == 30.0).all()
    assert sites["site_id"].str.startswith("bs_mno_1_3g_").all()


@pytest.mark.parametrize("header", [True, False])
def test_reads_opencellid_with_and_without_header(tmp_path: Path, header: bool) -> None:
    rows = _cork_rows()[:25]
    path = tmp_path / "cells.csv"
    path.write_text(_as_opencellid(rows, header=header))
    sites = read_sites(path, tx_power_dbm=43.0, antenna_height_m=20.0)
    assert len(sites) == 25
    first_cell = rows[0]["bs_id"].rsplit("_", 1)[1]
    assert sites["site_id"].iloc[0] == f"UMTS-272-1-0-{first_cell}"
    assert sites["lon"].iloc[0] == pytest.approx(float(rows[0]["bs_long"]))
    assert (sites["frequency_mhz"] == 2100.0).all()  # typical UMTS carrier: none in the file
    assert (sites["tx_power_dbm"] == 43.0).all()
    assert (sites["source"] == "opencellid").all()


def test_opencellid_gz_and_frequency_default(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "cells.csv.gz"
    path.write_bytes(gzip.compress(_as_opencellid(_cork_rows()[:3]).encode()))
    sites = read_sites(path, frequency_mhz=2110.0)
    assert len(sites) == 3 and (sites["frequency_mhz"] == 2110.0).all()


def test_few_bad_rows_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = CORK_SITES.read_text().splitlines()[:31]  # header + 30 rows
    lines[2] = lines[2].replace(lines[2].split(",")[4], "north")  # bs_lat of line 3
    lines[5] = "bs_x,gsm,900"  # line 6: too few fields
    path = tmp_path / "cork.csv"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="commap.radio.sites"):
        sites = read_sites(path)
    assert len(sites) == 28
    assert "skipped 2 malformed site rows (first at line 3" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("id,lat,lon\n1,51.9,-8.4\n", "line 1: not an OpenCelliD or Irish"),
        ("bs_id,bs_technology,bs_fc,bs_operator,bs_lat,bs_long,bs_power\n", "no site rows"),
        (
            "bs_id,bs_technology,bs_fc,bs_operator,bs_lat,bs_long,bs_power\n"
            "a,3g,2000,mno_1,51.9,-8.4,37\nb,3g,2000,mno_1,999,-8.4,37\nc,3g,x,mno_1,51.9,-8.4,37\n",
            "2 of 3 site rows are malformed (first at line 3: coordinates out of range)",
        ),
        ("\x00\x01\x02garbage\xff\n", "cannot read site CSV"),
    ],
)
def test_unusable_files_raise_with_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sites.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"sites\.csv") as info:
        read_sites(path)
    assert message in str(info.value)


def test_missing_file_and_unknown_filter_column(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_sites(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match=r"filter column\(s\) \['operator'\]") as info:
        read_sites(CORK_SITES, filter={"operator": "mno_1"})
    assert info.value.field == "filter"


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    sites = read_sites(CORK_SITES, filter={"bs_operator": "mno_2", "bs_technology": "gsm"})
    sites["environment"] = np.where(np.arange(len(sites)) % 2 == 0, "urban", "rural")
    path = write_opencellid_csv(sites, tmp_path / "out" / "sites.csv", technology="gsm", mcc=272)
    assert sorted(p.name for p in path.parent.iterdir()) == ["sites.csv"]  # no temp file left
    with path.open(newline="") as f:
        first = next(csv.DictReader(f))
    assert (first["radio"], first["mcc"], first["cell"]) == ("GSM", "272", "1")
    back = read_sites(path)
    pd.testing.assert_frame_equal(back, sites.reset_index(drop=True))


# --- OSM masts, roads, environment -------------------------------------------------------------


def test_osm_masts_are_the_communication_antennas() -> None:
    masts = read_osm_masts(ANDORRA / "andorra.osm.pbf")
    # 10 untagged man_made=tower nodes (and a viewpoint tower) are not communication masts
    assert set(masts["osm_id"]) == OSM_ANTENNAS
    assert masts["lon"].between(1.56, 1.58).all()
    assert len(read_osm_masts(ANDORRA / "andorra.osm.pbf", (1.40, 42.38, 1.55, 42.45))) == 0


def test_road_points_cover_the_drivable_network(roads: nx.MultiDiGraph) -> None:
    pts = road_points(roads, step_m=100.0)
    no_tunnels = road_points(roads, step_m=100.0, include_tunnels=False)
    # data README: 396.8 km of drivable ways of which 11.4 km in tunnels
    assert pts.length_m / 1000.0 == pytest.approx(396.8, rel=0.03)
    assert (pts.length_m - no_tunnels.length_m) / 1000.0 == pytest.approx(11.4, rel=0.05)
    assert pts.weight_m.max() <= 100.0 + 1e-9


def test_environment_from_road_density(roads: nx.MultiDiGraph) -> None:
    pts = road_points(roads, step_m=50.0)
    # Andorra la Vella, Encamp, Port d'Envalira
    env = classify_environment(
        np.array([1.5218, 1.580, 1.72]), np.array([42.5063, 42.535, 42.54]), pts
    )
    assert env.tolist() == ["urban", "suburban", "rural"]


# --- placement ---------------------------------------------------------------------------------


def _place(roads: nx.MultiDiGraph, terrain: Terrain, seed: int, **kw: object) -> pd.DataFrame:
    masts = read_osm_masts(ANDORRA / "andorra.osm.pbf")
    args: dict[str, object] = {
        "region": AD_NR_REGION,
        "roads": roads,
        "terrain": terrain,
        "spacing_m": 1500.0,
        "max_path_loss_db": 127.8,
        "frequency_mhz": 3500.0,
        "tx_power_dbm": 43.0,
        "antenna_height_m": 20.0,
        "seed": seed,
        "name": "ad-nr",
        "masts": masts,
    }
    args.update(kw)
    return place_sites(**args).sites  # type: ignore[arg-type]


def test_placement_is_deterministic_with_the_seed(roads: nx.MultiDiGraph, terrain: Terrain) -> None:
    a = _place(roads, terrain, seed=7)
    pd.testing.assert_frame_equal(a, _place(roads, terrain, seed=7))
    b = _place(roads, terrain, seed=8)
    assert not (len(a) == len(b) and np.allclose(a["lon"], b["lon"]))


def test_placement_respects_region_spacing_and_masts(
    roads: nx.MultiDiGraph, terrain: Terrain
) -> None:
    masts = read_osm_masts(ANDORRA / "andorra.osm.pbf")
    placement = place_sites(
        region=AD_NR_REGION,
        roads=roads,
        terrain=terrain,
        spacing_m=1500.0,
        max_path_loss_db=127.8,
        frequency_mhz=3500.0,
        tx_power_dbm=43.0,
        antenna_height_m=20.0,
        seed=20250123,
        name="ad-nr",
        masts=masts,
    )
    sites = placement.sites
    lon0, lat0, lon1, lat1 = AD_NR_REGION
    assert sites["lon"].between(lon0, lon1).all() and sites["lat"].between(lat0, lat1).all()
    d = ground_distance_m(
        sites["lon"].to_numpy()[:, None],
        sites["lat"].to_numpy()[:, None],
        sites["lon"].to_numpy()[None, :],
        sites["lat"].to_numpy()[None, :],
    )
    assert d[~np.eye(len(sites), dtype=bool)].min() >= 1500.0 - 1.0
    # the two OSM antennas are 240 m apart: one is kept, first
    assert placement.osm_sites == 1
    assert sites["source"].iloc[0] == "osm" and sites["site_id"].iloc[0].startswith("ad-nr-osm-")
    assert (sites["source"].iloc[1:] == "generated").all()
    assert len(sites) == 1 + placement.generated_sites >= 10
    assert 0.3 < placement.coverage_fraction <= 1.0
    assert set(sites["environment"]) <= {"urban", "suburban", "rural"}
    assert (sites["frequency_mhz"] == 3500.0).all() and (sites["antenna_height_m"] == 20.0).all()


def test_generated_sites_prefer_high_ground(roads: nx.MultiDiGraph, terrain: Terrain) -> None:
    sites = _place(roads, terrain, seed=20250123)
    pts = road_points(roads, AD_NR_REGION)
    site_elev = terrain.elevation_m(sites["lon"].to_numpy(), sites["lat"].to_numpy())
    road_elev = terrain.elevation_m(pts.lon, pts.lat)
    assert np.median(site_elev) > np.median(road_elev)


def test_placement_stops_at_max_sites_and_handles_no_roads(
    roads: nx.MultiDiGraph, terrain: Terrain
) -> None:
    assert len(_place(roads, terrain, seed=1, max_sites=3)) == 3
    empty = _place(roads, terrain, seed=1, region=(1.0, 42.0, 1.1, 42.1))
    assert len(empty) == 0
    with pytest.raises(InvalidInputError, match="placement region"):
        _place(roads, terrain, seed=1, region=(1.5, 42.5, 1.4, 42.6))
