"""The map spec (``map.toml``) as a typed schema that rejects what it does not know.

Every table of ``map.toml`` is a frozen dataclass below; every key is a field whose metadata
gives its type, unit, a one-line description and an example (see :func:`key`). The same data
drives :func:`read_spec` (validation) and :func:`reference_markdown` (the reference page
``docs/map-spec.md``, regenerated with ``python -m commap.map.spec --markdown``).

:func:`read_spec` reports, with the file and the dotted key path (``networks[2].layer.model``):
unknown keys (with the nearest valid key), wrong types (with the value), values out of range,
duplicate network ids and layer types that do not fit the network's kind.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from commap.errors import InvalidInputError
from commap.map.manifest import MAP_NAME
from commap.networks import MCC_BY_COUNTRY, NetworkKind
from commap.radio.layers.measured import DEFAULT_H3_RESOLUTION
from commap.radio.layers.satellite import (
    DEFAULT_GEO_CONFIDENCE,
    DEFAULT_GEO_SINR_DB,
    DEFAULT_LEO_CONFIDENCE,
    DEFAULT_LEO_SINR_ZENITH_DB,
)
from commap.radio.layers.terrestrial import (
    DEFAULT_ANTENNA_HEIGHT_M,
    DEFAULT_MAX_SITES,
    DEFAULT_SITE_SPACING_M,
    DEFAULT_TARGET_RSRP_DBM,
    DEFAULT_TX_POWER_DBM,
    TUNNEL_MODES,
    RadioParams,
)
from commap.radio.pathloss import ENVIRONMENTS, MODELS
from commap.timeutil import parse_time

__all__ = [
    "LAYER_SECTIONS",
    "GeoLayerSection",
    "LeoLayerSection",
    "MapSection",
    "MapSpec",
    "MeasuredLayerSection",
    "MeasuredOverlaySection",
    "NetworkSection",
    "RoadsSection",
    "TerrainSection",
    "TerrestrialLayerSection",
    "TunnelCoverageSection",
    "TunnelSection",
    "key",
    "read_spec",
    "reference_markdown",
]

NETWORK_ID: Final = re.compile(r"^\S+$")
MEASURED_FORMATS: Final = ("records", "gnettrack", "grid")
# Which kinds of network may use each layer type. Measurements need no orbital elements: a
# satellite terminal's own records (a dish reporting throughput) make a measured satellite network.
LAYER_KINDS: Final = {
    "terrestrial": (NetworkKind.TERRESTRIAL,),
    "measured": tuple(NetworkKind),
    "leo": (NetworkKind.LEO,),
    "geo": (NetworkKind.GEO,),
}

# What each value type accepts, in words (reference page and error messages).
TYPE_WORDS: Final = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "time": "a time (ISO 8601 or epoch seconds)",
    "box": "a box [lon_min, lat_min, lon_max, lat_max]",
    "strings": "a list of strings",
    "table": "a table of strings",
    "section": "a table",
    "sections": "an array of tables",
    "layer": "a table",
}
_UNIT_WORDS: Final = {"m": "metres", "ms": "milliseconds", "deg": "degrees", "h": "hours"}
_NO_DEFAULT: Final = "(required)"


def key(
    kind: str,
    doc: str,
    *,
    example: Any,
    default: Any = dataclasses.MISSING,
    unit: str = "",
    default_doc: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: Sequence[str] = (),
    pattern: re.Pattern[str] | None = None,
    formats: Sequence[str] = (),
    schema: Any = None,
) -> Any:
    """A schema field: a dataclass field whose metadata describes one ``map.toml`` key.

    Parameters
    ----------
    kind : value type, a key of :data:`TYPE_WORDS`.
    doc : one-line description.
    example : an example value (shown as TOML).
    default : the default; without one the key is required.
    unit : unit symbol (``m``, ``dBm``, ...), empty for none.
    default_doc : the default in words when it is not a constant (``"the map bbox"``).
    minimum, maximum : inclusive bounds of a number.
    above : exclusive lower bound of a number.
    choices : the allowed strings.
    pattern : a regular expression a string must match.
    formats : measured formats the key applies to (all when empty).
    schema : the dataclass of a ``section``/``sections`` key; a type -> dataclass mapping
        for a ``layer`` key.

    Returns
    -------
    dataclasses.Field
        The field (typed ``Any`` so that it fits any annotation).

    Examples
    --------
    >>> @dataclass(frozen=True, kw_only=True)
    ... class Demo:
    ...     speed_mps: float = key("number", "Speed.", example=8.0, default=0.0, unit="m/s")
    >>> dataclasses.fields(Demo)[0].metadata["unit"]
    'm/s'
    """
    if kind not in TYPE_WORDS:
        raise ValueError(f"unknown key kind {kind!r}")
    metadata = {
        "kind": kind,
        "doc": doc,
        "example": example,
        "unit": unit,
        "default_doc": default_doc,
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
        "choices": tuple(choices),
        "pattern": pattern,
        "formats": tuple(formats),
        "schema": schema,
    }
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    if isinstance(default, list | dict):
        raise ValueError("mutable defaults are not allowed in the schema")
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------------------- sections


@dataclass(frozen=True, kw_only=True)
class RoadsSection:
    """``[roads]``: the road network the map plans on."""

    file: str = key(
        "string", "OSM extract (.osm.pbf), relative to map.toml.", example="data/andorra.osm.pbf"
    )
    attribution: str = key(
        "string",
        "Credit line of the data source.",
        default="",
        example="© OpenStreetMap contributors, ODbL 1.0",
    )


@dataclass(frozen=True, kw_only=True)
class TerrainSection:
    """``[terrain]``: the elevation model (diffraction, satellite horizons)."""

    files: tuple[str, ...] = key(
        "strings",
        "SRTM tiles (.hgt or .hgt.zip), relative to map.toml.",
        example=["data/N42E001.hgt.zip"],
    )
    attribution: str = key(
        "string",
        "Credit line of the data source.",
        default="",
        example="SRTM data courtesy of NASA/USGS",
    )


_RADIO = RadioParams()


@dataclass(frozen=True, kw_only=True)
class TunnelSection:
    """``[[networks.layer.tunnel_coverage.tunnels]]``: the coverage of one tunnel, found by its
    OSM way id or its name."""

    osm_id: int | None = key(
        "integer",
        "OSM way id of the tunnel (give this or name).",
        default=None,
        default_doc="none (by name)",
        example=6176755,
        minimum=1,
    )
    name: str = key(
        "string",
        "OSM name of the tunnel: every tunnel way of this name (give this or osm_id).",
        default="",
        default_doc="none (by osm_id)",
        example="Túnel d'Envalira",
    )
    mode: str = key(
        "string",
        "none: no coverage inside; das: a distributed antenna system at the level below.",
        choices=TUNNEL_MODES,
        example="das",
    )
    rsrp_dbm: float | None = key(
        "number",
        "RSRP inside the tunnel (das).",
        default=None,
        default_doc="required for das",
        unit="dBm",
        example=-95.0,
    )
    sinr_db: float | None = key(
        "number",
        "SINR inside the tunnel (das).",
        default=None,
        default_doc="required for das",
        unit="dB",
        example=10.0,
    )


@dataclass(frozen=True, kw_only=True)
class TunnelCoverageSection:
    """``[networks.layer.tunnel_coverage]``: the network's coverage inside road tunnels (by
    default none), and per tunnel."""

    mode: str = key(
        "string",
        "none: no coverage inside; das: a distributed antenna system at the level below.",
        default="none",
        choices=TUNNEL_MODES,
        example="das",
    )
    rsrp_dbm: float | None = key(
        "number",
        "RSRP inside every tunnel (das).",
        default=None,
        default_doc="required for das",
        unit="dBm",
        example=-95.0,
    )
    sinr_db: float | None = key(
        "number",
        "SINR inside every tunnel (das).",
        default=None,
        default_doc="required for das",
        unit="dB",
        example=10.0,
    )
    tunnels: tuple[TunnelSection, ...] = key(
        "sections",
        "Coverage of single tunnels, overriding the default above.",
        default=(),
        default_doc="none",
        schema=TunnelSection,
        example=[{"name": "Túnel d'Envalira", "mode": "das", "rsrp_dbm": -95.0, "sinr_db": 10.0}],
    )


@dataclass(frozen=True, kw_only=True)
class TerrestrialLayerSection:
    """``[networks.layer]`` with ``type = "terrestrial"``: cell sites + path loss + terrain."""

    type: str = key("string", "Layer type.", example="terrestrial", choices=("terrestrial",))
    sites: str = key(
        "string", '"generated" (placed along the roads) or a site CSV path.', example="generated"
    )
    filter: Mapping[str, str] | None = key(
        "table",
        "For CSV sites: raw column values a row must have to be kept.",
        default=None,
        default_doc="every row",
        example={"bs_operator": "mno_1", "bs_technology": "3g"},
    )
    placement_region: tuple[float, float, float, float] | None = key(
        "box",
        "Where generated sites may stand (WGS84).",
        default=None,
        default_doc="the map bbox",
        unit="deg",
        example=[1.40, 42.42, 1.79, 42.66],
    )
    country: str = key(
        "string",
        "ISO country code (gives the MCC of the written site table).",
        default="",
        default_doc="none (MCC 0 unless mcc is given)",
        choices=tuple(sorted(MCC_BY_COUNTRY)),
        example="AD",
    )
    mcc: int | None = key(
        "integer",
        "Mobile country code of the written site table.",
        default=None,
        default_doc="from country",
        example=213,
        minimum=0,
    )
    mnc: int = key(
        "integer", "Mobile network code of the written site table.", default=0, example=3, minimum=0
    )
    site_spacing_m: float = key(
        "number",
        "Minimum distance between generated sites.",
        default=DEFAULT_SITE_SPACING_M,
        unit="m",
        example=1500.0,
        above=0.0,
    )
    max_sites: int = key(
        "integer",
        "Cap on the sites of a generated layout.",
        default=DEFAULT_MAX_SITES,
        example=100,
        minimum=1,
    )
    osm_file: str = key(
        "string",
        "OSM extract searched for masts (generated sites).",
        default="",
        default_doc="the [roads] file",
        example="data/andorra.osm.pbf",
    )
    tx_power_dbm: float = key(
        "number",
        "Total carrier power (CSV files may give it per site).",
        default=DEFAULT_TX_POWER_DBM,
        unit="dBm",
        example=43.0,
    )
    antenna_height_m: float = key(
        "number",
        "Antenna height above ground.",
        default=DEFAULT_ANTENNA_HEIGHT_M,
        unit="m",
        example=30.0,
        above=0.0,
    )
    target_rsrp_dbm: float = key(
        "number",
        'Design RSRP of a "covered" road (placement).',
        default=DEFAULT_TARGET_RSRP_DBM,
        unit="dBm",
        example=-100.0,
    )
    model: str = key(
        "string", "Path-loss model.", default=_RADIO.model, choices=MODELS, example="cost231"
    )
    environment: str | None = key(
        "string",
        "One environment for every site.",
        default=None,
        default_doc="from road density",
        choices=ENVIRONMENTS,
        example="urban",
    )
    antenna_gain_dbi: float = key(
        "number",
        "Site antenna gain net of feeder loss.",
        default=_RADIO.antenna_gain_dbi,
        unit="dBi",
        example=17.0,
    )
    shadowing_margin_db: float = key(
        "number",
        "Log-normal fade margin taken off every RSRP.",
        default=_RADIO.shadowing_margin_db,
        unit="dB",
        example=4.0,
        minimum=0.0,
    )
    bandwidth_mhz: float | None = key(
        "number",
        "Channel bandwidth.",
        default=None,
        default_doc="per technology (LTE 10, NR 100, 3G 5)",
        unit="MHz",
        example=20.0,
        above=0.0,
    )
    subcarrier_khz: float | None = key(
        "number",
        "Subcarrier spacing.",
        default=None,
        default_doc="per technology (NR 30, else 15)",
        unit="kHz",
        example=30.0,
        above=0.0,
    )
    load_factor: float = key(
        "number",
        "Share of the interferers' resource elements in use.",
        default=_RADIO.load_factor,
        example=0.5,
        minimum=0.0,
        maximum=1.0,
    )
    noise_figure_db: float = key(
        "number",
        "UE noise figure.",
        default=_RADIO.noise_figure_db,
        unit="dB",
        example=7.0,
        minimum=0.0,
    )
    ue_height_m: float = key(
        "number",
        "UE antenna height above ground.",
        default=_RADIO.ue_height_m,
        unit="m",
        example=1.5,
        above=0.0,
    )
    min_rsrp_dbm: float = key(
        "number",
        "Below this there is no signal.",
        default=_RADIO.min_rsrp_dbm,
        unit="dBm",
        example=-130.0,
    )
    max_range_m: float = key(
        "number",
        "Sites farther away neither serve nor interfere.",
        default=_RADIO.max_range_m,
        unit="m",
        example=30000.0,
        above=0.0,
    )
    tunnel_coverage: TunnelCoverageSection | None = key(  # noqa: RUF009 (key() makes a dataclasses.Field)
        "section",
        "Coverage inside road tunnels (distributed antenna systems).",
        default=None,
        default_doc="none in any tunnel",
        schema=TunnelCoverageSection,
        example={"mode": "das", "rsrp_dbm": -95.0, "sinr_db": 10.0},
    )
    attribution: str = key(
        "string", "Credit line of the site data.", default="", example="Sites: ComReg (MIT)"
    )


@dataclass(frozen=True, kw_only=True)
class _MeasuredKeys:
    """The keys of measured layers and overlays."""

    type: str = key(
        "string",
        "Optional; only measured.",
        default="measured",
        example="measured",
        choices=("measured",),
    )
    format: str = key("string", "Source format.", choices=MEASURED_FORMATS, example="gnettrack")
    files: tuple[str, ...] = key(
        "strings",
        "Source files relative to map.toml (records: directories too).",
        example=["data/ucc5g_cork_driving.zip"],
    )
    h3_resolution: int = key(
        "integer",
        "H3 resolution of the aggregation cells.",
        default=DEFAULT_H3_RESOLUTION,
        example=10,
        minimum=0,
        maximum=15,
    )
    network_modes: tuple[str, ...] | None = key(
        "strings",
        "G-NetTrack NetworkMode values to keep.",
        default=None,
        default_doc="every row",
        example=["LTE", "5G"],
        formats=("gnettrack",),
    )
    utc_offset_h: float = key(
        "number",
        "Logged local time minus UTC.",
        default=0.0,
        unit="h",
        example=1.0,
        minimum=-14.0,
        maximum=14.0,
        formats=("gnettrack",),
    )
    network_id: str | None = key(
        "string",
        "Rows of this network id in the records.",
        default=None,
        default_doc="the network's id",
        example="op-a-lte",
        formats=("records",),
    )
    start: str | float | None = key(
        "time",
        "Keep samples from this time on.",
        default=None,
        default_doc="no limit",
        example="2019-11-20T00:00:00Z",
        formats=("records", "gnettrack"),
    )
    end: str | float | None = key(
        "time",
        "Keep samples before this time.",
        default=None,
        default_doc="no limit",
        example="2020-01-07T00:00:00Z",
        formats=("records", "gnettrack"),
    )
    bandwidth_mhz: float = key(
        "number",
        "Bandwidth of the Shannon inversion of rates.",
        default=20.0,
        unit="MHz",
        example=10.0,
        above=0.0,
        formats=("grid",),
    )
    rss_rat: str = key(
        "string",
        "Radio technology of the rss_cell rows used for RSRP.",
        default="lte",
        example="nr",
        formats=("grid",),
    )
    min_cell_share: float = key(
        "number",
        "Share of samples a cell needs to be best server.",
        default=0.05,
        example=0.1,
        minimum=0.0,
        maximum=1.0,
        formats=("grid",),
    )
    grid_deg: float = key(
        "number",
        "Grid square size of the source.",
        default=0.0005,
        unit="deg",
        example=0.001,
        above=0.0,
        formats=("grid",),
    )
    min_samples: int = key(
        "integer", "Cells with fewer samples are dropped.", default=1, example=3, minimum=1
    )
    confidence_half_samples: float = key(
        "number", "Samples at which confidence reaches 0.5.", default=5.0, example=10.0, above=0.0
    )
    neighbour_fallback: bool = key(
        "boolean", "Empty cells read their six neighbours.", default=True, example=False
    )
    dense_min_samples: int = key(
        "integer",
        "Measured values override the modelled ones from this sample count.",
        default=5,
        example=10,
        minimum=1,
    )
    attribution: str = key(
        "string",
        "Credit line of the measurements.",
        default="",
        example="Drive tests: UCC 5G dataset (GPL-3.0)",
    )
    description: str = key(
        "string",
        "Free text about the measurements.",
        default="",
        example="Operator B, Nov-Dec 2019",
    )


@dataclass(frozen=True, kw_only=True)
class MeasuredLayerSection(_MeasuredKeys):
    """``[networks.layer]`` with ``type = "measured"``: measurements aggregated on H3 cells.

    Any kind of network may use it: a satellite terminal's own records (a dish on the car
    reporting throughput) make a measured satellite network, planned without orbital elements.
    """

    type: str = key("string", "Layer type.", example="measured", choices=("measured",))
    dense_min_samples: int = key(
        "integer", "Unused here (see [networks.measured]).", default=5, example=10, minimum=1
    )


@dataclass(frozen=True, kw_only=True)
class MeasuredOverlaySection(_MeasuredKeys):
    """``[networks.measured]``: measurements that override a modelled layer where dense."""


@dataclass(frozen=True, kw_only=True)
class LeoLayerSection:
    """``[networks.layer]`` with ``type = "leo"``: a constellation from a TLE file."""

    type: str = key("string", "Layer type.", example="leo", choices=("leo",))
    tle_file: str = key(
        "string",
        "TLE file relative to map.toml.",
        default="",
        default_doc="the network's tle_file",
        example="data/starlink.txt",
    )
    sinr_zenith_db: float = key(
        "number",
        "Equivalent SINR of a satellite at the zenith.",
        default=DEFAULT_LEO_SINR_ZENITH_DB,
        unit="dB",
        example=10.0,
    )
    confidence: float = key(
        "number",
        "Confidence of the modelled values (fresh TLEs).",
        default=DEFAULT_LEO_CONFIDENCE,
        example=0.7,
        minimum=0.0,
        maximum=1.0,
    )
    attribution: str = key(
        "string",
        "Credit line of the orbital elements.",
        default="",
        example="Orbital elements: CelesTrak",
    )


@dataclass(frozen=True, kw_only=True)
class GeoLayerSection:
    """``[networks.layer]`` with ``type = "geo"``: one geostationary satellite."""

    type: str = key("string", "Layer type.", example="geo", choices=("geo",))
    sinr_db: float = key(
        "number",
        "Equivalent SINR at the geostationary altitude.",
        default=DEFAULT_GEO_SINR_DB,
        unit="dB",
        example=8.0,
    )
    confidence: float = key(
        "number",
        "Confidence of the modelled values.",
        default=DEFAULT_GEO_CONFIDENCE,
        example=0.8,
        minimum=0.0,
        maximum=1.0,
    )
    attribution: str = key("string", "Credit line.", default="", example="Operator X")


# layer ``type`` -> section of its keys
LAYER_SECTIONS: Final[Mapping[str, type[Any]]] = {
    "terrestrial": TerrestrialLayerSection,
    "measured": MeasuredLayerSection,
    "leo": LeoLayerSection,
    "geo": GeoLayerSection,
}


@dataclass(frozen=True, kw_only=True)
class NetworkSection:
    """``[[networks]]``: one selectable network and its coverage layer."""

    id: str = key(
        "string",
        "Stable identifier, unique in the map, no spaces.",
        example="ad-lte",
        pattern=NETWORK_ID,
    )
    kind: str = key(
        "string",
        "Radio domain.",
        example="terrestrial",
        choices=tuple(k.value for k in NetworkKind),
    )
    operator: str = key(
        "string", "Operator or constellation owner (cheaper handovers within).", example="ad"
    )
    technology: str = key("string", "lte, nr, 3g, gsm, leo, geo, ...", example="lte")
    latency_ms: float = key(
        "number", "Typical round-trip latency.", unit="ms", example=35.0, minimum=0.0
    )
    cost_per_mb: float = key(
        "number", "Data cost per megabyte.", default=0.0, unit="per MB", example=0.002, minimum=0.0
    )
    frequency_mhz: float = key(
        "number",
        "Carrier frequency (terrestrial path loss).",
        default=0.0,
        unit="MHz",
        example=800.0,
        minimum=0.0,
    )
    min_elevation_deg: float = key(
        "number",
        "Minimum elevation of a usable satellite.",
        default=0.0,
        unit="deg",
        example=25.0,
        minimum=0.0,
        maximum=90.0,
    )
    tle_file: str = key(
        "string",
        "LEO: TLE file relative to map.toml (or in the layer).",
        default="",
        example="data/starlink.txt",
    )
    orbital_longitude_deg: float = key(
        "number",
        "GEO: sub-satellite longitude.",
        default=0.0,
        unit="deg",
        example=9.0,
        minimum=-180.0,
        maximum=180.0,
    )
    display_name: str = key(
        "string", "Human readable name.", default="", example="Andorran national operator LTE 800"
    )
    layer: TerrestrialLayerSection | MeasuredLayerSection | LeoLayerSection | GeoLayerSection = key(  # noqa: RUF009 (key() makes a dataclasses.Field)
        "layer",
        "Coverage layer; its type picks the keys below.",
        example={"type": "geo"},
        schema=LAYER_SECTIONS,
    )
    measured: MeasuredOverlaySection | None = key(  # noqa: RUF009 (key() makes a dataclasses.Field)
        "section",
        "Measurements overriding the modelled layer where dense.",
        default=None,
        default_doc="none",
        schema=MeasuredOverlaySection,
        example={"format": "records", "files": ["data/fleet"]},
    )


@dataclass(frozen=True, kw_only=True)
class MapSection:
    """The top level of ``map.toml``."""

    name: str = key(
        "string", "Map name (directory name of the built map).", example="andorra", pattern=MAP_NAME
    )
    title: str = key(
        "string",
        "One-line title.",
        default="",
        default_doc="the name",
        example="Andorra: mountain valleys",
    )
    description: str = key(
        "string",
        "Free text about the map and its sources.",
        default="",
        example="Real OSM roads and SRTM terrain",
    )
    bbox: tuple[float, float, float, float] = key(
        "box",
        "The area the map answers for (WGS84).",
        unit="deg",
        example=[1.40, 42.38, 1.80, 42.68],
    )
    segment_m: float = key(
        "number",
        "Corridor segment length.",
        default=50.0,
        unit="m",
        example=25.0,
        minimum=1.0,
        maximum=10_000.0,
    )
    seed: int = key("integer", "Random seed of generated layouts.", default=0, example=20250123)
    default_departure: str | float | None = key(
        "time",
        "Departure of plans that give none (set it near the orbital elements' epoch).",
        default=None,
        default_doc="now (the time of each request)",
        example="2025-01-23T12:00:00Z",
    )
    roads: RoadsSection | None = key(  # noqa: RUF009 (key() makes a dataclasses.Field)
        "section",
        "Road network.",
        default=None,
        default_doc="none (routes as polylines)",
        schema=RoadsSection,
        example={"file": "data/andorra.osm.pbf"},
    )
    terrain: TerrainSection | None = key(  # noqa: RUF009 (key() makes a dataclasses.Field)
        "section",
        "Elevation model.",
        default=None,
        default_doc="none (flat earth)",
        schema=TerrainSection,
        example={"files": ["data/N42E001.hgt.zip"]},
    )
    networks: tuple[NetworkSection, ...] = key(
        "sections",
        "The networks, one table each.",
        schema=NetworkSection,
        example=[
            {
                "id": "geo",
                "kind": "geo",
                "operator": "geo",
                "technology": "geo",
                "latency_ms": 600.0,
                "layer": {"type": "geo"},
            }
        ],
    )


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class MapSpec:
    """A parsed, validated ``map.toml``.

    ``roads``, ``terrain`` and ``networks`` are the tables as written (validated, without
    defaults): layers read their section from them. ``section`` is the typed view with
    every default filled in.
    """

    path: Path
    name: str
    title: str
    description: str
    bbox: tuple[float, float, float, float]
    segment_m: float
    seed: int
    default_departure_s: float | None
    roads: Mapping[str, Any] | None
    terrain: Mapping[str, Any] | None
    networks: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
    section: MapSection | None = field(repr=False, default=None)

    @property
    def source_dir(self) -> Path:
        """Directory the spec's file names are relative to."""
        return self.path.parent


