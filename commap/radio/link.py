"""Link model: from quality values to outage probabilities, handover risk and cost.

The planner does not look at signal levels directly. This module turns a
:class:`~commap.radio.quality.QualityMatrix` into

* the *point* outage probability of every network at every segment (the chance that the link
  is below the radio-link threshold at a given instant),
* the *segment* drop probability (the chance that the link fails somewhere in the segment, which
  is what the planner counts as an expected drop),
* per pair of networks, the handover failure probability and interruption time by kind of
  switch (:func:`commap.networks.switch_kind`),
* per application class (:class:`AppProfile`), latency violations and satellite data volume.

Every number is a documented, overridable field of :class:`LinkModel`; :class:`Objective` holds
the weights that turn these quantities into one cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from commap.arrays import FloatArray, RecentArrays
from commap.compiled import compiled, loaded
from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind, SwitchKind, switch_kind
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    QOUT_SINR_DB,
    QualityMatrix,
)

__all__ = [
    "APP_PROFILES",
    "SWITCH_KINDS",
    "AppProfile",
    "LinkModel",
    "Objective",
    "SwitchTable",
    "app_profile",
    "warm_up_kernels",
]


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _ndtr(x: FloatArray) -> FloatArray:
    """Standard normal CDF ``P(Z <= x)``, elementwise: ``erfc(-x / sqrt(2)) / 2``.

    ``math.erfc`` is exact to a few ulp over the whole range (tails included), as
    ``scipy.special.ndtr`` is; importing scipy.special for it alone would cost every plan on
    the command line a tenth of a second or more.

    Examples
    --------
    >>> _ndtr(np.array([0.0, -np.inf, np.inf])).tolist()
    [0.5, 0.0, 1.0]
    >>> float(_ndtr(np.array([-30.0]))[0]) > 0.0  # the far tail (5e-198) does not round to 0
    True
    >>> _ndtr(np.zeros(0)).shape
    (0,)
    """
    values = np.asarray(x, dtype=np.float64)
    if loaded():  # numba is in the process already (a server): one compiled pass
        flat = np.array(values, order="C").reshape(-1)  # a writable copy: one compiled type
        return _ndtr_compiled(flat, -math.sqrt(0.5)).reshape(values.shape)
    return np.asarray(_ERFC(values * -math.sqrt(0.5)), dtype=np.float64) * 0.5


def warm_up_kernels() -> None:
    """Load (or, in a fresh install, compile) the compiled pass of :func:`_ndtr` now.

    Examples
    --------
    >>> warm_up_kernels()
    """
    _ndtr_compiled(np.zeros(1), -math.sqrt(0.5))


@compiled
def _ndtr_compiled(values: FloatArray, scale: float) -> FloatArray:
    """:func:`_ndtr` of a flat array: the same operations (libm's ``erfc``, as ``math.erfc``
    calls it), so the same values to the bit, without a Python call per value."""
    out = np.empty(values.shape[0])
    for i in range(values.shape[0]):
        out[i] = math.erfc(values[i] * scale) * 0.5
    return out


log = logging.getLogger(__name__)


# Column order of switch kinds in every per-kind count (index = code in SwitchTable.kind_code).
SWITCH_KINDS: tuple[SwitchKind, ...] = tuple(SwitchKind)


@dataclass(frozen=True)
class AppProfile:
    """An application class: what it needs from the link, and what it tolerates.

    Parameters
    ----------
    name : str
        Class name, e.g. ``"teleoperation"``.
    max_latency_ms : float
        Largest acceptable round-trip latency; a network slower than this violates the class.
    data_rate_mbps : float
        Sustained data rate; times the time on a satellite network gives satellite MB.
    min_dl_mbps, min_ul_mbps : float
        Throughput the service needs (0: any working link). Recorded with the class and in its
        plans; the link model judges the downlink need against the SINR it implies, and maps
        carry no uplink prediction yet.
    tolerated_gap_s : float
        Longest interruption the application rides through unnoticed (a buffer, a retry): a
        switch interrupting the link for at least this long is a loss event of the plan.

    Examples
    --------
    >>> AppProfile("idle", max_latency_ms=float("inf"), data_rate_mbps=0.0).mb_per_s
    0.0
    >>> APP_PROFILES["teleoperation"].min_ul_mbps
    25.0
    """

    name: str
    max_latency_ms: float
    data_rate_mbps: float
    min_dl_mbps: float = 0.0
    min_ul_mbps: float = 0.0
    tolerated_gap_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInputError("application profile needs a name", field="app.name")
        if not self.max_latency_ms > 0:
            raise InvalidInputError(
                f"app {self.name}: max_latency_ms must be > 0", field="app.max_latency_ms"
            )
        for name in ("data_rate_mbps", "min_dl_mbps", "min_ul_mbps", "tolerated_gap_s"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InvalidInputError(
                    f"app {self.name}: {name} must be a finite number >= 0", field=f"app.{name}"
                )

    @property
    def mb_per_s(self) -> float:
        """Megabytes per second at :attr:`data_rate_mbps` (megabits per second / 8)."""
        return self.data_rate_mbps / 8.0


# Typical classes, with the sources of their needs:
# * teleoperation: 3GPP TS 22.186 (V2X enhanced use cases), Table 5.5-1 "remote driving":
#   25 Mbit/s uplink, 1 Mbit/s downlink. Its 5 ms end-to-end latency is a target for the radio
#   leg of a 5G V2X system, not a round trip any public network offers; the class keeps a 100 ms
#   round trip (no GEO) and tolerates 0.1 s gaps (an assumption: about one video frame at 10 Hz).
# * telemetry: small, store-and-forward (0.05 Mbit/s); a 30 s gap goes unnoticed (an
#   assumption: well within the 60 s keep-alive MQTT clients commonly use).
# * infotainment: video streaming at 5 Mbit/s, the rate Netflix recommends for 1080p (Help
#   Center, "Internet connection speed recommendations"); a client buffer rides through 10 s
#   gaps (an assumption; players buffer tens of seconds).
APP_PROFILES: dict[str, AppProfile] = {
    "teleoperation": AppProfile(
        "teleoperation",
        max_latency_ms=100.0,
        data_rate_mbps=8.0,
        min_dl_mbps=1.0,
        min_ul_mbps=25.0,
        tolerated_gap_s=0.1,
    ),
    "telemetry": AppProfile(
        "telemetry", max_latency_ms=1000.0, data_rate_mbps=0.05, tolerated_gap_s=30.0
    ),
    "infotainment": AppProfile(
        "infotainment",
        max_latency_ms=2000.0,
        data_rate_mbps=5.0,
        min_dl_mbps=5.0,
        tolerated_gap_s=10.0,
    ),
}


def app_profile(name: str) -> AppProfile:
    """The predefined application class ``name``.

    Raises
    ------
    InvalidInputError
        For an unknown class name.

    Examples
    --------
    >>> app_profile("teleoperation").max_latency_ms
    100.0
    >>> app_profile("nope")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: unknown application class 'nope'; known: infotainment, telemetry, teleoperation
    """
    try:
        return APP_PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(APP_PROFILES))
        raise InvalidInputError(
            f"unknown application class {name!r}; known: {known}", field="app"
        ) from None


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Weights of the plan cost: seconds of service lost, then switches and satellite data.

    The plan cost is the expected number of seconds in which the application goes without the
    service it needs, plus small prices that order plans of equal loss. With the defaults every
    service term is in seconds, so a switch is made only when the seconds it saves exceed the
    seconds it costs (its interruption, and its failure risk times ``drops``):

    * ``outage_s``: per expected second the serving network is out (its outage probability
      times the time on the segment);
    * ``drops``: per expected link failure (a radio link failure in a segment or a failed
      switch), the seconds lost beyond the outage itself while the link is re-established:
      radio link failure detection (T310, 1 s by default in 3GPP TS 36.331) plus RRC
      re-establishment or cell reselection and the transport's recovery; 5 s by default;
    * ``interruption_s``: per second of planned interruption (handover execution,
      re-registration on another operator, LEO reconfiguration);
    * ``latency_violation_s``: per second on a network slower than the application allows (its
      service is not met whatever the signal);
    * ``handovers``: per switch, whatever its kind (0.01 s: a tie-breaker between plans that lose
      the same service);
    * ``sat_mb``: per megabyte sent over a satellite network (1e-4 s: 100 MB weigh as one switch).

    ``switch_confidence_sd`` is not a weight: a planned stretch is kept only where the seconds
    it saves are at least that many standard deviations of their spread under the map (1: the
    map gives the switch about five chances in six of paying for itself; 0: the expected-cost
    optimum as it is). A solver's optimum picks the stretches whose gain the map
    over-estimates most; :mod:`commap.plan.confidence` says why and how.

    Parameters
    ----------
    outage_s, drops, interruption_s, latency_violation_s, handovers, sat_mb : float
        The weights (finite, >= 0).
    switch_confidence_sd : float
        Standard deviations of its saving a planned stretch must clear (finite, >= 0).

    Examples
    --------
    >>> Objective().drops
    5.0
    >>> Objective(handovers=0.0).handovers
    0.0
    """

    outage_s: float = 1.0
    drops: float = 5.0
    interruption_s: float = 1.0
    latency_violation_s: float = 1.0
    handovers: float = 0.01
    sat_mb: float = 1e-4
    switch_confidence_sd: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (np.isfinite(value) and value >= 0):
                raise InvalidInputError(
                    f"objective weight {f.name} must be a finite number >= 0, got {value!r}",
                    field=f"objective.{f.name}",
                )


