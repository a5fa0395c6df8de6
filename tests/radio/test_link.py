"""Link model: outage from quality and confidence, handovers by kind, applications, weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind, SwitchKind
from commap.plan.problem import Constraints, HandoverProblem
from commap.radio import link
from commap.radio.link import APP_PROFILES, AppProfile, LinkModel, Objective, app_profile
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    Quality,
    QualityMatrix,
)
from tests.support import plan_synthetic as syn

LTE = syn.NETWORKS[0]
STARLINK = syn.NETWORKS[4]
GEO_NET = syn.NETWORKS[6]


def _terrestrial(
    sinr: list[float], conf: list[float], rsrp: list[float] | None = None
) -> QualityMatrix:
    n = len(sinr)
    q = Quality(
        rsrp_dbm=np.asarray(rsrp if rsrp is not None else [-90.0] * n, dtype=float),
        sinr_db=np.asarray(sinr, dtype=float),
        elevation_deg=np.full(n, np.nan),
        confidence=np.asarray(conf, dtype=float),
        provenance=np.ones(n, dtype=np.int8),
        sample_count=np.zeros(n, dtype=np.int32),
    )
    return QualityMatrix.from_columns((LTE.id,), [q])


def _satellite(elevation: list[float], sinr: float = 9.0) -> QualityMatrix:
    n = len(elevation)
    q = Quality(
        rsrp_dbm=np.full(n, np.nan),
        sinr_db=np.full(n, sinr),
        elevation_deg=np.asarray(elevation, dtype=float),
        confidence=np.full(n, 0.9),
        provenance=np.ones(n, dtype=np.int8),
        sample_count=np.zeros(n, dtype=np.int32),
    )
    return QualityMatrix.from_columns((STARLINK.id,), [q])


# -- outage ---------------------------------------------------------------------------------------
def test_dense_measurement_is_more_certain_than_a_model() -> None:
    link = LinkModel()
    # 4 dB above Qout: a measurement (confidence 1) is almost surely fine, a model is not
    p = link.point_outage(_terrestrial([-1.0, -1.0], [1.0, 0.0]), [LTE])[:, 0]
    assert p[0] < 0.03 < 0.2 < p[1] < 0.5
    # below Qout the certainty works the other way: the measurement is surely out
    q = link.point_outage(_terrestrial([-9.0, -9.0], [1.0, 0.0]), [LTE])[:, 0]
    assert q[0] > 0.97 > q[1] > 0.5


def test_no_signal_is_certain_whatever_the_confidence() -> None:
    m = _terrestrial(
        [NO_SIGNAL_SINR_DB, np.nan, 10.0],
        [0.0, 1.0, 1.0],
        rsrp=[NO_SIGNAL_RSRP_DBM, -90.0, NO_SIGNAL_RSRP_DBM],
    )
    assert LinkModel().point_outage(m, [LTE])[:, 0].tolist() == [1.0, 1.0, 1.0]


def test_weak_rsrp_counts_even_with_good_sinr() -> None:
    p = LinkModel().point_outage(
        _terrestrial([15.0, 15.0], [1.0, 1.0], rsrp=[-135.0, -80.0]), [LTE]
    )[:, 0]
    assert p[0] > 0.99 and p[1] < 1e-6


@settings(max_examples=60, deadline=None)
@given(
    sinr=st.lists(st.floats(-29.0, 40.0), min_size=2, max_size=20),
    conf=st.floats(0.0, 1.0),
)
def test_outage_falls_as_sinr_rises(sinr: list[float], conf: float) -> None:
    s = np.sort(np.asarray(sinr))
    p = LinkModel().point_outage(_terrestrial(s.tolist(), [conf] * s.size), [LTE])[:, 0]
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) <= 1e-12)


def test_satellite_outage_from_elevation_margin() -> None:
    p = LinkModel().point_outage(
        _satellite([NO_SATELLITE_ELEVATION_DEG, 10.0, 25.0, 70.0]), [STARLINK]
    )[:, 0]
    assert p[0] == 1.0
    assert p[1] > 0.99  # 15 deg below Starlink's 25 deg mask
    assert p[2] == pytest.approx(0.5, abs=0.02)  # at the mask: a coin toss
    assert p[3] == pytest.approx(LinkModel().sat_blockage_prob, abs=1e-3)  # only blockage left


def test_satellite_blocked_link_is_out() -> None:
    p = LinkModel().point_outage(_satellite([60.0], sinr=NO_SIGNAL_SINR_DB), [STARLINK])
    assert p[0, 0] == 1.0


def test_segment_drop_grows_with_length_and_keeps_certainties() -> None:
    link = LinkModel()
    p = np.array([[0.0, 0.05, 1.0]] * 3)
    drop = link.segment_drop(p, np.array([10.0, 50.0, 200.0]), np.array([0.5, 2.0, 8.0]))
    assert drop[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert drop[:, 2].tolist() == [1.0, 1.0, 1.0]
    assert drop[0, 1] < drop[1, 1] < drop[2, 1]
    assert drop[1, 1] == pytest.approx(0.05)  # 50 m = one decorrelation length
    # a stopped vehicle still sees the channel change over time
    assert link.segment_drop(np.array([[0.05]]), np.array([0.0]), np.array([20.0]))[0, 0] > 0.05


def test_quality_matrix_must_match_networks() -> None:
    with pytest.raises(InvalidInputError):
        LinkModel().point_outage(_terrestrial([1.0], [1.0]), [LTE, STARLINK])


# -- handovers -----------------------------------------------------------------------------------
def test_switch_kinds_failure_and_interruption() -> None:
    link = LinkModel()
    ad_lte, ad_nr, es_lte, fr_lte, starlink, oneweb, geo = syn.NETWORKS
    assert link.switch(ad_lte, ad_nr) == (SwitchKind.INTRA_OPERATOR, 0.005, 0.05)
    assert link.switch(ad_lte, es_lte) == (SwitchKind.INTER_OPERATOR, 0.02, 10.0)
    assert link.switch(ad_nr, starlink)[0] is SwitchKind.TERRESTRIAL_LEO
    assert link.switch(geo, fr_lte)[0] is SwitchKind.TERRESTRIAL_GEO
    assert link.switch(starlink, oneweb)[0] is SwitchKind.SATELLITE_SATELLITE
    assert link.switch(oneweb, oneweb) == (SwitchKind.NONE, 0.0, 0.0)


def test_inter_operator_handover_pairs_and_reregistration_parameter() -> None:
    ad_lte, es_lte, fr_lte = syn.NETWORKS[0], syn.NETWORKS[2], syn.NETWORKS[3]
    link = LinkModel(inter_operator_handover=(("es", "ad"),), reregistration_s=90.0)
    assert link.switch(ad_lte, es_lte)[1:] == (0.01, 0.1)  # both directions of the pair
    assert link.switch(es_lte, ad_lte)[1:] == (0.01, 0.1)
    assert link.switch(ad_lte, fr_lte)[2] == 90.0  # no agreement: re-register, 90 s


def test_switch_table_matches_pairwise_switch() -> None:
    link = LinkModel()
    table = link.switch_table(syn.NETWORKS)
    for i, a in enumerate(syn.NETWORKS):
        for j, b in enumerate(syn.NETWORKS):
            kind, prob, pause = link.switch(a, b)
            assert table.kind(i, j) is kind
            assert table.failure_prob[i, j] == prob and table.interruption_s[i, j] == pause


def test_leo_reconfiguration_cost_only_on_leo() -> None:
    link = LinkModel(leo_reconfiguration_period_s=15.0, leo_reconfiguration_interruption_s=0.3)
    assert link.reconfiguration_s_per_s(STARLINK) == pytest.approx(0.02)
    assert link.reconfiguration_s_per_s(GEO_NET) == 0.0
    assert link.reconfiguration_s_per_s(LTE) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"intra_operator_failure_prob": 1.5},
        {"shadowing_sigma_db": 0.0},
        {"measured_sigma_db": 9.0},
        {"reregistration_s": -1.0},
        {"decorrelation_m": float("nan")},
        {"target_outage_failure_gain": 0.99},
        {"inter_operator_handover": (("ad",),)},
    ],
)
def test_invalid_link_parameters_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        LinkModel(**kwargs)  # type: ignore[arg-type]


# -- applications and weights --------------------------------------------------------------------
def test_app_profiles() -> None:
    assert app_profile("teleoperation").max_latency_ms < GEO_NET.latency_ms
    assert set(APP_PROFILES) == {"teleoperation", "telemetry", "infotainment"}
    with pytest.raises(InvalidInputError, match="unknown application class"):
        app_profile("gaming")
    with pytest.raises(InvalidInputError):
        AppProfile("x", max_latency_ms=0.0, data_rate_mbps=1.0)
    with pytest.raises(InvalidInputError):
        Objective(handovers=-1.0)


def test_problem_latency_violations_and_satellite_megabytes() -> None:
    cor = syn.corridor(20, speed_mps=20.0)  # 2.5 s per segment
    m = syn.matrix(cor, np.random.default_rng(4))
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, app="teleoperation")
    geo = p.network_ids.index("geo")
    starlink = p.network_ids.index("starlink")
    assert np.allclose(p.latency_violation_s[:, geo], 2.5)
    assert np.allclose(np.delete(p.latency_violation_s, geo, axis=1), 0.0)
    assert np.allclose(p.sat_mb[:, starlink], 8.0 / 8.0 * 2.5)  # 8 Mbit/s for 2.5 s = 2.5 MB
    assert np.allclose(p.sat_mb[:, 0], 0.0)
    strict = HandoverProblem.build(
        cor, m, syn.CATALOGUE, app="teleoperation", constraints=Constraints(strict_latency=True)
    )
    assert not strict.allowed[:, geo].any()


def test_handover_into_a_weak_network_costs_more() -> None:
    cor = syn.corridor(2)
    m = _terrestrial([-4.0, 12.0], [0.3, 0.3])
    cat = syn.CATALOGUE
    p = HandoverProblem.build(cor, m, cat)
    assert p.point_outage[0, 0] > p.point_outage[1, 0]
    assert p.entry_cost[0, 0] > p.entry_cost[1, 0] > 0
    gain = p.link.target_outage_failure_gain
    # a failed switch costs the objective's seconds per drop
    drop_s = p.objective.drops
    assert p.entry_cost[0, 0] == pytest.approx(drop_s * gain * p.point_outage[0, 0])


def test_a_predicted_outage_is_believed_over_the_signal_model() -> None:
    """A learned layer's outage probability is the planner's, even where the SINR says dead."""
    net = Network(
        id="a", kind=NetworkKind.TERRESTRIAL, operator="a", technology="lte", latency_ms=30
    )
    dead = Quality.empty(3)
    learned = Quality(
        rsrp_dbm=dead.rsrp_dbm,
        sinr_db=dead.sinr_db,
        elevation_deg=dead.elevation_deg,
        confidence=dead.confidence,
        provenance=dead.provenance,
        sample_count=dead.sample_count,
        outage_prob=np.array([0.02, np.nan, 0.5]),
        unknown=np.array([False, False, True]),
    )
    matrix = QualityMatrix.from_columns(("a",), [learned])
    outage = LinkModel().point_outage(matrix, [net])[:, 0]
    assert outage.tolist() == [0.02, 1.0, 0.5]  # NaN: the signal model (no signal: certain)
    assert matrix.take(slice(2, 3)).unknown.tolist() == [[True]]


def test_the_compiled_normal_cdf_gives_the_python_values_to_the_bit() -> None:
    # a server (numba loaded) and a one-shot command (math.erfc per value) must plan alike
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [rng.normal(0.0, 8.0, 50_000), np.linspace(-40.0, 40.0, 8001), [np.inf, -np.inf, 0.0]]
    )
    compiled = link._ndtr_compiled(x, -math.sqrt(0.5))
    python = np.asarray(link._ERFC(x * -math.sqrt(0.5)), dtype=np.float64) * 0.5
    np.testing.assert_array_equal(compiled, python)
