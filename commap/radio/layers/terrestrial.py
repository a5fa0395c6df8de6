"""Modelled terrestrial coverage: cell sites + path loss + terrain -> best-server RSRP and SINR.

Map spec (``[networks.layer]`` with ``type = "terrestrial"``), keys and defaults:

``sites``                ``"generated"`` (placed by :func:`commap.radio.sites.place_sites`) or a CSV
                         path relative to the spec (OpenCelliD or Irish base-station format)
``filter``               for CSV sites: raw column values to keep, e.g.
                         ``{bs_operator = "mno_1", bs_technology = "3g"}``
``placement_region``     ``[lon_min, lat_min, lon_max, lat_max]`` (default: the map bbox)
``site_spacing_m``       3000; minimum distance between generated sites
``max_sites``            200; cap on the sites of a generated layout
``osm_file``             OSM extract searched for masts (default: the map's ``[roads] file``)
``tx_power_dbm``         46; total carrier power (CSV files may give it per site)
``antenna_height_m``     25; above ground
``model``                ``auto`` | ``cost231`` | ``rma`` | ``uma`` (see
                         :func:`commap.radio.pathloss.model_loss_db`)
``shadowing_margin_db``  0; subtracted from every RSRP (log-normal fade margin; 0 keeps the
                         median prediction, the planner's truth field adds its own shadowing)
``antenna_gain_dbi``     15; site antenna gain net of feeder loss
``bandwidth_mhz``        per technology (LTE 10, NR 100, 3G 5, GSM 0.2)
``load_factor``          0.7; share of the interferers' resource elements carrying power
``noise_figure_db``      9; UE noise figure
``min_rsrp_dbm``         -140; below this (the bottom of the RSRP reporting range, TS 36.133)
                         there is no signal
``max_range_m``          20000; sites farther away take no part (neither serve nor interfere)
``target_rsrp_dbm``      -105; design RSRP for placement ("covered" road)
``environment``          force one environment for every site (default: from road density)
``tunnel_coverage``      coverage inside road tunnels: ``{ mode = "none" }`` (default) or
                         ``{ mode = "das", rsrp_dbm = -95, sinr_db = 10 }`` (a distributed
                         antenna system), with ``tunnels = [{ osm_id = ..., mode = ... }, ...]``
                         or ``name = ...`` for single tunnels (:class:`TunnelCoverage`)

Radio model (per point): every site within ``max_range_m`` contributes
``RSRP = P_tx - 10 log10(N_sc) + G_ant - L_model - L_diffraction - margin`` (the reference-signal
power per resource element, with the carrier power spread evenly over its ``N_sc`` subcarriers;
for 3G/GSM the same power spectral density per 15 kHz stands in for RSRP). The best server is
the strongest site; SINR = ``S / (load_factor * I + N)`` with ``I`` the sum over the network's
other sites on the same carrier frequency (reuse 1) and ``N = -174 dBm/Hz + 10 log10(SCS) + NF``
over one subcarrier, capped at :data:`MAX_SINR_DB`. Sites are omnidirectional (no source
gives sector patterns).
Inside tunnels the sites do not reach: the coverage there is the tunnel's own (none, or a
distributed antenna system at a fixed level). Bridges do not affect terrestrial signals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import networkx as nx
import numpy as np
import shapely

from commap.arrays import BoolArray, FloatArray
from commap.errors import InvalidInputError
from commap.geo.terrain import Terrain
from commap.networks import MCC_BY_COUNTRY, Network
from commap.radio.layers import LayerContext, layer_number
from commap.radio.pathloss import ENVIRONMENTS, MODELS, ground_distance_m, link_loss_db
from commap.radio.quality import (
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    Provenance,
    Quality,
    as_points,
    as_sample_points,
)
from commap.radio.sites import (
    SiteTable,
    classify_environment,
    place_sites,
    read_osm_masts,
    read_site_table,
    read_sites,
    road_points,
    write_opencellid_csv,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_ANTENNA_HEIGHT_M",
    "DEFAULT_MAX_SITES",
    "DEFAULT_SITE_SPACING_M",
    "DEFAULT_TARGET_RSRP_DBM",
    "DEFAULT_TX_POWER_DBM",
    "MAX_SINR_DB",
    "MODELLED_CONFIDENCE",
    "TERRAIN_SHADOWED_CONFIDENCE",
    "TUNNEL_MODES",
    "RadioParams",
    "TerrestrialLayer",
    "TunnelCoverage",
    "TunnelRules",
    "load_layer",
    "prepare_layer",
    "radio_params",
]

log = logging.getLogger(__name__)


# A path-loss model with generic sites is good to a few dB at best (38.901 shadow fading alone
# is 4-8 dB): modelled values get half the trust of a dense measurement.
MODELLED_CONFIDENCE: Final = 0.5
# Where the best server reaches the point only by diffraction over terrain (> 10 dB), the
# knife-edge idealisation and the 90 m terrain grid dominate the error.
TERRAIN_SHADOWED_CONFIDENCE: Final = 0.3
TERRAIN_SHADOWED_DIFFRACTION_DB: Final = 10.0
THERMAL_NOISE_DBM_PER_HZ: Final = -174.0
# Measured SINR saturates near 30 dB (transmitter EVM, receiver impairments): in the Cork drive
# tests (UCC 5G dataset, 133k samples) 99.9 % of SNR reports are <= 30 dB. A lone site must not
# promise 60 dB next to its mast.
MAX_SINR_DB: Final = 30.0
# Links weaker than noise - 30 dB change neither the best server nor the SINR (< 0.1 dB even
# with 20 of them): they get no terrain profile, the costliest step of a sample.
_NEGLIGIBLE_BELOW_NOISE_DB: Final = 30.0
# technology -> (channel bandwidth MHz, occupied share, subcarrier spacing kHz): LTE 10 MHz has
# 600 subcarriers of 15 kHz, NR 100 MHz at 30 kHz has 273 RB = 3276; 3G/GSM use the power
# spectral density per 15 kHz over their 3.84 MHz / 200 kHz channel.
_CARRIERS: Final = {
    "lte": (10.0, 0.9, 15.0),
    "nr": (100.0, 0.9828, 30.0),
    "3g": (5.0, 0.768, 15.0),
    "umts": (5.0, 0.768, 15.0),
    "gsm": (0.2, 1.0, 15.0),
}
# Defaults of the layer's spec keys (the map spec schema, commap.map.spec, documents them).
DEFAULT_TX_POWER_DBM: Final = 46.0
DEFAULT_ANTENNA_HEIGHT_M: Final = 25.0
DEFAULT_SITE_SPACING_M: Final = 3000.0
DEFAULT_MAX_SITES: Final = 200
DEFAULT_TARGET_RSRP_DBM: Final = -105.0
# The largest (points x sites) block evaluated at once; link_loss_db chunks profiles itself.
_MAX_PAIRS_PER_CHUNK: Final = 200_000


@dataclass(frozen=True, kw_only=True)
class RadioParams:
    """Link-budget parameters of one terrestrial network (see the module docstring).

    Examples
    --------
    >>> p = RadioParams(bandwidth_mhz=10.0, occupied_share=0.9, subcarrier_khz=15.0)
    >>> p.subcarriers, round(p.noise_dbm, 1)
    (600.0, -123.2)
    """

    model: str = "auto"
    antenna_gain_dbi: float = 15.0
    noise_figure_db: float = 9.0
    ue_height_m: float = 1.5
    load_factor: float = 0.7
    shadowing_margin_db: float = 0.0
    min_rsrp_dbm: float = -140.0
    max_range_m: float = 20_000.0
    bandwidth_mhz: float = 10.0
    occupied_share: float = 0.9
    subcarrier_khz: float = 15.0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InvalidInputError(
                f"unknown model {self.model!r}; expected one of {MODELS}", field="model"
            )
        if not 0.0 <= self.load_factor <= 1.0:
            raise InvalidInputError("load_factor must be within [0, 1]", field="load_factor")
        for name in (
            "max_range_m",
            "bandwidth_mhz",
            "subcarrier_khz",
            "occupied_share",
            "ue_height_m",
        ):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be > 0", field=name)

    @property
    def subcarriers(self) -> float:
        """Subcarriers (resource elements per symbol) the carrier power is spread over."""
        return round(self.bandwidth_mhz * self.occupied_share * 1000.0 / self.subcarrier_khz, 3)

    @property
    def noise_dbm(self) -> float:
        """Thermal noise plus UE noise figure over one subcarrier."""
        return (
            THERMAL_NOISE_DBM_PER_HZ
            + 10.0 * math.log10(self.subcarrier_khz * 1e3)
            + self.noise_figure_db
        )

    def rs_eirp_dbm(self, tx_power_dbm: FloatArray | float) -> FloatArray:
        """Reference-signal EIRP per resource element for a total carrier power."""
        return np.asarray(
            np.asarray(tx_power_dbm, dtype=np.float64)
            - 10.0 * math.log10(self.subcarriers)
            + self.antenna_gain_dbi,
            dtype=np.float64,
        )


TUNNEL_MODES: Final = ("none", "das")
# A point flagged in a tunnel takes the coverage of the nearest tunnel road within this distance
# (segment centres lie on the road); farther away (a polyline's own flags) the default applies.
_TUNNEL_MATCH_DEG: Final = 0.001


@dataclass(frozen=True)
class TunnelCoverage:
    """Coverage of a network inside tunnels: ``none`` or a distributed antenna system (``das``).

    Examples
    --------
    >>> TunnelCoverage().rsrp_dbm, TunnelCoverage("das", -95.0, 10.0).sinr_db
    (-160.0, 10.0)
    >>> TunnelCoverage("das")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: tunnel_coverage: mode "das" needs rsrp_dbm and sinr_db
    """

    mode: str = "none"
    rsrp_dbm: float = NO_SIGNAL_RSRP_DBM
    sinr_db: float = NO_SIGNAL_SINR_DB

    def __post_init__(self) -> None:
        if self.mode not in TUNNEL_MODES:
            raise InvalidInputError(
                f"tunnel_coverage: mode must be one of {', '.join(TUNNEL_MODES)}, got {self.mode!r}",
                field="tunnel_coverage.mode",
            )
        if self.mode == "das" and (
            self.rsrp_dbm == NO_SIGNAL_RSRP_DBM or self.sinr_db == NO_SIGNAL_SINR_DB
        ):
            raise InvalidInputError(
                'tunnel_coverage: mode "das" needs rsrp_dbm and sinr_db',
                field="tunnel_coverage",
            )

    @classmethod
    def from_spec(cls, table: Mapping[str, Any], where: str) -> TunnelCoverage:
        """From a ``{mode, rsrp_dbm, sinr_db}`` table (no levels for ``none``)."""
        mode = str(table.get("mode", "none"))
        if mode == "none":
            return cls()
        if mode not in TUNNEL_MODES:
            raise InvalidInputError(
                f"{where}: mode must be one of {', '.join(TUNNEL_MODES)}, got {mode!r}", field=where
            )
        try:
            rsrp, sinr = float(table["rsrp_dbm"]), float(table["sinr_db"])
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError(
                f'{where}: mode "das" needs rsrp_dbm and sinr_db (numbers)', field=where
            ) from None
        return cls(mode, rsrp, sinr)


class TunnelRules:
    """Which coverage each tunnel has: a default, and overrides by OSM way id or name.

    Parameters
    ----------
    default : TunnelCoverage
        Coverage of tunnels without an override.
    by_osm_id, by_name : mapping
        Overrides; an id wins over a name.
    roads : networkx.MultiDiGraph, optional
        The map's road graph: its tunnel edges locate the overrides.

    Examples
    --------
    >>> rules = TunnelRules(TunnelCoverage("das", -95.0, 10.0))
    >>> rules.coverage(np.array([1.5]), np.array([42.5]))[0].tolist()
    [-95.0]
    """

    def __init__(
        self,
        default: TunnelCoverage,
        *,
        by_osm_id: Mapping[int, TunnelCoverage] | None = None,
        by_name: Mapping[str, TunnelCoverage] | None = None,
        roads: nx.MultiDiGraph | None = None,
    ) -> None:
        self.default = default
        self.by_osm_id = dict(by_osm_id or {})
        self.by_name = dict(by_name or {})
        self._levels: list[TunnelCoverage] = []
        self._tree: shapely.STRtree | None = None
        if (self.by_osm_id or self.by_name) and roads is not None:
            geoms = []
            for _, _, data in roads.edges(data=True):
                if not data.get("tunnel"):
                    continue
                found = self.by_osm_id.get(int(data.get("osm_id", 0)))
                found = found or self.by_name.get(str(data.get("name", "")))
                geoms.append(data["geometry"])
                self._levels.append(found or default)
            self._tree = shapely.STRtree(geoms) if geoms else None

    @classmethod
    def from_spec(
        cls, network: Network, spec: Mapping[str, Any], roads: nx.MultiDiGraph | None
    ) -> TunnelRules:
        """From a layer spec's ``tunnel_coverage`` table (none in any tunnel without one)."""
        table = spec.get("tunnel_coverage") or {}
        where = _where(network, "tunnel_coverage")
        if not isinstance(table, Mapping):
            raise InvalidInputError(f"{where} must be a table", field="layer.tunnel_coverage")
        by_id: dict[int, TunnelCoverage] = {}
        by_name: dict[str, TunnelCoverage] = {}
        for i, one in enumerate(table.get("tunnels") or ()):
            at = f"{where}.tunnels[{i}]"
            level = TunnelCoverage.from_spec(one, at)
            if one.get("osm_id") is not None and not one.get("name"):
                by_id[int(one["osm_id"])] = level
            elif one.get("name") and one.get("osm_id") is None:
                by_name[str(one["name"])] = level
            else:
                raise InvalidInputError(
                    f"{at}: give either osm_id or name", field="layer.tunnel_coverage"
                )
        if roads is not None and (by_id or by_name):
            known_ids = {int(d.get("osm_id", 0)) for *_, d in roads.edges(data=True) if d["tunnel"]}
            known_names = {
                str(d.get("name", "")) for *_, d in roads.edges(data=True) if d["tunnel"]
            }
            unknown = [str(k) for k in by_id if k not in known_ids]
            unknown += [repr(k) for k in by_name if k not in known_names]
            if unknown:
                raise InvalidInputError(
                    f"{where}: no tunnel {', '.join(unknown)} on the map's roads",
                    field="layer.tunnel_coverage",
                )
        default = TunnelCoverage.from_spec(table, where)
        return cls(default, by_osm_id=by_id, by_name=by_name, roads=roads)

    def coverage(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """RSRP and SINR inside tunnels at points on tunnel roads."""
        rsrp = np.full(lon.shape, self.default.rsrp_dbm)
        sinr = np.full(lon.shape, self.default.sinr_db)
        if self._tree is None or lon.size == 0:
            return rsrp, sinr
        points = shapely.points(lon, lat)
        (which, edge), _ = self._tree.query_nearest(
            points, max_distance=_TUNNEL_MATCH_DEG, return_distance=True
        )
        # several equidistant tunnel edges (both lanes): the last one wins, they agree
        for i, j in zip(which.tolist(), edge.tolist(), strict=True):
            rsrp[i] = self._levels[j].rsrp_dbm
            sinr[i] = self._levels[j].sinr_db
        return rsrp, sinr


class TerrestrialLayer:
    """Best-server RSRP and SINR of one network from its sites (a :class:`CoverageLayer`).

    Parameters
    ----------
    network_id : str
        The network this layer answers for.
    sites : SiteTable or pandas.DataFrame
        Site table (:data:`commap.radio.sites.SITE_COLUMNS`); empty environments count as suburban.
    params : RadioParams
        Link budget.
    terrain : Terrain, optional
        Elevation model for diffraction; flat earth without it.
    tunnels : TunnelRules, optional
        Coverage inside tunnels; none without it.

    Examples
    --------
    >>> from commap.radio.sites import empty_sites
    >>> layer = TerrestrialLayer("x", empty_sites(), RadioParams())
    >>> q = layer.sample(np.array([1.5]), np.array([42.5]), np.array([0.0]))
    >>> float(q.rsrp_dbm[0]), int(q.provenance[0])
    (-160.0, 1)
    """

    def __init__(
        self,
        network_id: str,
        sites: SiteTable | pd.DataFrame,
        params: RadioParams,
        terrain: Terrain | None = None,
        *,
        tunnels: TunnelRules | None = None,
    ) -> None:
        self.network_id = network_id
        self.params = params
        self.terrain = terrain
        self.tunnels = tunnels or TunnelRules(TunnelCoverage())
        # arrays, not a DataFrame: a loaded map answers without importing pandas
        self._sites = sites if isinstance(sites, SiteTable) else SiteTable.from_frame(sites)
        self._lon = self._sites.lon
        self._lat = self._sites.lat
        self._height_m = self._sites.antenna_height_m
        self._freq_mhz = self._sites.frequency_mhz
        env = self._sites.environment
        self._env = np.where(env == "", "suburban", env).astype("<U8")
        self._eirp_dbm = params.rs_eirp_dbm(self._sites.tx_power_dbm)
        # carrier index per site: only sites on the same carrier interfere
        self._freqs, self._carrier = np.unique(self._freq_mhz, return_inverse=True)

    @property
    def sites(self) -> pd.DataFrame:
        """The site table (a new DataFrame: imports pandas)."""
        return self._sites.to_frame()

    def __repr__(self) -> str:
        return f"TerrestrialLayer({self.network_id!r}, sites={len(self._sites)})"

    def sample(
        self,
        lon: FloatArray,
        lat: FloatArray,
        t_s: FloatArray,
        *,
        in_tunnel: BoolArray | None = None,
        under_bridge: BoolArray | None = None,
    ) -> Quality:
        """Quality at WGS84 points (time-independent; bridges do not matter here).

        Raises
        ------
        InvalidInputError
            On malformed points or flag arrays of the wrong length.
        """
        lon_a, lat_a, _, tunnel, _ = as_sample_points(lon, lat, t_s, in_tunnel=in_tunnel)
        n = lon_a.size
        rsrp = np.full(n, NO_SIGNAL_RSRP_DBM)
        sinr = np.full(n, NO_SIGNAL_SINR_DB)
        confidence = np.full(n, MODELLED_CONFIDENCE)
        if tunnel.any():
            rsrp[tunnel], sinr[tunnel] = self.tunnels.coverage(lon_a[tunnel], lat_a[tunnel])
        todo = np.flatnonzero(~tunnel)
        chunk = max(1, _MAX_PAIRS_PER_CHUNK // max(1, len(self._sites)))
        for start in range(0, todo.size if len(self._sites) else 0, chunk):
            idx = todo[start : start + chunk]
            rsrp[idx], sinr[idx], shadowed = self._best_server(lon_a[idx], lat_a[idx])
            confidence[idx[shadowed]] = TERRAIN_SHADOWED_CONFIDENCE
        return Quality(
            rsrp_dbm=rsrp,
            sinr_db=sinr,
            elevation_deg=np.full(n, np.nan),
            confidence=confidence,
            provenance=np.full(n, int(Provenance.MODELLED), dtype=np.int8),
            sample_count=np.zeros(n, dtype=np.int32),
        )

    def site_rsrp_dbm(self, lon: FloatArray, lat: FloatArray) -> FloatArray:
        """RSRP of every site at every point, shape ``(points, sites)``; -inf beyond range.

        Examples
        --------
        >>> from commap.radio.sites import empty_sites
        >>> TerrestrialLayer("x", empty_sites(), RadioParams()).site_rsrp_dbm(
        ...     np.array([1.5]), np.array([42.5])).shape
        (1, 0)
        """
        lon_a, lat_a, _ = as_points(lon, lat)
        return self._rsrp_matrix(lon_a, lat_a)[0]

    def _rsrp_matrix(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(points x sites) RSRP (-inf out of range) and diffraction loss."""
        dist = ground_distance_m(lon[:, None], lat[:, None], self._lon[None, :], self._lat[None, :])
        p_idx, s_idx = np.nonzero(dist <= self.params.max_range_m)
        rsrp = np.full(dist.shape, -np.inf)
        diffraction = np.zeros(dist.shape)
        if p_idx.size:
            floor_dbm = min(
                self.params.min_rsrp_dbm, self.params.noise_dbm - _NEGLIGIBLE_BELOW_NOISE_DB
            )
            max_loss_db = self._eirp_dbm[s_idx] - self.params.shadowing_margin_db - floor_dbm
            loss = link_loss_db(
                tx_lon=self._lon[s_idx],
                tx_lat=self._lat[s_idx],
                tx_height_m=self._height_m[s_idx],
                rx_lon=lon[p_idx],
                rx_lat=lat[p_idx],
                rx_height_m=self.params.ue_height_m,
                frequency_mhz=self._freq_mhz[s_idx],
                environment=self._env[s_idx],
                model=self.params.model,
                terrain=self.terrain,
                max_loss_db=max_loss_db,
            )
            rsrp[p_idx, s_idx] = np.where(
                loss.total_db <= max_loss_db,
                self._eirp_dbm[s_idx] - loss.total_db - self.params.shadowing_margin_db,
                -np.inf,
            )
            diffraction[p_idx, s_idx] = loss.diffraction_db
        return rsrp, diffraction

    def _best_server(
        self, lon: FloatArray, lat: FloatArray
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        rsrp, diffraction = self._rsrp_matrix(lon, lat)
        rows = np.arange(lon.size)
        best = np.argmax(rsrp, axis=1)
        best_dbm = rsrp[rows, best]
        power_mw = np.power(10.0, rsrp / 10.0)  # -inf -> 0 mW
        # interference: the best server's carrier only (sites on other carriers do not overlap)
        per_carrier = np.stack(
            [power_mw[:, self._carrier == c].sum(axis=1) for c in range(self._freqs.size)], axis=1
        )
        signal_mw = power_mw[rows, best]
        interference_mw = np.maximum(per_carrier[rows, self._carrier[best]] - signal_mw, 0.0)
        noise_mw = 10.0 ** (self.params.noise_dbm / 10.0)
        with np.errstate(divide="ignore"):
            sinr = 10.0 * np.log10(
                signal_mw / (self.params.load_factor * interference_mw + noise_mw)
            )
        ok = best_dbm >= self.params.min_rsrp_dbm
        # terrain-dominated predictions (served or not) are the least certain ones
        shadowed = np.isfinite(best_dbm) & (
            diffraction[rows, best] > TERRAIN_SHADOWED_DIFFRACTION_DB
        )
        return (
            np.where(ok, np.maximum(best_dbm, NO_SIGNAL_RSRP_DBM), NO_SIGNAL_RSRP_DBM),
            np.where(ok, np.clip(sinr, NO_SIGNAL_SINR_DB, MAX_SINR_DB), NO_SIGNAL_SINR_DB),
            shadowed,
        )


# --- spec handling ---------------------------------------------------------------------------


def _where(network: Network, key: str) -> str:
    return f"network {network.id}: layer.{key}"


def _region(
    spec: Mapping[str, Any], key: str, default: tuple[float, float, float, float], network: Network
) -> tuple[float, float, float, float]:
    value = spec.get(key, default)
    try:
        lon0, lat0, lon1, lat1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{_where(network, key)} must be [lon_min, lat_min, lon_max, lat_max]",
            field=f"layer.{key}",
        ) from None
    as_points([lon0, lon1], [lat0, lat1])
    if not (lon0 < lon1 and lat0 < lat1):
        raise InvalidInputError(
            f"{_where(network, key)}: minimum must be below maximum", field=f"layer.{key}"
        )
    return (lon0, lat0, lon1, lat1)


def radio_params(network: Network, spec: Mapping[str, Any]) -> RadioParams:
    """Link-budget parameters of ``network`` from its layer spec (defaults by technology).

    Raises
    ------
    InvalidInputError
        On a non-numeric or out-of-range value.

    Examples
    --------
    >>> from commap.networks import Network, NetworkKind
    >>> nr = Network(id="n", kind=NetworkKind.TERRESTRIAL, operator="o", technology="nr",
    ...              latency_ms=20.0)
    >>> radio_params(nr, {}).subcarriers
    3276.0
    """
    bandwidth, share, scs = _CARRIERS.get(network.technology.lower(), _CARRIERS["lte"])
    base = RadioParams()
    try:
        return RadioParams(
            model=str(spec.get("model", base.model)),
            antenna_gain_dbi=layer_number(network, spec, "antenna_gain_dbi", base.antenna_gain_dbi),
            noise_figure_db=layer_number(network, spec, "noise_figure_db", base.noise_figure_db),
            ue_height_m=layer_number(network, spec, "ue_height_m", base.ue_height_m),
            load_factor=layer_number(network, spec, "load_factor", base.load_factor),
            shadowing_margin_db=layer_number(
                network, spec, "shadowing_margin_db", base.shadowing_margin_db
            ),
            min_rsrp_dbm=layer_number(network, spec, "min_rsrp_dbm", base.min_rsrp_dbm),
            max_range_m=layer_number(network, spec, "max_range_m", base.max_range_m),
            bandwidth_mhz=layer_number(network, spec, "bandwidth_mhz", bandwidth),
            occupied_share=share,
            subcarrier_khz=layer_number(network, spec, "subcarrier_khz", scs),
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"network {network.id}: layer: {exc}", field=exc.field) from None


def _osm_file(spec: Mapping[str, Any], ctx: LayerContext) -> Path | None:
    """The OSM extract to search for masts: ``osm_file``, else the map's roads file."""
    if spec.get("osm_file"):
        return ctx.source_dir / str(spec["osm_file"])
    return ctx.osm_file


def _mcc(network: Network, spec: Mapping[str, Any]) -> int:
    """The MCC of the site table: ``mcc``, else the one of ``country`` (0 without either)."""
    country = str(spec.get("country", "")).strip().upper()
    if country and country not in MCC_BY_COUNTRY and "mcc" not in spec:
        raise InvalidInputError(
            f"{_where(network, 'country')}: unknown country code {country!r}; known: "
            f"{', '.join(sorted(MCC_BY_COUNTRY))} (or give mcc)",
            field="layer.country",
        )
    return int(layer_number(network, spec, "mcc", MCC_BY_COUNTRY.get(country, 0)))


def _generated_sites(
    network: Network, spec: Mapping[str, Any], ctx: LayerContext, params: RadioParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if ctx.roads is None:
        raise InvalidInputError(
            f"{_where(network, 'sites')} = 'generated' needs the map's road graph",
            field="layer.sites",
        )
    if network.frequency_mhz <= 0:
        raise InvalidInputError(
            f"network {network.id}: frequency_mhz must be > 0 for a terrestrial layer",
            field="frequency_mhz",
        )
    region = _region(spec, "placement_region", ctx.bbox, network)
    tx_power = layer_number(network, spec, "tx_power_dbm", DEFAULT_TX_POWER_DBM)
    target = layer_number(network, spec, "target_rsrp_dbm", DEFAULT_TARGET_RSRP_DBM)
    osm = _osm_file(spec, ctx)
    masts = read_osm_masts(osm, region) if osm is not None and osm.is_file() else None
    placement = place_sites(
        region=region,
        roads=ctx.roads,
        terrain=ctx.terrain,
        spacing_m=layer_number(network, spec, "site_spacing_m", DEFAULT_SITE_SPACING_M),
        max_path_loss_db=float(params.rs_eirp_dbm(tx_power)) - target - params.shadowing_margin_db,
        frequency_mhz=network.frequency_mhz,
        tx_power_dbm=tx_power,
        antenna_height_m=layer_number(network, spec, "antenna_height_m", DEFAULT_ANTENNA_HEIGHT_M),
        seed=ctx.seed,
        name=network.id,
        masts=masts,
        model=params.model,
        mobile_height_m=params.ue_height_m,
        max_sites=int(layer_number(network, spec, "max_sites", DEFAULT_MAX_SITES)),
        max_range_m=params.max_range_m,
    )
    figures = {
        "method": "osm masts + seeded greedy road cover (commap.radio.sites.place_sites)",
        "seed": ctx.seed,
        "osm_file": osm.name if osm is not None else None,
        "osm_sites": placement.osm_sites,
        "generated_sites": placement.generated_sites,
        "candidates": placement.candidates,
        "road_length_km": round(placement.road_length_m / 1000.0, 3),
        "road_covered_fraction": round(placement.coverage_fraction, 4),
        "target_rsrp_dbm": target,
    }
    return placement.sites, figures


def _csv_sites(
    network: Network, spec: Mapping[str, Any], ctx: LayerContext, source: str
) -> pd.DataFrame:
    flt = spec.get("filter") or {}
    if not isinstance(flt, Mapping):
        raise InvalidInputError(
            f"{_where(network, 'filter')} must be a table", field="layer.filter"
        )
    path = ctx.source_dir / source
    if not path.is_file():
        raise InvalidInputError(
            f"{_where(network, 'sites')} = {source!r}: file {path} does not exist",
            field="layer.sites",
        )
    sites = read_sites(
        path,
        filter=flt,
        tx_power_dbm=layer_number(network, spec, "tx_power_dbm", DEFAULT_TX_POWER_DBM),
        frequency_mhz=network.frequency_mhz or None,
        antenna_height_m=layer_number(network, spec, "antenna_height_m", DEFAULT_ANTENNA_HEIGHT_M),
    )
    missing = sites["environment"] == ""
    if missing.any() and ctx.roads is not None:
        pts = road_points(ctx.roads)
        sites.loc[missing, "environment"] = classify_environment(
            sites.loc[missing, "lon"].to_numpy(), sites.loc[missing, "lat"].to_numpy(), pts
        )
    return sites


def prepare_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> dict[str, Any]:
    """Build the network's site table into ``ctx.built_dir/sites-<network id>.csv``.

    Returns the built layer spec: the input keys, ``sites`` pointing at the written file,
    ``site_source`` (``"generated"`` or the CSV path), ``modelled = true`` and
    ``provenance = "modelled"``, ``site_count`` and, for generated layouts, ``placement``
    figures.

    Raises
    ------
    InvalidInputError
        Bad spec values, unreadable site files, or no site at all.
    """
    params = radio_params(network, spec)
    TunnelRules.from_spec(network, spec, ctx.roads)  # a bad tunnel_coverage stops the build
    source = spec.get("sites")
    placement: dict[str, Any] | None = None
    if source == "generated":
        sites, placement = _generated_sites(network, spec, ctx, params)
    elif isinstance(source, str) and source:
        sites = _csv_sites(network, spec, ctx, source)
    else:
        raise InvalidInputError(
            f"{_where(network, 'sites')} must be 'generated' or a CSV path, not {source!r}",
            field="layer.sites",
        )
    if "environment" in spec:
        env = str(spec["environment"])
        if env not in ENVIRONMENTS:
            raise InvalidInputError(
                f"{_where(network, 'environment')} must be one of {list(ENVIRONMENTS)}",
                field="layer.environment",
            )
        sites["environment"] = env
    sites.loc[sites["environment"] == "", "environment"] = "suburban"
    if sites.empty:
        raise InvalidInputError(
            f"network {network.id}: no cell site (no roads in the placement region, or the "
            "filter matched nothing)",
            field="layer.sites",
        )
    name = f"sites-{network.id}.csv"
    mcc = _mcc(network, spec)
    write_opencellid_csv(
        sites,
        ctx.built_dir / name,
        technology=network.technology,
        mcc=mcc,
        net=int(layer_number(network, spec, "mnc", 0)),
    )
    built: dict[str, Any] = dict(spec)
    built.update(
        sites=name,
        site_source=source,
        modelled=True,
        provenance="modelled",
        model=params.model,
        site_count=len(sites),
        environments={e: int((sites["environment"] == e).sum()) for e in ENVIRONMENTS},
    )
    if placement is not None:
        built["placement"] = placement
    log.info("network %s: %d sites written to %s", network.id, len(sites), name)
    return built


def load_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> TerrestrialLayer:
    """Load the layer from a built map (``spec`` as :func:`prepare_layer` returned it).

    Raises
    ------
    InvalidInputError
        If the site file is missing or malformed.
    """
    name = spec.get("sites")
    if not isinstance(name, str) or not name or name == "generated":
        raise InvalidInputError(
            f"{_where(network, 'sites')}: built spec names no site file", field="layer.sites"
        )
    sites = read_site_table(ctx.built_dir / name)
    tunnels = TunnelRules.from_spec(network, spec, ctx.roads)
    return TerrestrialLayer(
        network.id, sites, radio_params(network, spec), ctx.terrain, tunnels=tunnels
    )
