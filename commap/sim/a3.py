"""3GPP measurement chain and the A3 event: L1 averaging, L3 filter, hysteresis, time-to-trigger.

The chain follows TS 36.331 / 38.331 (RRC) and TS 36.133 (requirements):

* **L1**: the UE averages its physical-layer samples over ``l1_window_s`` (200 ms). At the
  simulator's 100 ms steps that is the mean of the last two samples.
* **L3**: ``F_n = (1 - a) F_{n-1} + a M_n`` with ``a = 1 / 2**(k / 4)`` (``k = 4``:
  ``a = 0.5``), defined for one measurement every 200 ms. At another rate the coefficient is
  adapted so that the filter keeps its time constant (36.331 5.5.3.2):
  ``a' = 1 - (1 - a)**(step / 200 ms)``. A newly measured cell starts at its first sample
  (``F_0 = M_1``); a gap (NaN) ends the filter and the next sample restarts it.
* **A3** (neighbour becomes offset better than serving): entering condition
  ``Mn + Ocn - Hys > Ms + Ocs + Off``; with zero offsets ``Mn > Ms + Hys``. The handover is
  triggered when the condition has held for ``time_to_trigger`` (checked at every step, so a
  256 ms TTT fires at the first step at least 256 ms after entry: 300 ms at 100 ms steps).

The same :class:`A3Trigger` drives the cell-level replays (calibration, Cork drive tests) and the
network-level baseline policy of the drive simulator (:mod:`commap.sim.policies`).

Calibration: two cells at ``x = 0`` and ``x = 500`` m, Friis path loss,
30 dBm, UE from ``(50, 10)`` moving along +x, no fading. :func:`two_cell_handover_m` reproduces
the five reference handover positions within 2.5 m (see ``tests/sim/test_a3.py``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from commap.arrays import FloatArray, IntArray
from commap.errors import InvalidInputError

__all__ = [
    "DEFAULT_STEP_S",
    "A3Params",
    "A3Trigger",
    "a3_serving",
    "friis_rsrp_dbm",
    "l1_average",
    "l3_coefficient",
    "l3_filter",
    "two_cell_handover_m",
]

log = logging.getLogger(__name__)


DEFAULT_STEP_S = 0.1  # drive simulator resolution (100 ms)
L3_REFERENCE_PERIOD_S = 0.2  # the L3 coefficient is specified for one sample per 200 ms
_C_MPS = 299_792_458.0


@dataclass(frozen=True, kw_only=True)
class A3Params:
    """A3 event and measurement-filter parameters (3GPP defaults of DESIGN.md).

    Parameters
    ----------
    hysteresis_db : float
        ``Hys`` (0..15 dB in 0.5 dB steps in RRC; any value >= 0 here).
    ttt_s : float
        Time to trigger (RRC values 0, 40, 64, 80, 100, 128, 160, 256, ... 5120 ms).
    offset_db : float
        ``Off`` (a3-Offset), added to the serving side.
    l1_window_s : float
        L1 averaging window.
    l3_k : int
        L3 filter coefficient ``k`` (``a = 1 / 2**(k/4)``).

    Examples
    --------
    >>> A3Params().hysteresis_db, A3Params().ttt_s
    (3.0, 0.256)
    >>> A3Params(hysteresis_db=-1.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: A3 hysteresis_db must be a finite number >= 0, got -1.0
    """

    hysteresis_db: float = 3.0
    ttt_s: float = 0.256
    offset_db: float = 0.0
    l1_window_s: float = 0.2
    l3_k: int = 4

    def __post_init__(self) -> None:
        for name in ("hysteresis_db", "ttt_s", "l1_window_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInputError(
                    f"A3 {name} must be a finite number >= 0, got {value!r}", field=name
                )
        if not math.isfinite(self.offset_db):
            raise InvalidInputError("A3 offset_db must be finite", field="offset_db")
        if not 0 <= self.l3_k <= 19:
            raise InvalidInputError(f"A3 l3_k must be in 0..19, got {self.l3_k}", field="l3_k")

    @property
    def label(self) -> str:
        """Short label, e.g. ``"hys3_ttt256"``."""
        return f"hys{self.hysteresis_db:g}_ttt{round(self.ttt_s * 1000)}"


def l3_coefficient(k: int, step_s: float) -> float:
    """L3 filter coefficient at a sample period of ``step_s``, keeping the 200 ms time constant.

    Examples
    --------
    >>> l3_coefficient(4, 0.2)
    0.5
    >>> round(l3_coefficient(4, 0.1), 4)
    0.2929
    >>> l3_coefficient(0, 0.1)
    1.0
    """
    if not step_s > 0:
        raise InvalidInputError(f"step_s must be > 0, got {step_s}", field="step_s")
    a = 1.0 / 2.0 ** (k / 4.0)
    return float(1.0 - (1.0 - a) ** (step_s / L3_REFERENCE_PERIOD_S))


def l1_average(samples: FloatArray, *, window_s: float, step_s: float) -> FloatArray:
    """Moving mean of the last ``window_s`` of samples along axis 0 (shorter at the start).

    NaN samples (cell not measurable) stay NaN and are left out of their neighbours' means.

    Examples
    --------
    >>> l1_average(np.array([0.0, 2.0, 4.0]), window_s=0.2, step_s=0.1).tolist()
    [0.0, 1.0, 3.0]
    >>> l1_average(np.zeros((0, 2)), window_s=0.2, step_s=0.1).shape
    (0, 2)
    """
    x = np.asarray(samples, dtype=np.float64)
    w = max(1, round(window_s / step_s))
    if w == 1 or x.shape[0] == 0:
        return x.copy()
    valid = np.isfinite(x)
    filled = np.where(valid, x, 0.0)
    csum = np.cumsum(filled, axis=0)
    ccount = np.cumsum(valid, axis=0)
    lagged_sum = np.zeros_like(csum)
    lagged_count = np.zeros_like(ccount)
    lagged_sum[w:] = csum[:-w]
    lagged_count[w:] = ccount[:-w]
    count = ccount - lagged_count
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum - lagged_sum) / count
    return np.where(valid, out, np.nan)


def l3_filter(samples: FloatArray, *, k: int, step_s: float) -> FloatArray:
    """First-order L3 filter along axis 0 (``F_0 = M_1``; a NaN gap restarts the filter).

    Examples
    --------
    >>> l3_filter(np.array([0.0, 10.0, 10.0]), k=4, step_s=0.2).tolist()
    [0.0, 5.0, 7.5]
    >>> l3_filter(np.array([1.0, np.nan, 3.0]), k=4, step_s=0.2).tolist()
    [1.0, nan, 3.0]
    >>> l3_filter(np.zeros(0), k=4, step_s=0.1).shape
    (0,)
    """
    x = np.asarray(samples, dtype=np.float64)
    a = l3_coefficient(k, step_s)
    if x.shape[0] == 0 or a >= 1.0:
        return x.copy()
    flat = x.reshape(x.shape[0], -1)
    out = np.full_like(flat, np.nan)
    for j in range(flat.shape[1]):
        column = flat[:, j]
        valid = np.isfinite(column)
        if valid.all():
            out[:, j] = _iir(column, a)
            continue
        # filter each run of valid samples on its own
        edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            out[start:stop, j] = _iir(column[start:stop], a)
    return out.reshape(x.shape)


def _iir(x: FloatArray, a: float) -> FloatArray:
    """``F_n = (1-a) F_{n-1} + a x_n`` with ``F_0 = x_0``."""
    y, _ = lfilter([a], [1.0, -(1.0 - a)], x, zi=[(1.0 - a) * x[0]])
    return np.asarray(y, dtype=np.float64)


class A3Trigger:
    """Time-to-trigger bookkeeping of the A3 event for one UE.

    Call :meth:`step` once per step with the filtered values of every candidate; it returns the
    candidate to hand over to when the entering condition has held for the TTT (the best one if
    several are ready), else ``None``. :meth:`reset` after every change of serving cell.

    Examples
    --------
    >>> trig = A3Trigger(A3Params(hysteresis_db=3.0, ttt_s=0.2), step_s=0.1)
    >>> [trig.step(k, 0, np.array([-90.0, -85.0])) for k in range(4)]
    [None, None, 1, 1]
    >>> A3Trigger(A3Params(), step_s=0.1).step(0, 0, np.array([-90.0]))  # no neighbour
    """

    def __init__(self, params: A3Params, *, step_s: float = DEFAULT_STEP_S) -> None:
        self.params = params
        self.step_s = step_s
        # TTT in whole steps: the first step whose elapsed time reaches the TTT (1e-9: 0.3 s
        # must count as >= 0.3 s despite float steps)
        self.ttt_steps = math.ceil(params.ttt_s / step_s - 1e-9)
        self._since: dict[int, int] = {}

    def reset(self) -> None:
        """Forget running TTT timers (call after a change of serving cell)."""
        self._since.clear()

    @property
    def running(self) -> bool:
        """True while some candidate's TTT timer runs."""
        return bool(self._since)

    def entering(self, serving: int, values: FloatArray) -> NDArray[np.bool_]:
        """Candidates whose entering condition holds (the serving cell never does)."""
        p = self.params
        serving_value = values[serving]
        if not np.isfinite(serving_value):
            serving_value = -np.inf  # a lost serving cell: any measurable neighbour enters
        cond = np.nan_to_num(values, nan=-np.inf) > serving_value + p.hysteresis_db + p.offset_db
        cond[serving] = False
        return cond

    def step(self, k: int, serving: int, values: FloatArray) -> int | None:
        """Update the timers at step ``k``; the triggered target or ``None``."""
        cond = self.entering(serving, values)
        ready: list[int] = []
        for c in np.flatnonzero(cond).tolist():
            since = self._since.setdefault(c, k)
            if k - since >= self.ttt_steps:
                ready.append(c)
        for c in [c for c in self._since if not cond[c]]:
            del self._since[c]
        if not ready:
            return None
        return max(ready, key=lambda c: float(values[c]))


def a3_serving(
    measured: FloatArray,
    params: A3Params,
    *,
    step_s: float = DEFAULT_STEP_S,
    initial: int | None = None,
) -> tuple[IntArray, IntArray]:
    """Serving cell at every step under A3 handovers (no radio link failure, instant handover).

    Parameters
    ----------
    measured : (T, C) array
        Physical-layer samples (e.g. RSRP dBm) of every cell; NaN where a cell is not measurable.
    params : A3Params
        Event and filter parameters.
    step_s : float
        Sample period.
    initial : int, optional
        Serving cell at the first step (default: the best filtered cell there).

    Returns
    -------
    serving : (T,) int array
        Serving cell per step.
    handover_steps : (H,) int array
        Steps at which a handover is triggered.

    Examples
    --------
    >>> m = np.array([[-80.0, -90.0]] * 3 + [[-90.0, -80.0]] * 6)
    >>> serving, at = a3_serving(m, A3Params(ttt_s=0.0, hysteresis_db=0.0), step_s=0.2)
    >>> serving.tolist(), at.tolist()
    ([0, 0, 0, 0, 1, 1, 1, 1, 1], [4])
    >>> a3_serving(np.zeros((0, 2)), A3Params())[0].shape
    (0,)
    """
    x = np.asarray(measured, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"measured must be (steps, cells), got shape {x.shape}")
    n_steps, n_cells = x.shape
    serving = np.zeros(n_steps, dtype=np.int64)
    if n_steps == 0:
        return serving, np.zeros(0, dtype=np.int64)
    l3 = l3_filter(
        l1_average(x, window_s=params.l1_window_s, step_s=step_s), k=params.l3_k, step_s=step_s
    )
    current = int(np.nanargmax(np.nan_to_num(l3[0], nan=-np.inf))) if initial is None else initial
    if not 0 <= current < n_cells:
        raise InvalidInputError(f"initial cell {current} is not a column of measured")
    trigger = A3Trigger(params, step_s=step_s)
    handovers: list[int] = []
    for k in range(n_steps):
        target = trigger.step(k, current, l3[k])
        if target is not None:
            current = target
            trigger.reset()
            handovers.append(k)
        serving[k] = current
    return serving, np.asarray(handovers, dtype=np.int64)


def friis_rsrp_dbm(
    distance_m: FloatArray, *, tx_power_dbm: float = 30.0, frequency_hz: float = 2.0e9
) -> FloatArray:
    """Received power under free-space (Friis) path loss with isotropic antennas.

    Examples
    --------
    >>> round(float(friis_rsrp_dbm(np.array([100.0]))[0]), 2)
    -48.47
    """
    d = np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-3)
    return tx_power_dbm - 20.0 * np.log10(4.0 * np.pi * d * frequency_hz / _C_MPS)


