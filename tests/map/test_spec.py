"""The map spec schema: every shipped spec reads, and bad specs fail with file, key and hint."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from commap.errors import InvalidInputError
from commap.map.spec import (
    LAYER_SECTIONS,
    TYPE_WORDS,
    MapSection,
    MeasuredOverlaySection,
    NetworkSection,
    RoadsSection,
    TerrainSection,
    read_spec,
    reference_markdown,
)
from commap.networks import Network, NetworkKind
from commap.radio.layers import terrestrial
from tests.support.specs import subregion_spec

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(REPO.glob("maps/*/map.toml"))

# A small but complete spec: one network of each layer type and a measured overlay.
BASE = """
name = "tiny"
bbox = [1.40, 42.38, 1.80, 42.68]
segment_m = 50.0

[roads]
file = "data/roads.osm.pbf"

[[networks]]
id = "lte"
kind = "terrestrial"
operator = "op"
technology = "lte"
latency_ms = 35.0
frequency_mhz = 800.0
[networks.layer]
type = "terrestrial"
sites = "generated"
tx_power_dbm = 46.0
[networks.measured]
format = "records"
files = ["data/fleet"]
dense_min_samples = 5

[[networks]]
id = "drive"
kind = "terrestrial"
operator = "op2"
technology = "lte"
latency_ms = 35.0
[networks.layer]
type = "measured"
format = "gnettrack"
files = ["data/drive.zip"]
network_modes = ["LTE"]

[[networks]]
id = "starlink"
kind = "leo"
operator = "starlink"
technology = "leo"
latency_ms = 45.0
[networks.layer]
type = "leo"
tle_file = "data/starlink.txt"

[[networks]]
id = "geo"
kind = "geo"
operator = "geo"
technology = "geo"
latency_ms = 600.0
[networks.layer]
type = "geo"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _fails(tmp_path: Path, text: str) -> InvalidInputError:
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError) as info:
        read_spec(path)
    assert str(info.value).startswith(f"{path}: "), info.value  # every message names the file
    return info.value


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_spec_reads(path: Path) -> None:
    spec = read_spec(path)
    assert spec.name == path.parent.name
    assert spec.section is not None and len(spec.section.networks) == len(spec.networks)
    assert [n.id for n in spec.section.networks] == [n["id"] for n in spec.networks]


def test_base_spec_reads_with_typed_defaults(tmp_path: Path) -> None:
    spec = read_spec(_write(tmp_path, BASE))
    assert spec.section is not None
    lte, drive, leo, geo = spec.section.networks
    assert lte.layer.model == "auto" and lte.layer.tx_power_dbm == 46.0
    assert isinstance(lte.measured, MeasuredOverlaySection) and lte.measured.min_samples == 1
    assert drive.layer.h3_resolution == 11 and drive.layer.network_modes == ("LTE",)
    assert leo.layer.sinr_zenith_db == 12.0 and geo.layer.confidence == 0.9
    assert spec.title == "tiny" and spec.default_departure_s is None  # now, per request
    assert spec.roads == {"file": "data/roads.osm.pbf"} and spec.terrain is None


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = _fails(tmp_path, BASE.replace("segment_m = 50.0", "segment_m = 50.0\nsegmnt_m = 25"))
    assert "unknown key 'segmnt_m'; did you mean 'segment_m'?" in str(err)
    assert err.field == "segmnt_m"


def test_unknown_key_in_a_section(tmp_path: Path) -> None:
    err = _fails(tmp_path, BASE.replace('file = "data/roads', 'flie = "data/roads'))
    assert "unknown key 'roads.flie'; did you mean 'file'?" in str(err)


def test_unknown_key_in_a_network(tmp_path: Path) -> None:
    text = BASE.replace("latency_ms = 45.0", "latency_ms = 45.0\nlatency_s = 0.045")
    err = _fails(tmp_path, text)
    assert "unknown key 'networks[2].latency_s'; did you mean 'latency_ms'?" in str(err)
    assert err.field == "networks[2].latency_s"


def test_unknown_key_in_a_layer(tmp_path: Path) -> None:
    err = _fails(tmp_path, BASE.replace("tx_power_dbm = 46.0", "tx_powr_dbm = 46.0"))
    assert "unknown key 'networks[0].layer.tx_powr_dbm'; did you mean 'tx_power_dbm'?" in str(err)


