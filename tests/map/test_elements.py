"""Orbital elements: their epochs in every answer, stale ones refused or noted, fresh ones loaded."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.map.comm_map import CommMap
from commap.map.elements import update_elements
from commap.map.manifest import MANIFEST, Manifest
from commap.radio.layers.satellite import LeoLayer, read_tle_file
from commap.service.planning import PlanRequest, plan_route
from commap.timeutil import parse_time
from tests.support.paths import MAPS

ONEWEB_TLE = MAPS / "andorra" / "data" / "oneweb.txt"
LA_VELLA, PAS_DE_LA_CASA = (1.5218, 42.5063), (1.7330, 42.5430)
DAY_S = 86400.0


def test_epochs_and_notices_on_the_default_map(andorra: CommMap) -> None:
    epochs = andorra.element_epochs()
    assert set(epochs) == {"starlink", "oneweb"}
    departure = andorra.default_departure_s
    assert departure == parse_time("2025-01-23T12:00:00Z")  # the map's own departure
    assert abs(epochs["starlink"] - departure) < DAY_S
    assert 17.0 < (departure - epochs["oneweb"]) / DAY_S < 18.5
    # OneWeb's elements are 17.8 days old: said once, and only when the answer relies on it
    notices = andorra.check_elements(departure, used={"oneweb", "geo"})
    assert len(notices) == 1 and notices[0].startswith("oneweb: orbital elements from 2025-01-05")
    assert andorra.check_elements(departure, used={"starlink"}) == []
    # 40 days on, every constellation is refused unless asked for
    later = departure + 40 * DAY_S
    with pytest.raises(InvalidInputError, match=r"40 days from the .* orbital elements") as raised:
        andorra.check_elements(later, used=())
    assert "--allow-stale-elements" in str(raised.value)
    assert len(andorra.check_elements(later, allow_stale=True)) == 2


def test_sampling_logs_no_stale_warning(andorra: CommMap, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        andorra.quality_at([LA_VELLA[0]], [LA_VELLA[1]])
        andorra.quality_at([LA_VELLA[0]], [LA_VELLA[1]])
    assert "TLE" not in caplog.text and "days" not in caplog.text


def test_plans_state_epochs_and_refuse_month_old_elements(andorra: CommMap) -> None:
    request = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA)
    result = plan_route(andorra, request)
    assert set(result.plan.to_dict()["element_epochs"]) == {"starlink", "oneweb"}
    assert result.plan.to_dict()["element_epochs"]["starlink"].startswith("2025-01-23T")
    uses_oneweb = "oneweb" in result.plan.segment_networks
    assert any(n.startswith("oneweb") for n in result.notices) == uses_oneweb
    later = andorra.default_departure_s + 40 * DAY_S
    with pytest.raises(InvalidInputError, match="orbital elements"):
        plan_route(andorra, dataclasses.replace(request, departure_s=later))
    stale = plan_route(
        andorra, dataclasses.replace(request, departure_s=later, allow_stale_elements=True)
    )
    assert stale.plan.departure_s == later


def test_a_map_without_a_departure_plans_from_now(andorra: CommMap) -> None:
    own = dataclasses.replace(andorra.manifest, default_departure_s=None)
    cmap = andorra.replaced(manifest=own)
    assert abs(cmap.default_departure_s - time.time()) < 60.0


def test_fresh_elements_replace_the_old_ones(andorra_dir: Path, tmp_path: Path) -> None:
    built = tmp_path / "built"
    shutil.copytree(andorra_dir, built)
    before = Manifest.read(built / MANIFEST)
    old_file = next(e for e in before.networks if e.id == "oneweb").layer["tle_file"]
    # a real subset: the first 20 OneWeb satellites of the map's own element sets
    subset = tmp_path / "oneweb-20.txt"
    subset.write_text("".join(ONEWEB_TLE.read_text().splitlines(keepends=True)[:60]))
    after = update_elements(built, {"oneweb": subset})
    entry = next(e for e in after.networks if e.id == "oneweb")
    assert entry.layer["satellites"] == 20 and entry.layer["tle_file"] != old_file
    assert not (built / old_file).exists()
    assert entry.layer["tle_file"] in after.files and old_file not in after.files
    assert Manifest.read(built / MANIFEST) == after
    cmap = CommMap.load(built)  # the checksums hold
    assert len(cmap.layers["oneweb"].satellites) == 20  # type: ignore[attr-defined]
    # the new elements' stored table replaces the old one, and loads read it
    old_table, new_table = (
        e.layer["elements_file"] for e in (before, after) for e in e.networks if e.id == "oneweb"
    )
    assert new_table in after.files and not (built / old_table).exists()
    assert cmap.layers["oneweb"].names == tuple(  # type: ignore[attr-defined]
        s.name for s in read_tle_file(subset)
    )
    # everything else is as built
    assert dataclasses.replace(after, networks=before.networks, files=before.files) == before


@pytest.mark.parametrize(
    ("tles", "match"),
    [
        ({"ad-lte": ONEWEB_TLE}, "has no LEO network 'ad-lte'; its LEO networks: starlink, oneweb"),
        ({"oneweb": MAPS / "andorra" / "map.toml"}, "map.toml"),
        ({"oneweb": Path("no-such.txt")}, "cannot read TLE file"),
    ],
)
def test_bad_element_updates_leave_the_map_alone(
    andorra_dir: Path, tmp_path: Path, tles: dict[str, Path], match: str
) -> None:
    built = tmp_path / "built"
    shutil.copytree(andorra_dir, built)
    before = (built / MANIFEST).read_bytes()
    with pytest.raises(InvalidInputError, match=match):
        update_elements(built, tles)
    assert (built / MANIFEST).read_bytes() == before


def _positions_km(layer: LeoLayer, t_s: np.ndarray) -> np.ndarray:
    return np.array([m.sgp4_array(*_jd(t_s))[1] for m in layer._models])


def _jd(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    days = np.floor(t_s / DAY_S)
    return 2440587.5 + days, (t_s - days * DAY_S) / DAY_S


def test_built_maps_load_their_stored_elements(andorra_dir: Path, tmp_path: Path) -> None:
    # a map built before element tables were stored: its layers parse the TLE files
    old = tmp_path / "old"
    shutil.copytree(andorra_dir, old)
    manifest = Manifest.read(old / MANIFEST)
    networks = []
    for entry in manifest.networks:
        layer = {k: v for k, v in entry.layer.items() if k != "elements_file"}
        networks.append(dataclasses.replace(entry, layer=layer))
        if "elements_file" in entry.layer:
            (old / entry.layer["elements_file"]).unlink()
    files = {f: d for f, d in manifest.files.items() if not f.endswith(".elements.npy")}
    dataclasses.replace(manifest, networks=tuple(networks), files=files).write(old / MANIFEST)
    stored, parsed = CommMap.load(andorra_dir), CommMap.load(old)
    t_s = stored.default_departure_s + np.array([0.0, 600.0, 1800.0])
    points = (np.array([1.5218, 1.6, 1.733]), np.array([42.5063, 42.52, 42.543]), t_s)
    for nid in ("starlink", "oneweb"):
        table, text = stored.layers[nid], parsed.layers[nid]
        assert isinstance(table, LeoLayer) and isinstance(text, LeoLayer)
        # the stored table is mapped from the built map, not read into memory
        assert isinstance(table._elements.rows, np.memmap)  # type: ignore[union-attr]
        assert table.names == text.names
        np.testing.assert_array_equal(table.epochs_s, text.epochs_s)
        np.testing.assert_allclose(_positions_km(table, t_s), _positions_km(text, t_s), atol=1e-9)
    ours, theirs = stored.quality_at(*points), parsed.quality_at(*points)
    for field in dataclasses.fields(ours):
        np.testing.assert_array_equal(getattr(ours, field.name), getattr(theirs, field.name))