class _Reader:
    """Validates one file's tables against the schema; errors name the file and key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str, where: str) -> InvalidInputError:
        return InvalidInputError(f"{self.path}: {message}", field=where or None)

    def section(self, cls: type[Any], table: Any, where: str) -> Any:
        """An instance of ``cls`` from ``table`` (every key checked)."""
        if not isinstance(table, Mapping):
            raise self.fail(f"{where!r} must be a table, got {table!r}", where)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in table:
            if name not in fields:
                raise self.fail(
                    _unknown(_path(where, name), str(name), list(fields)), _path(where, name)
                )
        fmt = table.get("format")  # measured sections: some keys apply to some formats only
        values: dict[str, Any] = {}
        for name, f in fields.items():
            at = _path(where, name)
            if name not in table:
                if f.default is dataclasses.MISSING:
                    raise self.fail(f"missing key {at!r} ({f.metadata['doc']})", at)
                continue
            applies = f.metadata["formats"]
            if applies and fmt not in applies:
                raise self.fail(
                    f"key {at!r} does not apply to format {fmt!r} (only {', '.join(applies)})",
                    at,
                )
            values[name] = self.value(f, table[name], at)
        return cls(**values)

    def value(self, f: dataclasses.Field[Any], value: Any, where: str) -> Any:
        meta = f.metadata
        kind = meta["kind"]
        if kind == "section":
            return self.section(meta["schema"], value, where)
        if kind == "sections":
            if not isinstance(value, list) or not value:
                raise self.fail(f"{where!r} needs at least one [[{where}]] table", where)
            return tuple(
                self.section(meta["schema"], v, f"{where}[{i}]") for i, v in enumerate(value)
            )
        if kind == "layer":
            return self.layer(meta["schema"], value, where)
        out = _convert(kind, value)
        if out is None:
            raise self.fail(f"{where!r} must be {_expected(f)}, got {value!r}", where)
        self.check(f, out, value, where)
        return out

    def layer(self, sections: Mapping[str, type[Any]], table: Any, where: str) -> Any:
        if not isinstance(table, Mapping):
            raise self.fail(f"{where!r} must be a table, got {table!r}", where)
        layer_type = str(table.get("type", ""))
        if layer_type not in sections:
            close = difflib.get_close_matches(layer_type, sections, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(
                f"{where + '.type'!r} must be one of {', '.join(sections)}, "
                f"got {table.get('type')!r}{hint}",
                f"{where}.type",
            )
        return self.section(sections[layer_type], table, where)

    def check(self, f: dataclasses.Field[Any], out: Any, value: Any, where: str) -> None:
        """Range, choice and pattern checks of a converted value."""
        meta = f.metadata
        unit = _unit_words(meta["unit"])
        numbers = list(out) if meta["kind"] == "box" else [out]
        for number in numbers if meta["kind"] in ("number", "integer", "box") else []:
            if meta["minimum"] is not None and number < meta["minimum"]:
                raise self.fail(
                    f"{where!r} must be >= {meta['minimum']:g}{unit}, got {value!r}", where
                )
            if meta["maximum"] is not None and number > meta["maximum"]:
                raise self.fail(
                    f"{where!r} must be <= {meta['maximum']:g}{unit}, got {value!r}", where
                )
            if meta["above"] is not None and not number > meta["above"]:
                raise self.fail(
                    f"{where!r} must be > {meta['above']:g}{unit}, got {value!r}", where
                )
        if meta["choices"] and out not in meta["choices"]:
            close = difflib.get_close_matches(str(out), meta["choices"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(
                f"{where!r} must be one of {', '.join(meta['choices'])}, got {value!r}{hint}",
                where,
            )
        if meta["pattern"] is not None and not meta["pattern"].match(out):
            raise self.fail(f"{where!r} must match {meta['pattern'].pattern}, got {value!r}", where)
        if meta["kind"] == "box":
            lon0, lat0, lon1, lat1 = out
            if not (-180.0 <= lon0 < lon1 <= 180.0 and -90.0 <= lat0 < lat1 <= 90.0):
                raise self.fail(
                    f"{where!r} must be [lon_min, lat_min, lon_max, lat_max] with "
                    f"minimum below maximum within -180..180 / -90..90, got {value!r}",
                    where,
                )
        if meta["kind"] == "time":
            try:
                parse_time(out, field=where)
            except InvalidInputError as exc:
                raise self.fail(str(exc), where) from None


def _convert(kind: str, value: Any) -> Any:
    """``value`` as the Python value of ``kind``, or None when it is not one."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return value if isinstance(value, str) else None
    if kind == "number":
        return float(value) if is_number and math.isfinite(value) else None
    if kind == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "time":
        return value if isinstance(value, str) or (is_number and math.isfinite(value)) else None
    if kind == "strings":
        ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        return tuple(value) if ok else None
    if kind == "box":
        ok = isinstance(value, list) and len(value) == 4
        numbers = [_convert("number", v) for v in value] if ok else [None]
        return tuple(numbers) if None not in numbers else None
    if kind == "table":
        ok = isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())
        return dict(value) if ok else None
    raise AssertionError(f"unhandled key kind {kind!r}")


