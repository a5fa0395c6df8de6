"""A3 measurement chain: the two-cell calibration, filters, time-to-trigger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.sim.a3 import (
    A3Params,
    A3Trigger,
    a3_serving,
    l1_average,
    l3_coefficient,
    l3_filter,
    two_cell_handover_m,
)

# (hysteresis dB, TTT s, speed m/s, reference handover position m) of the two-cell calibration
REFERENCE = [
    (0.0, 0.0, 20.0, 258.0),
    (3.0, 0.256, 20.0, 307.0),
    (3.0, 1.024, 20.0, 322.0),
    (6.0, 0.256, 20.0, 347.0),
    (3.0, 0.256, 40.0, 316.0),
]


@pytest.mark.parametrize(("hys_db", "ttt_s", "speed_mps", "expected_m"), REFERENCE)
def test_calibration_reproduces_reference_positions(
    hys_db: float, ttt_s: float, speed_mps: float, expected_m: float
) -> None:
    x = two_cell_handover_m(A3Params(hysteresis_db=hys_db, ttt_s=ttt_s), speed_mps=speed_mps)
    assert abs(x - expected_m) <= 10.0
    # the model is much closer than the 10 m bar
    assert abs(x - expected_m) <= 2.5


def test_calibration_orders_like_the_reference() -> None:
    xs = [
        two_cell_handover_m(A3Params(hysteresis_db=h, ttt_s=t), speed_mps=v)
        for h, t, v, _ in REFERENCE
    ]
    # more hysteresis, longer TTT, higher speed: later handover
    assert xs[0] < xs[1] < xs[2]
    assert xs[1] < xs[3]
    assert xs[1] < xs[4]


def test_without_filters_handover_is_at_the_geometric_point() -> None:
    # no L1/L3 smoothing, no hysteresis, no TTT: the midpoint (250 m) within one 2 m step
    params = A3Params(hysteresis_db=0.0, ttt_s=0.0, l1_window_s=0.0, l3_k=0)
    assert abs(two_cell_handover_m(params, speed_mps=20.0) - 250.0) <= 2.0


def test_l3_coefficient_keeps_the_time_constant() -> None:
    a200 = l3_coefficient(4, 0.2)
    a100 = l3_coefficient(4, 0.1)
    assert a200 == 0.5
    # two 100 ms steps forget as much as one 200 ms step
    assert math.isclose((1 - a100) ** 2, 1 - a200)


def test_l3_filter_step_response_and_restart() -> None:
    x = np.array([0.0, 10.0, 10.0, 10.0])
    assert l3_filter(x, k=4, step_s=0.2).tolist() == [0.0, 5.0, 7.5, 8.75]
    gap = np.array([-80.0, np.nan, -90.0, -90.0])
    out = l3_filter(gap, k=4, step_s=0.2)
    assert np.isnan(out[1]) and out[2] == -90.0  # a new measurement restarts the filter


def test_l1_average_ignores_missing_samples() -> None:
    x = np.array([[1.0], [np.nan], [3.0], [5.0]])
    out = l1_average(x, window_s=0.2, step_s=0.1)
    assert np.isnan(out[1, 0])
    assert out[:, 0].tolist()[2:] == [3.0, 4.0]


def test_ttt_delays_the_trigger_by_whole_steps() -> None:
    for ttt_s, steps in ((0.0, 0), (0.1, 1), (0.256, 3), (1.024, 11)):
        trig = A3Trigger(A3Params(hysteresis_db=3.0, ttt_s=ttt_s), step_s=0.1)
        fired = [trig.step(k, 0, np.array([-90.0, -86.0])) for k in range(15)]
        assert fired.index(1) == steps


def test_ttt_timer_restarts_when_the_condition_breaks() -> None:
    trig = A3Trigger(A3Params(hysteresis_db=3.0, ttt_s=0.3), step_s=0.1)
    better, worse = np.array([-90.0, -86.0]), np.array([-90.0, -88.0])
    seq = [better, better, worse, better, better, better, better]
    fired = [trig.step(k, 0, v) for k, v in enumerate(seq)]
    assert fired == [None, None, None, None, None, None, 1]  # 3 steps after the restart at 3


def test_hysteresis_must_be_exceeded() -> None:
    trig = A3Trigger(A3Params(hysteresis_db=3.0, ttt_s=0.0), step_s=0.1)
    assert trig.step(0, 0, np.array([-90.0, -87.0])) is None  # equal to Hys: no entry
    assert trig.step(1, 0, np.array([-90.0, -86.9])) == 1


def test_a3_serving_on_crossing_cells_hands_over_once() -> None:
    t = np.arange(200)
    rsrp = np.stack([-80.0 - 0.2 * t, -100.0 + 0.2 * t], axis=1)
    serving, at = a3_serving(rsrp, A3Params(), step_s=0.1)
    assert at.size == 1
    assert serving[0] == 0 and serving[-1] == 1
    # crossing at step 50; 3 dB hysteresis at 0.4 dB/step is 7.5 steps, plus filter and TTT
    assert 58 <= int(at[0]) <= 66


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="hysteresis_db"):
        A3Params(hysteresis_db=float("nan"))
    with pytest.raises(InvalidInputError, match="l3_k"):
        A3Params(l3_k=25)
    with pytest.raises(InvalidInputError, match="steps, cells"):
        a3_serving(np.zeros(3), A3Params())
    with pytest.raises(InvalidInputError, match="speed_mps"):
        two_cell_handover_m(A3Params(), speed_mps=-1.0)