def two_cell_handover_m(
    params: A3Params,
    *,
    speed_mps: float,
    step_s: float = DEFAULT_STEP_S,
    cell_x_m: tuple[float, float] = (0.0, 500.0),
    start_xy_m: tuple[float, float] = (50.0, 10.0),
    tx_power_dbm: float = 30.0,
) -> float:
    """Position (x, m) of the A3 handover in the two-cell calibration scenario.

    The UE starts at ``start_xy_m`` served by the first cell and moves along +x at
    ``speed_mps``; the result is its x at the step the handover to the second cell triggers.

    Raises
    ------
    InvalidInputError
        If the speed is not positive or no handover happens before the second cell.

    Examples
    --------
    >>> two_cell_handover_m(A3Params(hysteresis_db=0.0, ttt_s=0.0), speed_mps=20.0)
    256.0
    >>> two_cell_handover_m(A3Params(), speed_mps=0.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: speed_mps must be > 0, got 0.0
    """
    if not speed_mps > 0:
        raise InvalidInputError(f"speed_mps must be > 0, got {speed_mps}", field="speed_mps")
    x0, y0 = start_xy_m
    span_m = 2.0 * (cell_x_m[1] - x0)
    n_steps = int(span_m / (speed_mps * step_s)) + 1
    x = x0 + speed_mps * step_s * np.arange(n_steps)
    distance = np.stack([np.hypot(x - cx, y0) for cx in cell_x_m], axis=1)
    rsrp = friis_rsrp_dbm(distance, tx_power_dbm=tx_power_dbm)
    _, at = a3_serving(rsrp, params, step_s=step_s, initial=0)
    if at.size == 0:
        raise InvalidInputError("no handover happened in the two-cell scenario")
    return float(round(x[at[0]], 6))