def _path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else str(name)


def _unit_words(unit: str) -> str:
    return f" {_UNIT_WORDS.get(unit, unit)}" if unit else ""


def _expected(f: dataclasses.Field[Any]) -> str:
    unit = f.metadata["unit"]
    return TYPE_WORDS[f.metadata["kind"]] + (f" ({_UNIT_WORDS.get(unit, unit)})" if unit else "")


def _unknown(where: str, name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"unknown key {where!r}; {hint}"


def _check_networks(reader: _Reader, networks: Sequence[NetworkSection]) -> None:
    """Rules across keys: unique ids, a layer type that fits the kind."""
    seen: dict[str, int] = {}
    for i, net in enumerate(networks):
        if net.id in seen:
            raise reader.fail(
                f"duplicate network id {net.id!r}: networks[{seen[net.id]}] and networks[{i}]",
                f"networks[{i}].id",
            )
        seen[net.id] = i
        layer_type = net.layer.type
        if net.kind not in LAYER_KINDS[layer_type]:
            raise reader.fail(
                f"networks[{i}] ({net.id}) of kind {net.kind!r} cannot use a {layer_type!r} layer",
                f"networks[{i}].layer.type",
            )
        if isinstance(net.layer, LeoLayerSection) and not (net.layer.tle_file or net.tle_file):
            raise reader.fail(
                f"networks[{i}] ({net.id}): a leo layer needs a tle_file",
                f"networks[{i}].layer.tle_file",
            )


def read_spec(path: str | Path) -> MapSpec:
    """Read and validate a map spec (``map.toml``) against the schema of this module.

    Parameters
    ----------
    path : path of ``map.toml``.

    Returns
    -------
    MapSpec
        The spec; its tables as written and a typed view (``section``).

    Raises
    ------
    InvalidInputError
        If the file is missing or not TOML, or a key is unknown, missing, of the wrong type
        or out of range; the message names the file and the dotted key path.

    Examples
    --------
    >>> from commap.config import default_maps_dir
    >>> spec = read_spec(default_maps_dir() / "andorra" / "map.toml")
    >>> spec.name, spec.segment_m, spec.section.networks[0].layer.model
    ('andorra', 50.0, 'auto')
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"map spec {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"map spec {path} is not valid TOML: {exc}") from None
    reader = _Reader(path)
    section: MapSection = reader.section(MapSection, raw, "")
    _check_networks(reader, section.networks)
    return MapSpec(
        path=path,
        name=section.name,
        title=section.title or section.name,
        description=section.description,
        bbox=section.bbox,
        segment_m=section.segment_m,
        seed=section.seed,
        default_departure_s=(
            None
            if section.default_departure is None
            else parse_time(section.default_departure, field="default_departure")
        ),
        roads=raw.get("roads"),
        terrain=raw.get("terrain"),
        networks=tuple(raw["networks"]),
        raw=raw,
        section=section,
    )


# ---------------------------------------------------------------------------------- reference

# (heading, section) of the reference page, in the order of a map.toml
_REFERENCE: Final[tuple[tuple[str, type[Any]], ...]] = (
    ("top level", MapSection),
    ("[roads]", RoadsSection),
    ("[terrain]", TerrainSection),
    ("[[networks]]", NetworkSection),
    ('[networks.layer] type = "terrestrial"', TerrestrialLayerSection),
    ("[networks.layer.tunnel_coverage]", TunnelCoverageSection),
    ("[[networks.layer.tunnel_coverage.tunnels]]", TunnelSection),
    ('[networks.layer] type = "measured"', MeasuredLayerSection),
    ('[networks.layer] type = "leo"', LeoLayerSection),
    ('[networks.layer] type = "geo"', GeoLayerSection),
    ("[networks.measured]", MeasuredOverlaySection),
)


def _toml(value: Any) -> str:
    """A value as TOML (strings, numbers, booleans, arrays, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _describe(f: dataclasses.Field[Any]) -> str:
    meta = f.metadata
    notes = [meta["doc"]]
    bounds = [
        f"{label} {meta[name]:g}"
        for label, name in ((">=", "minimum"), (">", "above"), ("<=", "maximum"))
        if meta[name] is not None
    ]
    if bounds:
        notes.append(f"Range: {', '.join(bounds)}.")
    if meta["choices"] and f.name != "type":
        notes.append(f"One of: {', '.join(meta['choices'])}.")
    if meta["formats"]:
        notes.append(f"Formats: {', '.join(meta['formats'])}.")
    return " ".join(notes)


def _default(f: dataclasses.Field[Any]) -> str:
    if f.metadata["default_doc"]:
        return str(f.metadata["default_doc"])
    if f.default is dataclasses.MISSING:
        return _NO_DEFAULT
    return f"`{_toml(f.default)}`"


def reference_markdown() -> str:
    """The reference page of every ``map.toml`` key (Markdown), as ``docs/map-spec.md`` holds.

    Returns
    -------
    str
        One table per section: key, type, unit, default, example, description.

    Examples
    --------
    >>> text = reference_markdown()
    >>> "| `segment_m` | number | m | `50.0` | `25.0` |" in text
    True
    """
    lines = [
        "# Map spec (`map.toml`) reference",
        "",
        "Generated from `commap/map/spec.py` by `python -m commap.map.spec --markdown > "
        "docs/map-spec.md`; do not edit by hand.",
        "",
        "Every key below is checked when a map is built: an unknown key, a value of the wrong "
        "type or out of range stops the build with the file and the key path "
        "(`networks[2].layer.model`). File names are relative to `map.toml`.",
        "",
        "Types: " + "; ".join(f"{kind}: {words}" for kind, words in TYPE_WORDS.items()) + ".",
    ]
    for heading, cls in _REFERENCE:
        lines += [
            "",
            f"## {heading}",
            "",
            inspect.cleandoc(str(cls.__doc__)).replace("``", "`"),
            "",
        ]
        lines += [
            "| key | type | unit | default | example | description |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for f in dataclasses.fields(cls):
            meta = f.metadata
            lines.append(
                "| "
                + " | ".join(
                    _cell(cell)
                    for cell in (
                        f"`{f.name}`",
                        meta["kind"],
                        meta["unit"],
                        _default(f),
                        f"`{_toml(meta['example'])}`",
                        _describe(f),
                    )
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m commap.map.spec --markdown``: print the reference page."""
    parser = argparse.ArgumentParser(prog="python -m commap.map.spec", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print the key reference")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    print(reference_markdown(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
