"""Coverage layers: one per network, all answering :class:`commap.radio.quality.CoverageLayer`.

A map spec (``map.toml``) gives each network a ``layer`` table whose ``type`` picks the module
that builds it. Every layer module provides two functions:

``prepare_layer(network, spec, ctx) -> dict``
    Build time: read the sources under ``ctx.source_dir``, write whatever the layer needs into
    ``ctx.built_dir`` (copied or generated files, e.g. placed cell sites), and return the layer spec
    as the built map records it (file names relative to ``ctx.built_dir``).
``load_layer(network, spec, ctx) -> CoverageLayer``
    Load time: build the layer object from a prepared spec and files under ``ctx.built_dir``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from commap.errors import InvalidInputError
from commap.networks import Network
from commap.radio.quality import CoverageLayer

if TYPE_CHECKING:
    import networkx as nx

    from commap.geo.terrain import Terrain

__all__ = ["LAYER_TYPES", "LayerContext", "layer_number", "load_layer", "prepare_layer"]

# layer type -> module implementing prepare_layer / load_layer
LAYER_TYPES: dict[str, str] = {
    "terrestrial": "commap.radio.layers.terrestrial",
    "measured": "commap.radio.layers.measured",
    "leo": "commap.radio.layers.satellite",
    "geo": "commap.radio.layers.satellite",
}


@dataclass(frozen=True)
class LayerContext:
    """What a layer may use while it is prepared or loaded.

    Attributes
    ----------
    source_dir : directory of the map spec (source files are relative to it).
    built_dir : directory of the built map (prepared files are relative to it).
    bbox : ``(lon_min, lat_min, lon_max, lat_max)`` of the map, WGS84.
    terrain : elevation model, or None when the map has no terrain.
    roads : the map's road graph, or None for maps without roads.
    seed : the map's random seed (generated layouts must be reproducible).
    osm_file : the map's OSM extract (its roads file), searched for masts; None without one.
    """

    source_dir: Path
    built_dir: Path
    bbox: tuple[float, float, float, float]
    terrain: Terrain | None = None
    roads: nx.MultiDiGraph | None = None
    seed: int = 0
    osm_file: Path | None = None


def layer_number(network: Network, spec: Mapping[str, Any], key: str, default: float) -> float:
    """The number under ``key`` of a layer spec, else ``default``.

    The map spec schema (:mod:`commap.map.spec`) checks ``map.toml`` with ranges and units;
    this check stays for specs that do not come from it (a built manifest, a direct call).

    Raises
    ------
    InvalidInputError
        If the value is not a finite number.

    Examples
    --------
    >>> from commap.networks import NetworkKind
    >>> net = Network(id="x", kind=NetworkKind.GEO, operator="x", technology="geo",
    ...               latency_ms=600.0)
    >>> layer_number(net, {"sinr_db": 8}, "sinr_db", 10.0)
    8.0
    """
    value = spec.get(key, default)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (is_number and math.isfinite(value)):
        raise InvalidInputError(
            f"network {network.id}: layer.{key} must be a number, got {value!r}",
            field=f"layer.{key}",
        )
    return float(value)


def _module(spec: Mapping[str, Any], network: Network) -> ModuleType:
    layer_type = spec.get("type")
    if layer_type not in LAYER_TYPES:
        raise InvalidInputError(
            f"network {network.id}: unknown layer type {layer_type!r}; "
            f"expected one of {sorted(LAYER_TYPES)}",
            field="layer.type",
        )
    return importlib.import_module(LAYER_TYPES[str(layer_type)])


def prepare_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> dict[str, Any]:
    """Prepare the layer of ``network`` at build time (see module docstring)."""
    result: dict[str, Any] = _module(spec, network).prepare_layer(network, spec, ctx)
    return result


def load_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> CoverageLayer:
    """Load the layer of ``network`` from a built map (see module docstring)."""
    layer: CoverageLayer = _module(spec, network).load_layer(network, spec, ctx)
    return layer
