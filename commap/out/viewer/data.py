"""The JSON documents the viewer page loads: map metadata, roads, coverage, plan, point quality.

Every function returns plain ``dict``/``list`` data ready for :func:`json.dumps`. Coordinates
are rounded to 5 decimals (about 1 m) and values to 0.1, which keeps a whole-country map to a
few megabytes; NaN becomes ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from commap.errors import InvalidInputError
from commap.networks import NetworkKind
from commap.out.style import (
    CLASSES,
    DROP_RISK_COLOR,
    KIND_NAMES,
    NO_NETWORK_COLOR,
    PROVENANCE_COLORS,
    PROVENANCE_NAMES,
    ROAD_COLOR,
    TUNNEL_COLOR,
    UNKNOWN_COLOR,
    network_colors,
)
from commap.out.timeline import classify, road_edges, road_pieces
from commap.radio.quality import USABLE_SINR_DB, Provenance

if TYPE_CHECKING:
    from commap.map.comm_map import CommMap

__all__ = [
    "coverage_payload",
    "meta_payload",
    "plan_payload",
    "quality_payload",
    "roads_payload",
]

_DIGITS = 5


def _num(value: Any, digits: int = 1) -> float | None:
    v = float(value)
    return None if not math.isfinite(v) else round(v, digits)


def _coords(geom: BaseGeometry) -> list[list[float]]:
    """``[lon, lat]`` pairs of a line or point, rounded."""
    xy = np.round(np.asarray(geom.coords, dtype=np.float64)[:, :2], _DIGITS)
    return [[float(x), float(y)] for x, y in xy]


def meta_payload(cmap: CommMap, *, t_s: float, has_plan: bool, live: bool) -> dict[str, Any]:
    """Map name, extent, networks with colours, legend classes, display colours and attributions.

    Examples
    --------
    >>> meta_payload.__name__
    'meta_payload'
    """
    colors = network_colors(cmap.catalogue.ids)
    attribution = list(cmap.manifest.attribution)
    return {
        "name": cmap.name,
        "title": cmap.manifest.display_title,
        "bbox": [float(v) for v in cmap.bbox],
        "t_s": float(t_s),
        "attribution": attribution,
        "networks": [
            {
                "id": n.id,
                "kind": n.kind.value,
                "operator": n.operator,
                "technology": n.technology,
                "display_name": n.display_name or n.id,
                "color": colors[n.id],
                "kind_name": KIND_NAMES[n.kind],
                "satellite": n.kind is not NetworkKind.TERRESTRIAL,
            }
            for n in cmap.catalogue.networks
        ],
        "classes": {
            metric: [{"label": c.label, "name": c.name, "color": c.color} for c in classes]
            for metric, classes in CLASSES.items()
        },
        "style": {
            "road": ROAD_COLOR,
            "tunnel": TUNNEL_COLOR,
            "drop_risk": DROP_RISK_COLOR,
            "no_network": NO_NETWORK_COLOR,
            "measured": PROVENANCE_COLORS[Provenance.MEASURED],
            "modelled": PROVENANCE_COLORS[Provenance.MODELLED],
            "unknown": UNKNOWN_COLOR,
        },
        "usable_sinr_db": USABLE_SINR_DB,
        "has_plan": has_plan,
        "live": live,
    }


def roads_payload(cmap: CommMap) -> dict[str, Any]:
    """The road graph as a GeoJSON FeatureCollection (``highway``, ``name``, flags)."""
    if cmap.roads is None:
        return {"type": "FeatureCollection", "features": []}
    edges = road_edges(cmap.roads)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": _coords(geom)},
            "properties": {
                "highway": hw,
                "name": name,
                "tunnel": bool(tunnel),
                "bridge": bool(bridge),
            },
        }
        for geom, hw, name, tunnel, bridge in zip(
            edges.geometry,
            edges["highway"],
            edges["name"],
            edges["tunnel"],
            edges["bridge"],
            strict=True,
        )
    ]
    return {"type": "FeatureCollection", "features": features}


def coverage_payload(
    cmap: CommMap, *, spacing_m: float, t_s: float, network_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Road pieces once, then per network one class and value per piece.

    Returns
    -------
    dict
        ``pieces``: list of ``[[lat, lon], ...]`` (Leaflet order); ``tunnel``: 0/1 per piece;
        ``networks``: ``{id: {"rsrp_class", "sinr_class", "visibility_class", "provenance",
        "unknown", "rsrp_dbm", "sinr_db", "elevation_deg"}}`` with one entry per piece (class
        index, -1 where not applicable; provenance code of
        :class:`~commap.radio.quality.Provenance`; ``unknown`` 1 where the map has no data near).
    """
    if cmap.roads is None:
        return {"pieces": [], "tunnel": [], "networks": {}, "spacing_m": spacing_m}
    pieces = road_pieces(cmap.roads, spacing_m=spacing_m)
    lon = pieces["lon"].to_numpy(dtype=np.float64)
    lat = pieces["lat"].to_numpy(dtype=np.float64)
    tunnel = pieces["tunnel"].to_numpy(dtype=bool)
    ids = tuple(network_ids) if network_ids is not None else cmap.catalogue.ids
    networks: dict[str, Any] = {}
    for nid in ids:
        sat = cmap.catalogue[nid].is_satellite
        q = cmap.layers[nid].sample(lon, lat, np.full(lon.shape, t_s), in_tunnel=tunnel)
        networks[nid] = {
            "rsrp_class": ([-1] * len(lon) if sat else classify("rsrp_dbm", q.rsrp_dbm).tolist()),
            "sinr_class": classify("sinr_db", q.sinr_db).tolist(),
            "visibility_class": (
                classify("elevation_deg", q.elevation_deg).tolist() if sat else [-1] * len(lon)
            ),
            "provenance": q.provenance.astype(int).tolist(),
            "unknown": np.asarray(q.unknown, dtype=int).tolist(),
            "rsrp_dbm": [_num(v) for v in q.rsrp_dbm],
            "sinr_db": [_num(v) for v in q.sinr_db],
            "elevation_deg": [_num(v) for v in q.elevation_deg],
        }
    latlon = [[[y, x] for x, y in _coords(geom)] for geom in pieces.geometry]
    return {
        "pieces": latlon,
        "tunnel": tunnel.astype(int).tolist(),
        "networks": networks,
        "spacing_m": spacing_m,
    }


