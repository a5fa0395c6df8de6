"""The one style: every network kind, data source and quality class has a name and a colour."""

from __future__ import annotations

import re

import pytest

from commap.networks import NetworkKind
from commap.out.style import (
    CLASSES,
    DROP_RISK_COLOR,
    KIND_COLORS,
    KIND_NAMES,
    NO_NETWORK_COLOR,
    POLICY_COLORS,
    PROVENANCE_COLORS,
    PROVENANCE_NAMES,
    ROAD_COLOR,
    TUNNEL_COLOR,
    network_colors,
    policy_color,
)
from commap.radio.quality import Provenance

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def test_every_network_kind_has_a_name_and_a_colour() -> None:
    assert set(KIND_NAMES) == set(NetworkKind)
    assert set(KIND_COLORS) == set(NetworkKind)
    assert all(KIND_NAMES[k] for k in NetworkKind)
    assert all(HEX.match(KIND_COLORS[k]) for k in NetworkKind)


def test_every_provenance_has_a_name_and_a_colour() -> None:
    assert set(PROVENANCE_NAMES) == {int(p) for p in Provenance}
    assert set(PROVENANCE_COLORS) == {int(p) for p in Provenance}
    assert PROVENANCE_NAMES[Provenance.MEASURED] == "measured"
    assert PROVENANCE_NAMES[Provenance.MODELLED] == "modelled"
    assert PROVENANCE_NAMES[Provenance.NONE] == "none"
    assert all(HEX.match(PROVENANCE_COLORS[int(p)]) for p in Provenance)


@pytest.mark.parametrize(
    "colours",
    [
        list(KIND_COLORS.values()),
        list(PROVENANCE_COLORS.values()),
        list(POLICY_COLORS.values()),
        [DROP_RISK_COLOR, NO_NETWORK_COLOR, ROAD_COLOR, TUNNEL_COLOR],
        list(network_colors([f"n{i}" for i in range(16)]).values()),
    ],
    ids=["kinds", "provenance", "policies", "fixed", "networks"],
)
def test_colours_are_distinct(colours: list[str]) -> None:
    assert all(HEX.match(c) for c in colours)
    assert len({c.lower() for c in colours}) == len(colours)


@pytest.mark.parametrize("metric", sorted(CLASSES))
def test_every_quality_class_has_a_name_a_label_and_a_distinct_colour(metric: str) -> None:
    classes = CLASSES[metric]
    assert all(c.name and c.label and HEX.match(c.color) for c in classes)
    assert len({c.color.lower() for c in classes}) == len(classes)
    assert len({c.name for c in classes}) == len(classes)


def test_network_colours_are_stable_by_position() -> None:
    first = network_colors(["a", "b", "c"])
    assert network_colors(["a", "b", "c", "d"])["c"] == first["c"]
    assert network_colors([]) == {}


def test_policy_colour_falls_back_to_grey() -> None:
    assert policy_color("commap") == POLICY_COLORS["commap"]
    assert policy_color("unknown") not in POLICY_COLORS.values()
