"""The one mapping from what commap shows to how it looks: names and colours.

Plots, the map viewer, the HTML reports and the GIS exports all take their display names and
colours from here, so that a network, a quality class or a data source looks the same
everywhere:

* :data:`CLASSES`: quality classes per metric (legend label, name, lower bound, colour);
* :func:`network_colors`: a stable colour per network, by catalogue position;
* :data:`KIND_NAMES` / :data:`KIND_COLORS`: network kinds (terrestrial, LEO, GEO);
* :data:`PROVENANCE_NAMES` / :data:`PROVENANCE_COLORS`: where a value comes from;
* :data:`POLICY_COLORS`: the handover policies of an evaluation;
* fixed colours for drop risk, roads, tunnels, "no network" and "unknown" (no data near: the
  learned map answers with its prior, :data:`UNKNOWN` / :data:`UNKNOWN_COLOR`).

Colours are ``#rrggbb`` strings (matplotlib, Leaflet and GDAL styles all read them).

Examples
--------
>>> PROVENANCE_NAMES[Provenance.MEASURED], KIND_NAMES[NetworkKind.LEO]
('measured', 'LEO satellite')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from commap.networks import NetworkKind
from commap.radio.quality import USABLE_SINR_DB, Provenance

__all__ = [
    "CLASSES",
    "DROP_RISK_COLOR",
    "KIND_COLORS",
    "KIND_NAMES",
    "NO_NETWORK_COLOR",
    "POLICY_COLORS",
    "PROVENANCE_COLORS",
    "PROVENANCE_NAMES",
    "ROAD_COLOR",
    "TUNNEL_COLOR",
    "UNKNOWN",
    "UNKNOWN_COLOR",
    "QualityClass",
    "network_colors",
    "policy_color",
]

DROP_RISK_COLOR = "#d7191c"
NO_NETWORK_COLOR = "#595959"
ROAD_COLOR = "#9e9e9e"
TUNNEL_COLOR = "#8c6d46"
# where the map has no data near (a learned map's prior): shown, never coloured as a quality
UNKNOWN = "unknown"
UNKNOWN_COLOR = "#e0b0ff"

# -- data sources and network kinds -----------------------------------------------------------

PROVENANCE_NAMES: dict[int, str] = {int(p): p.name.lower() for p in Provenance}
# Measured values are drawn bold with this dark edge around their class colour; modelled ones
# thin and plain (this colour is their legend sample).
PROVENANCE_COLORS: dict[int, str] = {
    int(Provenance.NONE): NO_NETWORK_COLOR,
    int(Provenance.MODELLED): "#74add1",
    int(Provenance.MEASURED): "#1a1a1a",
}
KIND_NAMES: dict[NetworkKind, str] = {
    NetworkKind.TERRESTRIAL: "terrestrial",
    NetworkKind.LEO: "LEO satellite",
    NetworkKind.GEO: "GEO satellite",
}
KIND_COLORS: dict[NetworkKind, str] = {
    NetworkKind.TERRESTRIAL: "#1b7837",
    NetworkKind.LEO: "#762a83",
    NetworkKind.GEO: "#e08214",
}

# -- quality classes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityClass:
    """One legend entry: values ``>= lower`` (and below the previous class) fall into it.

    Attributes
    ----------
    label : short text for legends, e.g. ``">= -80 dBm"``.
    name : word for the class, e.g. ``"excellent"``.
    lower : lower bound in the metric's unit (``-inf`` for the last class).
    color : ``#rrggbb``.
    """

    label: str
    name: str
    lower: float
    color: str


# Classes best first. RSRP and SINR steps are the usual drive-test buckets; the SINR floor is
# the one "usable" threshold (commap.radio.quality.USABLE_SINR_DB). Colours run blue (good) to red (bad),
# readable with the common colour-vision deficiencies; grey means no signal at all.
CLASSES: dict[str, tuple[QualityClass, ...]] = {
    "rsrp_dbm": (
        QualityClass(">= -80 dBm", "excellent", -80.0, "#2c7bb6"),
        QualityClass("-90 to -80 dBm", "good", -90.0, "#74add1"),
        QualityClass("-100 to -90 dBm", "fair", -100.0, "#fee090"),
        QualityClass("-110 to -100 dBm", "poor", -110.0, "#f46d43"),
        QualityClass("-120 to -110 dBm", "very poor", -120.0, "#a50026"),
        QualityClass("no signal", "none", -math.inf, "#595959"),
    ),
    "sinr_db": (
        QualityClass(">= 20 dB", "excellent", 20.0, "#2c7bb6"),
        QualityClass("13 to 20 dB", "good", 13.0, "#74add1"),
        QualityClass("0 to 13 dB", "fair", 0.0, "#fee090"),
        QualityClass(f"{USABLE_SINR_DB:g} to 0 dB", "poor", USABLE_SINR_DB, "#f46d43"),
        QualityClass(f"< {USABLE_SINR_DB:g} dB (unusable)", "unusable", -math.inf, "#595959"),
    ),
    "elevation_deg": (
        QualityClass("satellite >= 60 deg", "high", 60.0, "#3f007d"),
        QualityClass("satellite 40 to 60 deg", "mid", 40.0, "#807dba"),
        QualityClass("satellite < 40 deg", "low", -89.0, "#bcbddc"),
        QualityClass("no satellite usable", "none", -math.inf, "#595959"),
    ),
}


# Okabe-Ito colours (distinguishable with colour-vision deficiencies), most visible first.
_NETWORK_PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)


def _shade(color: str) -> str:
    """A darker version of ``color``; black (which cannot darken) becomes mid grey."""
    rgb = [int(color[k : k + 2], 16) for k in (1, 3, 5)]
    shaded = [v * 2 // 3 for v in rgb] if any(rgb) else [0x80] * 3
    return "#{:02X}{:02X}{:02X}".format(*shaded)


def network_colors(network_ids: Sequence[str]) -> dict[str, str]:
    """A stable colour per network, by position in ``network_ids`` (catalogue order).

    Examples
    --------
    >>> network_colors(["a", "b"])
    {'a': '#0072B2', 'b': '#D55E00'}
    >>> network_colors([])
    {}
    """
    out = {}
    for i, nid in enumerate(network_ids):
        base = _NETWORK_PALETTE[i % len(_NETWORK_PALETTE)]
        if i >= len(_NETWORK_PALETTE):  # shade repeats so that they differ from the first round
            base = _shade(base)
        out[nid] = base
    return out


# -- evaluation policies ----------------------------------------------------------------------

POLICY_COLORS: dict[str, str] = {
    "a3_default": "#d62728",
    "a3_tuned": "#ff7f0e",
    "greedy": "#9467bd",
    "sticky": "#8c564b",
    "commap": "#2ca02c",
    "oracle": "#1f77b4",
    "commap_open_loop": "#17becf",
    "oracle_open_loop": "#393b79",
    "best_single": "#bcbd22",
    "reactive": "#e377c2",
}
_OTHER_POLICY_COLOR = "#7f7f7f"


def policy_color(policy: str) -> str:
    """The colour of an evaluation policy (grey for a policy without its own colour).

    Examples
    --------
    >>> policy_color("commap"), policy_color("my_policy")
    ('#2ca02c', '#7f7f7f')
    """
    return POLICY_COLORS.get(policy, _OTHER_POLICY_COLOR)
