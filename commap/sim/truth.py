"""Truth radio field: what the vehicle really meets, as opposed to what the planner's map says.

A :class:`TruthField` is built from the planner's own quality matrix on a corridor plus seeded
map errors, at the drive simulator's 100 ms resolution (:func:`make_truth`):

* **Shadowing** (terrestrial): spatially correlated log-normal shadowing along the route,
  Gudmundson's exponential model ``E[s(x) s(x + d)] = sigma**2 exp(-d / d_corr)``, generated
  as a first-order autoregressive process on a fine distance grid and interpolated to the
  steps. Networks of one operator share ``operator_correlation`` of their shadowing (co-sited
  antennas see the same obstacles). The same dB offset is added to RSRP and SINR (exact for a
  noise-limited link; an approximation where interference dominates).
* **Bias**: one offset per network and seed, ``Normal(-over_report_db, bias_sigma_db)``:
  the planner's map over-reports coverage on average by ``over_report_db``.
* **Missing sites** (map over-reporting): stretches of ``missing_site_m`` where a terrestrial
  network has no signal at all although the map shows coverage (a site the map lists is off air
  or does not exist). Modelled layers have no per-site truth to remove, so a stretch of the
  route as long as a cell is zeroed instead. Poisson, ``missing_site_per_km`` per network.
* **Phantom sites**: stretches where a terrestrial network is better than the map says (a site
  the map does not know): SINR and RSRP are raised to a parabolic profile peaking at
  ``phantom_peak_sinr_db`` / ``phantom_peak_rsrp_dbm`` in the middle of the stretch.
* **Satellites**: the map's geometry (elevation, tunnels, terrain horizon) is kept and a small
  SINR spread is added. The map blocks the sky on a whole segment under a bridge; the truth only
  on the bridge's footprint, ``sat_bridge_m`` centred on the segment (the crossing lies within
  10 m of it). Unmapped obstructions (trees, gantries, trucks) block short stretches, and after
  every blockage the terminal needs ``sat_reacquire_s`` to lock again. The defaults follow the
  Starlink-on-the-Autobahn run (:func:`commap.sim.replay.starlink_bridges`): at 100 km/h only
  6 % of the bridge passages show a whole second without throughput, although the downlink
  dips in 28 % of the bridge seconds (6 % elsewhere): a blockage of well under a second, with
  no noticeable re-lock time.
* **Fast fading**: a per-step residual (i.i.d. Normal in dB) on top of the slow field, seen by
  the UE's physical-layer samples only.

Where the map has no signal (a tunnel, a dead zone) the truth has none either, except inside a
phantom stretch. Every random draw comes from its own child of ``SeedSequence(seed)``, so a seed
gives the same field whatever the other options, and changing one option leaves the other draws
alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy.signal import lfilter

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor
from commap.networks import Network
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    QIN_SINR_DB,
    Provenance,
    QualityMatrix,
)
from commap.sim.a3 import DEFAULT_STEP_S

__all__ = ["TruthConfig", "TruthField", "correlated_shadowing_db", "make_truth", "step_grid"]

log = logging.getLogger(__name__)


_ORACLE_QUANTILE = 0.25  # the oracle sees each segment at its 25th-percentile step
_STREAMS = 7  # independent random streams (see make_truth)


@dataclass(frozen=True, kw_only=True)
class TruthConfig:
    """Map-error model of the truth field (every field documented in the module docstring).

    Examples
    --------
    >>> TruthConfig().sigma_db
    6.0
    >>> TruthConfig(sigma_db=-1.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: truth sigma_db must be a finite number >= 0, got -1.0
    """

    sigma_db: float = 6.0  # terrestrial shadowing sigma (map error)
    decorrelation_m: float = 50.0  # Gudmundson decorrelation distance (38.901: 37-120 m)
    operator_correlation: float = 0.5  # shadowing shared by the networks of one operator
    over_report_db: float = 1.0  # mean map optimism: truth = map - over_report_db on average
    bias_sigma_db: float = 2.0  # spread of the per-network bias
    missing_site_per_km: float = 0.02  # dead stretches per km per terrestrial network
    missing_site_m: tuple[float, float] = (500.0, 2000.0)
    phantom_site_per_km: float = 0.02  # unmapped good stretches per km per terrestrial network
    phantom_site_m: tuple[float, float] = (500.0, 2000.0)
    phantom_peak_sinr_db: float = 10.0
    phantom_peak_rsrp_dbm: float = -85.0
    phantom_edge_drop_db: float = 15.0  # the phantom profile is this much lower at its edges
    sat_sigma_db: float = 1.0  # SINR spread of satellite links
    sat_obstruction_per_km: float = 0.2  # unmapped sky obstructions per km
    sat_obstruction_m: tuple[float, float] = (5.0, 40.0)
    sat_bridge_m: float = 20.0  # sky blocked under a bridge (deck width plus margins)
    sat_reacquire_s: float = 0.0  # terminal re-lock time after a blockage
    fast_fading_db: float = 2.0  # per-step residual fading, terrestrial
    sat_fast_fading_db: float = 0.5  # per-step residual fading, satellite

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if f.name.endswith("_m") and isinstance(value, tuple):
                if len(value) != 2 or not 0 < value[0] <= value[1] or not math.isfinite(value[1]):
                    raise InvalidInputError(
                        f"truth {f.name} must be a (min, max) pair of lengths > 0", field=f.name
                    )
                continue
            if f.name in ("phantom_peak_sinr_db", "phantom_peak_rsrp_dbm", "over_report_db"):
                if not all(math.isfinite(v) for v in values):
                    raise InvalidInputError(f"truth {f.name} must be finite", field=f.name)
                continue
            if not all(math.isfinite(v) and v >= 0 for v in values):
                raise InvalidInputError(
                    f"truth {f.name} must be a finite number >= 0, got {value!r}", field=f.name
                )
        if self.decorrelation_m <= 0:
            raise InvalidInputError("truth decorrelation_m must be > 0", field="decorrelation_m")
        if self.operator_correlation > 1:
            raise InvalidInputError(
                "truth operator_correlation must lie in [0, 1]", field="operator_correlation"
            )


@dataclass(frozen=True)
class TruthField:
    """The truth at every simulator step of one corridor (arrays ``(T,)`` or ``(T, N)``).

    Attributes
    ----------
    network_ids : column order (the map catalogue's).
    step_s : step length (s).
    t_s : seconds after departure at each step start.
    distance_m : distance along the route at each step start.
    segment : corridor segment of each step.
    rsrp_dbm, sinr_db : slow truth (everything but fast fading); NO_SIGNAL where dead.
    elevation_deg : satellite elevation (NO_SATELLITE where blocked), NaN for terrestrial.
    fading_db : per-step fast fading added to the UE's samples.
    seed : the seed that made the field.
    """

    network_ids: tuple[str, ...]
    step_s: float
    t_s: FloatArray
    distance_m: FloatArray
    segment: IntArray
    rsrp_dbm: FloatArray
    sinr_db: FloatArray
    elevation_deg: FloatArray
    fading_db: FloatArray
    seed: int | tuple[int, ...]

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def dead(self) -> BoolArray:
        """``(T, N)``: no signal at all."""
        return self.sinr_db <= NO_SIGNAL_SINR_DB

    @property
    def usable(self) -> BoolArray:
        """``(T, N)``: the slow truth is above the in-sync threshold Qin."""
        return self.sinr_db >= QIN_SINR_DB

    @property
    def sample_sinr_db(self) -> FloatArray:
        """``(T, N)``: what the UE's physical layer samples (slow truth + fast fading)."""
        return np.where(self.dead, NO_SIGNAL_SINR_DB, self.sinr_db + self.fading_db)

    @property
    def sample_rsrp_dbm(self) -> FloatArray:
        """``(T, N)``: RSRP samples (slow truth + fast fading; NaN for satellites)."""
        return np.where(
            self.dead & np.isfinite(self.rsrp_dbm),
            NO_SIGNAL_RSRP_DBM,
            self.rsrp_dbm + self.fading_db,
        )

    def step_matrix(self) -> QualityMatrix:
        """The slow truth as a quality matrix with one row per 100 ms step (MEASURED, conf. 1)."""
        shape = self.sinr_db.shape
        return QualityMatrix(
            network_ids=self.network_ids,
            rsrp_dbm=self.rsrp_dbm.copy(),
            sinr_db=self.sinr_db.copy(),
            elevation_deg=self.elevation_deg.copy(),
            confidence=np.ones(shape),
            provenance=np.full(shape, Provenance.MEASURED, dtype=np.int8),
            sample_count=np.ones(shape, dtype=np.int32),
        )

    def segment_matrix(self, n_segments: int) -> QualityMatrix:
        """The truth per corridor segment, as the oracle plans with it.

        Each segment takes the 25th percentile of its steps' slow truth (a deep fade inside a
        segment matters more than its mean), confidence 1, provenance MEASURED. A segment
        shorter than one step takes the step that starts in it last before it (or the first).

        Examples
        --------
        >>> f = TruthField(("a",), 0.1, np.arange(4) * 0.1, np.arange(4) * 2.0,
        ...                np.array([0, 0, 0, 1]), np.full((4, 1), -90.0),
        ...                np.array([[1.0], [2.0], [3.0], [4.0]]), np.full((4, 1), np.nan),
        ...                np.zeros((4, 1)), 0)
        >>> f.segment_matrix(2).sinr_db.ravel().tolist()
        [1.5, 4.0]
        """
        seg = self.segment
        counts = np.bincount(seg, minlength=n_segments)[:n_segments]
        # steps that represent an empty segment: the last step before it
        fallback = np.clip(
            np.searchsorted(seg, np.arange(n_segments), side="left") - 1, 0, max(len(self) - 1, 0)
        )
        out = {}
        for name in ("rsrp_dbm", "sinr_db", "elevation_deg"):
            values = getattr(self, name)
            per = np.empty((n_segments, values.shape[1]))
            for j in range(values.shape[1]):
                per[:, j] = _segment_quantile(values[:, j], seg, counts, fallback)
            out[name] = per
        shape = out["sinr_db"].shape
        return QualityMatrix(
            network_ids=self.network_ids,
            rsrp_dbm=out["rsrp_dbm"],
            sinr_db=out["sinr_db"],
            elevation_deg=out["elevation_deg"],
            confidence=np.ones(shape),
            provenance=np.full(shape, Provenance.MEASURED, dtype=np.int8),
            sample_count=np.broadcast_to(counts[:, None], shape).astype(np.int32),
        )


def _segment_quantile(
    values: FloatArray, seg: IntArray, counts: IntArray, fallback: IntArray
) -> FloatArray:
    """Per-segment 25th percentile (linear between order statistics), NaN-aware."""
    n_seg = counts.shape[0]
    out = np.empty(n_seg)
    if np.isnan(values).all():
        out.fill(np.nan)
        return out
    order = np.lexsort((values, seg))
    sorted_values = values[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = _ORACLE_QUANTILE * np.maximum(counts - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
    frac = pos - lo
    has = counts > 0
    idx_lo = np.where(has, starts + lo, 0)
    idx_hi = np.where(has, starts + hi, 0)
    if sorted_values.size:
        q = sorted_values[idx_lo] * (1 - frac) + sorted_values[idx_hi] * frac
        out[:] = np.where(has, q, values[fallback])
    return out


def step_grid(
    corridor: Corridor, step_s: float = DEFAULT_STEP_S
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Times, distances and segments of the simulator steps along a corridor.

    Step ``k`` starts ``k * step_s`` after departure; the position follows the corridor's
    segment times (the planned speeds). A zero-duration corridor has one step.

    Examples
    --------
    >>> from commap.geo.corridor import cut, route_from_polyline
    >>> c = cut(route_from_polyline([1.5, 1.5025], [42.5, 42.5], speed_mps=20.0),
    ...         departure_s=0.0)
    >>> t, d, seg = step_grid(c)
    >>> len(t), float(d[10]), int(seg[30])
    (103, 20.0, 1)
    """
    if not step_s > 0:
        raise InvalidInputError(f"step_s must be > 0, got {step_s}", field="step_s")
    if len(corridor) == 0:
        raise InvalidInputError("the corridor has no segments", field="corridor")
    edges_t = np.concatenate((corridor.eta_s, [corridor.eta_s[-1] + corridor.duration_s[-1]]))
    edges_d = np.concatenate(
        (corridor.distance_m, [corridor.distance_m[-1] + corridor.length_m[-1]])
    )
    n_steps = max(1, math.ceil(corridor.total_duration_s / step_s - 1e-9))
    t_s = np.arange(n_steps) * step_s
    distance_m = np.interp(t_s, edges_t, edges_d)
    segment = np.clip(
        np.searchsorted(corridor.distance_m, distance_m, side="right") - 1, 0, len(corridor) - 1
    )
    return (
        np.asarray(t_s, dtype=np.float64),
        np.asarray(distance_m, dtype=np.float64),
        np.asarray(segment, dtype=np.int64),
    )


def correlated_shadowing_db(
    distance_m: FloatArray,
    *,
    sigma_db: float,
    decorrelation_m: float,
    rng: np.random.Generator,
    count: int = 1,
) -> FloatArray:
    """``count`` independent Gudmundson shadowing processes at the given distances.

    An AR(1) process on a grid of ``min(1 m, d_corr / 20)`` (correlation ``exp(-g / d_corr)``
    between neighbours, stationary start) interpolated linearly to ``distance_m``.

    Returns
    -------
    (len(distance_m), count) array in dB.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> correlated_shadowing_db(np.zeros(0), sigma_db=6.0, decorrelation_m=50.0, rng=rng).shape
    (0, 1)
    >>> x = correlated_shadowing_db(np.arange(0, 200_000.0, 10.0), sigma_db=6.0,
    ...                             decorrelation_m=50.0, rng=rng)
    >>> round(float(x.std()), 0)
    6.0
    """
    d = np.asarray(distance_m, dtype=np.float64)
    if d.size == 0 or sigma_db == 0:
        return np.zeros((d.size, count))
    grid_m = min(1.0, decorrelation_m / 20.0)
    lo, hi = float(d.min()), float(d.max())
    n_grid = max(2, math.ceil((hi - lo) / grid_m) + 2)
    rho = math.exp(-grid_m / decorrelation_m)
    noise = rng.standard_normal((n_grid, count))
    # x_k = rho x_{k-1} + sqrt(1 - rho^2) e_k, started at x_0 = e_0 (stationary)
    zi = (rho * noise[0])[None, :]
    body, _ = lfilter([math.sqrt(1.0 - rho**2)], [1.0, -rho], noise[1:], axis=0, zi=zi)
    process = np.vstack([noise[:1], body])
    grid = lo + grid_m * np.arange(n_grid)
    out = np.empty((d.size, count))
    for j in range(count):
        out[:, j] = np.interp(d, grid, process[:, j])
    return sigma_db * out


def _stretches(
    rng: np.random.Generator, length_m: float, per_km: float, span_m: tuple[float, float]
) -> list[tuple[float, float]]:
    """Poisson stretches ``(start_m, end_m)`` along a route of ``length_m``."""
    n = int(rng.poisson(per_km * length_m / 1000.0))
    starts = rng.uniform(0.0, length_m, n)
    lengths = rng.uniform(span_m[0], span_m[1], n)
    return [(float(s), float(s + L)) for s, L in zip(starts, lengths, strict=True)]


def _interp_columns(
    distance_m: FloatArray, centre_m: FloatArray, values: FloatArray, dead: BoolArray
) -> FloatArray:
    """Linear interpolation between the centres of the segments with signal, per column.

    Dead segments (no signal on the map) are left out so that a blockage stays a step, not a
    ramp; the dead mask is applied afterwards by segment.
    """
    out = np.full((distance_m.size, values.shape[1]), np.nan)
    for j in range(values.shape[1]):
        keep = ~dead[:, j] & np.isfinite(values[:, j])
        if keep.any():
            out[:, j] = np.interp(distance_m, centre_m[keep], values[keep, j])
    return out


def make_truth(
    corridor: Corridor,
    matrix: QualityMatrix,
    networks: Sequence[Network],
    *,
    config: TruthConfig | None = None,
    seed: int | Sequence[int] = 0,
    step_s: float = DEFAULT_STEP_S,
) -> TruthField:
    """Seeded truth field on ``corridor`` from the planner's ``matrix`` (see module docstring).

    Parameters
    ----------
    corridor : Corridor
        The route cut into segments (planned speeds give the step positions).
    matrix : QualityMatrix
        The planner's map on that corridor (one row per segment).
    networks : sequence of Network
        One per matrix column (kind and operator matter).
    config : TruthConfig, optional
        Map-error model (default :class:`TruthConfig`).
    seed : int or sequence of int
        Seed of every random draw (e.g. ``(seed, route_index)``).
    step_s : float
        Step length (100 ms).

    Raises
    ------
    InvalidInputError
        Matrix and corridor or networks disagree in shape.

    Examples
    --------
    >>> from commap.geo.corridor import cut, route_from_polyline
    >>> from commap.networks import Network, NetworkKind
    >>> from commap.radio.quality import Quality
    >>> c = cut(route_from_polyline([1.5, 1.51], [42.5, 42.5]), departure_s=0.0)
    >>> net = Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a", technology="lte",
    ...               latency_ms=30)
    >>> dead = QualityMatrix.from_columns(("a",), [Quality.empty(len(c))])
    >>> bool(make_truth(c, dead, [net], seed=1).dead.all())  # no signal stays no signal
    True
    """
    cfg = config or TruthConfig()
    _check_inputs(corridor, matrix, networks)
    seed_seq = np.random.SeedSequence(seed if isinstance(seed, int) else list(seed))
    rngs = [np.random.default_rng(s) for s in seed_seq.spawn(_STREAMS)]
    t_s, distance_m, segment = step_grid(corridor, step_s)
    centre_m = corridor.distance_m + corridor.length_m / 2.0
    map_dead = (matrix.sinr_db <= NO_SIGNAL_SINR_DB) | ~np.isfinite(matrix.sinr_db)
    dead = map_dead[segment]
    rsrp = _interp_columns(distance_m, centre_m, matrix.rsrp_dbm, map_dead)
    sinr = _interp_columns(distance_m, centre_m, matrix.sinr_db, map_dead)
    elevation = _interp_columns(distance_m, centre_m, matrix.elevation_deg, map_dead)
    is_sat = np.array([n.is_satellite for n in networks])
    offset = _terrestrial_offsets(distance_m, networks, cfg, rngs[0], rngs[1])
    offset[:, is_sat] = correlated_shadowing_db(
        distance_m,
        sigma_db=cfg.sat_sigma_db,
        decorrelation_m=cfg.decorrelation_m,
        rng=rngs[2],
        count=int(is_sat.sum()),
    )
    rsrp = rsrp + offset
    sinr = sinr + offset
    length_m = corridor.total_length_m
    total_m = float(distance_m[-1]) if distance_m.size else 0.0
    bridge = _bridge_only(corridor, map_dead)
    for j, net in enumerate(networks):
        if net.is_satellite:
            map_blocked = dead[:, j] & ~bridge[segment, j]
            near = np.abs(distance_m - centre_m[segment]) <= cfg.sat_bridge_m / 2.0
            map_blocked |= bridge[segment, j] & near
            blocked = _sat_blocked(distance_m, t_s, map_blocked, cfg, rngs[3], length_m)
            dead[:, j] = blocked
            continue
        for a, b in _stretches(rngs[4], length_m, cfg.missing_site_per_km, cfg.missing_site_m):
            dead[(distance_m >= a) & (distance_m < b), j] = True
        for a, b in _stretches(rngs[5], length_m, cfg.phantom_site_per_km, cfg.phantom_site_m):
            _phantom(distance_m, a, b, j, sinr, rsrp, dead, cfg)
    sinr = np.where(dead, NO_SIGNAL_SINR_DB, sinr)
    rsrp = np.where(is_sat[None, :], np.nan, np.where(dead, NO_SIGNAL_RSRP_DBM, rsrp))
    elevation = np.where(is_sat[None, :] & dead, NO_SATELLITE_ELEVATION_DEG, elevation)
    fading_sigma = np.where(is_sat, cfg.sat_fast_fading_db, cfg.fast_fading_db)
    fading = rngs[6].standard_normal(sinr.shape) * fading_sigma[None, :]
    log.debug("truth field: %d steps, %.0f m, seed %s", len(t_s), total_m, seed)
    return TruthField(
        network_ids=matrix.network_ids,
        step_s=step_s,
        t_s=t_s,
        distance_m=distance_m,
        segment=segment,
        rsrp_dbm=rsrp,
        sinr_db=sinr,
        elevation_deg=elevation,
        fading_db=fading,
        seed=seed if isinstance(seed, int) else tuple(seed),
    )


def _check_inputs(corridor: Corridor, matrix: QualityMatrix, networks: Sequence[Network]) -> None:
    rows, cols = matrix.shape
    if rows != len(corridor):
        raise InvalidInputError(
            f"quality matrix has {rows} rows but the corridor has {len(corridor)} segments",
            field="matrix",
        )
    if len(networks) != cols or tuple(n.id for n in networks) != matrix.network_ids:
        raise InvalidInputError(
            "networks must name the quality-matrix columns in order", field="networks"
        )


def _terrestrial_offsets(
    distance_m: FloatArray,
    networks: Sequence[Network],
    cfg: TruthConfig,
    rng_shadow: np.random.Generator,
    rng_bias: np.random.Generator,
) -> FloatArray:
    """Shadowing (own + operator-shared) plus per-network bias, ``(T, N)`` dB."""
    n = len(networks)
    operators = sorted({net.operator for net in networks})
    own = correlated_shadowing_db(
        distance_m, sigma_db=1.0, decorrelation_m=cfg.decorrelation_m, rng=rng_shadow, count=n
    )
    shared = correlated_shadowing_db(
        distance_m,
        sigma_db=1.0,
        decorrelation_m=cfg.decorrelation_m,
        rng=rng_shadow,
        count=len(operators),
    )
    rho = cfg.operator_correlation
    bias = rng_bias.normal(-cfg.over_report_db, cfg.bias_sigma_db, n)
    out = np.empty((distance_m.size, n))
    for j, net in enumerate(networks):
        common = shared[:, operators.index(net.operator)]
        unit = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * own[:, j]
        out[:, j] = cfg.sigma_db * unit + bias[j]
    return out


def _phantom(
    distance_m: FloatArray,
    a: float,
    b: float,
    j: int,
    sinr: FloatArray,
    rsrp: FloatArray,
    dead: BoolArray,
    cfg: TruthConfig,
) -> None:
    inside = (distance_m >= a) & (distance_m < b)
    if not inside.any():
        return
    rel = (distance_m[inside] - (a + b) / 2.0) / ((b - a) / 2.0)
    drop = cfg.phantom_edge_drop_db * rel**2
    sinr_here = np.where(dead[inside, j], -np.inf, sinr[inside, j])
    rsrp_here = np.where(dead[inside, j], -np.inf, rsrp[inside, j])
    sinr[inside, j] = np.maximum(sinr_here, cfg.phantom_peak_sinr_db - drop)
    rsrp[inside, j] = np.maximum(rsrp_here, cfg.phantom_peak_rsrp_dbm - drop)
    dead[inside, j] = False


def _bridge_only(corridor: Corridor, map_dead: BoolArray) -> BoolArray:
    """``(S, N)``: dead on the map only because of a bridge (alive on both neighbours)."""
    flagged = np.asarray(corridor.under_bridge, dtype=bool) & ~np.asarray(
        corridor.in_tunnel, dtype=bool
    )
    alive = ~map_dead
    before = np.vstack([alive[:1], alive[:-1]])
    after = np.vstack([alive[1:], alive[-1:]])
    return flagged[:, None] & map_dead & before & after


def _sat_blocked(
    distance_m: FloatArray,
    t_s: FloatArray,
    map_dead: BoolArray,
    cfg: TruthConfig,
    rng: np.random.Generator,
    length_m: float,
) -> BoolArray:
    """Map blockage + unmapped obstructions, each extended by the re-lock time."""
    blocked = map_dead.copy()
    for a, b in _stretches(rng, length_m, cfg.sat_obstruction_per_km, cfg.sat_obstruction_m):
        blocked |= (distance_m >= a) & (distance_m < b)
    if cfg.sat_reacquire_s <= 0 or not blocked.any() or blocked.all():
        return blocked
    # time since the last blocked step; the terminal is still re-locking within sat_reacquire_s
    idx = np.arange(blocked.size)
    last = np.maximum.accumulate(np.where(blocked, idx, -1))
    since_s = np.where(last >= 0, t_s - t_s[np.maximum(last, 0)], np.inf)
    return blocked | (since_s <= cfg.sat_reacquire_s + 1e-9)