def _feature(geom: BaseGeometry, props: Mapping[str, Any]) -> dict[str, Any]:
    if geom.geom_type == "Point":
        coords: Any = _coords(geom)[0]
    elif geom.geom_type == "LineString":
        coords = _coords(geom)
    elif geom.geom_type == "MultiLineString":
        coords = [_coords(part) for part in geom.geoms]
    else:
        raise InvalidInputError(f"plan geometry {geom.geom_type} is not supported", field="plan")
    clean = {k: (_num(v, 3) if isinstance(v, float | np.floating) else v) for k, v in props.items()}
    return {
        "type": "Feature",
        "geometry": {"type": geom.geom_type, "coordinates": coords},
        "properties": clean,
    }


def plan_payload(
    layers: Mapping[str, gpd.GeoDataFrame] | None, colors: Mapping[str, str]
) -> dict[str, Any]:
    """A plan's layers (:func:`commap.out.gis.plan_layers`) as one GeoJSON FeatureCollection.

    Every feature gets ``layer`` (``route`` / ``handovers`` / ``drop_risk``) and, on route
    pieces, the ``color`` of its network.

    Examples
    --------
    >>> plan_payload(None, {})
    {'type': 'FeatureCollection', 'features': []}
    """
    features: list[dict[str, Any]] = []
    for name in ("drop_risk", "route", "handovers"):
        frame = (layers or {}).get(name)
        if frame is None or frame.empty:
            continue
        records = pd.DataFrame(frame.drop(columns=frame.geometry.name)).to_dict("records")
        for geom, record in zip(frame.geometry, records, strict=True):
            props: dict[str, Any] = {str(k): v for k, v in record.items()}
            props["layer"] = name
            if name == "route":
                props["color"] = colors.get(str(props.get("network_id", "")), NO_NETWORK_COLOR)
            features.append(_feature(geom, props))
    return {"type": "FeatureCollection", "features": features}


def quality_payload(cmap: CommMap, lon: float, lat: float, t_s: float) -> dict[str, Any]:
    """Quality of every network at one point (the viewer's click-for-details).

    Raises
    ------
    InvalidInputError
        The point lies outside the map.
    """
    qm = cmap.quality_at([lon], [lat], [t_s])
    unknown = np.asarray(qm.unknown, dtype=bool).reshape(qm.shape)
    rows = []
    for j, nid in enumerate(qm.network_ids):
        rows.append(
            {
                "id": nid,
                "rsrp_dbm": _num(qm.rsrp_dbm[0, j]),
                "sinr_db": _num(qm.sinr_db[0, j]),
                "elevation_deg": _num(qm.elevation_deg[0, j]),
                "provenance": PROVENANCE_NAMES[int(qm.provenance[0, j])],
                "confidence": _num(qm.confidence[0, j], 2),
                "usable": bool(qm.sinr_db[0, j] >= USABLE_SINR_DB and not unknown[0, j]),
                "unknown": bool(unknown[0, j]),
            }
        )
    return {"lon": lon, "lat": lat, "t_s": t_s, "networks": rows}