@dataclass(frozen=True)
class SwitchTable:
    """Per ordered pair of networks: kind, failure probability and interruption of a switch.

    All arrays are ``(N, N)`` with row = from, column = to; the diagonal is "no switch"
    (kind NONE, probability 0, interruption 0).
    """

    kind_code: NDArray[np.int8]  # index into SWITCH_KINDS
    failure_prob: FloatArray
    interruption_s: FloatArray

    def kind(self, a: int, b: int) -> SwitchKind:
        """Switch kind from column ``a`` to column ``b``."""
        return SWITCH_KINDS[int(self.kind_code[a, b])]


@dataclass(frozen=True, kw_only=True)
class LinkModel:
    """Parameters that turn quality into outage, handover risk and interruption.

    Outage of a terrestrial network at a point: the SINR is taken as Normal(``sinr_db``,
    sigma) and the link is out when it falls below ``qout_sinr_db`` (likewise RSRP below
    ``min_rsrp_dbm``; both come from the same shadowing, so the larger probability counts).
    Sigma shrinks from ``shadowing_sigma_db`` (a modelled or unmeasured value, confidence 0) to
    ``measured_sigma_db`` (a dense measurement, confidence 1), linearly in the confidence.
    ``NO_SIGNAL`` values give probability 1.

    Where the quality matrix carries an ``outage_prob`` (a layer that predicts it, such as a map
    learned from measurements), that probability is used as it is.

    Outage of a satellite network at a point: the elevation margin over the network's
    ``min_elevation_deg`` with a Normal spread of ``sat_elevation_sigma_deg`` (roadside
    obstruction near the mask angle), combined with a constant ``sat_blockage_prob`` and with the
    equivalent SINR where the layer gives one; no satellite in view gives probability 1. A value
    without an elevation (NaN: a measured satellite network, e.g. throughput records) is judged
    by its SINR alone, and is dead only without one.

    A segment holds ``max(length_m / decorrelation_m, duration_s / decorrelation_s)``
    independent looks at the field (shadowing decorrelates over distance; a stopped vehicle still
    sees the channel change over time); the segment drop probability is
    ``1 - (1 - p)**looks``.

    Handovers: failure probability and interruption by kind of switch (the ``*_failure_prob``
    and ``*_interruption_s`` fields). Between two terrestrial operators the handover is a real
    inter-operator handover only for operator pairs listed in ``inter_operator_handover``; any
    other pair re-registers on the new network (``reregistration_s``, seconds to minutes). The
    failure probability grows by ``target_outage_failure_gain`` times the target's point outage
    probability at the switch point (a first-order, union-bound approximation kept additive so
    the planner's switch costs stay separable).

    LEO constellations reconfigure every ``leo_reconfiguration_period_s`` (Starlink: 15 s),
    each costing ``leo_reconfiguration_interruption_s``: a per-second interruption cost on
    LEO segments.

    Examples
    --------
    >>> LinkModel().sigma_db(np.array([0.0, 1.0])).tolist()
    [8.0, 2.0]
    >>> LinkModel(reregistration_s=60.0).reregistration_s
    60.0
    """

    # -- outage of terrestrial links ---------------------------------------------------------
    qout_sinr_db: float = QOUT_SINR_DB  # radio link "out of sync" threshold (DESIGN.md Evaluation)
    min_rsrp_dbm: float = -124.0  # RSRP below which a UE cannot hold the cell (typical sensitivity)
    shadowing_sigma_db: float = (
        8.0  # log-normal shadowing sigma of a modelled value (38.901 RMa/UMa)
    )
    measured_sigma_db: float = 2.0  # residual spread of a dense measurement (fast-fading average)
    decorrelation_m: float = 50.0  # shadowing decorrelation distance (38.901: 37-120 m)
    decorrelation_s: float = 10.0  # temporal decorrelation for slow or stopped vehicles
    unusable_outage_prob: float = 0.999  # point outage at or above this: the network is unusable
    # -- outage of satellite links -----------------------------------------------------------
    sat_elevation_sigma_deg: float = 5.0  # spread of the usable elevation around the mask angle
    sat_blockage_prob: float = 0.01  # trees, poles, trucks: residual outage of a visible satellite
    # -- handovers by kind -------------------------------------------------------------------
    intra_operator_failure_prob: float = 0.005  # 3GPP-like intra-operator handover failure rate
    intra_operator_interruption_s: float = 0.05  # ~50 ms handover interruption (TS 36.133)
    inter_operator_handover: tuple[tuple[str, str], ...] = ()  # operator pairs with inter-op HO
    inter_operator_failure_prob: float = 0.01
    inter_operator_interruption_s: float = 0.1
    reregistration_failure_prob: float = 0.02  # attach on a new PLMN can fail too
    reregistration_s: float = 10.0  # detach, PLMN selection, attach: seconds to minutes
    terrestrial_leo_failure_prob: float = 0.02
    terrestrial_leo_interruption_s: float = 0.5  # path switch between modems (SD-WAN failover)
    terrestrial_geo_failure_prob: float = 0.02
    terrestrial_geo_interruption_s: float = 2.0  # GEO terminal: acquisition + long round trips
    satellite_satellite_failure_prob: float = 0.02
    satellite_satellite_interruption_s: float = 1.0
    target_outage_failure_gain: float = 0.5  # added failure prob per unit target outage prob
    # -- LEO reconfiguration -----------------------------------------------------------------
    leo_reconfiguration_period_s: float = 15.0  # Starlink global scheduler interval
    leo_reconfiguration_interruption_s: float = 0.05  # loss burst at each reconfiguration

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "inter_operator_handover":
                self._check_pairs(value)
                continue
            if not np.isfinite(value):
                raise InvalidInputError(f"link model {f.name} must be finite", field=f.name)
            if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"link model {f.name} must lie in [0, 1]", field=f.name)
            positive = ("sigma", "decorrelation", "period")
            if any(p in f.name for p in positive) and not value > 0:
                raise InvalidInputError(f"link model {f.name} must be > 0", field=f.name)
            if f.name.endswith("_s") and value < 0:
                raise InvalidInputError(f"link model {f.name} must be >= 0", field=f.name)
        if self.measured_sigma_db > self.shadowing_sigma_db:
            raise InvalidInputError(
                "measured_sigma_db must not exceed shadowing_sigma_db", field="measured_sigma_db"
            )
        worst = max(self._failure_probs())
        if worst + self.target_outage_failure_gain > 1.0:
            raise InvalidInputError(
                "target_outage_failure_gain plus the largest handover failure probability "
                f"({worst}) must not exceed 1",
                field="target_outage_failure_gain",
            )

    @staticmethod
    def _check_pairs(value: object) -> None:
        ok = isinstance(value, tuple) and all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p)
            for p in value
        )
        if not ok:
            raise InvalidInputError(
                "inter_operator_handover must be a tuple of (operator, operator) pairs",
                field="inter_operator_handover",
            )

    def _failure_probs(self) -> tuple[float, ...]:
        return (
            self.intra_operator_failure_prob,
            self.inter_operator_failure_prob,
            self.reregistration_failure_prob,
            self.terrestrial_leo_failure_prob,
            self.terrestrial_geo_failure_prob,
            self.satellite_satellite_failure_prob,
        )

    # -- outage -----------------------------------------------------------------------------
    def sigma_db(self, confidence: FloatArray) -> FloatArray:
        """Spread of a quality value (dB) given its confidence (0..1; NaN counts as 0)."""
        c = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)
        return self.shadowing_sigma_db + c * (self.measured_sigma_db - self.shadowing_sigma_db)

    def point_outage(self, matrix: QualityMatrix, networks: Sequence[Network]) -> FloatArray:
        """Point outage probability ``(segments, networks)`` in [0, 1].

        Parameters
        ----------
        matrix : QualityMatrix
            Quality along the corridor; its columns follow ``networks``.
        networks : sequence of Network
            One per matrix column (kind and ``min_elevation_deg`` matter).

        Examples
        --------
        >>> from commap.radio.quality import Quality
        >>> from commap.networks import Network, NetworkKind
        >>> net = Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a",
        ...               technology="lte", latency_ms=30)
        >>> q = QualityMatrix.from_columns(("a",), [Quality.empty(2)])
        >>> LinkModel().point_outage(q, [net]).tolist()
        [[1.0], [1.0]]
        >>> LinkModel().point_outage(QualityMatrix.from_columns(("a",), [Quality.empty(0)]),
        ...                          [net]).shape
        (0, 1)
        """
        if len(networks) != len(matrix.network_ids):
            raise InvalidInputError("one network per quality-matrix column is required")
        n_seg = matrix.shape[0]
        out = np.empty((n_seg, len(networks)))
        sigma = self.sigma_db(matrix.confidence.reshape(n_seg, len(networks)))
        for j, net in enumerate(networks):
            if net.is_satellite:
                out[:, j] = self._satellite_outage(matrix, j, net, sigma[:, j])
            else:
                out[:, j] = self._terrestrial_outage(matrix, j, sigma[:, j])
        # A layer that predicts the outage itself (a map learned from measurements) is believed
        # over the signal-level model; its unknown stretches carry the prior's probability.
        predicted = np.asarray(matrix.outage_prob, dtype=np.float64).reshape(out.shape)
        given = np.isfinite(predicted)
        return np.where(given, np.clip(predicted, 0.0, 1.0), out)

    def _terrestrial_outage(self, m: QualityMatrix, j: int, sigma: FloatArray) -> FloatArray:
        sinr = m.sinr_db[:, j]
        rsrp = m.rsrp_dbm[:, j]
        p = _ndtr((self.qout_sinr_db - np.nan_to_num(sinr, nan=NO_SIGNAL_SINR_DB)) / sigma)
        has_rsrp = np.isfinite(rsrp)
        p_rsrp = _ndtr((self.min_rsrp_dbm - np.where(has_rsrp, rsrp, 0.0)) / sigma)
        p = np.where(has_rsrp, np.maximum(p, p_rsrp), p)
        # No signal is certain, whatever the confidence; a missing SINR counts as no signal.
        dead = ~np.isfinite(sinr) | (sinr <= NO_SIGNAL_SINR_DB) | (rsrp <= NO_SIGNAL_RSRP_DBM)
        return np.where(dead, 1.0, p)

    def _satellite_outage(
        self, m: QualityMatrix, j: int, net: Network, sigma: FloatArray
    ) -> FloatArray:
        elevation = m.elevation_deg[:, j]
        # NaN elevation: not modelled (a measured satellite network): the link decides alone
        modelled = np.isfinite(elevation)
        seen = modelled & (elevation > NO_SATELLITE_ELEVATION_DEG)
        margin = np.where(seen, elevation, NO_SATELLITE_ELEVATION_DEG) - net.min_elevation_deg
        p_sky = np.where(modelled, _ndtr(-margin / self.sat_elevation_sigma_deg), 0.0)
        sinr = m.sinr_db[:, j]
        has_sinr = np.isfinite(sinr)
        p_link = np.where(
            has_sinr, _ndtr((self.qout_sinr_db - np.where(has_sinr, sinr, 0.0)) / sigma), 0.0
        )
        p = 1.0 - (1.0 - p_sky) * (1.0 - self.sat_blockage_prob) * (1.0 - p_link)
        dead = (
            (modelled & ~seen) | (~modelled & ~has_sinr) | (has_sinr & (sinr <= NO_SIGNAL_SINR_DB))
        )
        return np.where(dead, 1.0, p)

    def segment_drop(
        self, point_outage: FloatArray, length_m: FloatArray, duration_s: FloatArray
    ) -> FloatArray:
        """Probability that the link fails somewhere in each segment.

        Parameters
        ----------
        point_outage : (S, N) array
            From :meth:`point_outage`.
        length_m, duration_s : (S,) arrays
            Segment lengths and durations.

        Examples
        --------
        >>> LinkModel().segment_drop(np.array([[0.1, 1.0]]), np.array([100.0]),
        ...                          np.array([4.0])).round(3).tolist()
        [[0.19, 1.0]]
        >>> LinkModel().segment_drop(np.zeros((0, 2)), np.zeros(0), np.zeros(0)).shape
        (0, 2)
        """
        looks = self._looks(length_m, duration_s)
        p = np.clip(point_outage, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            # 1 - (1-p)^looks, computed via log1p for small p; p = 1 stays exactly 1.
            drop = -np.expm1(looks[:, None] * np.log1p(-p))
        return np.where(p >= 1.0, 1.0, drop)

    def _looks(self, length_m: FloatArray, duration_s: FloatArray) -> FloatArray:
        """Independent looks at the shadowing field per segment (see the class docstring)."""
        return np.maximum(
            np.asarray(length_m, dtype=np.float64) / self.decorrelation_m,
            np.asarray(duration_s, dtype=np.float64) / self.decorrelation_s,
        )

    def drop_onsets(
        self, point_outage: FloatArray, length_m: FloatArray, duration_s: FloatArray
    ) -> FloatArray:
        """Expected link failures that *start* in each segment, staying on each network.

        A failure is an event: a stretch of outage that spans many segments is one drop, not
        one per segment. Neighbouring segments share their shadowing with correlation
        ``rho = exp(-looks)`` (looks as in :meth:`segment_drop`), so the joint outage of a
        segment and the one before is ``(1 - rho) p_prev p + rho min(p_prev, p)`` and a failure
        starts where the link is out but was not before; a segment holding more than one look
        adds ``(looks - 1) p (1 - p)`` failures inside it.

        Examples
        --------
        >>> m = LinkModel()
        >>> p = np.array([[0.0], [1.0], [1.0], [1.0], [0.0]])  # one stretch of outage
        >>> m.drop_onsets(p, np.full(5, 50.0), np.full(5, 2.0)).ravel().tolist()
        [0.0, 1.0, 0.0, 0.0, 0.0]
        >>> flat = np.full((3, 1), 0.1)  # a steady 10 %: far fewer onsets than segment drops
        >>> m.drop_onsets(flat, np.full(3, 50.0), np.full(3, 2.0)).ravel().round(3).tolist()
        [0.1, 0.057, 0.057]
        """
        p = np.clip(np.asarray(point_outage, dtype=np.float64), 0.0, 1.0)
        if p.shape[0] == 0:
            return p.copy()
        looks = self._looks(length_m, duration_s)[:, None]
        rho = np.exp(-looks)
        before = np.vstack((np.zeros((1, p.shape[1])), p[:-1]))
        joint = (1.0 - rho) * before * p + rho * np.minimum(before, p)
        inside = np.maximum(looks - 1.0, 0.0) * p * (1.0 - p)
        return np.asarray(p - joint + inside, dtype=np.float64)

    # -- handovers --------------------------------------------------------------------------
    def _operators_hand_over(self, a: str, b: str) -> bool:
        return (a, b) in self.inter_operator_handover or (b, a) in self.inter_operator_handover

    def switch(self, a: Network, b: Network) -> tuple[SwitchKind, float, float]:
        """Kind, base failure probability and interruption (s) of a switch ``a -> b``.

        Examples
        --------
        >>> from commap.networks import Network, NetworkKind
        >>> a = Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="x", technology="lte",
        ...             latency_ms=30)
        >>> b = Network(id="b", kind=NetworkKind.TERRESTRIAL, operator="y", technology="lte",
        ...             latency_ms=30)
        >>> LinkModel().switch(a, b)
        (<SwitchKind.INTER_OPERATOR: 'inter_operator'>, 0.02, 10.0)
        >>> LinkModel().switch(a, a)
        (<SwitchKind.NONE: 'none'>, 0.0, 0.0)
        """
        kind = switch_kind(a, b)
        if kind is SwitchKind.NONE:
            return kind, 0.0, 0.0
        if kind is SwitchKind.INTRA_OPERATOR:
            return kind, self.intra_operator_failure_prob, self.intra_operator_interruption_s
        if kind is SwitchKind.INTER_OPERATOR:
            if self._operators_hand_over(a.operator, b.operator):
                return kind, self.inter_operator_failure_prob, self.inter_operator_interruption_s
            return kind, self.reregistration_failure_prob, self.reregistration_s
        if kind is SwitchKind.TERRESTRIAL_LEO:
            return kind, self.terrestrial_leo_failure_prob, self.terrestrial_leo_interruption_s
        if kind is SwitchKind.TERRESTRIAL_GEO:
            return kind, self.terrestrial_geo_failure_prob, self.terrestrial_geo_interruption_s
        return (
            kind,
            self.satellite_satellite_failure_prob,
            self.satellite_satellite_interruption_s,
        )

    def switch_table(self, networks: Sequence[Network]) -> SwitchTable:
        """:class:`SwitchTable` for every ordered pair of ``networks``.

        Examples
        --------
        >>> LinkModel().switch_table([]).failure_prob.shape
        (0, 0)
        """
        # cached: every chain a map build plans asks for the same table
        code, prob, interruption = _pair_tables(self, networks)
        # copies: a caller may adjust its table (a vehicle set-up's switch times)
        return SwitchTable(
            kind_code=code.copy(), failure_prob=prob.copy(), interruption_s=interruption.copy()
        )

    def reconfiguration_s_per_s(self, network: Network) -> float:
        """Interruption seconds per second of use from LEO reconfiguration (0 for others).

        Examples
        --------
        >>> from commap.networks import Network, NetworkKind
        >>> leo = Network(id="s", kind=NetworkKind.LEO, operator="s", technology="leo",
        ...               latency_ms=40)
        >>> round(LinkModel().reconfiguration_s_per_s(leo), 5)
        0.00333
        """
        if network.kind is not NetworkKind.LEO:
            return 0.0
        return self.leo_reconfiguration_interruption_s / self.leo_reconfiguration_period_s


_PairTables = tuple[NDArray[np.int8], FloatArray, FloatArray]
# (link model, what every switch depends on) -> tables; a handful of entries per process
_PAIR_TABLES = RecentArrays(max_bytes=1 << 20, max_entries=32)


def _pair_tables(link: LinkModel, networks: Sequence[Network]) -> _PairTables:
    """Kind codes, failure probabilities and interruptions of every ordered pair, kept by the
    fields a switch depends on (:func:`commap.networks.switch_kind`: id, kind, operator; a
    network itself is unhashable, its ``params`` being a dict). The tables are read-only."""

    def make() -> _PairTables:
        n = len(networks)
        code = np.zeros((n, n), dtype=np.int8)
        prob = np.zeros((n, n))
        interruption = np.zeros((n, n))
        for i, a in enumerate(networks):
            for j, b in enumerate(networks):
                kind, prob[i, j], interruption[i, j] = link.switch(a, b)
                code[i, j] = SWITCH_KINDS.index(kind)
        return code, prob, interruption

    key = (link, tuple((n.id, n.kind, n.operator) for n in networks))
    return _PAIR_TABLES.get(key, make)
