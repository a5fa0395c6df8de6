"""Standard radio path-loss models and terrain diffraction, vectorised over arrays of links.

Models (all return the basic transmission loss in dB, positive):

* :func:`free_space_db`: Friis free-space loss (ITU-R P.525-4, eq. 4).
* :func:`cost231_hata_db`: COST-231 Hata with the Okumura-Hata suburban and open-area corrections.
* :func:`rma_db` / :func:`uma_db`: 3GPP TR 38.901 (V17.0.0) Table 7.4.1-1 rural and urban macro,
  LOS and NLOS, with the LOS probabilities of Table 7.4.2-1 (:func:`rma_los_probability`,
  :func:`uma_los_probability`) and :func:`mix_los_nlos_db` to combine them.
* :func:`knife_edge_loss_db` and :func:`terrain_diffraction_db`: ITU-R P.526-15 single knife edge
  J(v) applied to a terrain profile with the Deygout construction (up to three edges) on an
  effective earth of k = 4/3.
* :func:`model_loss_db` dispatches by model name and site environment, :func:`link_loss_db`
  adds the terrain diffraction along each link's profile.

Units: distances and heights in metres, frequencies in MHz, losses in dB. Every function accepts
NumPy arrays (broadcast together) and scalars. Out-of-range inputs are never rejected: each model
documents how it extrapolates (log-distance laws continue; heights are clipped to the validity
range where a formula would misbehave; a floor at the free-space loss applies to every model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.geo.geodesy import EARTH_RADIUS_M

if TYPE_CHECKING:
    from commap.geo.terrain import Terrain

__all__ = [
    "ENVIRONMENTS",
    "K_FACTOR",
    "MODELS",
    "SPEED_OF_LIGHT_MPS",
    "LinkLoss",
    "cost231_hata_db",
    "earth_bulge_m",
    "free_space_db",
    "fresnel_v",
    "ground_distance_m",
    "knife_edge_loss_db",
    "link_loss_db",
    "mix_los_nlos_db",
    "model_loss_db",
    "rma_db",
    "rma_los_probability",
    "terrain_diffraction_db",
    "uma_db",
    "uma_los_probability",
]

log = logging.getLogger(__name__)


SPEED_OF_LIGHT_MPS: Final = 299_792_458.0
# Median effective earth-radius factor (ITU-R P.834, P.526 §1): bends the ray over long paths.
K_FACTOR: Final = 4.0 / 3.0
ENVIRONMENTS: Final = ("urban", "suburban", "rural")
MODELS: Final = ("auto", "cost231", "rma", "uma", "free_space")
# 38.901 formulas are valid from 10 m; closer links are evaluated at 10 m (all models) so that
# logarithms stay finite for a point on top of a site.
MIN_DISTANCE_M: Final = 10.0
# J(v) is ~0 for v <= -0.78 (ITU-R P.526-15 §4.1, eq. 31 note).
_J_THRESHOLD: Final = -0.78
# Work on at most this many profile samples at once (memory bound for the (links, samples) arrays).
_MAX_PROFILE_ELEMENTS: Final = 250_000


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def free_space_db(distance_m: ArrayLike, frequency_mhz: ArrayLike) -> FloatArray:
    """Free-space basic transmission loss (Friis).

    ``L = 20 log10(4 pi d f / c)``, i.e. ITU-R P.525-4 eq. (4),
    ``L = 32.4 + 20 log10(f_MHz) + 20 log10(d_km)`` (constant 32.45 unrounded). Distances below
    10 m are evaluated at 10 m.

    Parameters
    ----------
    distance_m : array_like
        Path length (m).
    frequency_mhz : array_like
        Carrier frequency (MHz).

    Returns
    -------
    ndarray
        Loss in dB.

    Examples
    --------
    >>> round(float(free_space_db(1000.0, 1000.0)), 2)
    92.45
    >>> free_space_db([], 800.0).shape
    (0,)
    """
    d = np.maximum(_f(distance_m), MIN_DISTANCE_M)
    f_hz = _f(frequency_mhz) * 1e6
    return np.asarray(
        20.0 * np.log10(4.0 * np.pi * d * f_hz / SPEED_OF_LIGHT_MPS), dtype=np.float64
    )


def cost231_hata_db(
    distance_m: ArrayLike,
    frequency_mhz: ArrayLike,
    *,
    base_height_m: ArrayLike,
    mobile_height_m: ArrayLike = 1.5,
    environment: ArrayLike = "urban",
) -> FloatArray:
    """COST-231 Hata median path loss with suburban and open-area (rural) corrections.

    Urban (COST 231 Final Report, E. Damosso (ed.), 1999, ch. 4; medium-sized city and
    suburban centres, ``Cm = 0 dB``)::

        L_u = 46.3 + 33.9 log f - 13.82 log hb - a(hm) + (44.9 - 6.55 log hb) log d
        a(hm) = (1.1 log f - 0.7) hm - (1.56 log f - 0.8)

    with ``f`` in MHz, ``d`` in km, heights in m. Suburban and open (rural) areas take the
    Okumura-Hata corrections (M. Hata, IEEE Trans. Veh. Technol. VT-29(3), 1980)::

        L_su = L_u - 2 (log(f / 28))^2 - 5.4
        L_o  = L_u - 4.78 (log f)^2 + 18.33 log f - 40.94

    Validity: f 1500-2000 MHz, hb 30-200 m, hm 1-10 m, d 1-20 km. Outside it the formula is
    extrapolated knowingly: at 800 MHz it stays within 1 dB of Okumura-Hata (150-1500 MHz);
    below 1 km and beyond 20 km the log-distance law continues; ``hb`` is clipped to
    [1, 200] m and ``hm`` to [1, 10] m; the result never drops below the free-space loss.

    Parameters
    ----------
    distance_m : array_like
        Ground distance (m); below 10 m evaluated at 10 m.
    frequency_mhz : array_like
        Carrier frequency (MHz).
    base_height_m : array_like
        Base-station antenna height above ground (m).
    mobile_height_m : array_like, default 1.5
        Mobile antenna height above ground (m).
    environment : array_like of str, default "urban"
        ``"urban"``, ``"suburban"`` or ``"rural"`` per link.

    Returns
    -------
    ndarray
        Loss in dB.

    Examples
    --------
    >>> round(float(cost231_hata_db(1000.0, 1800.0, base_height_m=30.0)), 2)
    136.2
    >>> cost231_hata_db([], 1800.0, base_height_m=30.0).shape
    (0,)
    """
    d_m = np.maximum(_f(distance_m), MIN_DISTANCE_M)
    f = _f(frequency_mhz)
    hb = np.clip(_f(base_height_m), 1.0, 200.0)
    hm = np.clip(_f(mobile_height_m), 1.0, 10.0)
    env = np.asarray(environment)
    _check_environments(env)
    log_f = np.log10(f)
    a_hm = (1.1 * log_f - 0.7) * hm - (1.56 * log_f - 0.8)
    urban = (
        46.3
        + 33.9 * log_f
        - 13.82 * np.log10(hb)
        - a_hm
        + (44.9 - 6.55 * np.log10(hb)) * np.log10(d_m / 1000.0)
    )
    suburban = urban - 2.0 * np.log10(f / 28.0) ** 2 - 5.4
    rural = urban - 4.78 * log_f**2 + 18.33 * log_f - 40.94
    loss = np.where(env == "rural", rural, np.where(env == "suburban", suburban, urban))
    return np.asarray(np.maximum(loss, free_space_db(d_m, f)), dtype=np.float64)


def _check_environments(env: NDArray[np.generic]) -> None:
    if env.size and not np.isin(env, ENVIRONMENTS).all():
        bad = sorted({str(e) for e in np.unique(env) if str(e) not in ENVIRONMENTS})
        raise InvalidInputError(
            f"unknown environment(s) {bad}; expected one of {list(ENVIRONMENTS)}",
            field="environment",
        )


def _d3d(d2d: FloatArray, hb: FloatArray, hm: FloatArray) -> FloatArray:
    return np.asarray(np.sqrt(d2d**2 + (hb - hm) ** 2), dtype=np.float64)


def rma_db(
    distance_m: ArrayLike,
    frequency_mhz: ArrayLike,
    *,
    los: ArrayLike,
    base_height_m: ArrayLike = 35.0,
    mobile_height_m: ArrayLike = 1.5,
    building_height_m: float = 5.0,
    street_width_m: float = 20.0,
) -> FloatArray:
    """3GPP TR 38.901 rural macro (RMa) path loss, Table 7.4.1-1.

    LOS, with ``fc`` in GHz, ``d3D`` in m, ``h`` the average building height::

        PL1 = 20 log10(40 pi d3D fc / 3) + min(0.03 h^1.72, 10) log10(d3D)
              - min(0.044 h^1.72, 14.77) + 0.002 log10(h) d3D         (10 m <= d2D <= dBP)
        PL2 = PL1(dBP) + 40 log10(d3D / dBP)                          (dBP <= d2D <= 10 km)
        dBP = 2 pi hBS hUT fc / c                                      (fc in Hz)

    NLOS (10 m <= d2D <= 5 km), ``W`` the street width::

        PL'_NLOS = 161.04 - 7.1 log10(W) + 7.5 log10(h)
                   - (24.37 - 3.7 (h / hBS)^2) log10(hBS)
                   + (43.42 - 3.1 log10(hBS)) (log10(d3D) - 3)
                   + 20 log10(fc) - (3.2 (log10(11.75 hUT))^2 - 4.97)
        PL_NLOS  = max(PL_LOS, PL'_NLOS)

    Validity: fc 0.5-30 GHz, hBS 10-150 m, hUT 1-10 m. Heights are clipped to those ranges;
    beyond 10 km (LOS) / 5 km (NLOS) the formulas are extrapolated.

    Parameters
    ----------
    distance_m : array_like
        Ground (2-D) distance (m); below 10 m evaluated at 10 m.
    frequency_mhz : array_like
        Carrier frequency (MHz).
    los : array_like of bool
        True for the LOS formula, False for NLOS.
    base_height_m, mobile_height_m : array_like
        Antenna heights above ground (m); defaults are the 38.901 reference values.
    building_height_m, street_width_m : float
        ``h`` and ``W`` (defaults 5 m and 20 m, Table 7.4.1-1 note).

    Returns
    -------
    ndarray
        Loss in dB.

    Examples
    --------
    >>> round(float(rma_db(1000.0, 800.0, los=True, base_height_m=25.0)), 1)
    96.1
    >>> rma_db([], 800.0, los=[]).shape
    (0,)
    """
    d2d = np.maximum(_f(distance_m), MIN_DISTANCE_M)
    fc = _f(frequency_mhz) / 1000.0
    hb = np.clip(_f(base_height_m), 10.0, 150.0)
    hm = np.clip(_f(mobile_height_m), 1.0, 10.0)
    h = float(building_height_m)
    w = float(street_width_m)
    d3d = _d3d(d2d, hb, hm)
    d_bp = 2.0 * np.pi * hb * hm * fc * 1e9 / SPEED_OF_LIGHT_MPS

    def pl1(d: FloatArray) -> FloatArray:
        return np.asarray(
            20.0 * np.log10(40.0 * np.pi * d * fc / 3.0)
            + min(0.03 * h**1.72, 10.0) * np.log10(d)
            - min(0.044 * h**1.72, 14.77)
            + 0.002 * np.log10(h) * d,
            dtype=np.float64,
        )

    pl_los = np.where(d2d <= d_bp, pl1(d3d), pl1(d_bp) + 40.0 * np.log10(d3d / d_bp))
    pl_nlos_prime = (
        161.04
        - 7.1 * np.log10(w)
        + 7.5 * np.log10(h)
        - (24.37 - 3.7 * (h / hb) ** 2) * np.log10(hb)
        + (43.42 - 3.1 * np.log10(hb)) * (np.log10(d3d) - 3.0)
        + 20.0 * np.log10(fc)
        - (3.2 * np.log10(11.75 * hm) ** 2 - 4.97)
    )
    pl_nlos = np.maximum(pl_los, pl_nlos_prime)
    return np.asarray(np.where(np.asarray(los, dtype=bool), pl_los, pl_nlos), dtype=np.float64)


def uma_db(
    distance_m: ArrayLike,
    frequency_mhz: ArrayLike,
    *,
    los: ArrayLike,
    base_height_m: ArrayLike = 25.0,
    mobile_height_m: ArrayLike = 1.5,
) -> FloatArray:
    """3GPP TR 38.901 urban macro (UMa) path loss, Table 7.4.1-1.

    LOS, with ``fc`` in GHz and ``d`` in m::

        PL1 = 28.0 + 22 log10(d3D) + 20 log10(fc)                      (10 m <= d2D <= d'BP)
        PL2 = 28.0 + 40 log10(d3D) + 20 log10(fc)
              - 9 log10(d'BP^2 + (hBS - hUT)^2)                         (d'BP <= d2D <= 5 km)
        d'BP = 4 h'BS h'UT fc / c,  h' = h - hE,  hE = 1 m              (fc in Hz)

    NLOS::

        PL'_NLOS = 13.54 + 39.08 log10(d3D) + 20 log10(fc) - 0.6 (hUT - 1.5)
        PL_NLOS  = max(PL_LOS, PL'_NLOS)

    Validity: fc 0.5-100 GHz, hBS 25 m, 1.5 m <= hUT <= 22.5 m, d2D <= 5 km. ``hBS`` is used as
    given (it only moves the breakpoint), ``hUT`` clipped to [1.5, 22.5] m; beyond 5 km the
    formulas are extrapolated.

    Parameters
    ----------
    distance_m : array_like
        Ground (2-D) distance (m); below 10 m evaluated at 10 m.
    frequency_mhz : array_like
        Carrier frequency (MHz).
    los : array_like of bool
        True for the LOS formula, False for NLOS.
    base_height_m, mobile_height_m : array_like
        Antenna heights above ground (m).

    Returns
    -------
    ndarray
        Loss in dB.

    Examples
    --------
    >>> round(float(uma_db(1000.0, 3500.0, los=False)), 1)
    141.7
    >>> uma_db([], 3500.0, los=[]).shape
    (0,)
    """
    d2d = np.maximum(_f(distance_m), MIN_DISTANCE_M)
    fc = _f(frequency_mhz) / 1000.0
    hb = np.maximum(_f(base_height_m), 1.5)
    hm = np.clip(_f(mobile_height_m), 1.5, 22.5)
    d3d = _d3d(d2d, hb, hm)
    h_e = 1.0
    d_bp = 4.0 * (hb - h_e) * (hm - h_e) * fc * 1e9 / SPEED_OF_LIGHT_MPS
    pl1 = 28.0 + 22.0 * np.log10(d3d) + 20.0 * np.log10(fc)
    pl2 = (
        28.0 + 40.0 * np.log10(d3d) + 20.0 * np.log10(fc) - 9.0 * np.log10(d_bp**2 + (hb - hm) ** 2)
    )
    pl_los = np.where(d2d <= d_bp, pl1, pl2)
    pl_nlos_prime = 13.54 + 39.08 * np.log10(d3d) + 20.0 * np.log10(fc) - 0.6 * (hm - 1.5)
    pl_nlos = np.maximum(pl_los, pl_nlos_prime)
    return np.asarray(np.where(np.asarray(los, dtype=bool), pl_los, pl_nlos), dtype=np.float64)


def rma_los_probability(distance_m: ArrayLike) -> FloatArray:
    """RMa LOS probability, 3GPP TR 38.901 Table 7.4.2-1.

    ``1`` for ``d2D <= 10 m``, else ``exp(-(d2D - 10) / 1000)``.

    Examples
    --------
    >>> round(float(rma_los_probability(1010.0)), 4)
    0.3679
    >>> rma_los_probability([]).shape
    (0,)
    """
    d = _f(distance_m)
    return np.asarray(np.where(d <= 10.0, 1.0, np.exp(-(d - 10.0) / 1000.0)), dtype=np.float64)


def uma_los_probability(distance_m: ArrayLike, mobile_height_m: ArrayLike = 1.5) -> FloatArray:
    """UMa LOS probability, 3GPP TR 38.901 Table 7.4.2-1.

    ``1`` for ``d2D <= 18 m``, else
    ``[18/d2D + exp(-d2D/63) (1 - 18/d2D)] (1 + C'(hUT) 5/4 (d2D/100)^3 exp(-d2D/150))`` with
    ``C'(hUT) = 0`` for ``hUT <= 13 m`` and ``((hUT - 13)/10)^1.5`` up to 23 m.

    Examples
    --------
    >>> round(float(uma_los_probability(100.0)), 4)
    0.3477
    >>> uma_los_probability([]).shape
    (0,)
    """
    d = np.maximum(_f(distance_m), 1e-9)
    hm = _f(mobile_height_m)
    c_prime = np.where(hm <= 13.0, 0.0, ((np.clip(hm, 13.0, 23.0) - 13.0) / 10.0) ** 1.5)
    base = 18.0 / d + np.exp(-d / 63.0) * (1.0 - 18.0 / d)
    p = base * (1.0 + c_prime * 1.25 * (d / 100.0) ** 3 * np.exp(-d / 150.0))
    return np.asarray(np.where(d <= 18.0, 1.0, np.clip(p, 0.0, 1.0)), dtype=np.float64)


def mix_los_nlos_db(pl_los_db: ArrayLike, pl_nlos_db: ArrayLike, p_los: ArrayLike) -> FloatArray:
    """Expected path loss in dB over the LOS/NLOS clutter state: ``p PL_LOS + (1 - p) PL_NLOS``.

    38.901 draws the clutter state at random; a coverage map needs one deterministic value. The
    expectation in dB (rather than of the linear power, which the rare LOS state would dominate)
    stays close to the median and is continuous in distance.

    Examples
    --------
    >>> float(mix_los_nlos_db(100.0, 120.0, 0.25))
    115.0
    >>> mix_los_nlos_db([], [], []).shape
    (0,)
    """
    p = np.clip(_f(p_los), 0.0, 1.0)
    return np.asarray(p * _f(pl_los_db) + (1.0 - p) * _f(pl_nlos_db), dtype=np.float64)


def model_loss_db(
    model: str,
    distance_m: ArrayLike,
    frequency_mhz: ArrayLike,
    *,
    base_height_m: ArrayLike,
    mobile_height_m: ArrayLike = 1.5,
    environment: ArrayLike = "urban",
) -> FloatArray:
    """Clutter path loss (no terrain) by model name and per-link environment.

    ``model``:

    * ``"cost231"``: :func:`cost231_hata_db` with the environment's correction.
    * ``"rma"`` / ``"uma"``: the 38.901 model, LOS and NLOS mixed with the model's LOS
      probability (:func:`mix_los_nlos_db`); the environment is ignored.
    * ``"auto"``: 38.901 by environment, UMa for urban and suburban sites and RMa for rural
      ones (38.901 covers 0.5-30 GHz, so both 800 MHz and 3.5 GHz carriers are in range).
    * ``"free_space"``: :func:`free_space_db`.

    Raises
    ------
    InvalidInputError
        On an unknown model or environment.

    Examples
    --------
    >>> model_loss_db("cost231", [1000.0], 1800.0, base_height_m=30.0).round(2).tolist()
    [136.2]
    >>> model_loss_db("auto", [], 800.0, base_height_m=25.0, environment=[]).shape
    (0,)
    """
    d = _f(distance_m)
    env = np.broadcast_to(np.asarray(environment), d.shape)
    _check_environments(env)
    if model == "cost231":
        return cost231_hata_db(
            d,
            frequency_mhz,
            base_height_m=base_height_m,
            mobile_height_m=mobile_height_m,
            environment=env,
        )
    if model == "free_space":
        return free_space_db(d, frequency_mhz)
    if model not in MODELS:
        raise InvalidInputError(
            f"unknown path-loss model {model!r}; expected one of {list(MODELS)}", field="model"
        )
    hb, hm = base_height_m, mobile_height_m
    rma = mix_los_nlos_db(
        rma_db(d, frequency_mhz, los=True, base_height_m=hb, mobile_height_m=hm),
        rma_db(d, frequency_mhz, los=False, base_height_m=hb, mobile_height_m=hm),
        rma_los_probability(d),
    )
    if model == "rma":
        return rma
    uma = mix_los_nlos_db(
        uma_db(d, frequency_mhz, los=True, base_height_m=hb, mobile_height_m=hm),
        uma_db(d, frequency_mhz, los=False, base_height_m=hb, mobile_height_m=hm),
        uma_los_probability(d, hm),
    )
    if model == "uma":
        return uma
    return np.asarray(np.where(env == "rural", rma, uma), dtype=np.float64)


def knife_edge_loss_db(v: ArrayLike) -> FloatArray:
    """Single knife-edge diffraction loss J(v), ITU-R P.526-15 eq. (31).

    ``J(v) = 6.9 + 20 log10(sqrt((v - 0.1)^2 + 1) + v - 0.1)`` for ``v > -0.78``, else 0.

    Examples
    --------
    >>> round(float(knife_edge_loss_db(0.0)), 2)
    6.03
    >>> knife_edge_loss_db([-1.0, -np.inf]).tolist()
    [0.0, 0.0]
    """
    v = _f(v)
    safe = np.where(v > _J_THRESHOLD, v, 0.0)
    j = 6.9 + 20.0 * np.log10(np.sqrt((safe - 0.1) ** 2 + 1.0) + safe - 0.1)
    return np.asarray(np.where(v > _J_THRESHOLD, j, 0.0), dtype=np.float64)


def fresnel_v(
    clearance_m: ArrayLike, d1_m: ArrayLike, d2_m: ArrayLike, wavelength_m: ArrayLike
) -> FloatArray:
    """Fresnel-Kirchhoff diffraction parameter, ITU-R P.526-15 eq. (26).

    ``v = h sqrt(2/lambda (1/d1 + 1/d2))`` with ``h`` the height of the edge above the ray
    (negative below it).

    Examples
    --------
    >>> round(float(fresnel_v(10.0, 1000.0, 1000.0, 0.375)), 3)
    1.033
    >>> fresnel_v([], [], [], 0.375).shape
    (0,)
    """
    d1 = np.maximum(_f(d1_m), 1e-9)
    d2 = np.maximum(_f(d2_m), 1e-9)
    return np.asarray(
        _f(clearance_m) * np.sqrt(2.0 / _f(wavelength_m) * (1.0 / d1 + 1.0 / d2)), dtype=np.float64
    )


def earth_bulge_m(d1_m: ArrayLike, d2_m: ArrayLike, k_factor: float = K_FACTOR) -> FloatArray:
    """Height of the effective earth's bulge above the chord: ``d1 d2 / (2 k a)``.

    With ``k = 4/3`` and ``a = 6371 km`` (ITU-R P.526-15 §1, P.452 eq. 14 form).

    Examples
    --------
    >>> round(float(earth_bulge_m(10_000.0, 10_000.0)), 2)
    5.89
    >>> earth_bulge_m([], []).shape
    (0,)
    """
    return np.asarray(_f(d1_m) * _f(d2_m) / (2.0 * k_factor * EARTH_RADIUS_M), dtype=np.float64)


def _deygout_db(
    z: FloatArray, dist: FloatArray, z_tx: FloatArray, z_rx: FloatArray, lam: FloatArray
) -> FloatArray:
    """Deygout loss for (links, samples) effective heights ``z`` (bulge included)."""
    # float32 halves the memory traffic of these (links, samples) arrays; heights to ~1 mm
    # and v to 1e-6 relative are far below the 90 m terrain grid's own error.
    z = z.astype(np.float32)
    z_tx, z_rx = z_tx.astype(np.float32), z_rx.astype(np.float32)
    dist, lam = dist.astype(np.float32), lam.astype(np.float32)
    n_links, n = z.shape
    frac = np.linspace(0.0, 1.0, n, dtype=np.float32)
    # Principal edge over the direct ray. On the full path v factorises into a per-link term
    # sqrt(2 / (lambda d)) and a per-sample term 1 / sqrt(f (1 - f)), f = d1 / d.
    inner = frac[1:-1]
    ray = z_tx[:, None] + (z_rx - z_tx)[:, None] * inner[None, :]
    v_all = (z[:, 1:-1] - ray) * (
        np.sqrt(2.0 / (lam * np.maximum(dist, 1e-9)))[:, None] / np.sqrt(inner * (1.0 - inner))
    )
    p = np.argmax(v_all, axis=1) + 1
    v_p = v_all[np.arange(n_links), p - 1]
    loss = knife_edge_loss_db(v_p)
    hit = np.flatnonzero(v_p > _J_THRESHOLD)
    if hit.size == 0:
        return loss
    # Secondary edges, only for obstructed links, in one pass over both sides: samples before
    # the principal edge against the ray tx -> edge top, samples after it against edge -> rx.
    ph = p[hit][:, None]
    f_p = frac[ph]
    z_p = z[hit, p[hit]][:, None]
    left = np.arange(n)[None, :] < ph
    f_a = np.where(left, 0.0, f_p)
    f_b = np.where(left, f_p, 1.0)
    z_a = np.where(left, z_tx[hit][:, None], z_p)
    z_b = np.where(left, z_p, z_rx[hit][:, None])
    f1 = frac[None, :] - f_a
    f2 = f_b - frac[None, :]
    span = f_b - f_a
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (z[hit] - z_a - (z_b - z_a) * f1 / span) * np.sqrt(
            2.0 / (lam[hit] * dist[hit])[:, None] * span / (f1 * f2)
        )
    v = np.where((f1 > 0) & (f2 > 0), v, -np.inf)
    v_t = np.where(left, v, -np.inf).max(axis=1)
    v_r = np.where(left, -np.inf, v).max(axis=1)
    loss[hit] += knife_edge_loss_db(v_t) + knife_edge_loss_db(v_r)
    return np.asarray(loss, dtype=np.float64)


def terrain_diffraction_db(
    profile_m: ArrayLike,
    distance_m: ArrayLike,
    tx_height_m: ArrayLike,
    rx_height_m: ArrayLike,
    frequency_mhz: ArrayLike,
    *,
    k_factor: float = K_FACTOR,
    smooth_reference: bool = True,
) -> FloatArray:
    """Diffraction loss over terrain profiles, Deygout construction with up to three edges.

    The profile heights get the effective-earth bulge (:func:`earth_bulge_m`, k = 4/3). The
    principal edge is the sample with the largest Fresnel parameter v relative to the direct
    ray (ITU-R P.526-15 eq. 26); if it obstructs (``v > -0.78``) the secondary edges are the
    largest-v samples between the transmitter and the principal edge and between the principal
    edge and the receiver, each relative to the ray to the principal edge's top. The loss is
    ``L_D = J(v_p) + J(v_t) + J(v_r)`` with J of eq. (31) (Deygout, Proc. IEE 113(3), 1966). No
    empirical correction is applied; for closely spaced edges Deygout tends to overestimate.

    With ``smooth_reference`` (default) the result is the loss *in excess of smooth ground*,
    ``max(0, L_D(profile) - L_D(smooth))``, the smooth profile being the straight line between
    the two ground points (with the same bulge). This is the delta construction of ITU-R
    P.526-15 §4.5.2 and P.452: the clutter models (Hata, 38.901) were fitted over smooth ground
    and already contain the loss of a low antenna whose Fresnel zone grazes flat ground.

    Parameters
    ----------
    profile_m : array_like, shape (links, samples)
        Ground heights from the transmitter (column 0) to the receiver (last column), equally
        spaced; at least 3 samples for an edge to exist.
    distance_m : array_like, shape (links,)
        Path length (m).
    tx_height_m, rx_height_m : array_like, shape (links,)
        Antenna heights above the ground at the two ends (m).
    frequency_mhz : array_like
        Carrier frequency (MHz).
    k_factor : float, default 4/3
        Effective earth-radius factor.
    smooth_reference : bool, default True
        Subtract the loss over the smooth profile (see above).

    Returns
    -------
    ndarray, shape (links,)
        Diffraction loss in dB (0 where the terrain does not obstruct more than smooth ground).

    Examples
    --------
    >>> ridge = np.array([[0.0, 0.0, 60.0, 0.0, 0.0]])
    >>> args = (ridge, [4000.0], [30.0], [1.5], 800.0)
    >>> round(float(terrain_diffraction_db(*args, smooth_reference=False)[0]), 1)
    23.1
    >>> round(float(terrain_diffraction_db(*args)[0]), 1)
    22.6
    >>> terrain_diffraction_db(np.zeros((0, 5)), [], [], [], 800.0).shape
    (0,)
    """
    prof = np.atleast_2d(_f(profile_m))
    n_links, n = prof.shape
    dist = np.ascontiguousarray(np.broadcast_to(_f(distance_m), (n_links,)))
    if n_links == 0 or n < 3:
        return np.zeros(n_links)
    lam = np.ascontiguousarray(
        np.broadcast_to(SPEED_OF_LIGHT_MPS / (_f(frequency_mhz) * 1e6), (n_links,))
    )
    frac = np.linspace(0.0, 1.0, n)
    d = dist[:, None] * frac[None, :]
    bulge = earth_bulge_m(d, dist[:, None] - d, k_factor)
    z_tx = prof[:, 0] + np.broadcast_to(_f(tx_height_m), (n_links,))
    z_rx = prof[:, -1] + np.broadcast_to(_f(rx_height_m), (n_links,))
    loss = _deygout_db(prof + bulge, dist, z_tx, z_rx, lam)
    if smooth_reference:
        # the smooth loss is >= 0, so links already at 0 dB need no second pass
        hit = np.flatnonzero(loss > 0.0)
        if hit.size:
            smooth = _deygout_db(
                prof[hit, :1] + (prof[hit, -1:] - prof[hit, :1]) * frac[None, :] + bulge[hit],
                dist[hit],
                z_tx[hit],
                z_rx[hit],
                lam[hit],
            )
            loss[hit] = np.maximum(loss[hit] - smooth, 0.0)
    return loss


def ground_distance_m(
    lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike
) -> FloatArray:
    """Ground distance between WGS84 points on a sphere (equirectangular at the mean latitude).

    Within 0.1 % of the geodesic over the tens of kilometres a cell reaches, and several times
    faster than haversine for the (points x sites) matrices of a coverage layer.

    Examples
    --------
    >>> round(float(ground_distance_m(1.5, 42.5, 1.5, 42.6)))
    11119
    >>> ground_distance_m([], [], [], []).shape
    (0,)
    """
    la1 = np.radians(_f(lat1))
    la2 = np.radians(_f(lat2))
    dx = np.radians(_f(lon2) - _f(lon1)) * np.cos((la1 + la2) / 2.0)
    dy = la2 - la1
    return np.asarray(EARTH_RADIUS_M * np.hypot(dx, dy), dtype=np.float64)


@dataclass(frozen=True)
class LinkLoss:
    """Path loss of a set of links (arrays of shape ``(links,)``).

    Attributes
    ----------
    total_db : clutter model + terrain diffraction.
    diffraction_db : the terrain diffraction part (0 without terrain).
    distance_m : ground distance.
    """

    total_db: FloatArray
    diffraction_db: FloatArray
    distance_m: FloatArray


def _profile_samples(
    distance_m: FloatArray, spacing_m: float, max_samples: int
) -> NDArray[np.intp]:
    """Samples per link: ~one per ``spacing_m`` (SRTM3 resolution), rounded up to 2^k + 1."""
    need = np.ceil(distance_m / spacing_m).astype(np.int64) + 1
    # Powers of two plus one keep a handful of groups, each evaluated as one array.
    buckets = 2 ** np.ceil(np.log2(np.maximum(need - 1, 2))).astype(np.int64) + 1
    return np.asarray(np.minimum(buckets, max_samples), dtype=np.intp)


def link_loss_db(
    *,
    tx_lon: ArrayLike,
    tx_lat: ArrayLike,
    tx_height_m: ArrayLike,
    rx_lon: ArrayLike,
    rx_lat: ArrayLike,
    rx_height_m: ArrayLike,
    frequency_mhz: ArrayLike,
    environment: ArrayLike,
    model: str = "auto",
    terrain: Terrain | None = None,
    sample_spacing_m: float = 90.0,
    max_samples: int = 64,
    max_loss_db: ArrayLike | None = None,
) -> LinkLoss:
    """Path loss of links: clutter model (:func:`model_loss_db`) plus terrain diffraction.

    With ``terrain`` each link's profile is sampled about every ``sample_spacing_m`` (the
    SRTM3 grid), capped at ``max_samples`` per link, and :func:`terrain_diffraction_db` adds
    the obstruction loss; without terrain the earth is flat (diffraction 0). Work is done in
    chunks so memory stays bounded for hundreds of thousands of links.

    Parameters
    ----------
    tx_lon, tx_lat, rx_lon, rx_lat : array_like, shape (links,)
        End points, WGS84 degrees (transmitter = site).
    tx_height_m, rx_height_m : array_like
        Antenna heights above ground (m).
    frequency_mhz : array_like
        Carrier frequency per link (MHz).
    environment : array_like of str
        Site environment per link (``urban``/``suburban``/``rural``).
    model : str, default "auto"
        See :func:`model_loss_db`.
    terrain : Terrain, optional
        Elevation model; None for flat earth.
    sample_spacing_m : float, default 90
        Target profile sample spacing (m).
    max_samples : int, default 64
        Cap on profile samples per link.
    max_loss_db : array_like, optional
        Links whose clutter loss alone already exceeds this get no terrain profile (diffraction
        only adds loss, so they stay above it): their ``total_db`` is then a lower bound. Saves
        the profile work for links the caller would discard anyway.

    Returns
    -------
    LinkLoss

    Examples
    --------
    >>> loss = link_loss_db(tx_lon=[1.5], tx_lat=[42.5], tx_height_m=25.0, rx_lon=[1.51],
    ...                     rx_lat=[42.5], rx_height_m=1.5, frequency_mhz=800.0,
    ...                     environment=["rural"])
    >>> round(float(loss.distance_m[0])), float(loss.diffraction_db[0])
    (820, 0.0)
    >>> len(link_loss_db(tx_lon=[], tx_lat=[], tx_height_m=25.0, rx_lon=[], rx_lat=[],
    ...                  rx_height_m=1.5, frequency_mhz=800.0, environment=[]).total_db)
    0
    """
    t_lon, t_lat, r_lon, r_lat = (np.atleast_1d(_f(a)) for a in (tx_lon, tx_lat, rx_lon, rx_lat))
    shape = t_lon.shape
    h_tx = np.broadcast_to(_f(tx_height_m), shape)
    h_rx = np.broadcast_to(_f(rx_height_m), shape)
    freq = np.broadcast_to(_f(frequency_mhz), shape)
    env = np.broadcast_to(np.asarray(environment), shape)
    dist = ground_distance_m(t_lon, t_lat, r_lon, r_lat)
    clutter = model_loss_db(
        model, dist, freq, base_height_m=h_tx, mobile_height_m=h_rx, environment=env
    )
    diffraction = np.zeros(shape)
    if terrain is not None and dist.size:
        need = np.ones(shape, dtype=bool)
        if max_loss_db is not None:
            need = clutter <= np.broadcast_to(_f(max_loss_db), shape)
        n_samples = _profile_samples(dist, sample_spacing_m, max_samples)
        # a set, not np.unique: that imports numpy.ma (40 ms), which a plan needs nowhere else
        for n in sorted(set(n_samples[need].tolist())):
            idx = np.flatnonzero((n_samples == n) & need)
            step = max(1, _MAX_PROFILE_ELEMENTS // int(n))
            for start in range(0, idx.size, step):
                sel = idx[start : start + step]
                profile = terrain.profile_m(t_lon[sel], t_lat[sel], r_lon[sel], r_lat[sel], int(n))
                diffraction[sel] = terrain_diffraction_db(
                    profile, dist[sel], h_tx[sel], h_rx[sel], freq[sel]
                )
    return LinkLoss(total_db=clutter + diffraction, diffraction_db=diffraction, distance_m=dist)