def test_unknown_key_without_a_near_one_lists_the_valid_keys(tmp_path: Path) -> None:
    err = _fails(tmp_path, BASE.replace('type = "geo"', 'type = "geo"\ncolour = "red"'))
    assert "unknown key 'networks[3].layer.colour'; valid keys: type, sinr_db" in str(err)


def test_wrong_type(tmp_path: Path) -> None:
    err = _fails(tmp_path, BASE.replace("segment_m = 50.0", 'segment_m = "fifty"'))
    assert str(err).endswith("'segment_m' must be a number (metres), got 'fifty'")


def test_duplicate_network_id(tmp_path: Path) -> None:
    err = _fails(tmp_path, BASE.replace('id = "drive"', 'id = "lte"'))
    assert "duplicate network id 'lte': networks[0] and networks[1]" in str(err)


@pytest.mark.parametrize("segment_m", ["0", "-5.0", "0.5", "20000"])
def test_segment_length_out_of_range(tmp_path: Path, segment_m: str) -> None:
    err = _fails(tmp_path, BASE.replace("segment_m = 50.0", f"segment_m = {segment_m}"))
    assert "'segment_m' must be" in str(err) and err.field == "segment_m"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # top level
        ('name = "tiny"', 'name = "Tiny Map"', "'name' must match"),
        ('name = "tiny"\n', "", "missing key 'name'"),
        ("bbox = [1.40, 42.38, 1.80, 42.68]", "bbox = [1.8, 42.38, 1.4, 42.68]", "'bbox' must be"),
        ("bbox = [1.40, 42.38, 1.80, 42.68]", "bbox = [1.4, 42.38]", "'bbox' must be a box"),
        ("bbox = [1.40, 42.38, 1.80, 42.68]", 'bbox = "andorra"', "'bbox' must be a box"),
        ("segment_m = 50.0", "segment_m = true", "'segment_m' must be a number"),
        ("segment_m = 50.0", "segment_m = nan", "'segment_m' must be a number"),
        ("segment_m = 50.0", "seed = 1.5", "'seed' must be an integer"),
        ("segment_m = 50.0", 'default_departure = "soon"', "default_departure"),
        ('[roads]\nfile = "data/roads.osm.pbf"', 'roads = "x.pbf"', "'roads' must be a table"),
        # networks
        ('id = "geo"', 'id = "g e o"', "'networks[3].id' must match"),
        ('kind = "geo"', 'kind = "meo"', "'networks[3].kind' must be one of terrestrial, leo, geo"),
        ('operator = "geo"\n', "", "missing key 'networks[3].operator'"),
        ("latency_ms = 600.0", "latency_ms = -1.0", "'networks[3].latency_ms' must be >= 0"),
        ("latency_ms = 600.0", 'latency_ms = "600"', "must be a number (milliseconds)"),
        ("latency_ms = 600.0", "latency_ms = 600.0\nmin_elevation_deg = 95", "<= 90 degrees"),
        ('[networks.layer]\ntype = "geo"\n', "", "missing key 'networks[3].layer'"),
        # layers
        ('type = "geo"', 'type = "gel"', "got 'gel'; did you mean 'geo'?"),
        ('type = "geo"', "sinr_db = 3.0", "'networks[3].layer.type' must be one of"),
        ('type = "geo"', 'type = "leo"\ntle_file = "x.txt"', "of kind 'geo' cannot use a 'leo'"),
        ('tle_file = "data/starlink.txt"', "confidence = 0.5", "a leo layer needs a tle_file"),
        ('type = "geo"', 'type = "geo"\nconfidence = 1.5', "'networks[3].layer.confidence'"),
        ('sites = "generated"', 'sites = "generated"\nmodel = "okumura"', "one of auto, cost231"),
        ('sites = "generated"', 'sites = "generated"\nload_factor = 2', "<= 1"),
        ('sites = "generated"', 'sites = "generated"\nshadowing_margin_db = -3', ">= 0 dB"),
        ('sites = "generated"', 'sites = "generated"\nmax_sites = 2.5', "must be an integer"),
        ('sites = "generated"', 'sites = "generated"\nfilter = "mno_1"', "must be a table"),
        ('sites = "generated"', 'sites = "generated"\nenvironment = "city"', "urban, suburban"),
        ('sites = "generated"\n', "", "missing key 'networks[0].layer.sites'"),
        # measured layers and overlays
        ('format = "gnettrack"', 'format = "kml"', "one of records, gnettrack, grid"),
        ('files = ["data/drive.zip"]', "files = []", "must be a list of strings"),
        ('files = ["data/drive.zip"]', 'files = "data/drive.zip"', "must be a list of strings"),
        ('network_modes = ["LTE"]', "h3_resolution = 16", "<= 15"),
        ('network_modes = ["LTE"]', "bandwidth_mhz = 10.0", "does not apply to format"),
        ('network_modes = ["LTE"]', "neighbour_fallback = 1", "must be a boolean"),
        ("dense_min_samples = 5", "dense_min_samples = 0", "'networks[0].measured"),
        ("dense_min_samples = 5", "dense_min_sample = 5", "did you mean 'dense_min_samples'?"),
    ],
)
def test_edge_cases(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    err = _fails(tmp_path, BASE.replace(old, new, 1))
    assert message in str(err), str(err)


def test_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_spec(tmp_path / "none.toml")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        read_spec(_write(tmp_path, "name = "))
    err = _fails(tmp_path, BASE.split("[[networks]]")[0])
    assert "missing key 'networks'" in str(err)
    err = _fails(tmp_path, "networks = []\n" + BASE.split("[[networks]]")[0])
    assert "'networks' needs at least one" in str(err)


def test_every_key_is_documented() -> None:
    sections = [MapSection, RoadsSection, TerrainSection, NetworkSection, MeasuredOverlaySection]
    for cls in [*sections, *LAYER_SECTIONS.values()]:
        assert cls.__doc__
        for f in dataclasses.fields(cls):
            assert f.metadata["kind"] in TYPE_WORDS, (cls.__name__, f.name)
            assert f.metadata["doc"] and f.metadata["example"] is not None, (cls.__name__, f.name)
            assert re.fullmatch(r"[a-z0-9_]+", f.name)


def test_committed_reference_matches_the_generator() -> None:
    committed = (REPO / "docs" / "map-spec.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "docs/map-spec.md is stale: python -m commap.map.spec --markdown > docs/map-spec.md"
    )


def test_generator_command_prints_the_reference() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "commap.map.spec", "--markdown"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    assert out == reference_markdown()
    assert "| `shadowing_margin_db` | number | dB |" in out


def test_unknown_country_code_is_rejected_with_the_known_ones(tmp_path: Path) -> None:
    spec = subregion_spec(tmp_path, country="XX")
    with pytest.raises(InvalidInputError, match=r"must be one of AD, AT, .*got 'XX'") as raised:
        read_spec(spec)
    assert "country" in str(raised.value)
    # a layer spec that bypasses the schema is refused too
    network = Network(
        id="x-lte", kind=NetworkKind.TERRESTRIAL, operator="x", technology="lte", latency_ms=40.0
    )
    with pytest.raises(InvalidInputError, match="unknown country code 'XX'; known: AD"):
        terrestrial._mcc(network, {"country": "XX"})
    assert terrestrial._mcc(network, {"country": "XX", "mcc": 999}) == 999
    assert terrestrial._mcc(network, {"country": "ad"}) == 213


def test_tunnel_coverage_keys_are_checked(tmp_path: Path) -> None:
    spec = subregion_spec(tmp_path)
    text = spec.read_text(encoding="utf-8")
    das = (
        'tunnel_coverage = { mode = "das", rsrp_dbm = -95.0, sinr_db = 10.0, '
        """tunnels = [{ name = "Túnel d'Envalira", mode = "none" }] }\n"""
    )
    spec.write_text(text.replace("[networks.layer]\n", "[networks.layer]\n" + das, 1), "utf-8")
    layer = read_spec(spec).networks[0]["layer"]
    assert layer["tunnel_coverage"]["tunnels"][0]["mode"] == "none"
    spec.write_text(
        text.replace(
            "[networks.layer]\n", '[networks.layer]\ntunnel_coverage = { mode = "leaky" }\n', 1
        ),
        "utf-8",
    )
    with pytest.raises(InvalidInputError, match=r"tunnel_coverage\.mode' must be one of none, das"):
        read_spec(spec)
